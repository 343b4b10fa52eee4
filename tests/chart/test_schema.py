"""values.schema.json refuses bad values at `helm install` time, before anything reaches the
cluster, and the message Helm prints names the field. Each bad value set is rendered the way an
install renders it; the expected text is what the user reads."""

from __future__ import annotations

import copy
import pathlib

import helm_python as helm
import pytest
import yaml

import chartlib

GOOD = chartlib.load_values("defaults")
CLUSTER_ID = GOOD["clusterResourceId"]
REGISTRY_ID = (
    "/subscriptions/5c2b0000-0000-4000-8000-000000000001/resourceGroups/images"
    "/providers/Microsoft.ContainerRegistry/registries/sharedimages"
)


def with_(**changes) -> dict:
    """GOOD with dotted keys replaced (a value of None removes the key, as `--set k=null` does)."""
    values = copy.deepcopy(GOOD)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = values
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return values


BAD = {
    "typo at the top": (with_(replicas=3), "at '': additional properties 'replicas' not allowed"),
    "typo in azure": (
        with_(azure__clientID="0a7e0000-0000-4000-8000-00000000c11e"),
        "at '/azure': additional properties 'clientID' not allowed",
    ),
    "typo in a security context": (
        with_(podSecurityContext__runAsUserr=1000),
        "at '/podSecurityContext': additional properties 'runAsUserr' not allowed",
    ),
    "unknown cloud": (
        with_(azure__cloud="AzureGermany"),
        "at '/azure/cloud': value must be one of 'AzurePublic', 'AzureChina', 'AzureUSGovernment'",
    ),
    "unknown credential": (with_(azure__credential="msi"), "at '/azure/credential': value must be one of"),
    "azure-cli has no place in a pod": (with_(azure__credential="azure-cli"), "at '/azure/credential'"),
    "duration without a unit": (with_(resync="10"), "at '/resync': '10' does not match pattern '^[0-9]+(s|m|h)$'"),
    "lease duration without a unit": (
        with_(leaderElection__leaseDuration="15"),
        "at '/leaderElection/leaseDuration': '15' does not match pattern",
    ),
    "duration as a number": (with_(stalledRetry=300), "at '/stalledRetry'"),
    "both kubelet identities": (
        with_(kubeletObjectId="6b1e0000-0000-4000-8000-0000000000b1"),
        "exactly one of kubeletObjectId and clusterResourceId, not both",
    ),
    "no kubelet identity": (with_(clusterResourceId=None), "kubeletObjectId or clusterResourceId (set exactly one)"),
    "empty kubelet identity": (with_(clusterResourceId=""), "kubeletObjectId or clusterResourceId (set exactly one)"),
    "workload identity without a client id": (
        with_(azure__clientId=None),
        "at '/azure/clientId': minLength: got 0, want 1",
    ),
    "client secret without the Secret": (
        with_(azure__credential="client-secret", azure__tenantId="72f988bf-0000-4000-8000-00000000a77e"),
        "at '/azure/clientSecretName': minLength: got 0, want 1",
    ),
    "client secret without a tenant": (
        with_(azure__credential="client-secret", azure__clientSecretName="sp"),
        "at '/azure/tenantId': minLength: got 0, want 1",
    ),
    "malformed kubelet object id": (
        with_(clusterResourceId=None, kubeletObjectId="6b1e0000-0000-4000-8000"),
        "at '/kubeletObjectId': '6b1e0000-0000-4000-8000' does not match pattern",
    ),
    "registry id given as the cluster id": (with_(clusterResourceId=REGISTRY_ID), "at '/clusterResourceId'"),
    "cluster id with a bad subscription": (
        with_(clusterResourceId=CLUSTER_ID.replace("5c2b0000-0000-4000-8000-000000000001", "prod")),
        "at '/clusterResourceId'",
    ),
    "malformed client id": (with_(azure__clientId="my-identity"), "at '/azure/clientId'"),
    "default subscription not a GUID": (with_(defaultSubscription="prod"), "at '/defaultSubscription'"),
    "ARM endpoint over http": (with_(azure__armEndpoint="http://management.azure.com"), "at '/azure/armEndpoint'"),
    "allow list subscription not a GUID": (with_(allowList__subscriptions=["prod"]), "at '/allowList/subscriptions/0'"),
    "allow list resource group without subscription": (
        with_(allowList__resourceGroups=["images"]),
        "at '/allowList/resourceGroups/0'",
    ),
    "allow list registry by name": (with_(allowList__registries=["sharedimages"]), "at '/allowList/registries/0'"),
    "allow list as a comma string": (
        with_(allowList__subscriptions="5c2b0000-0000-4000-8000-000000000001"),
        "at '/allowList/subscriptions'",
    ),
    "two replicas without leader election": (
        with_(leaderElection__enabled=False),
        "at '/replicaCount': maximum: got 2, want 1",
    ),
    "zero replicas": (with_(replicaCount=0), "at '/replicaCount'"),
    "digest without algorithm": (with_(image__digest="0123abcd"), "at '/image/digest'"),
    "tag in the repository": (with_(image__repository="ghcr.io/acr-attach/acr-attach:1.0"), "at '/image/repository'"),
    "privileged metrics port": (with_(metrics__port=80), "at '/metrics/port'"),
    "service monitor without the service": (
        with_(metrics__service__enabled=False, metrics__serviceMonitor__enabled=True),
        "at '/metrics/service/enabled': value must be true",
    ),
    "unknown log format": (with_(logFormat="logfmt"), "at '/logFormat'"),
    "Deny with Warn": (with_(admissionPolicy__validationActions=["Deny", "Warn"]), "at '/admissionPolicy/validationActions'"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_values_fail_the_install_naming_the_field(name):
    values, message = BAD[name]
    with pytest.raises(helm.HelmValuesError) as refused:
        chartlib.render_raw(values)
    text = str(refused.value)
    assert "values don't meet the specifications of the schema" in text
    assert message in text, f"Helm said:\n{text}"


def test_the_good_base_of_the_bad_cases_is_good():
    chartlib.render_raw(GOOD)


def test_every_level_refuses_unknown_keys():
    """additionalProperties: false on every object the chart defines, so any typo fails."""
    schema = chartlib.chart().schema
    assert schema is not None

    def walk(node: dict, where: str) -> list[str]:
        problems = []
        if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is not False:
            problems.append(where or "/")
        for key, child in node.get("properties", {}).items():
            problems += walk(child, f"{where}/{key}")
        if isinstance(node.get("items"), dict):
            problems += walk(node["items"], f"{where}[]")
        return problems

    assert walk(schema, "") == []


def test_every_value_in_values_yaml_is_described():
    schema = chartlib.chart().schema
    defaults = chartlib.chart().values

    def walk(values: dict, node: dict, where: str) -> list[str]:
        missing = []
        for key, value in values.items():
            child = node.get("properties", {}).get(key)
            if child is None:
                missing.append(f"{where}.{key}: not in the schema")
                continue
            if "description" not in child:
                missing.append(f"{where}.{key}: no description")
            if isinstance(value, dict) and child.get("additionalProperties") is False:
                missing += walk(value, child, f"{where}.{key}")
        return missing

    assert walk(defaults, schema, "") == []


def gitops_values() -> list[tuple[str, dict]]:
    """The chart values the GitOps examples in deploy/ ship (when those files exist)."""
    found = []
    for rel, path in (
        ("deploy/flux/operator/helmrelease.yaml", ("spec", "values")),
        ("deploy/argocd/application.yaml", ("spec", "source", "helm", "valuesObject")),
    ):
        file = chartlib.ROOT / rel
        if not file.exists():
            continue
        for doc in yaml.safe_load_all(file.read_text()):
            node = doc
            for key in path:
                node = (node or {}).get(key)
            if node is not None:
                found.append((rel, node))
    return found


@pytest.mark.parametrize("rel, values", gitops_values() or [pytest.param(None, None, marks=pytest.mark.skip(
    reason="no GitOps example under deploy/flux or deploy/argocd carries chart values"))])
def test_the_gitops_examples_values_pass_the_schema(rel, values):
    chartlib.chart().validate_schema(values)
