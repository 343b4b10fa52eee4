"""`helm lint` (Helm v4's linter, through its library) finds nothing wrong with the chart under
any value set of the matrix, for the oldest and newest supported Kubernetes."""

from __future__ import annotations

import pytest

import chartlib
from conftest import CASES

SEVERITY = {0: "unknown", 1: "info", 2: "warning", 3: "error"}


@pytest.mark.parametrize("kube_version", ["v1.30.0", "v1.33.0"])
@pytest.mark.parametrize("case", CASES)
def test_lint_is_clean(case, kube_version):
    report = chartlib.helm.lint(
        str(chartlib.CHART_DIR), chartlib.load_values(case), strict=True, kube_version=kube_version
    )
    problems = [
        f"{SEVERITY[m['severity']]} {m['path']}: {m['error']}"
        for m in report["messages"]
        # "icon is recommended" is the only info the chart accepts: it has no logo.
        if m["severity"] >= 2 or "icon" not in m["error"]
    ]
    assert report["errors"] == [] and problems == [], "\n".join(problems + report["errors"])


def test_lint_of_bare_defaults_names_the_missing_kubelet_identity():
    # The chart cannot guess the kubelet identity: linting without values says which one to set.
    report = chartlib.helm.lint(str(chartlib.CHART_DIR))
    assert any("kubeletObjectId or clusterResourceId (set exactly one)" in e for e in report["errors"]), report

