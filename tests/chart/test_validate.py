"""Every rendered object is valid for the Kubernetes API of each supported minor (1.30-1.33),
checked with kubernetes-validate in strict mode (unknown fields fail, as a typo in a template
would). Prometheus Operator objects are not in its schemas: those are skipped here with the
reason printed, and checked structurally below instead."""

from __future__ import annotations

import re

import pytest
import kubernetes_validate

import chartlib
from conftest import CASES, render_case

KUBERNETES_VERSIONS = ["1.30", "1.31", "1.32", "1.33"]
# Kinds from CRDs that kubernetes-validate has no schema for.
OPERATOR_CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}


def test_kubernetes_validate_knows_every_version_we_claim():
    supported = {v.rsplit(".", 1)[0] for v in kubernetes_validate.utils.all_versions()}
    assert set(KUBERNETES_VERSIONS) <= supported, sorted(supported)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("case", CASES)
def test_objects_are_valid_kubernetes(case, version):
    failures = []
    for o in render_case(case).objects:
        if (o["apiVersion"], o["kind"]) in OPERATOR_CRD_KINDS:
            continue  # reported by test_operator_crd_objects_have_no_upstream_schema
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{o['kind']}/{o['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            failures.append(f"{o['kind']}/{o['metadata']['name']}: {e.message}")
    assert not failures, "\n".join(failures)


def operator_crd_objects() -> list:
    found = []
    for case in CASES:
        for o in render_case(case).objects:
            if (o["apiVersion"], o["kind"]) in OPERATOR_CRD_KINDS:
                found.append(pytest.param(o, id=f"{case}-{o['kind']}"))
    return found


@pytest.mark.parametrize("obj", operator_crd_objects())
def test_operator_crd_objects_have_no_upstream_schema(obj):
    pytest.skip(
        f"{obj['kind']} ({obj['apiVersion']}) is a Prometheus Operator CRD kind, not in "
        "kubernetes-validate's schemas; test_operator_crd_objects_are_well_formed checks its structure"
    )


DURATION = re.compile(r"^[0-9]+(ms|s|m|h)$")


@pytest.mark.parametrize("obj", operator_crd_objects())
def test_operator_crd_objects_are_well_formed(obj):
    """The fields Prometheus Operator requires, with the types its CRDs declare."""
    assert set(obj) == {"apiVersion", "kind", "metadata", "spec"}
    assert obj["metadata"]["name"] and obj["metadata"]["namespace"]
    spec = obj["spec"]
    if obj["kind"] == "ServiceMonitor":
        assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
        assert isinstance(spec["selector"]["matchLabels"], dict) and spec["selector"]["matchLabels"]
        assert spec["namespaceSelector"]["matchNames"] == [chartlib.NAMESPACE]
        for ep in spec["endpoints"]:
            assert set(ep) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
            assert isinstance(ep["port"], str) and ep["path"].startswith("/")
            assert DURATION.match(ep["interval"]) and DURATION.match(ep["scrapeTimeout"])
    else:
        assert set(spec) == {"groups"}
        for group in spec["groups"]:
            assert set(group) <= {"name", "interval", "rules"} and group["name"]
            for rule in group["rules"]:
                assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}
                assert isinstance(rule["alert"], str) and isinstance(rule["expr"], str) and rule["expr"].strip()
                assert DURATION.match(rule["for"])
                assert all(isinstance(v, str) for v in rule["labels"].values())
                assert all(isinstance(v, str) for v in rule["annotations"].values())
                # Balanced brackets: a cheap guard against a template that cut an expression.
                expr = rule["expr"]
                for open_, close in ("()", "{}", "[]"):
                    assert expr.count(open_) == expr.count(close), (rule["alert"], expr)
