//! `acr-attach check`, the preflight: the built binary against the Kubernetes API emulator and
//! the ARM emulator in RBAC mode, where the operator's identity holds exactly what the README's
//! Install section tells people to grant. Every test also proves that check never writes to
//! Azure. The last test runs the operator itself with that least privilege.

#![cfg(feature = "sandbox")]

mod common;

use std::process::Command;

use acr_attach::crd::{
    PrincipalReference, RegistryAttachment, RegistryAttachmentSpec, RegistryReference,
};
use acr_attach::model::{OwnerId, PrincipalId, PullRole, RegistryId, RoleAssignmentName};
use acr_attach::sandbox::{Sandbox, install_crd};
use arm_emulator::{
    ACR_PULL, ArmEmulator, AuthorizationMode, ClusterConfig, FaultConfig, KubeletIdentity,
    Operation, PrincipalConfig, RBAC_ADMINISTRATOR, READER, REPOSITORY_READER, RegistryConfig,
    RegistryMode, RoleAssignmentConfig, TenantConfig,
};
use kube::api::{Api, PostParams};
use serde_json::Value;

const SUB: &str = arm_emulator::DEFAULT_SUBSCRIPTION_ID;
const KUBELET: &str = "6b1e0000-0000-4000-8000-0000000000b1";
const CI_RUNNER: &str = "7c1e0000-0000-4000-8000-0000000000c1";
const OPERATOR: &str = arm_emulator::DEFAULT_OPERATOR_OBJECT_ID;

fn registry(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/images/providers/Microsoft.ContainerRegistry/registries/{name}"
    )
}

fn cluster() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/aks-rg/providers/Microsoft.ContainerService/managedClusters/aks1"
    )
}

/// The least-privilege delegation condition the README's Install section documents: write only
/// `roles` for service principals, delete only assignments of `roles` to service principals.
fn delegation(roles: &[&str]) -> String {
    let set = roles.join(", ");
    format!(
        "((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/write'}})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{set}}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}})) AND ((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/delete'}})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{set}}} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}}))"
    )
}

fn grant(scope: &str, role: &str, condition: Option<String>) -> RoleAssignmentConfig {
    RoleAssignmentConfig {
        scope: scope.to_string(),
        role_definition: role.to_string(),
        principal_id: OPERATOR.to_string(),
        principal_type: Some("ServicePrincipal".to_string()),
        condition,
        ..Default::default()
    }
}

/// Registries `legacyacr`, `abacacr`, `otheracr` in `images`; the cluster in `aks-rg`; real
/// RBAC. The operator holds Reader on the cluster and, on `images`, RBAC Administrator
/// conditioned to `delegated_roles`, or just Reader when that is `None`.
fn tenant(delegated_roles: Option<&[&str]>) -> TenantConfig {
    let mut kubelet = KubeletIdentity::generated(&cluster());
    kubelet.object_id = KUBELET.to_string();
    let images = format!("/subscriptions/{SUB}/resourceGroups/images");
    let on_images = match delegated_roles {
        Some(roles) => grant(&images, RBAC_ADMINISTRATOR, Some(delegation(roles))),
        None => grant(&images, READER, None),
    };
    TenantConfig {
        authorization: AuthorizationMode::Rbac,
        resource_groups: vec![images],
        registries: vec![
            RegistryConfig::new(registry("legacyacr"), RegistryMode::Legacy),
            RegistryConfig::new(registry("abacacr"), RegistryMode::Abac),
            RegistryConfig::new(registry("otheracr"), RegistryMode::Legacy),
        ],
        clusters: vec![ClusterConfig {
            kubelet_identity: Some(kubelet),
            ..ClusterConfig::new(cluster())
        }],
        principals: vec![PrincipalConfig {
            object_id: CI_RUNNER.to_string(),
            ..Default::default()
        }],
        role_assignments: vec![on_images, grant(&cluster(), READER, None)],
        ..TenantConfig::default()
    }
}

struct Env {
    sandbox: Sandbox,
    client: kube::Client,
}

async fn start(tenant: TenantConfig) -> Env {
    let sandbox = Sandbox::start(tenant, None, 0, 0)
        .await
        .expect("sandbox starts");
    let client = sandbox.client().await.expect("kube client");
    install_crd(&client).await.expect("CRD installs");
    Env { sandbox, client }
}

impl Env {
    async fn attach(&self, name: &str, registry_id: &str, principal: Option<&str>) {
        let principal = principal.map(|p| PrincipalReference {
            object_id: p.to_string(),
        });
        self.create(name, RegistryReference::by_id(registry_id), principal)
            .await;
    }

    /// An attachment naming its registry by name (looked up in the cluster's subscription).
    async fn attach_by_name(&self, name: &str, registry_name: &str) {
        self.create(name, RegistryReference::by_name(registry_name), None)
            .await;
    }

    async fn create(
        &self,
        name: &str,
        registry: RegistryReference,
        principal: Option<PrincipalReference>,
    ) {
        let object = RegistryAttachment::new(
            name,
            RegistryAttachmentSpec {
                registry,
                role: Default::default(),
                principal,
                principals: Vec::new(),
                repositories: Vec::new(),
                catalog_listing: false,
                deletion_policy: Default::default(),
            },
        );
        let api: Api<RegistryAttachment> = Api::all(self.client.clone());
        api.create(&PostParams::default(), &object)
            .await
            .expect("create attachment");
    }

    async fn owner(&self) -> OwnerId {
        acr_attach::cli::cluster_owner_id(&self.client)
            .await
            .expect("kube-system uid")
    }

    /// `acr-attach check` with the operator's flags plus `extra`; (exit code, stdout, stderr).
    async fn check(&self, extra: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
        let operator = self.sandbox.arm.operator_identity();
        let endpoint = self.sandbox.arm.endpoint();
        let mut command = Command::new(env!("CARGO_BIN_EXE_acr-attach"));
        command
            .args(["check", "--credential", "client-secret", "--client-id"])
            .arg(&operator.client_id)
            .arg("--tenant-id")
            .arg(self.sandbox.arm.tenant_id())
            .args(["--arm-endpoint", &endpoint, "--authority-host", &endpoint])
            .args(["--cluster-resource-id", &cluster()])
            .arg("--kubeconfig")
            .arg(&self.sandbox.kubeconfig)
            .arg("--extra-ca-file")
            .arg(&self.sandbox.ca_file)
            .args(["--log-format", "text"])
            .args(extra)
            .env(
                "AZURE_CLIENT_SECRET",
                operator.client_secret.unwrap_or_default(),
            )
            .env_remove("RUST_LOG")
            .env_remove("POD_NAME")
            .envs(envs.iter().copied());
        // The emulators run on this test's runtime: wait for the process off it.
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("join")
            .expect("run acr-attach check");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    async fn check_json(&self, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["-o", "json"];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = self.check(&args, &[]).await;
        let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("stdout is not JSON ({e}):\n{stdout}\n--- stderr ---\n{stderr}")
        });
        (code, report)
    }
}

/// check talked to Azure only through reads and the token endpoint.
fn assert_read_only(arm: &ArmEmulator) {
    let log = arm.request_log();
    assert!(!log.is_empty(), "check made no Azure request at all");
    for entry in log {
        let read = entry.method == "GET";
        let token = entry.method == "POST" && entry.operation == Some(Operation::Token);
        assert!(
            read || token,
            "check wrote to Azure: {} {}",
            entry.method,
            entry.path
        );
    }
}

fn row<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["registries"]
        .as_array()
        .expect("registries")
        .iter()
        .find(|r| r["attachment"] == name || (r["attachment"].is_null() && r["name"] == name))
        .unwrap_or_else(|| panic!("no row {name} in {report:#}"))
}

fn codes(findings: &Value) -> Vec<String> {
    findings
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["code"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn every_attachment_in_the_cluster_is_checked_and_all_good_exits_0() {
    let env = start(tenant(Some(&[ACR_PULL, REPOSITORY_READER]))).await;
    let owner = env.owner().await;
    let arm = &env.sandbox.arm;
    // legacyacr: ours already (the derived name with this cluster's owner id).
    let legacy = RegistryId::parse(&registry("legacyacr")).unwrap();
    let kubelet = PrincipalId::parse(KUBELET).unwrap();
    let ours = RoleAssignmentName::derive(&legacy, &kubelet, PullRole::AcrPull, &owner);
    arm.insert_role_assignment(
        &registry("legacyacr"),
        ours.as_str(),
        ACR_PULL,
        KUBELET,
        None,
    );
    // abacacr: someone else's equivalent assignment (adopted).
    arm.insert_role_assignment(&registry("abacacr"), "", REPOSITORY_READER, KUBELET, None);
    env.attach("shared-images", &registry("legacyacr"), None)
        .await;
    env.attach("abac-images", &registry("abacacr"), None).await;
    env.attach("ci-runner-pull", &registry("legacyacr"), Some(CI_RUNNER))
        .await;
    arm.clear_request_log();

    let (code, report) = env.check_json(&[]).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(
        report["ownerId"],
        owner.as_str(),
        "owner id = kube-system UID"
    );
    assert_eq!(report["operatorObjectId"], OPERATOR);
    assert_eq!(report["kubeletIdentity"]["source"], "cluster");
    assert_eq!(report["kubeletIdentity"]["objectId"], KUBELET);
    assert_eq!(report["registries"].as_array().unwrap().len(), 3);

    let shared = row(&report, "shared-images");
    assert_eq!(shared["permissionsMode"], "LegacyRegistryPermissions");
    assert_eq!(shared["role"], "AcrPull");
    assert_eq!(shared["assignment"]["state"], "created");
    assert_eq!(shared["assignment"]["name"], ours.as_str());
    assert_eq!(shared["write"]["state"], "conditioned");
    assert_eq!(shared["write"]["permitsRole"], true);
    assert_eq!(shared["delete"]["permitsRole"], true);
    let abac = row(&report, "abac-images");
    assert_eq!(abac["role"], "RepositoryReader");
    assert_eq!(abac["assignment"]["state"], "adopted");
    let ci = row(&report, "ci-runner-pull");
    assert_eq!(
        ci["principal"]["source"], "spec",
        "spec.principal.objectId wins"
    );
    assert_eq!(ci["principal"]["objectId"], CI_RUNNER);
    assert_eq!(ci["assignment"]["state"], "missing");
    for name in ["shared-images", "abac-images", "ci-runner-pull"] {
        let r = row(&report, name);
        assert_eq!(r["ok"], true, "{r:#}");
        assert_eq!(r["problems"], Value::Array(vec![]));
    }
    assert_read_only(arm);
}

#[tokio::test]
async fn a_missing_assignment_the_operator_may_create_is_fine_and_the_table_says_so() {
    let env = start(tenant(Some(&[ACR_PULL, REPOSITORY_READER]))).await;
    let (code, stdout, stderr) = env
        .check(
            &[
                "--registry",
                &registry("abacacr"),
                "--owner-id",
                "check-owner",
            ],
            &[("POD_NAME", "acr-attach-5f7c9-x2x")],
        )
        .await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let header = stdout.lines().next().unwrap_or_default();
    for column in [
        "REGISTRY",
        "ATTACHMENT",
        "MODE",
        "ROLE",
        "PRINCIPAL",
        "ASSIGNMENT",
        "OPERATOR MAY WRITE",
        "RESULT",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let line = stdout.lines().nth(1).unwrap_or_default();
    for cell in [
        "abacacr",
        "(--registry)",
        "ABAC",
        "RepositoryReader",
        KUBELET,
        "missing, will be created",
        "yes, only AcrPull, Container Registry Repository Reader for ServicePrincipal",
        "ok",
    ] {
        assert!(line.contains(cell), "{cell:?} missing in {line:?}");
    }
    assert!(!stdout.contains("Problems:"), "{stdout}");
    assert!(
        stderr.trim().is_empty(),
        "warn-level logs only, and there was nothing to warn about: {stderr}"
    );
    assert_read_only(&env.sandbox.arm);
    // Every ARM request named the product and this replica.
    let version = env!("CARGO_PKG_VERSION");
    for entry in env.sandbox.arm.request_log() {
        if entry.operation == Some(Operation::Token) {
            continue;
        }
        let agent = entry.user_agent.unwrap_or_default();
        assert!(
            agent.starts_with(&format!(
                "acr-attach/{version} (instance acr-attach-5f7c9-x2x) azsdk-rust-"
            )),
            "{agent}"
        );
    }
}

#[tokio::test]
async fn an_operator_with_only_reader_cannot_write_and_check_names_the_permission() {
    let env = start(tenant(None)).await;
    let (code, report) = env
        .check_json(&["--registry", &registry("legacyacr")])
        .await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["ok"], false);
    let r = row(&report, "legacyacr");
    assert_eq!(r["write"]["state"], "denied");
    assert_eq!(r["assignment"]["state"], "missing");
    assert_eq!(codes(&r["problems"]), ["AuthorizationFailed"]);
    let message = r["problems"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("'Microsoft.Authorization/roleAssignments/write'"),
        "{message}"
    );
    assert!(
        r["problems"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("Role Based Access Control Administrator")
    );
    assert!(
        codes(&r["warnings"]).is_empty(),
        "the problem already says what to grant"
    );

    let (code, table, _) = env
        .check(&["--registry", &registry("legacyacr")], &[])
        .await;
    assert_eq!(code, 1);
    assert!(table.contains("FAIL"), "{table}");
    assert!(table.contains("Problems:\n- legacyacr: acr-attach's identity may not perform 'Microsoft.Authorization/roleAssignments/write'"), "{table}");
    assert!(
        table.contains("  fix: grant it \"Role Based Access Control Administrator\""),
        "{table}"
    );
    assert_read_only(&env.sandbox.arm);
}

#[tokio::test]
async fn a_role_that_may_write_but_not_delete_warns_that_detach_would_block() {
    let writer = "11111111-2222-4333-8444-555555555555";
    let mut cfg = tenant(None);
    cfg.custom_roles = vec![arm_emulator::CustomRole {
        id: writer.to_string(),
        role_name: "Role assignment writer".to_string(),
        permissions: arm_emulator::RolePermissions {
            actions: vec![
                "Microsoft.Authorization/roleAssignments/write".to_string(),
                "*/read".to_string(),
            ],
            ..Default::default()
        },
    }];
    cfg.role_assignments
        .push(grant(&registry("legacyacr"), writer, None));
    let env = start(cfg).await;
    let (code, report) = env
        .check_json(&["--registry", &registry("legacyacr")])
        .await;
    assert_eq!(code, 0, "attaching works: {report:#}");
    let r = row(&report, "legacyacr");
    assert_eq!(r["write"]["state"], "allowed");
    assert_eq!(r["delete"]["state"], "denied");
    assert_eq!(codes(&r["warnings"]), ["DetachBlocked"]);
    assert_read_only(&env.sandbox.arm);
}

#[tokio::test]
async fn a_delegation_to_acr_pull_only_cannot_serve_an_abac_registry() {
    let env = start(tenant(Some(&[ACR_PULL]))).await;
    env.attach("shared-images", &registry("legacyacr"), None)
        .await;
    env.attach("abac-images", &registry("abacacr"), None).await;
    let verdict = |report: &Value| {
        assert_eq!(row(report, "shared-images")["ok"], true, "{report:#}");
        let abac = row(report, "abac-images");
        assert_eq!(abac["ok"], false);
        assert_eq!(abac["write"]["state"], "conditioned");
        assert_eq!(abac["write"]["permitsRole"], false);
        assert_eq!(
            abac["write"]["conditions"][0]["roles"],
            serde_json::json!([ACR_PULL])
        );
        assert_eq!(
            abac["write"]["conditions"][0]["principalTypes"],
            serde_json::json!(["ServicePrincipal"])
        );
        let message = abac["problems"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("only AcrPull for ServicePrincipal"),
            "{message}"
        );
        assert!(
            message.contains("it needs Container Registry Repository Reader"),
            "{message}"
        );
        assert!(
            abac["problems"][0]["fix"]
                .as_str()
                .unwrap()
                .contains(REPOSITORY_READER)
        );
    };
    let (code, report) = env.check_json(&[]).await;
    assert_eq!(code, 1);
    verdict(&report);

    // Where ARM does not put conditions in the permissions answer, check reads the operator's
    // own role assignments instead and reaches the same verdict.
    env.sandbox.arm.set_faults(FaultConfig {
        permissions_show_assignment_conditions: false,
        ..FaultConfig::default()
    });
    let (code, report) = env.check_json(&[]).await;
    assert_eq!(code, 1);
    verdict(&report);
    assert_read_only(&env.sandbox.arm);
}

#[tokio::test]
async fn a_registry_outside_the_allow_list_gets_no_azure_call() {
    let env = start(tenant(Some(&[ACR_PULL, REPOSITORY_READER]))).await;
    env.attach("shared-images", &registry("legacyacr"), None)
        .await;
    env.attach("elsewhere", &registry("otheracr"), None).await;
    env.sandbox.arm.clear_request_log();
    let (code, report) = env
        .check_json(&["--allowed-registries", &registry("legacyacr")])
        .await;
    assert_eq!(code, 1, "{report:#}");
    let refused = row(&report, "elsewhere");
    assert_eq!(refused["allowed"], false);
    assert_eq!(codes(&refused["problems"]), ["RegistryNotAllowed"]);
    assert!(
        refused["problems"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("--allowed-registries")
    );
    assert_eq!(row(&report, "shared-images")["ok"], true);
    let log = env.sandbox.arm.request_log();
    assert!(
        log.iter()
            .any(|e| e.path.to_ascii_lowercase().contains("legacyacr"))
    );
    assert!(
        !log.iter()
            .any(|e| e.path.to_ascii_lowercase().contains("otheracr")),
        "no ARM call may name the refused registry"
    );
    assert_read_only(&env.sandbox.arm);
}

#[tokio::test]
async fn an_acr_pull_grant_an_abac_registry_ignores_is_a_warning() {
    let env = start(tenant(Some(&[ACR_PULL, REPOSITORY_READER]))).await;
    let arm = &env.sandbox.arm;
    arm.insert_role_assignment(&registry("abacacr"), "", REPOSITORY_READER, KUBELET, None);
    let stray = arm.insert_role_assignment(&registry("abacacr"), "", ACR_PULL, KUBELET, None);
    let (code, report) = env.check_json(&["--registry", &registry("abacacr")]).await;
    assert_eq!(code, 0, "a warning is not a failure: {report:#}");
    let r = row(&report, "abacacr");
    assert_eq!(r["assignment"]["state"], "adopted");
    // Repository Reader excludes catalog listing, and nothing grants it here: also a warning.
    assert_eq!(
        codes(&r["warnings"]),
        ["IgnoredAcrPull", "CatalogListingMissing"]
    );
    assert!(
        r["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&stray.name)
    );
    assert!(
        r["warnings"][0]["fix"]
            .as_str()
            .unwrap()
            .contains(&stray.id)
    );
    let (code, table, _) = env.check(&["--registry", &registry("abacacr")], &[]).await;
    assert_eq!(code, 0);
    assert!(table.contains("ok (warnings)"), "{table}");
    assert!(
        table.contains("\nWarnings:\n- abacacr: AcrPull assignment"),
        "{table}"
    );
    assert_read_only(arm);
}

#[tokio::test]
async fn usage_errors_exit_2_and_name_the_flag() {
    let env = start(tenant(Some(&[ACR_PULL]))).await;
    let (code, stdout, stderr) = env.check(&["--registry", "legacyacr"], &[]).await;
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("--registry"), "{stderr}");
    let (code, _, stderr) = env
        .check(
            &[
                "--registry",
                &registry("legacyacr"),
                "--allowed-subscriptions",
                "not-a-guid",
            ],
            &[],
        )
        .await;
    assert_eq!(code, 2);
    assert!(stderr.contains("--allowed-subscriptions"), "{stderr}");
    // A wrong secret: no token, nothing can be checked.
    let (code, _, stderr) = env
        .check(
            &["--registry", &registry("legacyacr")],
            &[("AZURE_CLIENT_SECRET", "wrong")],
        )
        .await;
    assert_eq!(code, 2);
    assert!(stderr.contains("AADSTS7000215"), "{stderr}");
}

/// The operator itself, with exactly the grants check approves of: RBAC Administrator on the
/// registries' resource group, conditioned to AcrPull and Repository Reader for service
/// principals, and Reader on the cluster. Attach, verify and detach all succeed.
#[tokio::test]
async fn the_operator_works_with_the_least_privilege_grants() {
    use acr_attach::controller::KubeletIdentity as Source;
    let cluster_id = acr_attach::model::ClusterId::parse(&cluster()).unwrap();
    let h = common::Harness::start(
        tenant(Some(&[ACR_PULL, REPOSITORY_READER])),
        Source::FromCluster(cluster_id),
    )
    .await;
    h.cluster
        .create("shared", common::spec(&registry("legacyacr")));
    h.cluster.create("abac", common::spec(&registry("abacacr")));
    for name in ["shared", "abac"] {
        h.settle(name).await;
        let ready = h.condition(name, "Ready");
        assert_eq!(
            ready.status, "True",
            "{name}: {} {}",
            ready.reason, ready.message
        );
    }
    let mine = h.assignments_for(KUBELET);
    assert_eq!(mine.len(), 2);
    assert!(
        h.arm.request_log().iter().all(|e| e.status != 403),
        "nothing was refused"
    );
    for name in ["shared", "abac"] {
        h.cluster.delete(name);
        h.settle(name).await;
    }
    assert!(h.assignments_for(KUBELET).is_empty(), "detach removed both");
    assert!(h.arm.request_log().iter().all(|e| e.status != 403));
}

#[tokio::test]
async fn registries_named_by_name_are_looked_up_and_reported_under_their_id() {
    let env = start(tenant(Some(&[ACR_PULL, REPOSITORY_READER]))).await;
    env.attach_by_name("by-name", "LegacyAcr").await;
    env.attach_by_name("typo", "legacyac").await;
    env.sandbox.arm.clear_request_log();
    let (code, report) = env.check_json(&[]).await;
    assert_eq!(code, 1, "the misspelt name fails the check: {report:#}");
    let found = row(&report, "by-name");
    assert_eq!(found["ok"], true, "{found:#}");
    assert_eq!(found["registry"], registry("legacyacr"));
    assert_eq!(found["role"], "AcrPull");
    let typo = row(&report, "typo");
    assert_eq!(codes(&typo["problems"]), ["RegistryNameNotFound"]);
    assert!(
        typo["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean legacyacr?"),
        "{typo:#}"
    );
    let lists = env
        .sandbox
        .arm
        .request_log()
        .iter()
        .filter(|e| e.operation == Some(Operation::ListRegistries))
        .count();
    assert_eq!(lists, 1, "one registry list for both names");
    assert_read_only(&env.sandbox.arm);
}
