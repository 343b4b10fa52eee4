//! End to end: the built `acr-attach` binary, as a separate process running the real `run`
//! command (real kube client, real credential flow against the emulator's token endpoint), against
//! the Kubernetes API emulator and the ARM emulator.
//!
//! The same checks run against a real cluster and Azure when ACR_ATTACH_E2E_KUBECONFIG is set (see
//! `real_cluster` below and README.md); those tests are `#[ignore]`d otherwise, never faked.

#![cfg(feature = "sandbox")]

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use acr_attach::crd::{Ownership, RegistryAttachment, RegistryAttachmentSpec, RegistryReference};
use acr_attach::sandbox::{Sandbox, install_crd, load_tenant};
use arm_emulator::{Operation, RegistryMode};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

const SUB: &str = "00000000-0000-4000-8000-000000000001";
const KUBELET: &str = "6b1e0000-0000-4000-8000-0000000000b1";

fn registry(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/acr-attach-rg/providers/Microsoft.ContainerRegistry/registries/{name}"
    )
}

fn attachment(name: &str, registry_id: &str) -> RegistryAttachment {
    RegistryAttachment::new(
        name,
        RegistryAttachmentSpec {
            registry: RegistryReference::by_id(registry_id.to_string()),
            role: Default::default(),
            principal: None,
            principals: Vec::new(),
            repositories: Vec::new(),
            catalog_listing: false,
            deletion_policy: Default::default(),
        },
    )
}

/// The operator binary, started with `run` against the sandbox's emulators.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn spawn(args: Vec<OsString>, envs: Vec<(&str, String)>, log: PathBuf) -> Operator {
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_acr-attach"))
            .args(args)
            .args(["--log-format", "json", "--log-filter", "info"])
            .envs(envs)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start the operator binary");
        Operator { child, log }
    }

    /// `acr-attach run` against the sandbox's emulators, signing in with a client secret.
    fn start(sandbox: &Sandbox, tag: &str) -> Operator {
        Operator::start_with(sandbox, tag, &[], vec![])
    }

    /// The same, with extra flags and environment (a replica's POD_NAME, leader election).
    fn start_with(
        sandbox: &Sandbox,
        tag: &str,
        extra_args: &[&str],
        extra_env: Vec<(&str, String)>,
    ) -> Operator {
        let operator = sandbox.arm.operator_identity();
        let endpoint = sandbox.arm.endpoint();
        let args: Vec<OsString> = [
            "run",
            "--credential",
            "client-secret",
            "--client-id",
            &operator.client_id,
            "--tenant-id",
            &sandbox.arm.tenant_id(),
            "--arm-endpoint",
            &endpoint,
            "--authority-host",
            &endpoint,
            "--cluster-resource-id",
            &sandbox.tenant.clusters[0].id,
            "--resync",
            "2s",
            "--metrics-addr",
            "127.0.0.1:0",
        ]
        .iter()
        .map(OsString::from)
        .chain([
            "--kubeconfig".into(),
            sandbox.kubeconfig.clone().into_os_string(),
            "--extra-ca-file".into(),
            sandbox.ca_file.clone().into_os_string(),
        ])
        .chain(extra_args.iter().map(OsString::from))
        .collect();
        let secret = operator.client_secret.unwrap_or_default();
        let log = sandbox.dir.join(format!("operator-{tag}.log"));
        let mut envs = vec![("AZURE_CLIENT_SECRET", secret)];
        envs.extend(extra_env);
        Operator::spawn(args, envs, log)
    }

    /// Sends SIGTERM, as the kubelet does, and waits for the exit status (without blocking the
    /// runtime, which also serves the emulators the operator still talks to while it stops).
    async fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status, started.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "no exit 30 s after SIGTERM\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every log line, each parsed as one JSON object with no key twice.
    fn json_lines(&self) -> Vec<serde_json::Value> {
        self.logs()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str::<strict_json::NoDuplicateKeys>(line)
                    .unwrap_or_else(|e| panic!("log line is not clean JSON ({e}): {line}"));
                serde_json::from_str(line).unwrap()
            })
            .collect()
    }

    /// The address of /metrics, /readyz and /healthz, as the process logged it at start.
    async fn metrics_address(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.logs().lines().find_map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).ok()?;
                (value["message"] == "serving /metrics, /healthz and /readyz")
                    .then(|| value["address"].as_str().map(str::to_string))
                    .flatten()
            });
            if let Some(address) = found {
                return address;
            }
            assert!(
                Instant::now() < deadline,
                "no metrics address logged\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON value that refuses objects with a key twice (serde_json keeps the last silently, so a
/// log line with two `message` keys would otherwise look fine).
mod strict_json {
    use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};
    use std::collections::HashSet;

    pub struct NoDuplicateKeys;

    impl<'de> Deserialize<'de> for NoDuplicateKeys {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(Strict)
        }
    }

    struct Strict;

    impl<'de> Visitor<'de> for Strict {
        type Value = NoDuplicateKeys;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(A::Error::custom(format!("duplicate key {key:?}")));
                }
                map.next_value::<NoDuplicateKeys>()?;
            }
            Ok(NoDuplicateKeys)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
            Ok(NoDuplicateKeys)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(NoDuplicateKeys)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(NoDuplicateKeys)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(NoDuplicateKeys)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(NoDuplicateKeys)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(NoDuplicateKeys)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(NoDuplicateKeys)
        }
    }
}

/// GET over plain HTTP from the operator's own endpoint: (status, body).
async fn fetch(address: &str, path: &str) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://{address}{path}")).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// The value of one sample line of the Prometheus text, e.g. `acr_attach_leader`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

async fn start() -> (Sandbox, kube::Client, Api<RegistryAttachment>) {
    let sandbox = Sandbox::start(load_tenant(None).unwrap(), None, 0, 0)
        .await
        .expect("sandbox starts");
    let client = sandbox.client().await.expect("kube client");
    install_crd(&client).await.expect("CRD installs");
    let api = Api::all(client.clone());
    (sandbox, client, api)
}

/// Polls `check` until it returns Some, or fails with the operator's logs.
async fn eventually<T>(
    what: &str,
    operator: &Operator,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}\n--- operator log ---\n{}",
                operator.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates an attachment to a registry of the sandbox and waits until the operator reports it Ready.
async fn create_and_wait_ready(
    api: &Api<RegistryAttachment>,
    operator: &Operator,
    name: &str,
    registry_name: &str,
) -> RegistryAttachment {
    api.create(
        &PostParams::default(),
        &attachment(name, &registry(registry_name)),
    )
    .await
    .unwrap();
    eventually(&format!("{name} Ready"), operator, async || {
        api.get(name).await.ok().filter(ready)
    })
    .await
}

fn ready(object: &RegistryAttachment) -> bool {
    let generation = object.metadata.generation;
    object.status.as_ref().is_some_and(|s| {
        s.observed_generation == generation
            && s.conditions.iter().any(|c| {
                c.type_ == "Ready" && c.status == "True" && c.observed_generation == generation
            })
    })
}

#[tokio::test]
async fn apply_edit_and_delete_through_the_real_binary() {
    let (sandbox, _client, api) = start().await;
    let operator = Operator::start(&sandbox, "lifecycle");

    api.create(
        &PostParams::default(),
        &attachment("shared", &registry("legacyacr")),
    )
    .await
    .unwrap();
    let object = eventually("Ready", &operator, async || {
        api.get("shared").await.ok().filter(ready)
    })
    .await;
    let status = object.status.unwrap();
    assert_eq!(status.role.as_deref(), Some("AcrPull"));
    assert_eq!(
        status.assignment.as_ref().unwrap().ownership,
        Ownership::Created
    );
    assert_eq!(sandbox.arm.role_assignments().len(), 1);
    assert!(
        object
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&acr_attach::crd::FINALIZER.to_string())
    );

    // Edit the spec: observedGeneration follows, the grant moves to the ABAC registry's role.
    let patch = json!({"spec": {"registry": {"resourceId": registry("abacacr")}}});
    api.patch("shared", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let object = eventually("generation 2 Ready", &operator, async || {
        api.get("shared")
            .await
            .ok()
            .filter(|o| o.metadata.generation == Some(2) && ready(o))
    })
    .await;
    assert_eq!(
        object.status.unwrap().role.as_deref(),
        Some("RepositoryReader")
    );
    eventually("old assignment retired", &operator, async || {
        let assignments = sandbox.arm.role_assignments();
        (assignments.len() == 1 && assignments[0].scope.ends_with("abacacr")).then_some(())
    })
    .await;

    // Delete: the assignment goes and the finalizer is released.
    api.delete("shared", &DeleteParams::default())
        .await
        .unwrap();
    eventually("object gone", &operator, async || {
        api.get_opt("shared").await.ok().filter(Option::is_none)
    })
    .await;
    assert!(
        sandbox.arm.role_assignments().is_empty(),
        "assignment removed"
    );
    operator.kill();

    // Nothing secret reaches the logs: not the client secret, not a bearer token.
    let logs = std::fs::read_to_string(sandbox.dir.join("operator-lifecycle.log")).unwrap();
    assert!(
        logs.contains("condition changed"),
        "the log tells the story: {logs}"
    );
    let secret = sandbox.arm.operator_identity().client_secret.unwrap();
    assert!(!logs.contains(&secret));
    assert!(!logs.contains(&sandbox.kube.token()));
    assert!(!logs.to_ascii_lowercase().contains("bearer "));
}

#[tokio::test]
async fn an_operator_killed_mid_way_converges_after_restart_without_duplicates() {
    let (sandbox, _client, api) = start().await;
    // The kill lands exactly between the PUT and the status write: ARM applies the PUT, and its
    // answer is held until the operator is dead.
    sandbox.arm.hold_answers(Operation::PutRoleAssignment);
    api.create(
        &PostParams::default(),
        &attachment("shared", &registry("legacyacr")),
    )
    .await
    .unwrap();

    let first = Operator::start(&sandbox, "first");
    eventually("the PUT applied, its answer held", &first, async || {
        (sandbox.arm.held_answers() == 1).then_some(())
    })
    .await;
    let status = api.get("shared").await.unwrap().status.unwrap_or_default();
    assert_eq!(
        status.owned_assignments.len(),
        1,
        "intent recorded before the PUT"
    );
    assert!(status.assignment.is_none(), "the outcome not written yet");
    assert_eq!(sandbox.arm.role_assignments().len(), 1, "ARM has it");
    first.kill();
    sandbox.arm.release_answers(Operation::PutRoleAssignment);

    let second = Operator::start(&sandbox, "second");
    eventually("Ready after restart", &second, async || {
        api.get("shared").await.ok().filter(ready)
    })
    .await;
    let for_kubelet: Vec<_> = sandbox
        .arm
        .role_assignments()
        .into_iter()
        .filter(|a| a.principal_id == KUBELET)
        .collect();
    assert_eq!(for_kubelet.len(), 1, "no duplicate: {for_kubelet:?}");
    let recorded = api
        .get("shared")
        .await
        .unwrap()
        .status
        .unwrap()
        .assignment
        .unwrap();
    assert_eq!(
        recorded.ownership,
        Ownership::Created,
        "recognised as its own by the derived name, not adopted"
    );
    assert!(
        sandbox.arm.request_log().iter().all(|r| r.status != 409),
        "the restart met no RoleAssignmentExists"
    );
}

#[tokio::test]
async fn a_registry_mode_flip_in_azure_is_followed() {
    let (sandbox, _client, api) = start().await;
    let operator = Operator::start(&sandbox, "flip");
    create_and_wait_ready(&api, &operator, "shared", "legacyacr").await;

    assert!(
        sandbox
            .arm
            .set_registry_mode(&registry("legacyacr"), RegistryMode::Abac)
    );
    eventually("RepositoryReader", &operator, async || {
        let role = api.get("shared").await.ok()?.status?.role?;
        let assignments = sandbox.arm.role_assignments();
        (role == "RepositoryReader"
            && assignments.len() == 1
            && assignments[0]
                .role_definition_id
                .ends_with(arm_emulator::REPOSITORY_READER))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_invalid_object_is_refused_at_admission() {
    let (_sandbox, _client, api) = start().await;
    let bad = attachment(
        "bad",
        "/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr1",
    );
    let error = api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("refused");
    match error {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains("spec.registry.resourceId"),
                "{}",
                status.message
            );
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(api.get_opt("bad").await.unwrap().is_none());

    // The CRD's CEL rule: a principal entry names exactly one identity.
    let mut two_in_one = attachment("two-in-one", &registry("legacyacr"));
    two_in_one.spec.principals = vec![acr_attach::crd::PrincipalSpec {
        object_id: Some(KUBELET.to_string()),
        kubelet: Some(true),
        ..Default::default()
    }];
    match api.create(&PostParams::default(), &two_in_one).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains(
                    "spec.principals[0]: Invalid value: \"object\": set exactly one of objectId, identityResourceId or kubelet: true"
                ),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 422, got {other:?}"),
    }
}

#[tokio::test]
async fn probes_metrics_and_json_logs_of_the_real_process() {
    let (sandbox, _client, api) = start().await;
    let started = Instant::now();
    let operator = Operator::start(&sandbox, "observed");
    let address = operator.metrics_address().await;

    // A readiness probe passes within seconds of start, not after a minute.
    let body = eventually("/readyz 200", &operator, async || {
        fetch(&address, "/readyz")
            .await
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
    })
    .await;
    let to_ready = started.elapsed();
    println!("/readyz answered 200 after {to_ready:?}");
    assert!(to_ready < Duration::from_secs(5), "{to_ready:?}");
    assert_eq!(body, "leader", "a lone replica leads");
    assert_eq!(fetch(&address, "/healthz").await.map(|r| r.0), Some(200));

    // The first PUT fails: the reconcile's log line must carry ARM's request id.
    sandbox.arm.fail_next(Operation::PutRoleAssignment, 503, 1);
    create_and_wait_ready(&api, &operator, "shared", "legacyacr").await;

    // The families a dashboard and the chart's alerts rely on, with their labels.
    let metrics = eventually("attachments gauge", &operator, async || {
        let (_, metrics) = fetch(&address, "/metrics").await?;
        sample(
            &metrics,
            "acr_attach_attachments{ready=\"True\",reason=\"Attached\"}",
        )
        .filter(|count| *count == 1.0)
        .map(|_| metrics)
    })
    .await;
    for (series, at_least) in [
        ("acr_attach_reconciliations_total{outcome=\"ready\"}", 1.0),
        ("acr_attach_reconcile_duration_seconds_count", 1.0),
        (
            "acr_attach_arm_requests_total{operation=\"put_role_assignment\",status=\"201\"}",
            1.0,
        ),
        (
            "acr_attach_arm_requests_total{operation=\"get_registry\",status=\"200\"}",
            1.0,
        ),
        ("acr_attach_arm_throttled_total", 0.0),
        ("acr_attach_arm_retry_after_seconds_total", 0.0),
        ("acr_attach_generation_to_ready_seconds_count", 1.0),
        ("acr_attach_leader", 1.0),
        (
            &format!(
                "acr_attach_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
    ] {
        let value =
            sample(&metrics, series).unwrap_or_else(|| panic!("{series} missing:\n{metrics}"));
        assert!(value >= at_least, "{series} = {value}");
    }

    // SIGTERM: a clean, prompt exit.
    let (status, took) = operator_exit(operator, &sandbox).await;
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let failed = operator_log_lines(&sandbox, "observed")
        .into_iter()
        .find(|line| line["message"] == "reconciled" && line["reason"] == "AzureUnavailable")
        .expect("a reconcile line for the failed PUT");
    assert_eq!(failed["outcome"], "progressing", "{failed}");
    let request_id = failed["arm_request_id"].as_str().unwrap_or_default();
    assert!(
        uuid::Uuid::parse_str(request_id).is_ok(),
        "x-ms-request-id in the line: {failed}"
    );
}

/// Terminates the operator and checks its whole log: one JSON object per line, no key twice, one
/// `reconciled` line per reconcile with the object and the outcome.
async fn operator_exit(
    mut operator: Operator,
    sandbox: &Sandbox,
) -> (std::process::ExitStatus, Duration) {
    let (status, took) = operator.terminate().await;
    let lines = operator.json_lines();
    let reconciled: Vec<_> = lines
        .iter()
        .filter(|line| line["message"] == "reconciled")
        .collect();
    assert!(!reconciled.is_empty(), "no per-reconcile line");
    assert!(
        reconciled
            .iter()
            .all(|line| line["attachment"].is_string() && line["outcome"].is_string()),
        "{reconciled:?}"
    );
    let text = operator.logs();
    assert!(!text.contains(&sandbox.kube.token()));
    assert!(!text.contains('\u{1b}'), "no colour codes in a log file");
    (status, took)
}

/// The JSON lines of an operator's log file, after it exited.
fn operator_log_lines(sandbox: &Sandbox, tag: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(sandbox.dir.join(format!("operator-{tag}.log")))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// ARM writes (role assignment PUT/DELETE) in order, each with the User-Agent that sent it.
fn arm_writes(sandbox: &Sandbox) -> Vec<String> {
    sandbox
        .arm
        .request_log()
        .into_iter()
        .filter(|r| {
            (r.method == "PUT" || r.method == "DELETE") && r.path.contains("roleAssignments")
        })
        .map(|r| r.user_agent.unwrap_or_default())
        .collect()
}

async fn role_of(address: &str) -> Option<String> {
    fetch(address, "/readyz")
        .await
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
}

#[tokio::test]
async fn two_replicas_elect_one_leader_fail_over_and_hand_over_on_sigterm() {
    let (sandbox, client, api) = start().await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "default");
    const LEASE: Duration = Duration::from_secs(6);
    let flags = [
        "--leader-election",
        "--leader-election-namespace",
        "default",
        "--leader-election-lease-duration",
        "6s",
        "--leader-election-renew-deadline",
        "4s",
        "--leader-election-retry-period",
        "1s",
    ];
    let replica = |name: &str| {
        Operator::start_with(&sandbox, name, &flags, vec![("POD_NAME", name.to_string())])
    };
    let mut replicas = vec![
        (replica("replica-a"), "replica-a"),
        (replica("replica-b"), "replica-b"),
    ];
    let mut addresses = Vec::new();
    for (operator, _) in &replicas {
        addresses.push(operator.metrics_address().await);
    }

    // Both pass readiness (the standby's cache is warm too); exactly one leads.
    let roles = eventually("one leader, one standby", &replicas[0].0, async || {
        let roles = [role_of(&addresses[0]).await?, role_of(&addresses[1]).await?];
        let mut sorted = roles.clone();
        sorted.sort();
        (sorted == ["leader", "standby"]).then_some(roles)
    })
    .await;
    let leader = usize::from(roles[1] == "leader");
    let leader_name = replicas[leader].1;
    let holder = leases
        .get("acr-attach")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder.as_deref(), Some(leader_name));

    api.create(
        &PostParams::default(),
        &attachment("first", &registry("legacyacr")),
    )
    .await
    .unwrap();
    eventually("first Ready", &replicas[leader].0, async || {
        api.get("first").await.ok().filter(ready)
    })
    .await;
    let writes = arm_writes(&sandbox);
    assert!(!writes.is_empty());
    assert!(
        writes.iter().all(|agent| agent.contains(leader_name)),
        "only the leader wrote to Azure: {writes:?}"
    );

    // The leader crashes (SIGKILL, lease not released): the standby takes over after the lease
    // runs out, and not before.
    let before_crash = writes.len();
    let crashed = Instant::now();
    let (dead, _) = replicas.remove(leader);
    addresses.remove(leader);
    dead.kill();
    let (survivor, survivor_name) = replicas.remove(0);
    let survivor_address = addresses.remove(0);
    eventually("the standby leads", &survivor, async || {
        (role_of(&survivor_address).await? == "leader").then_some(())
    })
    .await;
    let failover = crashed.elapsed();
    println!("failover after a crash took {failover:?} (lease duration {LEASE:?})");
    assert!(failover < LEASE + Duration::from_secs(4), "{failover:?}");
    // The last renewal was at most a retry period before the crash: an earlier takeover would
    // have stolen a lease that was still valid.
    assert!(failover > LEASE - Duration::from_secs(2), "{failover:?}");

    create_and_wait_ready(&api, &survivor, "second", "abacacr").await;
    let after_crash = &arm_writes(&sandbox)[before_crash..];
    assert!(!after_crash.is_empty());
    assert!(
        after_crash
            .iter()
            .all(|agent| agent.contains(survivor_name)),
        "{after_crash:?}"
    );

    // SIGTERM on the leader with a fresh standby: it releases the lease and exits 0, and the
    // standby leads well before the lease could have expired.
    let fresh = replica("replica-c");
    let fresh_address = fresh.metrics_address().await;
    eventually("replica-c on standby", &fresh, async || {
        (role_of(&fresh_address).await? == "standby").then_some(())
    })
    .await;
    let handed_over = Instant::now();
    let survivor_log = survivor.log.clone();
    let (status, exited_after) = operator_exit(survivor, &sandbox).await;
    assert!(status.success(), "{status:?}");
    println!("the leader exited {exited_after:?} after SIGTERM");
    let survivor_log = std::fs::read_to_string(survivor_log).unwrap_or_default();
    eventually("replica-c leads", &fresh, async || {
        (role_of(&fresh_address).await? == "leader").then_some(())
    })
    .await;
    let takeover = handed_over.elapsed();
    println!("hand-over on SIGTERM took {takeover:?} (lease duration {LEASE:?})");
    assert!(
        takeover < LEASE,
        "the lease was released, not left to expire: {takeover:?}\n--- old leader ---\n{survivor_log}\n--- new leader ---\n{}",
        fresh.logs()
    );
}

/// One RBAC permission: API group, resource (with `/subresource`), verb, and the namespace it
/// applies to (`None`: cluster-wide, from the ClusterRole).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Permission {
    group: String,
    resource: String,
    verb: String,
    namespace: Option<String>,
    /// Limited to these names (`resourceNames`); empty: any.
    names: Vec<String>,
}

/// The rules of the ClusterRole and Role in the generated plain manifests (the chart's defaults).
fn chart_permissions() -> Vec<Permission> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base/rbac.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/base/rbac.yaml");
    let mut permissions = Vec::new();
    for document in serde_saphyr::from_multiple::<serde_json::Value>(&text).expect("YAML") {
        let namespace = match document["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => Some(
                document["metadata"]["namespace"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            _ => continue,
        };
        for rule in document["rules"].as_array().unwrap() {
            let list = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .map(|i| i.as_str().unwrap().to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            for group in list("apiGroups") {
                for resource in list("resources") {
                    for verb in list("verbs") {
                        permissions.push(Permission {
                            group: group.clone(),
                            resource: resource.clone(),
                            verb,
                            namespace: namespace.clone(),
                            names: list("resourceNames"),
                        });
                    }
                }
            }
        }
    }
    permissions
}

/// What an API request needs, as RBAC sees it.
struct Needed {
    group: String,
    resource: String,
    verb: String,
    namespace: Option<String>,
    name: Option<String>,
}

fn needed(method: &str, path_and_query: &str) -> Option<Needed> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => (group.to_string(), rest),
        _ => return None, // discovery and other non-resource URLs
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, resource, rest @ ..] => (
            Some(namespace.to_string()),
            [&[*resource][..], rest].concat(),
        ),
        other => (None, other.to_vec()),
    };
    let resource = rest.first()?.to_string();
    let name = rest.get(1).map(|n| n.to_string());
    let resource = match rest.get(2) {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource,
    };
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (method, name.is_some()) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some(Needed {
        group,
        resource,
        verb: verb.to_string(),
        namespace,
        name,
    })
}

#[tokio::test]
async fn the_charts_rbac_is_exactly_what_the_operator_uses() {
    use k8s_openapi::api::core::v1::Namespace;
    let (sandbox, client, api) = start().await;
    let release = "acr-attach";
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": release}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    sandbox.kube.clear_request_log();

    // Everything the operator does in its life: elect, attach, repeat an event (a series
    // patch), detach, and release its lease; then the preflight.
    let flags = ["--leader-election", "--leader-election-namespace", release];
    let mut operator = Operator::start_with(
        &sandbox,
        "rbac",
        &flags,
        vec![("POD_NAME", "acr-attach-0".to_string())],
    );
    create_and_wait_ready(&api, &operator, "abac", "abacacr").await;
    for _ in 0..2 {
        for (role, reason) in [("AcrPull", "RoleNotEffective"), ("Auto", "Attached")] {
            let patch = json!({"spec": {"role": role}});
            api.patch("abac", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
            eventually(reason, &operator, async || {
                let object = api.get("abac").await.ok()?;
                let ready = object
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Ready")?;
                (ready.reason == reason && ready.observed_generation == object.metadata.generation)
                    .then_some(())
            })
            .await;
        }
    }
    api.delete("abac", &DeleteParams::default()).await.unwrap();
    eventually("detached", &operator, async || {
        api.get_opt("abac").await.ok().filter(Option::is_none)
    })
    .await;
    let (status, took) = operator.terminate().await;
    assert!(status.success());
    assert!(took < Duration::from_secs(10), "{took:?}");
    let mut check = Command::new(env!("CARGO_BIN_EXE_acr-attach"));
    check
        .args(["check", "--kubeconfig"])
        .arg(&sandbox.kubeconfig)
        .args(["--credential", "client-secret", "--client-id"])
        .arg(sandbox.arm.operator_identity().client_id)
        .args([
            "--tenant-id",
            &sandbox.arm.tenant_id(),
            "--arm-endpoint",
            &sandbox.arm.endpoint(),
        ])
        .args([
            "--authority-host",
            &sandbox.arm.endpoint(),
            "--extra-ca-file",
        ])
        .arg(&sandbox.ca_file)
        .args(["--cluster-resource-id", &sandbox.tenant.clusters[0].id])
        .env(
            "AZURE_CLIENT_SECRET",
            sandbox
                .arm
                .operator_identity()
                .client_secret
                .unwrap_or_default(),
        );
    // Off the runtime's thread: it also serves the emulators `check` talks to.
    let check = tokio::task::spawn_blocking(move || check.output().expect("run check"))
        .await
        .unwrap();
    assert!(check.status.success(), "{check:?}");

    let granted = chart_permissions();
    let mut used = std::collections::BTreeSet::new();
    for request in sandbox.kube.request_log() {
        if !request
            .user_agent
            .as_deref()
            .unwrap_or("")
            .starts_with("acr-attach/")
        {
            continue; // the test's own client
        }
        let Some(Needed {
            group,
            resource,
            verb,
            namespace,
            name,
        }) = needed(&request.method, &request.path)
        else {
            continue;
        };
        let allowed = granted.iter().find(|p| {
            p.group == group
                && p.resource == resource
                && p.verb == verb
                && (p.namespace.is_none() || p.namespace == namespace)
                && (p.names.is_empty() || name.as_ref().is_some_and(|n| p.names.contains(n)))
        });
        let allowed = allowed.unwrap_or_else(|| {
            panic!(
                "the operator sent {} {} but the chart grants no {verb} on {group}/{resource}",
                request.method, request.path
            )
        });
        used.insert(allowed.clone());
    }
    let unused: Vec<_> = granted.iter().filter(|p| !used.contains(p)).collect();
    assert!(
        unused.is_empty(),
        "the chart grants what the operator never uses: {unused:#?}"
    );
}

#[test]
fn a_startup_failure_is_one_json_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_acr-attach"))
        .args([
            "run",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
            "--kubelet-object-id",
            KUBELET,
            "--credential",
            "azure-cli",
            "--metrics-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("run the binary");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("cannot start"))
        .collect();
    assert_eq!(errors.len(), 1, "printed once: {stderr}");
    serde_json::from_str::<strict_json::NoDuplicateKeys>(errors[0])
        .unwrap_or_else(|e| panic!("one clean JSON object ({e}): {}", errors[0]));
    let line: serde_json::Value = serde_json::from_str(errors[0]).unwrap();
    assert_eq!(line["level"], "ERROR");
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .contains("--kubeconfig /nonexistent/kubeconfig"),
        "{line}"
    );
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "nothing but JSON on stderr: {stderr}"
    );
}

/// The same lifecycle against a real cluster and real Azure. Needs:
/// ACR_ATTACH_E2E_KUBECONFIG (a cluster you may install the CRD into), ACR_ATTACH_E2E_REGISTRY_ID
/// (a registry the operator identity may assign roles on), ACR_ATTACH_E2E_PRINCIPAL_ID (the object
/// id to grant, e.g. the kubelet identity or a test service principal), and the operator's Azure
/// credential as for `acr-attach run`: ACR_ATTACH_E2E_CREDENTIAL (default azure-cli) plus
/// AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_CLIENT_SECRET / AZURE_FEDERATED_TOKEN_FILE as that
/// credential needs. Run with `cargo test --test e2e -- --ignored`.
mod real_cluster {
    use super::*;
    use acr_attach::azure::AzureApi;
    use acr_attach::azure::credential::{AzureSettings, Cloud, CredentialKind};
    use acr_attach::model::RegistryId;
    use clap::ValueEnum;
    use kube::config::{KubeConfigOptions, Kubeconfig};

    struct RealTarget {
        kubeconfig: PathBuf,
        registry: RegistryId,
        principal: String,
        credential: String,
    }

    fn target() -> RealTarget {
        let var = |name: &str| {
            std::env::var(name)
                .unwrap_or_else(|_| panic!("{name} must be set for the real-cluster e2e tests"))
        };
        RealTarget {
            kubeconfig: PathBuf::from(var("ACR_ATTACH_E2E_KUBECONFIG")),
            registry: RegistryId::parse(&var("ACR_ATTACH_E2E_REGISTRY_ID"))
                .expect("a registry resource id"),
            principal: var("ACR_ATTACH_E2E_PRINCIPAL_ID").to_ascii_lowercase(),
            credential: std::env::var("ACR_ATTACH_E2E_CREDENTIAL")
                .unwrap_or_else(|_| "azure-cli".to_string()),
        }
    }

    fn azure(target: &RealTarget) -> AzureSettings {
        AzureSettings {
            cloud: Cloud::AzurePublic,
            arm_endpoint: None,
            arm_audience: None,
            authority_host: None,
            extra_ca_file: None,
            credential: CredentialKind::from_str(&target.credential, true)
                .expect("a --credential value"),
            client_id: std::env::var("AZURE_CLIENT_ID").ok(),
            tenant_id: std::env::var("AZURE_TENANT_ID").ok(),
            client_secret: std::env::var("AZURE_CLIENT_SECRET")
                .ok()
                .map(azure_core::credentials::Secret::new),
            federated_token_file: std::env::var("AZURE_FEDERATED_TOKEN_FILE")
                .ok()
                .map(PathBuf::from),
            instance: None,
        }
    }

    async fn grants(target: &RealTarget, arm: &dyn AzureApi) -> usize {
        arm.list_role_assignments(&target.registry)
            .await
            .expect("list role assignments")
            .iter()
            .filter(|a| a.principal_id.eq_ignore_ascii_case(&target.principal))
            .count()
    }

    #[tokio::test]
    #[ignore = "needs a real cluster and Azure: set ACR_ATTACH_E2E_KUBECONFIG and friends"]
    async fn apply_edit_delete_and_admission_on_a_real_cluster() {
        acr_attach::install_crypto_provider();
        let target = target();
        let kubeconfig = Kubeconfig::read_from(&target.kubeconfig).expect("kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("kube config");
        let client = kube::Client::try_from(config).expect("kube client");
        install_crd(&client).await.expect("CRD installs");
        let api: Api<RegistryAttachment> = Api::all(client);
        let arm = azure(&target)
            .arm_client(std::sync::Arc::new(acr_attach::metrics::Metrics::default()))
            .expect("ARM client");
        let before = grants(&target, &arm).await;
        assert_eq!(
            before, 0,
            "start from a principal without a grant on the registry"
        );

        let log = std::env::temp_dir().join("acr-attach-e2e-real.log");
        let operator_args: Vec<OsString> = vec![
            "run".into(),
            "--kubeconfig".into(),
            target.kubeconfig.clone().into_os_string(),
            "--credential".into(),
            target.credential.clone().into(),
            "--kubelet-object-id".into(),
            target.principal.clone().into(),
            "--resync".into(),
            "30s".into(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
        ];
        let operator = Operator::spawn(operator_args.clone(), Vec::new(), log);

        let name = "acr-attach-e2e";
        api.create(
            &PostParams::default(),
            &attachment(name, target.registry.as_str()),
        )
        .await
        .unwrap();
        // Kill the operator while it works on the new object, then start it again.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        operator.kill();
        let operator = Operator::spawn(
            operator_args.clone(),
            Vec::new(),
            std::env::temp_dir().join("acr-attach-e2e-real-2.log"),
        );
        eventually("Ready", &operator, async || {
            api.get(name).await.ok().filter(ready)
        })
        .await;
        assert_eq!(
            grants(&target, &arm).await,
            1,
            "no duplicate after the restart"
        );

        let patch = json!({"spec": {"deletionPolicy": "Delete"}, "metadata": {"labels": {"e2e": "edited"}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let orphan = json!({"spec": {"deletionPolicy": "Orphan"}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&orphan))
            .await
            .unwrap();
        let back = json!({"spec": {"deletionPolicy": "Delete"}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&back))
            .await
            .unwrap();
        eventually("observedGeneration follows", &operator, async || {
            api.get(name)
                .await
                .ok()
                .filter(|o| o.metadata.generation >= Some(3) && ready(o))
        })
        .await;

        api.delete(name, &DeleteParams::default()).await.unwrap();
        eventually("released", &operator, async || {
            api.get_opt(name).await.ok().filter(Option::is_none)
        })
        .await;
        assert_eq!(grants(&target, &arm).await, 0, "detached");

        let bad = attachment(
            "acr-attach-e2e-bad",
            "/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr1",
        );
        let refused = api.create(&PostParams::default(), &bad).await;
        assert!(
            matches!(refused, Err(kube::Error::Api(ref s)) if s.code == 422),
            "{refused:?}"
        );
    }
}

/// The set-based features through the real binary and the Kubernetes emulator: repositories
/// edited in place, a principal added and removed, catalog listing on and off.
#[tokio::test]
async fn grants_as_a_set_through_the_real_binary() {
    const RUNNER: &str = "7c1e0000-0000-4000-8000-0000000000c1";
    let (sandbox, _client, api) = start().await;
    let operator = Operator::start(&sandbox, "grants");
    let abac = registry("abacacr");
    let mut scoped = attachment("team-a", &abac);
    scoped.spec.repositories = vec!["team-a/*".into()];
    scoped.spec.catalog_listing = true;
    api.create(&PostParams::default(), &scoped).await.unwrap();
    let object = eventually("team-a Ready", &operator, async || {
        api.get("team-a").await.ok().filter(ready)
    })
    .await;
    assert_eq!(object.status.unwrap().ready_grants.as_deref(), Some("2/2"));
    assert!(
        sandbox
            .arm
            .may_read_repository(&abac, KUBELET, "team-a/api")
    );
    assert!(
        !sandbox
            .arm
            .may_read_repository(&abac, KUBELET, "team-b/api")
    );
    assert!(sandbox.arm.may_list_catalog(&abac, KUBELET));
    let reader_name = |arm: &arm_emulator::ArmEmulator| {
        arm.role_assignments()
            .into_iter()
            .find(|a| a.condition.is_some())
            .map(|a| a.name)
    };
    let first_name = reader_name(&sandbox.arm).expect("a conditioned assignment");

    // Edit the repositories and add a principal, in one change.
    let patch = json!({"spec": {
        "repositories": ["team-a/*", "team-b/*"],
        "principals": [{"kubelet": true}, {"objectId": RUNNER}],
    }});
    api.patch("team-a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("4/4 grants", &operator, async || {
        api.get("team-a").await.ok().filter(|o| {
            ready(o) && o.status.as_ref().unwrap().ready_grants.as_deref() == Some("4/4")
        })
    })
    .await;
    assert!(
        sandbox
            .arm
            .may_read_repository(&abac, KUBELET, "team-b/api")
    );
    assert!(sandbox.arm.may_read_repository(&abac, RUNNER, "team-b/api"));
    assert_eq!(
        sandbox
            .arm
            .role_assignments()
            .iter()
            .filter(|a| a.principal_id == KUBELET && a.condition.is_some())
            .map(|a| a.name.clone())
            .collect::<Vec<_>>(),
        [first_name],
        "the kubelet's scoped grant was updated in place"
    );

    // Remove the runner and catalog listing.
    let patch = json!({"spec": {"principals": [{"kubelet": true}], "catalogListing": false}});
    api.patch("team-a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("1/1 grant", &operator, async || {
        api.get("team-a").await.ok().filter(|o| {
            ready(o) && o.status.as_ref().unwrap().ready_grants.as_deref() == Some("1/1")
        })
    })
    .await;
    eventually("runner's grants retired", &operator, async || {
        (sandbox.arm.role_assignments().len() == 1).then_some(())
    })
    .await;
    assert!(!sandbox.arm.may_read_repository(&abac, RUNNER, "team-a/api"));
    assert!(!sandbox.arm.may_list_catalog(&abac, KUBELET));
    assert!(
        sandbox
            .arm
            .may_read_repository(&abac, KUBELET, "team-a/api")
    );
    operator.kill();
}

#[tokio::test]
async fn registries_by_name_through_the_real_binary() {
    let (sandbox, _client, api) = start().await;
    // The CRD's CEL rule: a registry is named by exactly one of resourceId or name.
    let mut both = attachment("both", &registry("legacyacr"));
    both.spec.registry.name = Some("legacyacr".to_string());
    match api.create(&PostParams::default(), &both).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status
                    .message
                    .contains("spec.registry: Invalid value: \"object\": set exactly one of resourceId or name"),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 422, got {other:?}"),
    }

    // Found in the cluster's subscription (the operator runs with --cluster-resource-id), in a
    // resource group the spec does not name.
    let operator = Operator::start(&sandbox, "by-name");
    let by_name = |name: &str, registry_name: &str| {
        let mut object = attachment(name, "");
        object.spec.registry = RegistryReference::by_name(registry_name);
        object
    };
    api.create(&PostParams::default(), &by_name("team", "TeamImages"))
        .await
        .unwrap();
    let object = eventually("team Ready", &operator, async || {
        api.get("team").await.ok().filter(ready)
    })
    .await;
    let found = object.status.unwrap().registry.unwrap();
    assert_eq!(
        found.id,
        format!(
            "/subscriptions/{SUB}/resourceGroups/team-rg/providers/Microsoft.ContainerRegistry/registries/teamimages"
        )
    );
    assert_eq!(found.login_server.as_deref(), Some("teamimages.azurecr.io"));
    assert!(
        sandbox
            .arm
            .role_assignments()
            .iter()
            .any(|a| a.scope.eq_ignore_ascii_case(&found.id) && a.principal_id == KUBELET),
        "the kubelet identity holds a role on the registry the name resolved to"
    );

    // A misspelt name: Stalled, with the near miss, and nothing written.
    let puts = sandbox.arm.counts().get(Operation::PutRoleAssignment);
    api.create(&PostParams::default(), &by_name("typo", "teamimage"))
        .await
        .unwrap();
    let stalled = eventually("typo Stalled", &operator, async || {
        let object = api.get("typo").await.ok()?;
        object
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Stalled" && c.status == "True")
    })
    .await;
    assert_eq!(stalled.reason, "RegistryNameNotFound");
    assert!(
        stalled.message.contains("did you mean teamimages?"),
        "{}",
        stalled.message
    );
    assert!(stalled.message.contains(SUB), "{}", stalled.message);
    assert_eq!(sandbox.arm.counts().get(Operation::PutRoleAssignment), puts);

    // Deleting the by-name attachment removes the grant it made.
    api.delete("team", &DeleteParams::default()).await.unwrap();
    eventually("team detached", &operator, async || {
        api.get_opt("team").await.ok().filter(Option::is_none)
    })
    .await;
    assert!(
        !sandbox
            .arm
            .role_assignments()
            .iter()
            .any(|a| a.scope.eq_ignore_ascii_case(&found.id)),
        "the grant on teamimages is gone"
    );
    operator.kill();
}
