"""Shared by the chart tests and by render_deploy.py: where things are, how the chart is rendered
(through Helm v4's own library, helm-python-sdk: the same engine and schema validation as
`helm install`), and how the plain manifests under deploy/ are derived from the chart."""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import helm_python as helm
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "acr-attach"
DEPLOY_DIR = ROOT / "deploy"
VALUES_DIR = pathlib.Path(__file__).resolve().parent / "values"

RELEASE = "acr-attach"
NAMESPACE = "acr-attach"

# deploy/ is the chart's defaults plus the two values the schema cannot default. The placeholders
# are well-formed (so the schema accepts them) and obviously not real; the workload-identity
# overlay shows how to replace them.
PLACEHOLDER_CLIENT_ID = "00000000-0000-0000-0000-000000000000"
PLACEHOLDER_CLUSTER_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/CHANGE-ME"
    "/providers/Microsoft.ContainerService/managedClusters/CHANGE-ME"
)
DEPLOY_VALUES: dict[str, Any] = {
    "clusterResourceId": PLACEHOLDER_CLUSTER_ID,
    "azure": {"clientId": PLACEHOLDER_CLIENT_ID},
    # helm.sh/resource-policy means nothing to kubectl.
    "crds": {"keep": False},
}

# Labels that say "Helm manages this" are false for manifests applied with kubectl.
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")

_chart: helm.Chart | None = None


def chart() -> helm.Chart:
    global _chart
    if _chart is None:
        _chart = helm.Chart.load(str(CHART_DIR))
    return _chart


def load_values(name: str) -> dict[str, Any]:
    """A value set from tests/chart/values/<name>.yaml (usable with `helm template -f` as well)."""
    with open(VALUES_DIR / f"{name}.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def render_raw(
    values: dict[str, Any] | None, name: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Template path -> rendered text, as Helm renders it for an install."""
    return chart().render(values or {}, name=name, namespace=namespace, is_install=True)


def render(
    values: dict[str, Any] | None, name: str = RELEASE, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """Every rendered object (NOTES.txt excluded), in template order."""
    objects = []
    for path, text in sorted(render_raw(values, name, namespace).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


def notes(values: dict[str, Any] | None, name: str = RELEASE, namespace: str = NAMESPACE) -> str:
    for path, text in render_raw(values, name, namespace).items():
        if path.endswith("NOTES.txt"):
            return text
    raise AssertionError("the chart renders no NOTES.txt")


class Rendered:
    """Lookup helpers over one render."""

    def __init__(self, objects: list[dict[str, Any]]):
        self.objects = objects

    def kinds(self) -> list[str]:
        return [o["kind"] for o in self.objects]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def maybe(self, kind: str) -> dict[str, Any] | None:
        found = self.all(kind)
        assert len(found) <= 1, f"expected at most one {kind}, got {len(found)}"
        return found[0] if found else None

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected exactly one {kind}, got {len(found)}: {self.kinds()}"
        return found[0]

    @property
    def pod(self) -> dict[str, Any]:
        return self.one("Deployment")["spec"]["template"]

    @property
    def container(self) -> dict[str, Any]:
        containers = self.pod["spec"]["containers"]
        assert len(containers) == 1
        return containers[0]

    def env(self) -> dict[str, Any]:
        """Env var name -> value (or the valueFrom object); duplicates are an error."""
        out: dict[str, Any] = {}
        for var in self.container.get("env", []):
            assert var["name"] not in out, f"env {var['name']} is set twice"
            out[var["name"]] = var["value"] if "value" in var else var["valueFrom"]
        return out


# ---- deploy/ -------------------------------------------------------------------------------

HEADER = (
    "# GENERATED from charts/acr-attach (default values; see deploy/README.md) by\n"
    "#   target/ci-venv/bin/python tests/chart/render_deploy.py\n"
    "# Do not edit: change the chart and rerun; tests/chart/test_deploy.py fails on drift.\n"
)

# file in deploy/base/ -> the kinds it holds, in apply order.
DEPLOY_FILES: dict[str, tuple[str, ...]] = {
    "namespace.yaml": ("Namespace",),
    "crd.yaml": ("CustomResourceDefinition",),
    "serviceaccount.yaml": ("ServiceAccount",),
    "rbac.yaml": ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"),
    "deployment.yaml": ("Deployment",),
    "service.yaml": ("Service",),
    "pdb.yaml": ("PodDisruptionBudget",),
}


def _strip_helm(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)

    def strip(meta: dict[str, Any]) -> None:
        labels = meta.get("labels") or {}
        for key in HELM_ONLY_LABELS:
            labels.pop(key, None)

    strip(obj["metadata"])
    template = obj.get("spec", {}).get("template")
    if isinstance(template, dict) and "metadata" in template:
        strip(template["metadata"])
    return obj


def _namespace_object() -> dict[str, Any]:
    # The restricted Pod Security Standard is enforced on the namespace: the pod is built for it.
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {
                "app.kubernetes.io/part-of": "acr-attach",
                "pod-security.kubernetes.io/enforce": "restricted",
            },
        },
    }


def _dump(objects: list[dict[str, Any]]) -> str:
    return "---\n".join(
        yaml.safe_dump(o, sort_keys=False, default_flow_style=False, width=100) for o in objects
    )


def deploy_files() -> dict[str, str]:
    """deploy/ file (path relative to deploy/) -> content, exactly as render_deploy.py writes it."""
    objects = [_namespace_object()] + [_strip_helm(o) for o in render(DEPLOY_VALUES)]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
    placed = {k for kinds in DEPLOY_FILES.values() for k in kinds}
    unplaced = sorted(set(by_kind) - placed)
    assert not unplaced, f"default render has kinds with no deploy/ file: {unplaced}"

    files: dict[str, str] = {}
    ordered: list[dict[str, Any]] = []
    for filename, kinds in DEPLOY_FILES.items():
        docs = [o for kind in kinds for o in by_kind.get(kind, [])]
        assert docs, f"default render has no {kinds} for deploy/base/{filename}"
        files[f"base/{filename}"] = HEADER + _dump(docs)
        ordered.extend(docs)
    files["base/kustomization.yaml"] = HEADER + _kustomization(list(DEPLOY_FILES))
    # kustomize refuses a base that contains its overlays (deploy/overlays/), so the objects live
    # in deploy/base/ and deploy/ itself is a kustomization of just that base.
    files["kustomization.yaml"] = HEADER + _kustomization(["base"])
    files["install.yaml"] = (
        HEADER.replace("# GENERATED", "# Single-file install (kubectl apply -f). GENERATED", 1)
        + _dump(ordered)
    )
    return files


def _kustomization(resources: list[str]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": resources,
        },
        sort_keys=False,
    )
