//! `acr-attach check`: the preflight. "Is the right role there for the right identity, and can
//! the operator put it there?", answered from Azure and the cluster with the same flags and
//! environment as `run`, for one registry (`--registry`) or for every `RegistryAttachment`.
//!
//! It only reads: the Entra token request, `GET` of the registry, the AKS cluster (with
//! `--cluster-resource-id`), the role assignments at the registry, the operator identity's own
//! assignments at or above it, and `Microsoft.Authorization/permissions` at the registry; in
//! the cluster, `list` of RegistryAttachments and `get` of the kube-system namespace (owner id).
//! A registry the allow-lists refuse gets no Azure call at all.
//!
//! Per registry it reports: the permissions mode; the role the operator would assign
//! (`decide::plan::choose_role`); whether that assignment exists (created = the name acr-attach
//! derives with this owner id, adopted = an equivalent one under another name, or missing, which
//! is fine when the operator may create it); whether the operator's identity may write it
//! (`roleAssignments/write` by actions/notActions with wildcards; when its only routes carry
//! delegation conditions: "conditioned: only <roles> for <principal types>", evaluated for the
//! role it needs); whether it may delete it later (a warning otherwise); whether the registry is
//! allowed; and, on ABAC registries, an AcrPull assignment for the principal that the registry
//! ignores (a warning).
//!
//! Where the condition comes from: permissions entries carry `condition` when ARM reports it.
//! When none does (the 2022-04-01 schema has no such field), check reads the operator's own
//! assignments at or above the registry and takes the conditions of those with a built-in role
//! that can assign roles (Owner, User Access Administrator, Role Based Access Control
//! Administrator). That can only err towards "not allowed".
//!
//! Exit code: 0 when every checked registry would work (warnings allowed; a missing assignment
//! the operator may create counts as working), 1 when at least one would not, 2 for usage or
//! configuration errors that prevent checking (bad flags, no Kubernetes access, no Azure token).
//! Output goes to stdout; logs to stderr (warn unless `--log-filter`/RUST_LOG say otherwise).
//!
//! `-o json` prints one object; these field names are stable:
//!
//! ```text
//! ok                      bool: every registry would work
//! operatorObjectId        string|null: acr-attach's identity (the token's oid claim)
//! ownerId                 string: the owner id in derived assignment names
//! kubeletIdentity         {source: "flag"|"cluster"|"unconfigured", objectId: string|null}
//! registries[]:
//!   registry              string: resource id as written
//!   name                  string: registry name
//!   attachment            string|null: RegistryAttachment name (null with --registry)
//!   allowed               bool: admitted by the allow-lists and the login-server suffix
//!   loginServer           string|null
//!   permissionsMode       "LegacyRegistryPermissions"|"AbacRepositoryPermissions"|null
//!   role                  "AcrPull"|"RepositoryReader"|null: what the operator would assign
//!   roleDefinitionId      GUID|null
//!   principal             {objectId, source: "spec"|"kubelet"}|null
//!   assignment            {state: "created"|"adopted"|"missing"|"unknown", name, id}
//!   write, delete         {state: "allowed"|"conditioned"|"denied"|"unknown", permitsRole: bool|null,
//!                          conditions: [{roles: [GUID], principalTypes: [string], permitsRole: bool, understood: bool}]}
//!   ok                    bool
//!   problems[], warnings[] {code, message, fix}
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::azure::arm::ArmClient;
use crate::azure::{ArmError, AzureApi, Permission, Registry, RoleAssignment};
use crate::cli::RunArgs;
use crate::controller::KubeletIdentity;
use crate::crd::{RegistryAttachment, RegistryAttachmentSpec};
use crate::decide::allowlist::login_server_allowed;
use crate::decide::plan::choose_role;
use crate::decide::reasons;
use crate::decide::validate::{
    self, DesiredAttachment, RequestedPrincipal, RequestedRole, describe,
};
use crate::metrics::Metrics;
use crate::model::{
    OwnerId, PermissionsMode, PrincipalId, PullRole, RegistryId, RoleAssignmentName,
};

const WRITE: &str = "Microsoft.Authorization/roleAssignments/write";
const DELETE: &str = "Microsoft.Authorization/roleAssignments/delete";
/// Built-in roles that include roleAssignments/write and /delete: Owner (`*`), User Access
/// Administrator (`Microsoft.Authorization/*`), Role Based Access Control Administrator.
const ASSIGNING_ROLES: [&str; 3] = [
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
];
/// acr-attach always sends this principal type.
const PRINCIPAL_TYPE: &str = "ServicePrincipal";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Check this registry (resource id) for the kubelet identity, instead of every
    /// RegistryAttachment in the cluster.
    #[arg(long)]
    pub registry: Option<String>,
    /// `table` for people, `json` for scripts (stable field names).
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

pub fn main(args: &CheckArgs) -> ExitCode {
    let filter = args
        .run
        .log_filter
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "warn".to_string());
    crate::telemetry::init(args.run.log_format, Some(&filter));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("acr-attach check: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(check(args)) {
        Ok(report) => {
            match args.output {
                OutputFormat::Json => match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("acr-attach check: cannot render JSON: {e}");
                        return ExitCode::from(2);
                    }
                },
                OutputFormat::Table => print!("{}", render_table(&report)),
            }
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(message) => {
            eprintln!("acr-attach check: {message}");
            ExitCode::from(2)
        }
    }
}

/// The whole answer; see the module documentation for the JSON field names.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub ok: bool,
    pub operator_object_id: Option<String>,
    pub owner_id: String,
    pub kubelet_identity: KubeletReport,
    pub registries: Vec<RegistryReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletReport {
    pub source: &'static str,
    pub object_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryReport {
    pub registry: String,
    pub name: String,
    pub attachment: Option<String>,
    pub allowed: bool,
    pub login_server: Option<String>,
    pub permissions_mode: Option<&'static str>,
    pub role: Option<&'static str>,
    pub role_definition_id: Option<&'static str>,
    pub principal: Option<PrincipalReport>,
    pub assignment: AssignmentReport,
    pub write: AccessReport,
    pub delete: AccessReport,
    pub ok: bool,
    pub problems: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalReport {
    pub object_id: String,
    pub source: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentReport {
    pub state: &'static str,
    pub name: Option<String>,
    pub id: Option<String>,
}

#[derive(Debug, Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct AccessReport {
    pub state: &'static str,
    pub permits_role: Option<bool>,
    pub conditions: Vec<ConditionReport>,
}

#[derive(Debug, Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ConditionReport {
    pub roles: Vec<String>,
    pub principal_types: Vec<String>,
    pub permits_role: bool,
    pub understood: bool,
}

#[derive(Debug, Serialize, Clone)]
pub struct Finding {
    pub code: &'static str,
    pub message: String,
    pub fix: String,
}

impl AccessReport {
    fn unknown() -> Self {
        AccessReport {
            state: "unknown",
            permits_role: None,
            conditions: Vec::new(),
        }
    }
}

impl RegistryReport {
    fn new(registry: &str, attachment: Option<String>) -> Self {
        let name = registry.rsplit('/').next().unwrap_or(registry).to_string();
        RegistryReport {
            registry: registry.to_string(),
            name,
            attachment,
            allowed: true,
            login_server: None,
            permissions_mode: None,
            role: None,
            role_definition_id: None,
            principal: None,
            assignment: AssignmentReport {
                state: "unknown",
                name: None,
                id: None,
            },
            write: AccessReport::unknown(),
            delete: AccessReport::unknown(),
            ok: true,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn problem(&mut self, code: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.ok = false;
        self.problems.push(Finding {
            code,
            message: message.into(),
            fix: fix.into(),
        });
    }

    fn warning(&mut self, code: &'static str, message: impl Into<String>, fix: impl Into<String>) {
        self.warnings.push(Finding {
            code,
            message: message.into(),
            fix: fix.into(),
        });
    }
}

/// What to check: a registry, for an attachment (or for `--registry`).
struct Target {
    attachment: Option<String>,
    registry_text: String,
    desired: Result<DesiredAttachment, String>,
}

/// What Azure said about one registry (read once, shared by its attachments).
struct RegistryFacts {
    registry: Result<Registry, ArmError>,
    assignments: Result<Vec<RoleAssignment>, ArmError>,
    permissions: Result<Vec<Permission>, ArmError>,
    /// The operator's own assignments at or above the registry (`None` without its object id).
    own: Option<Result<Vec<RoleAssignment>, ArmError>>,
}

pub async fn check(args: &CheckArgs) -> Result<Report, String> {
    let run = &args.run;
    // Everything `run` would refuse at start, check refuses too (exit 2).
    let settings = run.controller_settings(OwnerId::new("unresolved"))?;
    let allow_list = run.allow_list()?;
    let suffix = run.registry_suffix();
    let only = match &args.registry {
        Some(text) => Some(RegistryId::parse(text.trim()).map_err(|e| format!("--registry: {e}"))?),
        None => None,
    };

    let kube = match (&only, &run.owner_id) {
        (Some(_), Some(_)) => None,
        _ => Some(run.kube_client().await?),
    };
    let owner = match (&run.owner_id, &kube) {
        (Some(owner), _) => OwnerId::new(owner),
        (None, Some(client)) => crate::cli::cluster_owner_id(client).await?,
        (None, None) => unreachable!("a kube client is built whenever --owner-id is absent"),
    };

    let targets = match (&only, &kube) {
        (Some(registry), _) => vec![Target {
            attachment: None,
            registry_text: registry.to_string(),
            desired: Ok(DesiredAttachment {
                registry: registry.clone(),
                role: RequestedRole::Auto,
                principal: RequestedPrincipal::KubeletIdentity,
                deletion: validate::Deletion::Delete,
            }),
        }],
        (None, Some(client)) => list_targets(client).await?,
        (None, None) => unreachable!("a kube client is built whenever --registry is absent"),
    };

    let mut reports: Vec<RegistryReport> = Vec::new();
    let mut to_query: Vec<(usize, DesiredAttachment)> = Vec::new();
    for target in targets {
        let mut report = RegistryReport::new(&target.registry_text, target.attachment.clone());
        match target.desired {
            Err(message) => report.problem(
                reasons::INVALID_SPEC,
                message,
                "fix the RegistryAttachment's spec",
            ),
            Ok(desired) => match allow_list.permits(&desired.registry) {
                Err(refused) => {
                    report.allowed = false;
                    report.problem(
                        reasons::REGISTRY_NOT_ALLOWED,
                        refused.message.clone(),
                        format!(
                            "add the registry to the operator's {} (or use an allowed registry); acr-attach makes no Azure call for it",
                            refused.flag
                        ),
                    );
                }
                Ok(()) => to_query.push((reports.len(), desired)),
            },
        }
        reports.push(report);
    }

    let mut operator_object_id = None;
    let mut kubelet_report = KubeletReport {
        source: match &settings.kubelet_identity {
            KubeletIdentity::ObjectId(_) => "flag",
            KubeletIdentity::FromCluster(_) => "cluster",
            KubeletIdentity::Unconfigured => "unconfigured",
        },
        object_id: None,
    };
    if !to_query.is_empty() {
        let azure = run
            .azure_settings()
            .arm_client(Arc::new(Metrics::default()))
            .map_err(|e| e.to_string())?;
        operator_object_id = azure.caller_object_id().await.map_err(|e| {
            format!(
                "cannot get an Azure token for acr-attach's identity: {}",
                e.classify().message
            )
        })?;

        let needs_kubelet = to_query
            .iter()
            .any(|(_, d)| d.principal == RequestedPrincipal::KubeletIdentity);
        let kubelet: Result<PrincipalId, Finding> = match &settings.kubelet_identity {
            KubeletIdentity::ObjectId(id) => Ok(id.clone()),
            KubeletIdentity::FromCluster(cluster) if needs_kubelet => {
                match azure.get_kubelet_identity(cluster).await {
                    Ok(Some(oid)) => PrincipalId::parse(&oid).map_err(|e| Finding {
                        code: reasons::KUBELET_IDENTITY_MISSING,
                        message: format!("the cluster's kubelet identity is not an object id: {e}"),
                        fix: "pass --kubelet-object-id".to_string(),
                    }),
                    Ok(None) => Err(Finding {
                        code: reasons::KUBELET_IDENTITY_MISSING,
                        message: format!(
                            "the AKS cluster {cluster} has no identityProfile.kubeletidentity (a service-principal cluster?)"
                        ),
                        fix: "pass --kubelet-object-id, or set spec.principal.objectId".to_string(),
                    }),
                    Err(e) => {
                        let failure = e.classify();
                        Err(Finding {
                            code: failure.reason,
                            message: format!("cannot read the kubelet identity: {}", failure.message),
                            fix: "grant acr-attach's identity Reader on the AKS cluster, or pass --kubelet-object-id".to_string(),
                        })
                    }
                }
            }
            KubeletIdentity::FromCluster(_) => Err(Finding {
                code: reasons::KUBELET_IDENTITY_MISSING,
                message: "not read (no attachment uses it)".to_string(),
                fix: String::new(),
            }),
            KubeletIdentity::Unconfigured => Err(Finding {
                code: reasons::NO_PRINCIPAL_CONFIGURED,
                message: "no kubelet identity is configured, so attachments without spec.principal have no principal".to_string(),
                fix: "pass --cluster-resource-id (or --kubelet-object-id), as the operator's own flags should".to_string(),
            }),
        };
        kubelet_report.object_id = kubelet.as_ref().ok().map(ToString::to_string);

        let mut facts: HashMap<String, RegistryFacts> = HashMap::new();
        for (index, desired) in &to_query {
            let key = desired.registry.key();
            if !facts.contains_key(&key) {
                let read =
                    read_registry(&azure, &desired.registry, operator_object_id.as_deref()).await;
                facts.insert(key.clone(), read);
            }
            let report = &mut reports[*index];
            evaluate(
                report,
                desired,
                &facts[&key],
                &kubelet,
                &owner,
                suffix.as_deref(),
            );
        }
    }

    Ok(Report {
        ok: reports.iter().all(|r| r.ok),
        operator_object_id,
        owner_id: owner.to_string(),
        kubelet_identity: kubelet_report,
        registries: reports,
    })
}

async fn list_targets(client: &kube::Client) -> Result<Vec<Target>, String> {
    let api: kube::Api<RegistryAttachment> = kube::Api::all(client.clone());
    let list = api
        .list(&kube::api::ListParams::default())
        .await
        .map_err(|e| {
            format!(
                "cannot list RegistryAttachments ({e}); check --kubeconfig and that the CRD is installed (`acr-attach crd | kubectl apply -f -`)"
            )
        })?;
    let mut targets: Vec<Target> = list
        .items
        .into_iter()
        .map(|object| {
            let spec: &RegistryAttachmentSpec = &object.spec;
            Target {
                attachment: object.metadata.name.clone(),
                registry_text: spec.registry.resource_id.clone(),
                desired: validate::validate(spec).map_err(|errors| describe(&errors)),
            }
        })
        .collect();
    targets.sort_by(|a, b| a.attachment.cmp(&b.attachment));
    Ok(targets)
}

async fn read_registry(
    azure: &ArmClient,
    registry: &RegistryId,
    operator: Option<&str>,
) -> RegistryFacts {
    let got = azure.get_registry(registry).await;
    if got.is_err() {
        fn skipped<T>(registry: &RegistryId) -> Result<T, ArmError> {
            Err(ArmError::Decode {
                operation: crate::azure::error::Operation::GetRegistry,
                target: registry.to_string(),
                message: "not read: the registry itself could not be read".to_string(),
            })
        }
        return RegistryFacts {
            registry: got,
            assignments: skipped(registry),
            permissions: skipped(registry),
            own: None,
        };
    }
    let assignments = azure.list_role_assignments(registry).await;
    let permissions = azure.list_permissions(registry.as_str()).await;
    let own = match operator {
        Some(oid) => Some(azure.list_role_assignments_of(registry.as_str(), oid).await),
        None => None,
    };
    RegistryFacts {
        registry: got,
        assignments,
        permissions,
        own,
    }
}

fn arm_problem(report: &mut RegistryReport, what: &str, error: &ArmError) {
    let failure = error.classify();
    report.problem(
        failure.reason,
        format!("cannot read {what}: {}", failure.message),
        match failure.reason {
            reasons::AUTHORIZATION_FAILED => "grant acr-attach's identity read access (Role Based Access Control Administrator includes */read) on the registry".to_string(),
            reasons::REGISTRY_NOT_FOUND => "fix the registry resource id".to_string(),
            _ => "retry; if it persists, check connectivity to Azure Resource Manager".to_string(),
        },
    );
}

fn evaluate(
    report: &mut RegistryReport,
    desired: &DesiredAttachment,
    facts: &RegistryFacts,
    kubelet: &Result<PrincipalId, Finding>,
    owner: &OwnerId,
    suffix: Option<&str>,
) {
    let registry = match &facts.registry {
        Ok(registry) => registry,
        Err(error) => return arm_problem(report, "the registry", error),
    };
    report.login_server = registry.login_server.clone();
    report.permissions_mode = registry.mode.map(PermissionsMode::as_arm);
    if let (Some(suffix), Some(login_server)) = (suffix, registry.login_server.as_deref())
        && let Err(refused) = login_server_allowed(login_server, suffix)
    {
        report.allowed = false;
        report.problem(
            reasons::REGISTRY_NOT_ALLOWED,
            refused.message,
            "run acr-attach for the registry's cloud (--cloud), or pass --registry-suffix",
        );
        return;
    }
    let role = match choose_role(desired.role, registry.mode) {
        Ok(role) => role,
        Err(problem) => {
            report.problem(problem.reason, problem.message, "change spec.role");
            return;
        }
    };
    report.role = Some(role.short_name());
    report.role_definition_id = Some(role.definition_guid());
    let principal = match &desired.principal {
        RequestedPrincipal::Explicit(id) => {
            report.principal = Some(PrincipalReport {
                object_id: id.to_string(),
                source: "spec",
            });
            id.clone()
        }
        RequestedPrincipal::KubeletIdentity => match kubelet {
            Ok(id) => {
                report.principal = Some(PrincipalReport {
                    object_id: id.to_string(),
                    source: "kubelet",
                });
                id.clone()
            }
            Err(finding) => {
                report.problem(finding.code, finding.message.clone(), finding.fix.clone());
                return;
            }
        },
    };

    let assignments = match &facts.assignments {
        Ok(list) => list,
        Err(error) => return arm_problem(report, "the registry's role assignments", error),
    };
    let ours = RoleAssignmentName::derive(&desired.registry, &principal, role, owner);
    let granting: Vec<&RoleAssignment> = assignments
        .iter()
        .filter(|a| a.grants(&desired.registry, &principal, role))
        .collect();
    let existing = granting
        .iter()
        .find(|a| a.name == ours)
        .map(|a| ("created", *a))
        .or_else(|| granting.first().map(|a| ("adopted", *a)));
    report.assignment = match existing {
        Some((state, a)) => AssignmentReport {
            state,
            name: Some(a.name.to_string()),
            id: Some(a.id.clone()),
        },
        None => AssignmentReport {
            state: "missing",
            name: Some(ours.to_string()),
            id: Some(ours.id_at(&desired.registry)),
        },
    };

    if registry.mode == Some(PermissionsMode::AbacRepository) {
        for stray in assignments.iter().filter(|a| {
            a.role() == Some(PullRole::AcrPull)
                && a.principal_id.eq_ignore_ascii_case(principal.as_str())
        }) {
            report.warning(
                "IgnoredAcrPull",
                format!(
                    "AcrPull assignment {} for {principal} is ignored: this registry uses ABAC repository permissions, where the kubelet pulls with Container Registry Repository Reader",
                    stray.name
                ),
                format!(
                    "once Repository Reader is in place, remove it: az role assignment delete --ids {}",
                    stray.id
                ),
            );
        }
    }

    let permissions = match &facts.permissions {
        Ok(list) => list,
        Err(error) => return arm_problem(report, "acr-attach's own permissions", error),
    };
    let own = facts
        .own
        .as_ref()
        .and_then(|r| r.as_ref().ok())
        .map(Vec::as_slice);
    let attributes = Attributes {
        role: role.definition_guid().to_string(),
        principal_type: PRINCIPAL_TYPE.to_string(),
        principal_id: principal.to_string(),
    };
    report.write = access(permissions, own, WRITE, &attributes);
    report.delete = access(permissions, own, DELETE, &attributes);

    let needs_write = report.assignment.state == "missing";
    let registry_name = desired.registry.name();
    let missing_write = |access: &AccessReport| -> Option<(String, String)> {
        match access.state {
            "allowed" => None,
            "conditioned" if access.permits_role == Some(true) => None,
            "conditioned" => Some((
                format!(
                    "acr-attach's identity may write role assignments on {registry_name} only under a condition: {}; it needs {} for {PRINCIPAL_TYPE}",
                    describe_conditions(&access.conditions),
                    role.display_name()
                ),
                format!(
                    "add {} ({}) to the RoleDefinitionId sets (@Request and @Resource) of the condition on acr-attach's role assignment (README, Install)",
                    role.display_name(),
                    role.definition_guid()
                ),
            )),
            _ => Some((
                format!(
                    "acr-attach's identity may not perform '{WRITE}' on {registry_name}: none of its role assignments at or above the registry grants it"
                ),
                "grant it \"Role Based Access Control Administrator\" on the registry or its resource group, conditioned to AcrPull and Container Registry Repository Reader for service principals (README, Install)".to_string(),
            )),
        }
    };
    let write_problem = missing_write(&report.write);
    let write_ok = write_problem.is_none();
    if let Some((message, fix)) = write_problem {
        if needs_write {
            report.problem(reasons::AUTHORIZATION_FAILED, message, fix);
        } else {
            report.warning(
                "CannotRepair",
                format!("{message}; the assignment exists, but acr-attach could not recreate it after drift or a mode change"),
                fix,
            );
        }
    }
    let delete_ok = match report.delete.state {
        "allowed" => true,
        "conditioned" => report.delete.permits_role == Some(true),
        _ => false,
    };
    // Without write, the problem above already says what to grant; delete comes with it.
    // An adopted assignment is never deleted by acr-attach, so delete does not matter there.
    if !delete_ok && write_ok && report.assignment.state != "adopted" {
        report.warning(
            reasons::DETACH_BLOCKED,
            format!(
                "acr-attach's identity may not perform '{DELETE}' for {} on {registry_name}, so deleting the attachment would be blocked",
                role.display_name()
            ),
            "grant roleAssignments/delete with the same condition (Role Based Access Control Administrator has it), or use deletionPolicy: Orphan".to_string(),
        );
    }
}

/// The request the operator would make, as a condition sees it.
struct Attributes {
    role: String,
    principal_type: String,
    principal_id: String,
}

/// Which of the caller's routes to `action` there are, and whether one admits `attributes`.
fn access(
    permissions: &[Permission],
    own: Option<&[RoleAssignment]>,
    action: &str,
    attributes: &Attributes,
) -> AccessReport {
    let granting: Vec<&Permission> = permissions.iter().filter(|p| p.allows(action)).collect();
    if granting.is_empty() {
        return AccessReport {
            state: "denied",
            permits_role: Some(false),
            conditions: Vec::new(),
        };
    }
    let reported = permissions.iter().any(|p| p.condition.is_some());
    let mut routes: Vec<Option<String>> = granting.iter().map(|p| p.condition.clone()).collect();
    if !reported && let Some(own) = own {
        let from_own: Vec<Option<String>> = own
            .iter()
            .filter(|a| {
                let guid = a.role_definition_id.rsplit('/').next().unwrap_or_default();
                ASSIGNING_ROLES.iter().any(|r| r.eq_ignore_ascii_case(guid))
            })
            .map(|a| a.condition.clone().filter(|c| !c.trim().is_empty()))
            .collect();
        if !from_own.is_empty() {
            routes = from_own;
        }
    }
    if routes.iter().any(Option::is_none) {
        return AccessReport {
            state: "allowed",
            permits_role: Some(true),
            conditions: Vec::new(),
        };
    }
    let source = if action == DELETE {
        condition::Source::Resource
    } else {
        condition::Source::Request
    };
    let context = condition::Context {
        action: action.to_string(),
        source,
        role_definition_id: attributes.role.clone(),
        principal_type: attributes.principal_type.clone(),
        principal_id: attributes.principal_id.clone(),
    };
    let conditions: Vec<ConditionReport> = routes
        .iter()
        .flatten()
        .map(|text| match condition::Condition::parse(text) {
            Ok(parsed) => ConditionReport {
                roles: parsed.values(source, condition::Attribute::RoleDefinitionId),
                principal_types: parsed.values(source, condition::Attribute::PrincipalType),
                permits_role: parsed.fulfilled(&context),
                understood: true,
            },
            Err(_) => ConditionReport {
                roles: Vec::new(),
                principal_types: Vec::new(),
                permits_role: false,
                understood: false,
            },
        })
        .collect();
    AccessReport {
        state: "conditioned",
        permits_role: Some(conditions.iter().any(|c| c.permits_role)),
        conditions,
    }
}

fn role_name(guid: &str) -> String {
    [PullRole::AcrPull, PullRole::RepositoryReader]
        .into_iter()
        .find(|r| r.definition_guid().eq_ignore_ascii_case(guid))
        .map(|r| r.display_name().to_string())
        .unwrap_or_else(|| guid.to_string())
}

/// "only AcrPull, Container Registry Repository Reader for ServicePrincipal".
fn describe_conditions(conditions: &[ConditionReport]) -> String {
    conditions
        .iter()
        .map(|c| {
            if !c.understood {
                return "a condition acr-attach cannot read".to_string();
            }
            let roles = if c.roles.is_empty() {
                "any role".to_string()
            } else {
                c.roles
                    .iter()
                    .map(|g| role_name(g))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let types = if c.principal_types.is_empty() {
                "any principal type".to_string()
            } else {
                c.principal_types.join(", ")
            };
            format!("only {roles} for {types}")
        })
        .collect::<Vec<_>>()
        .join("; or ")
}

fn access_cell(access: &AccessReport) -> String {
    match access.state {
        "allowed" => "yes".to_string(),
        "denied" => "no".to_string(),
        "conditioned" => {
            let verdict = if access.permits_role == Some(true) {
                "yes"
            } else {
                "no"
            };
            format!("{verdict}, {}", describe_conditions(&access.conditions))
        }
        _ => "-".to_string(),
    }
}

/// One row per registry, then the problems with their fixes, then warnings.
pub fn render_table(report: &Report) -> String {
    let headers = [
        "REGISTRY",
        "ATTACHMENT",
        "MODE",
        "ROLE",
        "PRINCIPAL",
        "ASSIGNMENT",
        "OPERATOR MAY WRITE",
        "RESULT",
    ];
    let rows: Vec<[String; 8]> = report
        .registries
        .iter()
        .map(|r| {
            let assignment = match r.assignment.state {
                "missing" if r.ok => "missing, will be created".to_string(),
                state => state.to_string(),
            };
            [
                r.name.clone(),
                r.attachment
                    .clone()
                    .unwrap_or_else(|| "(--registry)".to_string()),
                match r.permissions_mode {
                    Some("AbacRepositoryPermissions") => "ABAC".to_string(),
                    Some(_) => "Legacy".to_string(),
                    None => "-".to_string(),
                },
                r.role.unwrap_or("-").to_string(),
                r.principal
                    .as_ref()
                    .map(|p| p.object_id.clone())
                    .unwrap_or_else(|| "-".to_string()),
                assignment,
                access_cell(&r.write),
                if !r.ok {
                    "FAIL".to_string()
                } else if r.warnings.is_empty() {
                    "ok".to_string()
                } else {
                    "ok (warnings)".to_string()
                },
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut text = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        text.truncate(text.trim_end().len());
        text.push('\n');
        text
    };
    let mut out = line(&headers.map(str::to_string));
    for row in &rows {
        out.push_str(&line(row));
    }
    if report.registries.is_empty() {
        out.push_str("(no RegistryAttachments in the cluster; pass --registry to check one)\n");
    }
    let label = |r: &RegistryReport| match &r.attachment {
        Some(name) => format!("{} ({name})", r.name),
        None => r.name.clone(),
    };
    let mut section = |title: &str, pick: &dyn Fn(&RegistryReport) -> &Vec<Finding>| {
        let items: Vec<(String, &Finding)> = report
            .registries
            .iter()
            .flat_map(|r| pick(r).iter().map(move |f| (label(r), f)))
            .collect();
        if items.is_empty() {
            return;
        }
        out.push_str(&format!("\n{title}:\n"));
        for (who, finding) in items {
            out.push_str(&format!(
                "- {who}: {} [{}]\n",
                finding.message, finding.code
            ));
            if !finding.fix.is_empty() {
                out.push_str(&format!("  fix: {}\n", finding.fix));
            }
        }
    };
    section("Problems", &|r| &r.problems);
    section("Warnings", &|r| &r.warnings);
    out
}

/// The subset of the role-assignment condition language that least-privilege delegation uses
/// (see the emulator's `rbac.rs` for the same subset on the server side): `!`/`NOT`,
/// `AND`/`&&`, `OR`/`||`, parentheses, `ActionMatches{'…'}`, and comparisons of
/// `@Request[…]`/`@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId|PrincipalType|PrincipalId]`
/// with `GuidEquals`, `GuidNotEquals`, `StringEquals[IgnoreCase]`, `StringNotEquals[IgnoreCase]`,
/// optionally `ForAnyOfAnyValues:`/`ForAnyOfAllValues:`. Anything else does not parse, and a
/// condition that does not parse is never taken to allow anything.
mod condition {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Source {
        Request,
        Resource,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Attribute {
        RoleDefinitionId,
        PrincipalType,
        PrincipalId,
    }

    /// The hypothetical request: the action and the assignment's attributes under `source`.
    pub struct Context {
        pub action: String,
        pub source: Source,
        pub role_definition_id: String,
        pub principal_type: String,
        pub principal_id: String,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Quantifier {
        Single,
        AnyOfAny,
        AnyOfAll,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Op {
        Equals { ignore_case: bool },
        NotEquals { ignore_case: bool },
    }

    #[derive(Debug, Clone)]
    enum Expr {
        Or(Vec<Expr>),
        And(Vec<Expr>),
        Not(Box<Expr>),
        ActionMatches(String),
        Compare {
            source: Source,
            attribute: Attribute,
            quantifier: Quantifier,
            op: Op,
            values: Vec<String>,
        },
    }

    #[derive(Debug, Clone)]
    pub struct Condition(Expr);

    #[derive(Debug, Clone, PartialEq)]
    enum Token {
        Open,
        Close,
        BraceOpen,
        BraceClose,
        Comma,
        Not,
        And,
        Or,
        Str(String),
        Attr(String),
        Word(String),
    }

    fn is_word_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '/')
    }

    fn tokenize(text: &str) -> Result<Vec<Token>, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let single = match chars[i] {
                '(' => Some(Token::Open),
                ')' => Some(Token::Close),
                '{' => Some(Token::BraceOpen),
                '}' => Some(Token::BraceClose),
                ',' => Some(Token::Comma),
                '!' => Some(Token::Not),
                _ => None,
            };
            if let Some(token) = single {
                tokens.push(token);
                i += 1;
                continue;
            }
            match chars[i] {
                c if c.is_whitespace() => i += 1,
                '&' if chars.get(i + 1) == Some(&'&') => {
                    tokens.push(Token::And);
                    i += 2;
                }
                '|' if chars.get(i + 1) == Some(&'|') => {
                    tokens.push(Token::Or);
                    i += 2;
                }
                '\'' => {
                    let len = chars[i + 1..]
                        .iter()
                        .position(|&c| c == '\'')
                        .ok_or("unterminated string")?;
                    tokens.push(Token::Str(chars[i + 1..i + 1 + len].iter().collect()));
                    i += len + 2;
                }
                '@' => {
                    let len = chars[i..]
                        .iter()
                        .position(|&c| c == ']')
                        .ok_or("unterminated attribute")?;
                    tokens.push(Token::Attr(chars[i..=i + len].iter().collect()));
                    i += len + 1;
                }
                c if is_word_char(c) => {
                    let start = i;
                    while i < chars.len() && is_word_char(chars[i]) {
                        i += 1;
                    }
                    let word: String = chars[start..i].iter().collect();
                    tokens.push(match word.to_ascii_uppercase().as_str() {
                        "AND" => Token::And,
                        "OR" => Token::Or,
                        "NOT" => Token::Not,
                        _ => Token::Word(word),
                    });
                }
                other => return Err(format!("unexpected character {other:?}")),
            }
        }
        Ok(tokens)
    }

    struct Parser {
        tokens: Vec<Token>,
        at: usize,
    }

    impl Parser {
        fn peek(&self) -> Option<&Token> {
            self.tokens.get(self.at)
        }
        fn take(&mut self) -> Option<Token> {
            let token = self.tokens.get(self.at).cloned();
            self.at += 1;
            token
        }
        fn expect(&mut self, want: &Token) -> Result<(), String> {
            match self.take() {
                Some(ref got) if got == want => Ok(()),
                got => Err(format!("expected {want:?}, got {got:?}")),
            }
        }
        fn list(
            &mut self,
            separator: Token,
            next: fn(&mut Parser) -> Result<Expr, String>,
        ) -> Result<Vec<Expr>, String> {
            let mut items = vec![next(self)?];
            while self.peek() == Some(&separator) {
                self.at += 1;
                items.push(next(self)?);
            }
            Ok(items)
        }
        fn or(&mut self) -> Result<Expr, String> {
            let mut items = self.list(Token::Or, Parser::and)?;
            Ok(if items.len() == 1 {
                items.remove(0)
            } else {
                Expr::Or(items)
            })
        }
        fn and(&mut self) -> Result<Expr, String> {
            let mut items = self.list(Token::And, Parser::unary)?;
            Ok(if items.len() == 1 {
                items.remove(0)
            } else {
                Expr::And(items)
            })
        }
        fn unary(&mut self) -> Result<Expr, String> {
            match self.peek() {
                Some(Token::Not) => {
                    self.at += 1;
                    Ok(Expr::Not(Box::new(self.unary()?)))
                }
                Some(Token::Open) => {
                    self.at += 1;
                    let inner = self.or()?;
                    self.expect(&Token::Close)?;
                    Ok(inner)
                }
                _ => self.atom(),
            }
        }
        fn value(&mut self) -> Result<String, String> {
            match self.take() {
                Some(Token::Str(s)) | Some(Token::Word(s)) => Ok(s),
                got => Err(format!("expected a value, got {got:?}")),
            }
        }
        fn atom(&mut self) -> Result<Expr, String> {
            match self.take() {
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("ActionMatches") => {
                    self.expect(&Token::BraceOpen)?;
                    let Some(Token::Str(action)) = self.take() else {
                        return Err("ActionMatches needs a quoted action".to_string());
                    };
                    self.expect(&Token::BraceClose)?;
                    Ok(Expr::ActionMatches(action))
                }
                Some(Token::Attr(text)) => {
                    let (source, attribute) = attribute(&text)?;
                    let Some(Token::Word(op_text)) = self.take() else {
                        return Err(format!("expected an operator after {text}"));
                    };
                    let (quantifier, name) = match op_text.split_once(':') {
                        None => (Quantifier::Single, op_text.as_str()),
                        Some((q, name)) if q.eq_ignore_ascii_case("ForAnyOfAnyValues") => {
                            (Quantifier::AnyOfAny, name)
                        }
                        Some((q, name)) if q.eq_ignore_ascii_case("ForAnyOfAllValues") => {
                            (Quantifier::AnyOfAll, name)
                        }
                        Some(_) => return Err(format!("unsupported operator {op_text}")),
                    };
                    let (op, guid) = match name.to_ascii_lowercase().as_str() {
                        "guidequals" => (Op::Equals { ignore_case: true }, true),
                        "guidnotequals" => (Op::NotEquals { ignore_case: true }, true),
                        "stringequals" => (Op::Equals { ignore_case: false }, false),
                        "stringequalsignorecase" => (Op::Equals { ignore_case: true }, false),
                        "stringnotequals" => (Op::NotEquals { ignore_case: false }, false),
                        "stringnotequalsignorecase" => (Op::NotEquals { ignore_case: true }, false),
                        _ => return Err(format!("unsupported operator {op_text}")),
                    };
                    let values = if self.peek() == Some(&Token::BraceOpen) {
                        self.at += 1;
                        let mut values = vec![self.value()?];
                        loop {
                            match self.take() {
                                Some(Token::Comma) => values.push(self.value()?),
                                Some(Token::BraceClose) => break values,
                                got => return Err(format!("expected ',' or '}}', got {got:?}")),
                            }
                        }
                    } else {
                        vec![self.value()?]
                    };
                    if quantifier == Quantifier::Single && values.len() != 1 {
                        return Err(format!("{op_text} takes one value"));
                    }
                    if guid && values.iter().any(|v| uuid::Uuid::try_parse(v).is_err()) {
                        return Err(format!("{op_text} takes GUIDs"));
                    }
                    Ok(Expr::Compare {
                        source,
                        attribute,
                        quantifier,
                        op,
                        values,
                    })
                }
                got => Err(format!("unexpected {got:?}")),
            }
        }
    }

    fn attribute(text: &str) -> Result<(Source, Attribute), String> {
        let (source, rest) = text
            .strip_suffix(']')
            .and_then(|t| t.split_once('['))
            .ok_or_else(|| format!("malformed attribute {text}"))?;
        let source = match source.to_ascii_lowercase().as_str() {
            "@request" => Source::Request,
            "@resource" => Source::Resource,
            _ => return Err(format!("unsupported attribute {text}")),
        };
        let (namespace, name) = rest
            .split_once(':')
            .ok_or_else(|| format!("malformed attribute {text}"))?;
        if !namespace.eq_ignore_ascii_case("Microsoft.Authorization/roleAssignments") {
            return Err(format!("unsupported attribute {text}"));
        }
        let attribute = match name.to_ascii_lowercase().as_str() {
            "roledefinitionid" => Attribute::RoleDefinitionId,
            "principaltype" => Attribute::PrincipalType,
            "principalid" => Attribute::PrincipalId,
            _ => return Err(format!("unsupported attribute {text}")),
        };
        Ok((source, attribute))
    }

    fn action_matches(pattern: &str, action: &str) -> bool {
        crate::azure::action_matches(pattern, action)
    }

    impl Condition {
        pub fn parse(text: &str) -> Result<Condition, String> {
            let tokens = tokenize(text)?;
            if tokens.is_empty() {
                return Err("empty condition".to_string());
            }
            let mut parser = Parser { tokens, at: 0 };
            let expr = parser.or()?;
            if parser.at != parser.tokens.len() {
                return Err("trailing text after the condition".to_string());
            }
            Ok(Condition(expr))
        }

        /// True only when definitely fulfilled (an attribute the request lacks is unknown).
        pub fn fulfilled(&self, context: &Context) -> bool {
            eval(&self.0, context) == Some(true)
        }

        /// Values the condition compares `attribute` of `source` with, positively (what it lets
        /// through), in order, without duplicates.
        pub fn values(&self, source: Source, attribute: Attribute) -> Vec<String> {
            let mut out: Vec<String> = Vec::new();
            collect(&self.0, source, attribute, &mut out);
            out
        }
    }

    fn collect(expr: &Expr, source: Source, attribute: Attribute, out: &mut Vec<String>) {
        match expr {
            Expr::Or(items) | Expr::And(items) => items
                .iter()
                .for_each(|e| collect(e, source, attribute, out)),
            Expr::Not(_) | Expr::ActionMatches(_) => {}
            Expr::Compare {
                source: s,
                attribute: a,
                op: Op::Equals { .. },
                values,
                ..
            } if *s == source && *a == attribute => {
                for v in values {
                    if !out.iter().any(|o| o.eq_ignore_ascii_case(v)) {
                        out.push(v.clone());
                    }
                }
            }
            Expr::Compare { .. } => {}
        }
    }

    fn eval(expr: &Expr, context: &Context) -> Option<bool> {
        match expr {
            Expr::Or(items) => {
                let values: Vec<Option<bool>> = items.iter().map(|e| eval(e, context)).collect();
                if values.contains(&Some(true)) {
                    Some(true)
                } else if values.contains(&None) {
                    None
                } else {
                    Some(false)
                }
            }
            Expr::And(items) => {
                let values: Vec<Option<bool>> = items.iter().map(|e| eval(e, context)).collect();
                if values.contains(&Some(false)) {
                    Some(false)
                } else if values.contains(&None) {
                    None
                } else {
                    Some(true)
                }
            }
            Expr::Not(inner) => eval(inner, context).map(|v| !v),
            Expr::ActionMatches(pattern) => Some(action_matches(pattern, &context.action)),
            Expr::Compare {
                source,
                attribute,
                quantifier,
                op,
                values,
            } => {
                if *source != context.source {
                    return None;
                }
                let left = match attribute {
                    Attribute::RoleDefinitionId => &context.role_definition_id,
                    Attribute::PrincipalType => &context.principal_type,
                    Attribute::PrincipalId => &context.principal_id,
                };
                let holds = |right: &String| match op {
                    Op::Equals { ignore_case: true } => left.eq_ignore_ascii_case(right),
                    Op::Equals { ignore_case: false } => left == right,
                    Op::NotEquals { ignore_case: true } => !left.eq_ignore_ascii_case(right),
                    Op::NotEquals { ignore_case: false } => left != right,
                };
                Some(match quantifier {
                    Quantifier::Single | Quantifier::AnyOfAny => values.iter().any(holds),
                    Quantifier::AnyOfAll => values.iter().all(holds),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PULL: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";
    const READER: &str = "b93aa761-3e63-49ed-ac28-beffa264f7ac";

    fn delegation(roles: &str) -> String {
        format!(
            "((!(ActionMatches{{'{WRITE}'}})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{roles}}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}})) AND ((!(ActionMatches{{'{DELETE}'}})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{roles}}} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}}))"
        )
    }

    fn entry(actions: &[&str], not_actions: &[&str], condition: Option<String>) -> Permission {
        Permission {
            actions: actions.iter().map(|s| s.to_string()).collect(),
            not_actions: not_actions.iter().map(|s| s.to_string()).collect(),
            condition,
            ..Permission::default()
        }
    }

    fn needs(role: &str) -> Attributes {
        Attributes {
            role: role.to_string(),
            principal_type: PRINCIPAL_TYPE.to_string(),
            principal_id: "11111111-1111-1111-1111-111111111111".to_string(),
        }
    }

    fn own(role: &str, condition: Option<String>) -> RoleAssignment {
        RoleAssignment {
            id: "id".to_string(),
            name: RoleAssignmentName::from_arm("n"),
            scope: "/subscriptions/s/resourceGroups/rg".to_string(),
            role_definition_id: format!(
                "/providers/Microsoft.Authorization/roleDefinitions/{role}"
            ),
            principal_id: "op".to_string(),
            condition,
            description: None,
        }
    }

    #[test]
    fn write_follows_actions_and_not_actions_with_wildcards() {
        let owner = [entry(&["*"], &[], None)];
        assert_eq!(access(&owner, None, WRITE, &needs(PULL)).state, "allowed");
        let uaa = [entry(&["*/read", "Microsoft.Authorization/*"], &[], None)];
        assert_eq!(access(&uaa, None, WRITE, &needs(PULL)).state, "allowed");
        let contributor = [entry(&["*"], &["Microsoft.Authorization/*/Write"], None)];
        assert_eq!(
            access(&contributor, None, WRITE, &needs(PULL)).state,
            "denied"
        );
        let reader = [entry(&["*/read"], &[], None)];
        assert_eq!(access(&reader, None, WRITE, &needs(PULL)).state, "denied");
        // notActions of one entry do not cancel another entry's grant.
        let both = [contributor[0].clone(), uaa[0].clone()];
        assert_eq!(access(&both, None, WRITE, &needs(PULL)).state, "allowed");
    }

    #[test]
    fn a_reported_condition_is_evaluated_for_the_needed_role() {
        let rbac = [
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete",
            "*/read",
        ];
        let only_pull = [entry(&rbac, &[], Some(delegation(PULL)))];
        let report = access(&only_pull, None, WRITE, &needs(READER));
        assert_eq!(report.state, "conditioned");
        assert_eq!(report.permits_role, Some(false));
        assert_eq!(report.conditions[0].roles, vec![PULL.to_string()]);
        assert_eq!(
            report.conditions[0].principal_types,
            vec!["ServicePrincipal".to_string()]
        );
        assert_eq!(
            describe_conditions(&report.conditions),
            "only AcrPull for ServicePrincipal"
        );
        assert_eq!(
            access(&only_pull, None, WRITE, &needs(PULL)).permits_role,
            Some(true)
        );
        assert_eq!(
            access(&only_pull, None, DELETE, &needs(PULL)).permits_role,
            Some(true)
        );
        assert_eq!(
            access(&only_pull, None, DELETE, &needs(READER)).permits_role,
            Some(false)
        );
        // An unconditioned route beside it wins.
        let with_owner = [only_pull[0].clone(), entry(&["*"], &[], None)];
        assert_eq!(
            access(&with_owner, None, WRITE, &needs(READER)).state,
            "allowed"
        );
    }

    #[test]
    fn without_reported_conditions_the_operators_own_assignments_tell() {
        let rbac = [entry(&[WRITE, DELETE, "*/read"], &[], None)];
        let mine = [
            own(
                "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
                Some(delegation(PULL)),
            ),
            own("acdd72a7-3385-48ef-bd42-f606fba81ae7", None),
        ];
        let report = access(&rbac, Some(&mine), WRITE, &needs(READER));
        assert_eq!(report.state, "conditioned");
        assert_eq!(report.permits_role, Some(false));
        // Owner without a condition: allowed.
        let owner = [own("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", None)];
        assert_eq!(
            access(&rbac, Some(&owner), WRITE, &needs(READER)).state,
            "allowed"
        );
    }

    #[test]
    fn an_unreadable_condition_never_allows() {
        let odd = [entry(
            &["*"],
            &[],
            Some("@Resource[Microsoft.Storage/x:y] StringEquals 'z'".to_string()),
        )];
        let report = access(&odd, None, WRITE, &needs(PULL));
        assert_eq!(report.permits_role, Some(false));
        assert!(!report.conditions[0].understood);
        assert!(describe_conditions(&report.conditions).contains("cannot read"));
    }
}
