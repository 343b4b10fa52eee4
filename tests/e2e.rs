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
            registry: RegistryReference {
                resource_id: registry_id.to_string(),
            },
            role: Default::default(),
            principal: None,
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
        .collect();
        let secret = operator.client_secret.unwrap_or_default();
        let log = sandbox.dir.join(format!("operator-{tag}.log"));
        Operator::spawn(args, vec![("AZURE_CLIENT_SECRET", secret)], log)
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
    // Slow ARM down so the kill lands between the PUT and the status write.
    let mut faults = sandbox.arm.faults();
    faults.latency_ms = 300;
    sandbox.arm.set_faults(faults);
    api.create(
        &PostParams::default(),
        &attachment("shared", &registry("legacyacr")),
    )
    .await
    .unwrap();

    let first = Operator::start(&sandbox, "first");
    eventually("the PUT", &first, async || {
        (sandbox.arm.counts().get(Operation::PutRoleAssignment) > 0).then_some(())
    })
    .await;
    first.kill();

    let mut faults = sandbox.arm.faults();
    faults.latency_ms = 0;
    sandbox.arm.set_faults(faults);
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
    api.create(
        &PostParams::default(),
        &attachment("shared", &registry("legacyacr")),
    )
    .await
    .unwrap();
    eventually("Ready", &operator, async || {
        api.get("shared").await.ok().filter(ready)
    })
    .await;

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
