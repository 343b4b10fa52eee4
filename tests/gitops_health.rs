//! GitOps health of a RegistryAttachment, as the three readers that matter see it: kstatus (Flux's
//! health checks, `kubectl wait`), Flux's `healthCheckExprs` from deploy/flux, and Argo CD running
//! deploy/argocd/health.lua (in a real Lua 5.1, with only the libraries Argo CD gives a ConfigMap
//! script). The objects are built with the operator's own condition code (`next_conditions`,
//! `Outcome::from_failure`, the ARM error classifier, `choose_role`, `status_apply`), so the
//! expectations follow the code rather than hand-written conditions.
//!
//! Also here: the upstream-format Argo CD tests (health_test.yaml + testdata/, which are checked to
//! be exactly what the operator writes), and the checks that keep the argocd-cm patch, the Argo CD
//! Application and the Flux manifests in step with health.lua, the CRD and the chart.
//!
//! `UPDATE_GITOPS_FIXTURES=1 cargo nextest run --test gitops_health` rewrites the generated files
//! (deploy/argocd/argocd-cm-patch.yaml and deploy/argocd/testdata/*.yaml) instead of failing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use acr_attach::azure::{ArmError, Operation};
use acr_attach::controller::cluster::status_apply;
use acr_attach::crd::{
    AssignmentStatus, DeletionPolicy, FINALIZER, Ownership, RegistryAttachment,
    RegistryAttachmentSpec, RegistryAttachmentStatus, RegistryReference, ResolvedPrincipal,
    ResolvedRegistry, RoleChoice,
};
use acr_attach::decide::conditions::{Outcome, READY, RECONCILING, STALLED, next_conditions};
use acr_attach::decide::failure::Classify;
use acr_attach::decide::plan::{choose_role, record_of};
use acr_attach::decide::reasons;
use acr_attach::decide::validate::validate;
use acr_attach::model::grant::Grant;
use acr_attach::model::{OwnerId, PermissionsMode, PrincipalId, PullRole, RegistryId};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaOptions, LuaSerdeExt, StdLib, Table};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Files

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn yaml_documents(path: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn updating_fixtures() -> bool {
    std::env::var_os("UPDATE_GITOPS_FIXTURES").is_some_and(|v| v == "1")
}

/// A generated file must equal what the code generates now; with UPDATE_GITOPS_FIXTURES=1 it is
/// rewritten instead.
fn check_generated(path: &str, expected: &str) {
    if updating_fixtures() {
        std::fs::write(repo(path), expected).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        return;
    }
    let actual = std::fs::read_to_string(repo(path)).unwrap_or_default();
    assert!(
        actual == expected,
        "{path} is out of date (it is generated); run `UPDATE_GITOPS_FIXTURES=1 cargo nextest run --test gitops_health` and review the diff.\n--- expected ---\n{expected}"
    );
}

// ---------------------------------------------------------------------------------------------
// The objects the operator leaves behind in each state

const NAME: &str = "shared-images";
const UID: &str = "6f2b41c8-0f5e-4a57-9a0e-3c9d2f1b7e10";
const SUBSCRIPTION: &str = "00000000-0000-4000-8000-000000000001";
const KUBELET: &str = "5a1e0000-1111-4222-8333-000000000001";
const OWNER: &str = "2d7c5a10-9b1e-4c3f-8e2a-61f0c4d9b7a3";
const APPLIED_AT: &str = "2026-11-23T10:00:00Z";
const T1: &str = "2026-11-23T10:00:02Z";
const T2: &str = "2026-11-23T10:10:05Z";
const T3: &str = "2026-11-23T10:12:00Z";

fn registry() -> RegistryId {
    RegistryId::parse(&format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/images/providers/Microsoft.ContainerRegistry/registries/sharedimages"
    ))
    .unwrap()
}

/// What the API server stores right after `kubectl apply`: generation 1, no status.
fn applied(role: RoleChoice) -> RegistryAttachment {
    let mut attachment = RegistryAttachment::new(
        NAME,
        RegistryAttachmentSpec {
            registry: RegistryReference::by_id(registry().to_string()),
            role,
            principal: None,
            principals: Vec::new(),
            repositories: Vec::new(),
            catalog_listing: false,
            deletion_policy: DeletionPolicy::Delete,
        },
    );
    let metadata = &mut attachment.metadata;
    metadata.generation = Some(1);
    metadata.uid = Some(UID.to_string());
    metadata.resource_version = Some("4101".to_string());
    metadata.creation_timestamp = Some(Time(APPLIED_AT.parse().unwrap()));
    attachment
}

/// One status write, made the way `reconcile::write_status` makes it: the stored status with
/// observedGeneration stamped (`Progress::new`), conditions from `next_conditions` over the stored
/// ones, sent as the apply configuration `status_apply` builds; the one field manager of status
/// owns all of it, so the API server replaces the status with the one applied.
fn write(
    stored: &RegistryAttachment,
    outcome: &Outcome,
    now: &str,
    resolve: impl FnOnce(&mut RegistryAttachmentStatus),
) -> RegistryAttachment {
    let mut status = stored.status.clone().unwrap_or_default();
    status.observed_generation = stored.metadata.generation;
    resolve(&mut status);
    let baseline = status.conditions.clone();
    status.conditions = next_conditions(&baseline, outcome, stored.metadata.generation, now);
    let apply = status_apply(stored, &status);
    assert_ne!(
        stored.status.as_ref(),
        Some(&status),
        "every state change alters the status"
    );
    let mut object = serde_json::to_value(stored).unwrap();
    object["status"] = apply["status"].clone();
    let mut written: RegistryAttachment = serde_json::from_value(object).unwrap();
    // The finalizer is added before the first Azure call; every write is a new resourceVersion.
    written.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
    let version: u64 = stored
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    written.metadata.resource_version = Some((version + 1).to_string());
    written
}

/// `finish_failure`'s rule: a failed re-read keeps Ready only when Ready=True was already
/// confirmed for this generation.
fn keep_ready(stored: &RegistryAttachment) -> bool {
    stored.status.as_ref().is_some_and(|status| {
        status.observed_generation == stored.metadata.generation
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == READY && c.status == "True")
    })
}

fn arm_error(operation: Operation, status: u16, code: &str, message: &str) -> ArmError {
    ArmError::Response {
        operation,
        target: registry().to_string(),
        status,
        code: code.to_string(),
        message: message.to_string(),
        retry_after: None,
        request_id: None,
    }
}

fn throttled() -> ArmError {
    arm_error(
        Operation::GetRegistry,
        429,
        "SubscriptionRequestsThrottled",
        "Number of read requests for subscription exceeded the limit of '1200' for time interval '01:00:00'. Please try again after '17' seconds.",
    )
}

/// The fields a successful reconcile resolves, as `attach` records them.
fn resolved(status: &mut RegistryAttachmentStatus) {
    let registry = registry();
    let principal = PrincipalId::parse(KUBELET).unwrap();
    let role = PullRole::AcrPull;
    let grant = Grant {
        registry: registry.clone(),
        principal: principal.clone(),
        principal_type: Default::default(),
        role,
        condition: None,
    };
    status.registry = Some(ResolvedRegistry {
        id: registry.to_string(),
        login_server: Some("sharedimages.azurecr.io".to_string()),
        permissions_mode: Some(PermissionsMode::Legacy.as_arm().to_string()),
    });
    status.principal = Some(ResolvedPrincipal {
        object_id: principal.to_string(),
        source: "OperatorConfig".to_string(),
    });
    status.role = Some(role.short_name().to_string());
    status.role_definition_id = Some(role.definition_id(registry.subscription()));
    status.assignment = Some(AssignmentStatus {
        id: grant
            .name(&OwnerId::new(OWNER), "shared-images")
            .id_at(&registry),
        principal_id: principal.to_string(),
        role: role.short_name().to_string(),
        ownership: Ownership::Created,
    });
    status.owned_assignments = vec![record_of(&grant, "shared-images")];
    status.last_sync_time = Some(T1.to_string());
}

fn ready_message() -> String {
    format!(
        "{} granted to {KUBELET} on {}",
        PullRole::AcrPull.display_name(),
        registry().name()
    )
}

/// Applied and attached on the first try.
fn ready() -> RegistryAttachment {
    let message = ready_message();
    write(
        &applied(RoleChoice::Auto),
        &Outcome::Ready { message },
        T1,
        resolved,
    )
}

/// The very first attempt was throttled by ARM: nothing is granted yet.
fn throttled_before_first_success() -> RegistryAttachment {
    let stored = applied(RoleChoice::Auto);
    let outcome = Outcome::from_failure(&throttled().classify(), keep_ready(&stored));
    write(&stored, &outcome, T1, |_| {})
}

/// Ready, then a resync's re-read of the registry was throttled: the grant is still known to exist.
fn throttled_resync_of_ready() -> RegistryAttachment {
    let stored = ready();
    let outcome = Outcome::from_failure(&throttled().classify(), keep_ready(&stored));
    write(&stored, &outcome, T2, |_| {})
}

/// spec.role AcrPull on an ABAC registry, which would ignore it.
fn stalled_role_not_effective() -> RegistryAttachment {
    let stored = applied(RoleChoice::AcrPull);
    let desired = validate(&stored.spec).expect("a valid spec");
    let problem = choose_role(desired.role, Some(PermissionsMode::AbacRepository))
        .expect_err("AcrPull is not effective on an ABAC registry");
    let outcome = Outcome::Stalled {
        reason: problem.reason,
        message: problem.message,
    };
    write(&stored, &outcome, T1, |status| {
        status.registry = Some(ResolvedRegistry {
            id: registry().to_string(),
            login_server: Some("sharedimages.azurecr.io".to_string()),
            permissions_mode: Some(PermissionsMode::AbacRepository.as_arm().to_string()),
        });
    })
}

/// The operator's identity may not write role assignments on the registry.
fn stalled_authorization_failed() -> RegistryAttachment {
    let stored = applied(RoleChoice::Auto);
    let error = arm_error(
        Operation::PutRoleAssignment,
        403,
        "AuthorizationFailed",
        "The client '0a7e0000-0000-4000-8000-00000000c11e' with object id '0a7e0000-0000-4000-8000-00000000c11e' does not have authorization to perform action 'Microsoft.Authorization/roleAssignments/write' over scope '/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/images/providers/Microsoft.ContainerRegistry/registries/sharedimages/providers/Microsoft.Authorization/roleAssignments/0b5e2c1a-7d4f-5e6a-9b8c-1d2e3f4a5b6c' or the scope is invalid. If access was recently granted, please refresh your credentials.",
    );
    let outcome = Outcome::from_failure(&error.classify(), keep_ready(&stored));
    write(&stored, &outcome, T1, |_| {})
}

/// Ready, then `kubectl apply` of an edited spec: the API server bumped metadata.generation and the
/// operator has not written status since.
fn spec_edit_not_yet_observed() -> RegistryAttachment {
    let mut stored = ready();
    stored.spec.role = RoleChoice::AcrPull;
    stored.metadata.generation = Some(2);
    stored.metadata.resource_version = Some("4200".to_string());
    stored
}

/// Ready, then `kubectl delete`: the API server set deletionTimestamp (and, as it does for objects
/// with finalizers, bumped the generation); the operator's first delete in Azure got a 503.
fn deleting() -> RegistryAttachment {
    let mut stored = ready();
    stored.metadata.deletion_timestamp = Some(Time(T3.parse().unwrap()));
    stored.metadata.deletion_grace_period_seconds = Some(0);
    stored.metadata.generation = Some(2);
    let failure = arm_error(
        Operation::DeleteRoleAssignment,
        503,
        "ServiceUnavailable",
        "The service is temporarily unavailable.",
    )
    .classify();
    let assignment_id = stored
        .status
        .as_ref()
        .unwrap()
        .assignment
        .as_ref()
        .unwrap()
        .id
        .clone();
    let outcome = Outcome::Progressing {
        reason: reasons::DETACHING,
        message: format!("deleting {assignment_id}: {}", failure.message),
        keep_ready: false,
    };
    write(&stored, &outcome, T3, |_| {})
}

/// The object as `kubectl get -o json` shows it: no nulls.
fn as_json(attachment: &RegistryAttachment) -> Value {
    fn strip_nulls(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|_, v| !v.is_null());
                map.values_mut().for_each(strip_nulls);
            }
            Value::Array(items) => items.iter_mut().for_each(strip_nulls),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(attachment).unwrap();
    strip_nulls(&mut value);
    value
}

// ---------------------------------------------------------------------------------------------
// kstatus (cli-utils pkg/kstatus/status, as Flux vendors it), reduced to what applies to a CR

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KStatus {
    InProgress,
    Failed,
    Current,
    Terminating,
}

/// `checkGenericProperties`: the first condition, in list order, whose type is listed and whose
/// status is exactly "True" decides.
const ABNORMAL_TRUE: &[(&str, KStatus)] = &[
    ("Reconciling", KStatus::InProgress),
    ("Stalled", KStatus::Failed),
];

/// `checkReadyCondition`: the first Ready condition decides by its status.
const READY_STATUS: &[(&str, KStatus)] = &[
    ("True", KStatus::Current),
    ("False", KStatus::InProgress),
    ("Unknown", KStatus::InProgress),
];

fn kstatus(object: &Value) -> (KStatus, String) {
    if object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        return (
            KStatus::Terminating,
            "Resource scheduled for deletion".into(),
        );
    }
    let generation = object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    let observed = object
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    if let (Some(generation), Some(observed)) = (generation, observed)
        && generation != observed
    {
        let kind = object["kind"].as_str().unwrap_or_default();
        return (
            KStatus::InProgress,
            format!(
                "{kind} generation is {generation}, but latest observed generation is {observed}"
            ),
        );
    }
    let empty = Vec::new();
    let conditions = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let text =
        |condition: &Value, key: &str| condition[key].as_str().unwrap_or_default().to_string();
    for condition in conditions {
        if condition["status"] != "True" {
            continue;
        }
        if let Some((_, status)) = ABNORMAL_TRUE
            .iter()
            .find(|(type_, _)| condition["type"] == *type_)
        {
            return (*status, text(condition, "message"));
        }
    }
    if let Some(ready) = conditions.iter().find(|c| c["type"] == "Ready")
        && let Some((_, status)) = READY_STATUS.iter().find(|(s, _)| ready["status"] == *s)
    {
        let message = if *status == KStatus::Current {
            "Resource is Ready".to_string()
        } else {
            text(ready, "message")
        };
        return (*status, message);
    }
    (KStatus::Current, "Resource is current".into())
}

// ---------------------------------------------------------------------------------------------
// Argo CD: health.lua in Lua 5.1, plus Argo CD's own precedence

#[derive(Clone, Debug, PartialEq, Eq)]
struct Health {
    status: String,
    message: String,
}

/// Argo CD's accepted codes; anything else becomes Unknown (`isValidHealthStatusCode`).
const ARGO_HEALTH_CODES: &[&str] = &[
    "Healthy",
    "Progressing",
    "Degraded",
    "Suspended",
    "Missing",
    "Unknown",
];

/// A Lua 5.1 state with what Argo CD gives a ConfigMap script (`util/lua` `runLua` without open
/// libs): base, table and package. No `string`, `math` or `io`: a script using them fails here.
fn argo_lua() -> Lua {
    Lua::new_with(StdLib::TABLE | StdLib::PACKAGE, LuaOptions::default()).unwrap()
}

/// Runs `script` as Argo CD does: the object (JSON nulls as nil) in the global `obj`, the
/// returned table read as {status, message}.
fn run_health_script(script: &str, object: &Value) -> Health {
    let lua = argo_lua();
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    let obj = lua.to_value_with(object, options).unwrap();
    lua.globals().set("obj", obj).unwrap();
    let result: Table = lua
        .load(script)
        .set_name("health.lua")
        .eval()
        .unwrap_or_else(|e| panic!("health.lua failed on {object}: {e}"));
    let status: Option<String> = result.get("status").unwrap();
    let message: Option<String> = result.get("message").unwrap();
    let status = status.unwrap_or_default();
    if !ARGO_HEALTH_CODES.contains(&status.as_str()) {
        return Health {
            status: "Unknown".into(),
            message: "Lua returned an invalid health status".into(),
        };
    }
    Health {
        status,
        message: message.unwrap_or_default(),
    }
}

fn health_lua() -> String {
    read("deploy/argocd/health.lua")
}

/// What the Argo CD UI shows: "Pending deletion" wins over any script for a deleting object
/// (gitops-engine `GetResourceHealth`), then the script.
fn argo_health(object: &Value) -> Health {
    if object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        return Health {
            status: "Progressing".into(),
            message: "Pending deletion".into(),
        };
    }
    run_health_script(&health_lua(), object)
}

// ---------------------------------------------------------------------------------------------
// Flux healthCheckExprs (deploy/flux/sync.yaml), evaluated as fluxcd/pkg runtime/cel does

#[derive(Clone, Debug, PartialEq, Eq)]
enum FluxHealth {
    Status(KStatus),
    /// The expression failed (e.g. no `status` yet): Flux keeps waiting until spec.timeout.
    Waiting(String),
}

fn flux_health_exprs() -> BTreeMap<String, String> {
    let sync = yaml_documents("deploy/flux/sync.yaml");
    let attachments = sync
        .iter()
        .find(|doc| doc["metadata"]["name"] == "registry-attachments")
        .expect("deploy/flux/sync.yaml defines the registry-attachments Kustomization");
    let exprs = attachments["spec"]["healthCheckExprs"]
        .as_array()
        .expect("registry-attachments has spec.healthCheckExprs");
    let ours = exprs
        .iter()
        .find(|e| e["kind"] == "RegistryAttachment")
        .expect("a healthCheckExprs entry for RegistryAttachment");
    assert_eq!(
        ours["apiVersion"],
        RegistryAttachment::api_version(&()).as_ref()
    );
    ["inProgress", "failed", "current"]
        .into_iter()
        .filter_map(|key| Some((key.to_string(), ours[key].as_str()?.to_string())))
        .collect()
}

/// RFC 0009 / `StatusEvaluator.Evaluate`: observedGeneration first, then inProgress, failed and
/// current in that order, the first true one wins; none true is InProgress. The object's top-level
/// fields are the only variables, so a missing `status` is an evaluation error.
fn flux_health(exprs: &BTreeMap<String, String>, object: &Value) -> FluxHealth {
    if let Some(observed) = object
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        && object
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            != Some(observed)
    {
        return FluxHealth::Status(KStatus::InProgress);
    }
    let mut env = cel::Env::stdlib();
    env.add_extension(cel::extensions::strings).unwrap();
    let env = Arc::new(env);
    let mut context = cel::Context::with_env(Arc::clone(&env));
    for (key, value) in object.as_object().unwrap() {
        context
            .add_variable(key.as_str(), cel::to_value(value).unwrap())
            .unwrap();
    }
    for (key, status) in [
        ("inProgress", KStatus::InProgress),
        ("failed", KStatus::Failed),
        ("current", KStatus::Current),
    ] {
        let Some(expr) = exprs.get(key) else { continue };
        let program = env
            .compile(expr)
            .unwrap_or_else(|e| panic!("healthCheckExprs.{key} does not parse: {e:?}"));
        match program.execute(&context) {
            Ok(cel::Value::Bool(true)) => return FluxHealth::Status(status),
            Ok(cel::Value::Bool(false)) => {}
            Ok(other) => panic!("healthCheckExprs.{key} returned {other:?}, not a bool"),
            Err(error) => return FluxHealth::Waiting(format!("{key}: {error:?}")),
        }
    }
    FluxHealth::Status(KStatus::InProgress)
}

// ---------------------------------------------------------------------------------------------
// Each state the operator can leave an attachment in

struct Expect {
    kstatus: KStatus,
    kstatus_message: &'static str,
    argo: &'static str,
    argo_message: String,
}

fn check(state: &str, attachment: &RegistryAttachment, expect: Expect) {
    let object = as_json(attachment);
    let (status, message) = kstatus(&object);
    assert_eq!(status, expect.kstatus, "{state}: kstatus of {object:#}");
    assert!(
        message.contains(expect.kstatus_message),
        "{state}: kstatus message {message:?} should contain {:?}",
        expect.kstatus_message
    );
    let health = argo_health(&object);
    assert_eq!(
        health.status, expect.argo,
        "{state}: Argo CD health of {object:#}"
    );
    assert_eq!(
        health.message, expect.argo_message,
        "{state}: Argo CD message"
    );
    // Flux with our healthCheckExprs agrees with kstatus once the operator has written a status;
    // a deleting object is pruned, never health-checked, so it is not compared.
    if expect.kstatus != KStatus::Terminating && object.get("status").is_some() {
        assert_eq!(
            flux_health(&flux_health_exprs(), &object),
            FluxHealth::Status(expect.kstatus),
            "{state}: Flux healthCheckExprs"
        );
    }
}

fn condition_message(attachment: &RegistryAttachment, type_: &str) -> String {
    let condition = attachment
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_} condition"));
    format!("{}: {}", condition.reason, condition.message)
}

#[test]
fn fresh_attachment_is_current_and_healthy() {
    let attachment = ready();
    check(
        "ready",
        &attachment,
        Expect {
            kstatus: KStatus::Current,
            kstatus_message: "Resource is Ready",
            argo: "Healthy",
            argo_message: format!("{}: {}", reasons::ATTACHED, ready_message()),
        },
    );
}

#[test]
fn transient_failure_before_first_success_is_in_progress() {
    let attachment = throttled_before_first_success();
    check(
        "throttled before the first success",
        &attachment,
        Expect {
            kstatus: KStatus::InProgress,
            kstatus_message: "SubscriptionRequestsThrottled",
            argo: "Progressing",
            argo_message: condition_message(&attachment, RECONCILING),
        },
    );
    assert!(
        condition_message(&attachment, RECONCILING).starts_with(reasons::AZURE_THROTTLED),
        "the reason names the throttling"
    );
}

/// The grant is known to exist and only a re-read failed: GitOps tools must not flap. Expects the
/// rule the operator is moving to (Ready=True with Reconciling absent or False); with
/// Reconciling=True beside Ready=True, kstatus says InProgress and Argo CD Progressing.
#[test]
fn throttled_resync_of_a_ready_attachment_stays_current_and_healthy() {
    let attachment = throttled_resync_of_ready();
    let object = as_json(&attachment);
    let ready = attachment
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == READY))
        .unwrap();
    assert_eq!(
        ready.status, "True",
        "Ready stays True on a throttled re-read"
    );
    assert_eq!(
        kstatus(&object).0,
        KStatus::Current,
        "kstatus of a throttled resync: {object:#}"
    );
    assert_eq!(
        argo_health(&object).status,
        "Healthy",
        "Argo CD health of a throttled resync: {object:#}"
    );
    assert_eq!(
        flux_health(&flux_health_exprs(), &object),
        FluxHealth::Status(KStatus::Current)
    );
}

#[test]
fn role_not_effective_is_failed_and_degraded() {
    let attachment = stalled_role_not_effective();
    let message = condition_message(&attachment, STALLED);
    assert!(
        message.starts_with(reasons::ROLE_NOT_EFFECTIVE),
        "{message}"
    );
    check(
        "RoleNotEffective",
        &attachment,
        Expect {
            kstatus: KStatus::Failed,
            kstatus_message: "set spec.role to Auto or RepositoryReader",
            argo: "Degraded",
            argo_message: message,
        },
    );
}

#[test]
fn authorization_failure_is_failed_and_degraded_naming_the_permission() {
    let attachment = stalled_authorization_failed();
    let message = condition_message(&attachment, STALLED);
    assert!(
        message.starts_with(reasons::AUTHORIZATION_FAILED),
        "{message}"
    );
    assert!(
        message.contains("Microsoft.Authorization/roleAssignments/write"),
        "{message}"
    );
    check(
        "AuthorizationFailed",
        &attachment,
        Expect {
            kstatus: KStatus::Failed,
            kstatus_message: "Role Based Access Control Administrator",
            argo: "Degraded",
            argo_message: message,
        },
    );
}

#[test]
fn spec_edit_not_yet_observed_is_in_progress() {
    check(
        "spec edit not observed",
        &spec_edit_not_yet_observed(),
        Expect {
            kstatus: KStatus::InProgress,
            kstatus_message: "RegistryAttachment generation is 2, but latest observed generation is 1",
            argo: "Progressing",
            argo_message: "Waiting for the operator to observe generation 2".into(),
        },
    );
}

#[test]
fn deleting_attachment_is_terminating_and_pending_deletion() {
    let attachment = deleting();
    check(
        "deleting",
        &attachment,
        Expect {
            kstatus: KStatus::Terminating,
            kstatus_message: "Resource scheduled for deletion",
            argo: "Progressing",
            argo_message: "Pending deletion".into(),
        },
    );
    // Without Argo CD's own precedence the script still would not call it Healthy.
    let script = run_health_script(&health_lua(), &as_json(&attachment));
    assert_eq!(script.status, "Progressing");
    assert!(
        script.message.starts_with(reasons::DETACHING),
        "{}",
        script.message
    );
}

/// kstatus calls an object without status Current (it cannot tell a slow operator from a CR that
/// never has status). Our script and our Flux expressions wait for the operator instead: nothing
/// is granted before the first status write.
#[test]
fn object_without_status_is_current_for_kstatus_but_waits_in_argo_and_flux() {
    let object = as_json(&applied(RoleChoice::Auto));
    assert!(object.get("status").is_none());
    assert_eq!(
        kstatus(&object),
        (KStatus::Current, "Resource is current".into())
    );
    assert_eq!(
        argo_health(&object),
        Health {
            status: "Progressing".into(),
            message: "Waiting for the operator to observe generation 1".into(),
        }
    );
    assert!(
        matches!(
            flux_health(&flux_health_exprs(), &object),
            FluxHealth::Waiting(_)
        ),
        "Flux healthCheckExprs cannot evaluate a status-less object and keeps waiting"
    );
}

#[test]
fn the_operator_never_sets_reconciling_and_stalled_together() {
    // kstatus and health.lua settle a double True by list order; the operator must not rely on it.
    for (state, attachment) in [
        ("ready", ready()),
        ("throttled first", throttled_before_first_success()),
        ("throttled resync", throttled_resync_of_ready()),
        ("role not effective", stalled_role_not_effective()),
        ("authorization failed", stalled_authorization_failed()),
        ("deleting", deleting()),
    ] {
        let conditions = attachment.status.unwrap().conditions;
        let abnormal = conditions
            .iter()
            .filter(|c| [RECONCILING, STALLED].contains(&c.type_.as_str()) && c.status == "True")
            .count();
        assert!(abnormal <= 1, "{state}: {conditions:?}");
        assert!(
            conditions
                .iter()
                .all(|c| c.observed_generation == attachment.metadata.generation),
            "{state}: every condition carries the generation it describes"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// health.lua against kstatus on hand-made shapes the operator does not write (but could meet)

#[test]
fn health_lua_orders_conditions_like_kstatus() {
    let object = |generation: Option<i64>, observed: Option<i64>, conditions: Value| {
        let mut object = json!({
            "apiVersion": "acrattach.io/v1alpha1",
            "kind": "RegistryAttachment",
            "metadata": {"name": NAME},
            "status": {"conditions": conditions},
        });
        if let Some(generation) = generation {
            object["metadata"]["generation"] = json!(generation);
        }
        if let Some(observed) = observed {
            object["status"]["observedGeneration"] = json!(observed);
        }
        object
    };
    let c = |type_: &str, status: &str| json!({"type": type_, "status": status, "reason": "R", "message": type_});
    // (case, object, kstatus, Argo CD)
    let cases = [
        (
            "Reconciling listed before Stalled",
            object(
                Some(1),
                Some(1),
                json!([c("Reconciling", "True"), c("Stalled", "True")]),
            ),
            KStatus::InProgress,
            "Progressing",
        ),
        (
            "Stalled listed before Reconciling",
            object(
                Some(1),
                Some(1),
                json!([c("Stalled", "True"), c("Reconciling", "True")]),
            ),
            KStatus::Failed,
            "Degraded",
        ),
        // What a throttled resync looked like before the operator kept Reconciling False there.
        (
            "Ready=True beside Reconciling=True",
            object(
                Some(1),
                Some(1),
                json!([
                    c("Ready", "True"),
                    c("Reconciling", "True"),
                    c("Stalled", "False")
                ]),
            ),
            KStatus::InProgress,
            "Progressing",
        ),
        (
            "Ready=Unknown",
            object(Some(1), Some(1), json!([c("Ready", "Unknown")])),
            KStatus::InProgress,
            "Progressing",
        ),
        (
            "Ready=False alone",
            object(Some(1), Some(1), json!([c("Ready", "False")])),
            KStatus::InProgress,
            "Progressing",
        ),
        (
            "Ready=True, others False",
            object(
                Some(3),
                Some(3),
                json!([
                    c("Ready", "True"),
                    c("Reconciling", "False"),
                    c("Stalled", "False")
                ]),
            ),
            KStatus::Current,
            "Healthy",
        ),
        (
            "types are case-sensitive",
            object(
                Some(1),
                Some(1),
                json!([c("stalled", "True"), c("Ready", "True")]),
            ),
            KStatus::Current,
            "Healthy",
        ),
        (
            "status must be exactly True",
            object(
                Some(1),
                Some(1),
                json!([c("Stalled", "true"), c("Ready", "True")]),
            ),
            KStatus::Current,
            "Healthy",
        ),
        (
            "stale Ready=True from generation 1",
            object(Some(2), Some(1), json!([c("Ready", "True")])),
            KStatus::InProgress,
            "Progressing",
        ),
        (
            "neither has a generation",
            object(None, None, json!([c("Ready", "True")])),
            KStatus::Current,
            "Healthy",
        ),
    ];
    for (case, object, expected_kstatus, expected_argo) in cases {
        assert_eq!(kstatus(&object).0, expected_kstatus, "kstatus: {case}");
        assert_eq!(
            argo_health(&object).status,
            expected_argo,
            "health.lua: {case}"
        );
    }

    // Where they differ, on purpose: a status without Ready, and a status without
    // observedGeneration, are Current for kstatus but not Healthy for us.
    let no_ready = object(Some(1), Some(1), json!([c("Reconciling", "False")]));
    assert_eq!(kstatus(&no_ready).0, KStatus::Current);
    assert_eq!(
        argo_health(&no_ready),
        Health {
            status: "Progressing".into(),
            message: "Waiting for the operator to report the Ready condition".into()
        }
    );
    let no_observed = object(Some(1), None, json!([c("Ready", "True")]));
    assert_eq!(kstatus(&no_observed).0, KStatus::Current);
    assert_eq!(argo_health(&no_observed).status, "Progressing");
    // And an object without metadata.generation or status at all.
    let bare = json!({"apiVersion": "acrattach.io/v1alpha1", "kind": "RegistryAttachment", "metadata": {"name": NAME}});
    assert_eq!(
        argo_health(&bare).message,
        "Waiting for the operator to report status"
    );
}

#[test]
fn the_lua_runtime_is_as_bare_as_argo_cds() {
    // Guards the harness itself: if `string` were loaded here, a script calling string.format
    // would pass these tests and fail in Argo CD.
    let lua = argo_lua();
    let loaded: (bool, bool, bool, bool) = lua
        .load("return string == nil, math == nil, table ~= nil, ipairs ~= nil")
        .eval()
        .unwrap();
    assert_eq!(loaded, (true, true, true, true));
    assert!(
        !health_lua()
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"))
            .any(|line| line.contains("string.") || line.contains(":format(")),
        "health.lua must not use the string library (absent in Argo CD ConfigMap scripts)"
    );
}

// ---------------------------------------------------------------------------------------------
// Upstream-format tests and generated files

/// testdata/<name>.yaml, and the state it is a dump of.
fn testdata_states() -> Vec<(&'static str, RegistryAttachment)> {
    vec![
        ("healthy", ready()),
        ("progressing", throttled_before_first_success()),
        ("degraded", stalled_role_not_effective()),
        ("pending-generation", spec_edit_not_yet_observed()),
        ("no-status", applied(RoleChoice::Auto)),
    ]
}

#[test]
fn testdata_are_dumps_of_what_the_operator_writes() {
    for (name, attachment) in testdata_states() {
        let path = format!("deploy/argocd/testdata/{name}.yaml");
        let dump = serde_saphyr::to_string(&as_json(&attachment)).unwrap();
        check_generated(
            &path,
            &format!(
                "# kubectl get registryattachment {NAME} -o yaml, generated by tests/gitops_health.rs from the operator's own\n# condition code (UPDATE_GITOPS_FIXTURES=1 cargo nextest run --test gitops_health).\n{dump}"
            ),
        );
        // And the file still reads back as a RegistryAttachment.
        let parsed: RegistryAttachment = serde_json::from_value(yaml(&path))
            .unwrap_or_else(|e| panic!("{path} is not a RegistryAttachment: {e}"));
        assert_eq!(as_json(&parsed), as_json(&attachment), "{path}");
    }
}

#[test]
fn upstream_health_tests_pass_in_lua() {
    let tests = yaml("deploy/argocd/health_test.yaml");
    let tests = tests["tests"]
        .as_array()
        .expect("health_test.yaml has tests:");
    let mut covered: Vec<String> = Vec::new();
    for test in tests {
        let input = test["inputPath"].as_str().expect("inputPath");
        let object = yaml(&format!("deploy/argocd/{input}"));
        // Argo CD's util/lua tests call the script directly, without the deletion precedence.
        let health = run_health_script(&health_lua(), &object);
        let expected = Health {
            status: test["healthStatus"]["status"].as_str().unwrap().to_string(),
            message: test["healthStatus"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        };
        assert_eq!(health, expected, "{input}");
        covered.push(input.to_string());
    }
    for (name, _) in testdata_states() {
        let input = format!("testdata/{name}.yaml");
        assert!(
            covered.contains(&input),
            "health_test.yaml has no test for {input}"
        );
    }
}

fn argocd_health_key() -> String {
    format!(
        "resource.customizations.health.{}_{}",
        RegistryAttachment::group(&()),
        RegistryAttachment::kind(&())
    )
}

/// deploy/argocd/argocd-cm-patch.yaml, generated from health.lua: health.lua is the one source.
fn argocd_cm_patch() -> String {
    let mut patch = String::from(
        "# Adds the acr-attach health check to Argo CD. Generated from health.lua by tests/gitops_health.rs\n\
         # (UPDATE_GITOPS_FIXTURES=1 cargo nextest run --test gitops_health); edit health.lua, not this file.\n\
         # Apply: kubectl -n argocd patch configmap argocd-cm --type merge --patch-file deploy/argocd/argocd-cm-patch.yaml\n\
         # The script needs no Lua standard library, so resource.customizations.useOpenLibs is not set.\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n  name: argocd-cm\n  namespace: argocd\n\
         data:\n",
    );
    patch.push_str(&format!("  {}: |\n", argocd_health_key()));
    for line in health_lua().lines() {
        if line.is_empty() {
            patch.push('\n');
        } else {
            patch.push_str(&format!("    {line}\n"));
        }
    }
    patch
}

#[test]
fn argocd_cm_patch_carries_health_lua_verbatim() {
    check_generated("deploy/argocd/argocd-cm-patch.yaml", &argocd_cm_patch());
    let patch = yaml("deploy/argocd/argocd-cm-patch.yaml");
    assert_eq!(patch["metadata"]["name"], "argocd-cm");
    assert_eq!(
        patch["data"][argocd_health_key()].as_str(),
        Some(health_lua().as_str()),
        "the ConfigMap value is health.lua byte for byte"
    );
}

// ---------------------------------------------------------------------------------------------
// The Argo CD Application and the Flux manifests name the real chart, CRD and values

fn chart() -> Value {
    yaml("charts/acr-attach/Chart.yaml")
}

/// Every leaf key path of `values` ("azure.clientId") must exist in the chart's values.yaml.
fn assert_chart_values(source: &str, values: &Value) {
    fn paths(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    paths(&path, child, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let defaults = yaml("charts/acr-attach/values.yaml");
    let mut used = Vec::new();
    paths("", values, &mut used);
    assert!(!used.is_empty(), "{source} sets no values");
    for path in used {
        let found = path
            .split('.')
            .try_fold(&defaults, |node, key| node.get(key));
        assert!(
            found.is_some(),
            "{source} sets {path}, which charts/acr-attach/values.yaml does not define"
        );
    }
}

#[test]
fn argocd_application_installs_this_chart_from_the_oci_registry() {
    let docs = yaml_documents("deploy/argocd/application.yaml");
    let application = docs
        .iter()
        .find(|d| d["kind"] == "Application")
        .expect("an Application");
    let source = &application["spec"]["source"];
    assert_eq!(source["repoURL"], "ghcr.io/acr-attach/charts");
    assert_eq!(source["chart"], chart()["name"]);
    assert_eq!(
        source["targetRevision"],
        chart()["version"],
        "the example installs the current chart version"
    );
    let repository = docs
        .iter()
        .find(|d| d["kind"] == "Secret")
        .expect("the OCI Helm repository declaration");
    assert_eq!(
        repository["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
        "repository"
    );
    assert_eq!(repository["stringData"]["url"], source["repoURL"]);
    assert_eq!(repository["stringData"]["enableOCI"], "true");
    assert_chart_values(
        "deploy/argocd/application.yaml",
        &source["helm"]["valuesObject"],
    );
}

#[test]
fn flux_manifests_install_this_chart_and_check_the_attachments() {
    let repository = yaml("deploy/flux/operator/ocirepository.yaml");
    assert_eq!(
        repository["spec"]["url"].as_str(),
        Some(
            format!(
                "oci://ghcr.io/acr-attach/charts/{}",
                chart()["name"].as_str().unwrap()
            )
            .as_str()
        )
    );
    assert_eq!(repository["spec"]["ref"]["tag"], chart()["version"]);
    assert_eq!(
        repository["spec"]["layerSelector"]["mediaType"],
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    );
    let release = yaml("deploy/flux/operator/helmrelease.yaml");
    assert_eq!(release["spec"]["chartRef"]["kind"], "OCIRepository");
    assert_eq!(
        release["spec"]["chartRef"]["name"],
        repository["metadata"]["name"]
    );
    assert_chart_values(
        "deploy/flux/operator/helmrelease.yaml",
        &release["spec"]["values"],
    );

    // Every attachment the example applies is health-checked, by its real apiVersion and kind.
    let sync = yaml_documents("deploy/flux/sync.yaml");
    let kustomization = sync
        .iter()
        .find(|d| d["metadata"]["name"] == "registry-attachments")
        .unwrap();
    let checks = kustomization["spec"]["healthChecks"].as_array().unwrap();
    let resources = read("deploy/flux/attachments/kustomization.yaml");
    let listed: Vec<&str> = resources
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .collect();
    assert!(!listed.is_empty());
    for file in listed {
        let path = format!("deploy/flux/attachments/{file}");
        let attachment: RegistryAttachment = serde_json::from_value(yaml(&path))
            .unwrap_or_else(|e| panic!("{path} is not a RegistryAttachment: {e}"));
        validate(&attachment.spec).unwrap_or_else(|e| panic!("{path}: {e:?}"));
        let name = attachment.metadata.name.unwrap();
        assert!(
            checks.iter().any(|c| c["name"] == name.as_str()
                && c["kind"] == RegistryAttachment::kind(&()).as_ref()
                && c["apiVersion"] == RegistryAttachment::api_version(&()).as_ref()),
            "healthChecks of registry-attachments miss {name}"
        );
    }
    assert!(
        kustomization["spec"]["timeout"].is_string(),
        "health checks are bounded by spec.timeout"
    );
    assert_eq!(
        kustomization["spec"]["dependsOn"][0]["name"], "acr-attach",
        "attachments wait for the operator's release"
    );
}
