"""What a user installing the chart gets: the matrix of value sets in values/ rendered through
Helm, with assertions on the objects that matter when it runs (security context, probes, env,
identity wiring, HA objects, RBAC, names and labels)."""

from __future__ import annotations

import pathlib

import pytest
import yaml

import chartlib
from conftest import CASES, release_for, render_case

GUID_CLIENT = "0a7e0000-0000-4000-8000-00000000c11e"
GUID_TENANT = "72f988bf-0000-4000-8000-00000000a77e"
KUBELET_ID = "6b1e0000-0000-4000-8000-0000000000b1"
CLUSTER_ID = (
    "/subscriptions/5c2b0000-0000-4000-8000-000000000001/resourceGroups/platform"
    "/providers/Microsoft.ContainerService/managedClusters/aks-prod"
)
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
CLUSTER_SCOPED = {
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}


@pytest.fixture(scope="module")
def defaults() -> chartlib.Rendered:
    return render_case("defaults")


# ---- every case -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_every_object_has_the_standard_labels_and_the_right_scope(case, chart_meta):
    rendered = render_case(case)
    release = release_for(case)
    for o in rendered.objects:
        what = f"{o['kind']}/{o['metadata']['name']}"
        labels = o["metadata"].get("labels", {})
        missing = [k for k in STANDARD_LABELS if k not in labels]
        assert not missing, f"{what} lacks labels {missing}"
        assert labels["app.kubernetes.io/instance"] == release
        assert labels["app.kubernetes.io/version"] == chart_meta["appVersion"]
        assert labels["helm.sh/chart"] == f"acr-attach-{chart_meta['version']}"
        if o["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in o["metadata"], f"{what} is cluster-scoped"
        else:
            assert o["metadata"]["namespace"] == chartlib.NAMESPACE, what


@pytest.mark.parametrize("case", CASES)
def test_pod_meets_the_restricted_pod_security_standard(case):
    rendered = render_case(case)
    pod = rendered.pod["spec"]
    sc = pod["securityContext"]
    # Numeric ids: the kubelet cannot verify runAsNonRoot against a named image user.
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532 and isinstance(sc["runAsUser"], int)
    assert sc["runAsGroup"] == 65532 and isinstance(sc["runAsGroup"], int)
    assert sc["fsGroup"] == 65532
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = rendered.container["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is True, "the operator needs the API token"


@pytest.mark.parametrize("case", CASES)
def test_probes_use_readyz_and_healthz_on_the_metrics_port(case):
    rendered = render_case(case)
    c = rendered.container
    port = chartlib.load_values(case).get("metrics", {}).get("port", 8080)
    assert c["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    assert rendered.env()["ACR_ATTACH_METRICS_ADDR"] == f"0.0.0.0:{port}"
    for probe, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert c[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe
    # The first sync gets a generous budget before liveness counts; liveness is slower than
    # readiness so a busy process is taken out of rotation before it is restarted.
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    assert c["livenessProbe"]["periodSeconds"] >= c["readinessProbe"]["periodSeconds"]


@pytest.mark.parametrize("case", CASES)
def test_termination_grace_exceeds_the_shutdown_grace(case):
    rendered = render_case(case)
    shutdown = rendered.env()["ACR_ATTACH_SHUTDOWN_GRACE"]
    assert shutdown.endswith("s")
    assert rendered.pod["spec"]["terminationGracePeriodSeconds"] > int(shutdown[:-1])


@pytest.mark.parametrize("case", CASES)
def test_kubelet_identity_is_given_exactly_once(case):
    env = render_case(case).env()
    given = [k for k in ("ACR_ATTACH_KUBELET_OBJECT_ID", "ACR_ATTACH_CLUSTER_RESOURCE_ID") if k in env]
    assert len(given) == 1, given


def test_the_default_subscription_for_registry_names_is_passed_only_when_set(defaults):
    assert "ACR_ATTACH_DEFAULT_SUBSCRIPTION" not in defaults.env()
    env = render_case("managed-identity").env()
    assert env["ACR_ATTACH_DEFAULT_SUBSCRIPTION"] == "5c2b0000-0000-4000-8000-0000000000aa"


@pytest.mark.parametrize("case", CASES)
def test_selectors_match_the_pods(case):
    rendered = render_case(case)
    pod_labels = rendered.pod["metadata"]["labels"]
    selectors = [rendered.one("Deployment")["spec"]["selector"]["matchLabels"]]
    if svc := rendered.maybe("Service"):
        selectors.append(svc["spec"]["selector"])
    if pdb := rendered.maybe("PodDisruptionBudget"):
        selectors.append(pdb["spec"]["selector"]["matchLabels"])
    if np := rendered.maybe("NetworkPolicy"):
        selectors.append(np["spec"]["podSelector"]["matchLabels"])
    for selector in selectors:
        assert selector and selector.items() <= pod_labels.items(), selector
    # The selector of a Deployment is immutable: it must not carry the version.
    assert "app.kubernetes.io/version" not in selectors[0]


@pytest.mark.parametrize("case", CASES)
def test_rbac_is_exactly_the_calls_the_operator_makes(case):
    rendered = render_case(case)
    values = chartlib.load_values(case)
    cluster_rules = rendered.one("ClusterRole")["rules"]
    expected = [
        {"apiGroups": ["acrattach.io"], "resources": ["registryattachments"], "verbs": ["list", "watch", "patch"]},
        {"apiGroups": ["acrattach.io"], "resources": ["registryattachments/status"], "verbs": ["patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    if not values.get("ownerId"):
        # The owner id defaults to kube-system's UID; with ownerId set the read is not needed.
        expected.append({"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["kube-system"], "verbs": ["get"]})
    assert cluster_rules == expected
    sa_name = rendered.pod["spec"]["serviceAccountName"]
    subject = [{"kind": "ServiceAccount", "name": sa_name, "namespace": chartlib.NAMESPACE}]
    crb = rendered.one("ClusterRoleBinding")
    assert crb["roleRef"]["name"] == rendered.one("ClusterRole")["metadata"]["name"]
    assert crb["subjects"] == subject
    leader = values.get("leaderElection", {}).get("enabled", True)
    if leader:
        role = rendered.one("Role")
        assert role["metadata"]["namespace"] == chartlib.NAMESPACE
        assert role["rules"] == [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
        ]
        rb = rendered.one("RoleBinding")
        assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
        assert rb["subjects"] == subject
    else:
        assert rendered.maybe("Role") is None and rendered.maybe("RoleBinding") is None


# ---- the defaults ---------------------------------------------------------------------------


def test_defaults_run_two_replicas_with_leader_election(defaults):
    deploy = defaults.one("Deployment")
    assert deploy["spec"]["replicas"] == 2
    # A new pod must be Ready (a synced standby) before an old one goes: never below 2.
    assert deploy["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    env = defaults.env()
    assert env["ACR_ATTACH_LEADER_ELECTION"] == "true"
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["ACR_ATTACH_LEADER_ELECTION_LEASE_NAME"] == "acr-attach"
    assert env["ACR_ATTACH_LEADER_ELECTION_LEASE_DURATION"] == "15s"
    assert env["ACR_ATTACH_LEADER_ELECTION_RENEW_DEADLINE"] == "10s"
    assert env["ACR_ATTACH_LEADER_ELECTION_RETRY_PERIOD"] == "2s"
    pdb = defaults.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    # Soft spreading over nodes, selecting this release's pods.
    assert defaults.pod["spec"]["topologySpreadConstraints"] == [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": defaults.one("Deployment")["spec"]["selector"]["matchLabels"]},
        }
    ]


def test_defaults_carry_every_operator_setting_as_env(defaults, chart_meta):
    env = defaults.env()
    assert env == {
        "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "POD_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "ACR_ATTACH_CLUSTER_RESOURCE_ID": CLUSTER_ID,
        "ACR_ATTACH_CREDENTIAL": "workload-identity",
        "ACR_ATTACH_CLOUD": "AzurePublic",
        "AZURE_CLIENT_ID": GUID_CLIENT,
        "ACR_ATTACH_RESYNC": "10m",
        "ACR_ATTACH_PRINCIPAL_GRACE": "10m",
        "ACR_ATTACH_STALLED_RETRY": "5m",
        "ACR_ATTACH_SHUTDOWN_GRACE": "20s",
        "ACR_ATTACH_LEADER_ELECTION": "true",
        "ACR_ATTACH_LEADER_ELECTION_LEASE_NAME": "acr-attach",
        "ACR_ATTACH_LEADER_ELECTION_LEASE_DURATION": "15s",
        "ACR_ATTACH_LEADER_ELECTION_RENEW_DEADLINE": "10s",
        "ACR_ATTACH_LEADER_ELECTION_RETRY_PERIOD": "2s",
        "ACR_ATTACH_METRICS_ADDR": "0.0.0.0:8080",
        "ACR_ATTACH_LOG_FORMAT": "json",
        "ACR_ATTACH_LOG_FILTER": "info",
    }
    assert defaults.container["args"] == ["run"]
    assert defaults.container["image"] == f"ghcr.io/acr-attach/acr-attach:{chart_meta['appVersion']}"


def test_defaults_wire_workload_identity(defaults):
    assert defaults.pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    sa = defaults.one("ServiceAccount")
    assert sa["metadata"]["name"] == defaults.pod["spec"]["serviceAccountName"] == "acr-attach"
    assert sa["metadata"]["annotations"] == {"azure.workload.identity/client-id": GUID_CLIENT}
    assert sa["automountServiceAccountToken"] is True


def test_defaults_install_the_crd_kept_on_uninstall(defaults):
    crd = defaults.one("CustomResourceDefinition")
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    generated = yaml.safe_load((chartlib.CHART_DIR / "files" / "crd.yaml").read_text())
    # The template only adds labels and the keep annotation to the generated CRD.
    assert crd["spec"] == generated["spec"]
    assert crd["metadata"]["name"] == generated["metadata"]["name"] == "registryattachments.acrattach.io"
    assert not (chartlib.CHART_DIR / "crds").exists(), "crds/ would be installed once and never upgraded"


def test_the_charts_crd_is_the_repositorys_crd_byte_for_byte():
    chart_copy = (chartlib.CHART_DIR / "files" / "crd.yaml").read_bytes()
    repo_copy = (chartlib.ROOT / "crds" / "registryattachments.acrattach.io.yaml").read_bytes()
    assert chart_copy == repo_copy, "regenerate: cargo run -- crd > charts/acr-attach/files/crd.yaml"


def test_crds_can_be_left_out_or_not_kept():
    values = chartlib.load_values("defaults")
    off = chartlib.Rendered(chartlib.render({**values, "crds": {"enabled": False}}))
    assert off.maybe("CustomResourceDefinition") is None
    assert "install the RegistryAttachment CRD yourself" in chartlib.notes({**values, "crds": {"enabled": False}})
    not_kept = chartlib.Rendered(chartlib.render({**values, "crds": {"keep": False}}))
    assert "annotations" not in not_kept.one("CustomResourceDefinition")["metadata"]


def test_defaults_leave_optional_objects_out(defaults):
    for kind in ("ServiceMonitor", "PrometheusRule", "NetworkPolicy", "ValidatingAdmissionPolicy"):
        assert defaults.maybe(kind) is None, kind
    svc = defaults.one("Service")
    assert svc["metadata"]["name"] == "acr-attach-metrics"
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]


# ---- the other cases ------------------------------------------------------------------------


def test_workload_identity_with_tenant_and_custom_service_account():
    r = render_case("workload-identity")
    sa = r.one("ServiceAccount")
    assert sa["metadata"]["name"] == "acr-attach-operator" == r.pod["spec"]["serviceAccountName"]
    assert sa["metadata"]["annotations"] == {
        "azure.workload.identity/client-id": GUID_CLIENT,
        "azure.workload.identity/tenant-id": GUID_TENANT,
        "example.com/owner": "platform-team",
    }
    env = r.env()
    assert env["AZURE_TENANT_ID"] == GUID_TENANT
    assert env["ACR_ATTACH_KUBELET_OBJECT_ID"] == KUBELET_ID
    assert r.pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"


def test_managed_identity_does_not_use_the_webhook_and_may_reach_imds():
    r = render_case("managed-identity")
    assert "azure.workload.identity/use" not in r.pod["metadata"]["labels"]
    assert "annotations" not in r.one("ServiceAccount")["metadata"]
    env = r.env()
    assert env["ACR_ATTACH_CREDENTIAL"] == "managed-identity"
    assert env["AZURE_CLIENT_ID"] == "3d9e0000-0000-4000-8000-0000000000d3"
    egress = r.one("NetworkPolicy")["spec"]["egress"]
    assert {"ports": [{"port": 80, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}]} in egress


def test_client_secret_comes_from_the_secret_only():
    r = render_case("client-secret")
    env = r.env()
    assert env["ACR_ATTACH_CREDENTIAL"] == "client-secret"
    assert env["AZURE_CLIENT_SECRET"] == {"secretKeyRef": {"name": "acr-attach-sp", "key": "password"}}
    assert env["AZURE_CLIENT_ID"] == GUID_CLIENT and env["AZURE_TENANT_ID"] == GUID_TENANT
    assert env["ACR_ATTACH_OWNER_ID"] == "prod-westeurope-1"
    assert "azure.workload.identity/use" not in r.pod["metadata"]["labels"]
    # No other credential case mounts a secret.
    assert "AZURE_CLIENT_SECRET" not in render_case("defaults").env()


@pytest.mark.parametrize(
    "case, cloud", [("defaults", "AzurePublic"), ("azure-china", "AzureChina"), ("azure-usgov", "AzureUSGovernment")]
)
def test_cloud_is_passed_through(case, cloud):
    assert render_case(case).env()["ACR_ATTACH_CLOUD"] == cloud


def test_endpoint_overrides_are_passed_through():
    env = render_case("azure-usgov").env()
    assert env["ACR_ATTACH_ARM_ENDPOINT"] == "https://management.usgovcloudapi.net"
    assert env["ACR_ATTACH_ARM_AUDIENCE"] == "https://management.core.usgovcloudapi.net/"
    assert env["AZURE_AUTHORITY_HOST"] == "https://login.microsoftonline.us"
    for absent in ("ACR_ATTACH_ARM_ENDPOINT", "ACR_ATTACH_ARM_AUDIENCE", "AZURE_AUTHORITY_HOST"):
        assert absent not in render_case("defaults").env()


def test_extra_ca_is_mounted_where_the_env_points():
    r = render_case("extra-ca")
    env = r.env()
    ca_file = pathlib.PurePosixPath(env["ACR_ATTACH_EXTRA_CA_FILE"])
    (mount,) = r.container["volumeMounts"]
    assert mount["readOnly"] is True
    assert ca_file.parent == pathlib.PurePosixPath(mount["mountPath"])
    (volume,) = [v for v in r.pod["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"] == {"name": "corporate-proxy-ca", "items": [{"key": "proxy.pem", "path": ca_file.name}]}
    assert env["HTTPS_PROXY"] == "http://proxy.corp.example:3128", "extraEnv is appended"
    assert "volumes" not in render_case("defaults").pod["spec"]


def test_ha_three_replicas_pinned_by_digest():
    r = render_case("ha")
    assert r.one("Deployment")["spec"]["replicas"] == 3
    # The digest wins over the tag: the image is exactly these bytes.
    assert r.container["image"] == (
        "ghcr.io/acr-attach/acr-attach@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )
    env = r.env()
    assert env["ACR_ATTACH_LEADER_ELECTION_LEASE_NAME"] == "acr-attach-leader"
    assert env["ACR_ATTACH_LEADER_ELECTION_LEASE_DURATION"] == "30s"
    assert env["ACR_ATTACH_LEADER_ELECTION_RENEW_DEADLINE"] == "20s"
    assert env["ACR_ATTACH_LEADER_ELECTION_RETRY_PERIOD"] == "5s"
    spec = r.pod["spec"]
    assert spec["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["tolerations"] == [{"key": "CriticalAddonsOnly", "operator": "Exists"}]
    assert "nodeAffinity" in spec["affinity"]
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["labelSelector"]["matchLabels"] == r.one("Deployment")["spec"]["selector"]["matchLabels"]
    assert r.one("PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_tag_is_used_without_a_digest():
    values = chartlib.load_values("defaults")
    r = chartlib.Rendered(chartlib.render({**values, "image": {"tag": "1.2.3"}}))
    assert r.container["image"] == "ghcr.io/acr-attach/acr-attach:1.2.3"


def test_single_replica_without_leader_election_is_recreated_and_has_no_pdb():
    r = render_case("single")
    deploy = r.one("Deployment")
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    assert r.maybe("PodDisruptionBudget") is None, "minAvailable 1 of 1 would block every drain"
    env = r.env()
    assert env["ACR_ATTACH_LEADER_ELECTION"] == "false"
    assert not [k for k in env if k.startswith("ACR_ATTACH_LEADER_ELECTION_")]


def test_everything_on():
    r = render_case("everything")
    # Names follow the release and nameOverride.
    assert r.one("Deployment")["metadata"]["name"] == "platform-attach"
    assert r.one("ClusterRole")["metadata"]["name"] == "platform-attach"
    assert r.pod["metadata"]["labels"]["app.kubernetes.io/name"] == "attach"
    env = r.env()
    assert env["ACR_ATTACH_ALLOWED_SUBSCRIPTIONS"] == (
        "5c2b0000-0000-4000-8000-000000000001,5c2b0000-0000-4000-8000-000000000002"
    )
    assert env["ACR_ATTACH_ALLOWED_RESOURCE_GROUPS"] == (
        "5c2b0000-0000-4000-8000-000000000001/images,5c2b0000-0000-4000-8000-000000000002/shared-images"
    )
    assert env["ACR_ATTACH_ALLOWED_REGISTRIES"] == (
        "/subscriptions/5c2b0000-0000-4000-8000-000000000003/resourceGroups/central"
        "/providers/Microsoft.ContainerRegistry/registries/centralacr"
    )
    for key, value in {
        "ACR_ATTACH_RESYNC": "15m",
        "ACR_ATTACH_PRINCIPAL_GRACE": "20m",
        "ACR_ATTACH_STALLED_RETRY": "2m",
        "ACR_ATTACH_SHUTDOWN_GRACE": "25s",
        "ACR_ATTACH_LOG_FORMAT": "text",
        "ACR_ATTACH_LOG_FILTER": "acr_attach=debug,info",
        "ACR_ATTACH_OWNER_ID": "prod-westeurope-1",
        "ACR_ATTACH_LEADER_ELECTION_LEASE_NAME": "platform-attach",
        "ACR_ATTACH_METRICS_ADDR": "0.0.0.0:9090",
    }.items():
        assert env[key] == value, key
    assert r.container["args"] == ["run", "--registry-suffix=.azurecr.io"]
    assert r.pod["metadata"]["labels"]["team"] == "platform"
    assert r.pod["metadata"]["annotations"] == {"example.com/scrape": "false"}

    svc = r.one("Service")
    assert svc["spec"]["ports"][0]["port"] == 9090
    sm = r.one("ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [chartlib.NAMESPACE]}
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "1m", "scrapeTimeout": "10s"}]

    np = r.one("NetworkPolicy")["spec"]
    assert np["policyTypes"] == ["Ingress", "Egress"]
    assert np["ingress"] == [
        {
            "ports": [{"port": "metrics", "protocol": "TCP"}],
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        }
    ]
    egress = np["egress"]
    assert {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]} in egress
    assert {"ports": [{"port": 443, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]} in egress
    assert {"ports": [{"port": 443, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]} in egress
    assert {"to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}], "ports": [{"port": 3128, "protocol": "TCP"}]} in egress

    # The admission policy (its own template) is rendered when enabled.
    if (chartlib.CHART_DIR / "templates" / "admissionpolicy.yaml").exists():
        assert r.maybe("ValidatingAdmissionPolicy") is not None
        assert r.maybe("ValidatingAdmissionPolicyBinding") is not None


def test_prometheus_rule_alerts_on_what_needs_a_human():
    rule = render_case("everything").one("PrometheusRule")
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {"AcrAttachAttachmentsStalled", "AcrAttachArmThrottled", "AcrAttachReconcileErrors", "AcrAttachNoLeader"}
    scope = f'namespace="{chartlib.NAMESPACE}"'
    stalled = alerts["AcrAttachAttachmentsStalled"]
    assert 'acr_attach_attachments{ready="False"' in stalled["expr"] and scope in stalled["expr"]
    assert "by (reason)" in stalled["expr"] and stalled["for"] == "30m"
    assert "{{ $labels.reason }}" in stalled["annotations"]["summary"], "Prometheus templating survives Helm"
    throttled = alerts["AcrAttachArmThrottled"]["expr"]
    assert 'acr_attach_arm_requests_total{status="429"' in throttled and "> 0.1" in throttled
    assert 'acr_attach_reconciliations_total{outcome="error"' in alerts["AcrAttachReconcileErrors"]["expr"]
    no_leader = alerts["AcrAttachNoLeader"]
    # Fires both when every replica reports 0 and when no replica is scraped at all.
    assert no_leader["expr"] == f"(max(acr_attach_leader{{{scope}}}) or vector(0)) == 0"
    assert no_leader["for"] == "5m"
    for alert in alerts.values():
        assert scope in alert["expr"], alert["alert"]
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_no_leader_alert_only_with_leader_election():
    values = {**chartlib.load_values("single"), "metrics": {"prometheusRule": {"enabled": True}}}
    rule = chartlib.Rendered(chartlib.render(values)).one("PrometheusRule")
    assert "AcrAttachNoLeader" not in [r["alert"] for r in rule["spec"]["groups"][0]["rules"]]


def test_names_follow_the_release():
    values = chartlib.load_values("defaults")
    r = chartlib.Rendered(chartlib.render(values, name="team-a", namespace="ops"))
    assert r.one("Deployment")["metadata"]["name"] == "team-a-acr-attach"
    assert r.one("ServiceAccount")["metadata"]["name"] == "team-a-acr-attach"
    assert r.one("ClusterRoleBinding")["subjects"] == [{"kind": "ServiceAccount", "name": "team-a-acr-attach", "namespace": "ops"}]
    assert r.one("Role")["metadata"]["namespace"] == "ops"
    assert r.env()["ACR_ATTACH_LEADER_ELECTION_LEASE_NAME"] == "team-a-acr-attach"
    override = chartlib.Rendered(chartlib.render({**values, "fullnameOverride": "attacher"}, name="team-a"))
    assert {o["metadata"]["name"] for o in override.objects if o["kind"] != "CustomResourceDefinition"} <= {
        "attacher",
        "attacher-metrics",
        "attacher-leader-election",
    }


def test_existing_service_account():
    values = {**chartlib.load_values("defaults"), "serviceAccount": {"create": False, "name": "preexisting"}}
    r = chartlib.Rendered(chartlib.render(values))
    assert r.maybe("ServiceAccount") is None
    assert r.pod["spec"]["serviceAccountName"] == "preexisting"
    assert r.one("ClusterRoleBinding")["subjects"][0]["name"] == "preexisting"


def test_notes_tell_what_to_do_next():
    text = chartlib.notes(chartlib.load_values("defaults"))
    for needle in (
        "kubectl rollout status -n acr-attach deploy/acr-attach",
        "kubectl exec -n acr-attach deploy/acr-attach -- /acr-attach check",
        "acr-attach check --credential azure-cli --cluster-resource-id " + CLUSTER_ID,
        "kind: RegistryAttachment",
        "kubectl wait --for=condition=Ready registryattachment/shared-images",
        "deploy/argocd/health.lua",
        "system:serviceaccount:acr-attach:acr-attach",
    ):
        assert needle in text, needle
    assert "{{" not in text and "<no value>" not in text
    kubelet = chartlib.notes(chartlib.load_values("client-secret"))
    assert "--kubelet-object-id " + KUBELET_ID in kubelet
    assert "federated credential" not in kubelet
