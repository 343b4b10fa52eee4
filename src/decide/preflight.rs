//! The preflight verdict for one registry (`acr-attach check`), decided from facts already read:
//! whether the spec and the allow-lists admit it ([`screen`]); then, from what ARM said
//! ([`evaluate`]), the role and principal the operator would use, whether that assignment exists
//! (the same created/adopted/missing decision `plan_apply` makes for the controller), whether
//! acr-attach's identity may write it and later delete it (`delegation`), and the registry-level
//! warnings. The answer is a `RegistryReport`: problems mean it would not work, warnings do not.
//!
//! No I/O: `check` reads the cluster and ARM into `Target`s and `RegistryFacts`. The serde names
//! here are the stable JSON of `check -o json` (documented there).

use std::collections::HashSet;

use serde::Serialize;

use crate::crd::Ownership;
use crate::decide::allowlist::{AllowList, RegistryNotAllowed, login_server_allowed};
use crate::decide::claims::Claims;
use crate::decide::delegation::{self, Access, AccessState, Action, PRINCIPAL_TYPE, Request};
use crate::decide::failure::{Classify, Failure};
use crate::decide::plan::{PlanInput, Resolved, Step, plan, wanted_grants};
use crate::decide::reasons;
use crate::decide::validate::{DesiredAttachment, RegistryTarget, RequestedPrincipal};
use crate::model::azure::{ArmError, Permission, Registry, RoleAssignment};
use crate::model::grant::Grant;
use crate::model::{ClusterId, OwnerId, PermissionsMode, PrincipalId, PullRole, RegistryId};

use crate::decide::reasons::{CANNOT_REPAIR, CATALOG_LISTING_MISSING, IGNORED_ACR_PULL};

/// What to check: a registry, for an attachment (or for `--registry`).
#[derive(Clone, Debug)]
pub struct Target {
    pub attachment: Option<String>,
    /// The resource id (or registry name) as written (it may not parse).
    pub registry_text: String,
    /// The validated spec, or the field errors joined.
    pub desired: Result<DesiredAttachment<RegistryTarget>, String>,
}

/// What ARM said about a registry whose `GET` succeeded (read once, shared by its attachments).
#[derive(Debug)]
pub struct RegistryFacts {
    pub registry: Registry,
    /// The role assignments at the registry.
    pub assignments: Result<Vec<RoleAssignment>, ArmError>,
    /// `Microsoft.Authorization/permissions` of acr-attach's identity at the registry.
    pub permissions: Result<Vec<Permission>, ArmError>,
    /// The operator's own assignments at or above the registry (`None` without its object id).
    pub own: Option<Result<Vec<RoleAssignment>, ArmError>>,
}

/// What holds for every registry in one run.
pub struct Context<'a> {
    /// Part of every derived assignment name.
    pub owner: &'a OwnerId,
    /// The kubelet identity, or why there is none (reported for attachments that need it).
    pub kubelet: &'a Result<PrincipalId, Finding>,
    /// The login-server suffix to enforce (`None`: not enforced).
    pub login_suffix: Option<&'a str>,
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
    pub write: Access,
    pub delete: Access,
    pub ok: bool,
    pub problems: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalSource {
    Spec,
    Kubelet,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalReport {
    pub object_id: String,
    pub source: PrincipalSource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AssignmentState {
    /// Under the name acr-attach derives with this owner id.
    Created,
    /// An equivalent assignment under another name.
    Adopted,
    /// None yet; fine when the operator may create it.
    Missing,
    /// Not evaluated.
    Unknown,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentReport {
    pub state: AssignmentState,
    pub name: Option<String>,
    pub id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: &'static str,
    pub message: String,
    pub fix: String,
}

impl Finding {
    pub fn new(code: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            code,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl RegistryReport {
    /// A report that says nothing yet: allowed, ok, everything unknown.
    pub fn new(registry: &str, attachment: Option<String>) -> Self {
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
                state: AssignmentState::Unknown,
                name: None,
                id: None,
            },
            write: Access::unknown(),
            delete: Access::unknown(),
            ok: true,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// It would not work.
    pub fn problem(&mut self, finding: Finding) {
        self.ok = false;
        self.problems.push(finding);
    }
}

/// The verdict before any Azure call: an invalid spec or a registry the allow-lists refuse ends
/// here. Otherwise the attachment to read Azure for comes back with the report.
pub fn screen(
    target: Target,
    allow_list: &AllowList,
) -> (RegistryReport, Option<DesiredAttachment<RegistryTarget>>) {
    let mut report = RegistryReport::new(&target.registry_text, target.attachment);
    let desired = match target.desired {
        Err(message) => {
            report.problem(Finding::new(
                reasons::INVALID_SPEC,
                message,
                "fix the RegistryAttachment's spec",
            ));
            return (report, None);
        }
        Ok(desired) => desired,
    };
    if let RegistryTarget::Id(registry) = &desired.registry
        && let Err(refused) = allow_list.permits(registry)
    {
        not_allowed(&mut report, refused);
        return (report, None);
    }
    (report, Some(desired))
}

fn not_allowed(report: &mut RegistryReport, refused: RegistryNotAllowed) {
    report.allowed = false;
    report.problem(Finding::new(
        reasons::REGISTRY_NOT_ALLOWED,
        refused.message,
        format!(
            "add the registry to the operator's {} (or use an allowed registry); acr-attach makes no Azure call for it",
            refused.flag
        ),
    ));
}

/// How a registry named by name was found: refused before its list was read, looked up (or
/// not), then admitted by the allow-list or not. Returns the attachment to evaluate, if any.
pub fn located(
    report: &mut RegistryReport,
    requested: DesiredAttachment<RegistryTarget>,
    found: Result<RegistryId, Located>,
    allow_list: &AllowList,
) -> Option<DesiredAttachment> {
    let registry = match found {
        Ok(registry) => registry,
        Err(Located::NotAllowed(refused)) => {
            not_allowed(report, refused);
            return None;
        }
        Err(Located::Failed(failure)) => {
            report.problem(Finding::new(
                failure.reason,
                failure.message,
                "fix spec.registry (name, resourceGroup, subscriptionId), or name the registry by spec.registry.resourceId",
            ));
            return None;
        }
    };
    report.registry = registry.to_string();
    if let Err(refused) = allow_list.permits(&registry) {
        not_allowed(report, refused);
        return None;
    }
    Some(requested.with_registry(registry))
}

/// Why a registry name did not lead to a registry.
#[derive(Debug)]
pub enum Located {
    /// The allow-list refuses the subscription or resource group the name is looked up in.
    NotAllowed(RegistryNotAllowed),
    /// No default subscription, the list could not be read, or no single match.
    Failed(Failure),
}

/// Fills in `report` (fresh from [`screen`]) from what ARM said about the registry. The first
/// fact that rules the attachment out is its problem, and evaluation stops there.
pub fn evaluate(
    report: &mut RegistryReport,
    desired: &DesiredAttachment,
    facts: &Result<RegistryFacts, ArmError>,
    context: &Context,
) {
    if let Err(stop) = evaluate_steps(report, desired, facts, context) {
        report.problem(stop);
    }
}

fn evaluate_steps(
    report: &mut RegistryReport,
    desired: &DesiredAttachment,
    facts: &Result<RegistryFacts, ArmError>,
    context: &Context,
) -> Result<(), Finding> {
    let facts = facts.as_ref().map_err(|e| unreadable("the registry", e))?;
    let intent = intent(report, desired, &facts.registry, context)?;
    let assignments = (facts.assignments.as_ref())
        .map_err(|e| unreadable("the registry's role assignments", e))?;
    let attachment = report.attachment.clone().unwrap_or_default();
    report.assignment = assignment(&intent, context.owner, &attachment, assignments);
    if facts.registry.mode == Some(PermissionsMode::AbacRepository) {
        let strays = ignored_acr_pull(assignments, &intent.principal);
        report.warnings.extend(strays);
        if !desired.catalog_listing {
            report
                .warnings
                .extend(catalog_listing_missing(assignments, &intent.principal));
        }
    }
    let permissions =
        (facts.permissions.as_ref()).map_err(|e| unreadable("acr-attach's own permissions", e))?;
    let own = facts.own.as_ref().and_then(|r| r.as_ref().ok());
    let request = Request {
        role_definition_id: intent.role.definition_guid().to_string(),
        principal_type: PRINCIPAL_TYPE.to_string(),
        principal_id: intent.principal.to_string(),
    };
    let access = |action| delegation::access(permissions, own.map(Vec::as_slice), action, &request);
    report.write = access(Action::Write);
    report.delete = access(Action::Delete);
    judge_access(report, intent.role, intent.registry.name());
    Ok(())
}

/// The grant the operator would make on this registry: allowed by its login server, the role
/// for its mode, and the principal.
fn intent(
    report: &mut RegistryReport,
    desired: &DesiredAttachment,
    registry: &Registry,
    context: &Context,
) -> Result<Grant, Finding> {
    report.login_server = registry.login_server.clone();
    report.permissions_mode = registry.mode.map(PermissionsMode::as_arm);
    if let (Some(suffix), Some(login_server)) = (context.login_suffix, &registry.login_server)
        && let Err(refused) = login_server_allowed(login_server, suffix)
    {
        report.allowed = false;
        return Err(Finding::new(
            reasons::REGISTRY_NOT_ALLOWED,
            refused.message,
            "run acr-attach for the registry's cloud (--cloud), or pass --registry-suffix",
        ));
    }
    let (principal, source) = principal(desired, context.kubelet)?;
    let resolved = Resolved {
        principal: principal.clone(),
        kind: crate::model::PrincipalType::ServicePrincipal,
        source: "Spec",
    };
    let grant = wanted_grants(desired, registry.mode, &[resolved])
        .map_err(|p| Finding::new(p.reason, p.message, "change spec.role or spec.repositories"))?
        .into_iter()
        .next()
        .ok_or_else(|| {
            Finding::new(
                reasons::INVALID_SPEC,
                "no principal to check",
                "set spec.principals",
            )
        })?;
    report.role = Some(grant.role.short_name());
    report.role_definition_id = Some(grant.role.definition_guid());
    report.principal = Some(PrincipalReport {
        object_id: principal.to_string(),
        source,
    });
    Ok(grant)
}

/// A read that failed, with what to do about it.
fn unreadable(what: &str, error: &ArmError) -> Finding {
    let failure = error.classify();
    let fix = match failure.reason {
        reasons::AUTHORIZATION_FAILED => {
            "grant acr-attach's identity read access (Role Based Access Control Administrator includes */read) on the registry"
        }
        reasons::REGISTRY_NOT_FOUND => "fix the registry resource id",
        _ => "retry; if it persists, check connectivity to Azure Resource Manager",
    };
    Finding::new(
        failure.reason,
        format!("cannot read {what}: {}", failure.message),
        fix,
    )
}

fn principal(
    desired: &DesiredAttachment,
    kubelet: &Result<PrincipalId, Finding>,
) -> Result<(PrincipalId, PrincipalSource), Finding> {
    // `check` looks at the first principal an attachment names.
    match desired.principals.first() {
        Some(RequestedPrincipal::Explicit { principal, .. }) => {
            Ok((principal.clone(), PrincipalSource::Spec))
        }
        Some(RequestedPrincipal::Identity(identity)) => Err(Finding::new(
            reasons::IDENTITY_NOT_FOUND,
            format!("check does not resolve user-assigned identities yet ({identity})"),
            "name the identity's principalId as objectId to check it",
        )),
        Some(RequestedPrincipal::KubeletIdentity) | None => {
            kubelet.clone().map(|id| (id, PrincipalSource::Kubelet))
        }
    }
}

/// Whether the grant exists, decided as the controller decides it (`plan`).
fn assignment(
    grant: &Grant,
    owner: &OwnerId,
    attachment: &str,
    observed: &[RoleAssignment],
) -> AssignmentReport {
    let wanted = [grant.clone()];
    let planned = plan(&PlanInput {
        attachment,
        owner,
        wanted: &wanted,
        existing: observed,
        listed: &HashSet::new(),
        owned: &[],
        claims: &Claims::default(),
    });
    let name_of = |id: &str| {
        (observed.iter())
            .find(|a| a.id == id)
            .map(|a| a.name.to_string())
    };
    match planned.steps.into_iter().next().map(|step| step.step) {
        Some(Step::Present {
            assignment_id,
            ownership,
        }) => AssignmentReport {
            state: match ownership {
                Ownership::Created | Ownership::Shared => AssignmentState::Created,
                Ownership::Adopted => AssignmentState::Adopted,
            },
            name: name_of(&assignment_id),
            id: Some(assignment_id),
        },
        Some(Step::Join { assignment, .. }) => AssignmentReport {
            state: AssignmentState::Adopted,
            name: Some(assignment.name.to_string()),
            id: Some(assignment.id),
        },
        other => {
            let name = match other {
                Some(Step::Put { name, .. }) => name,
                _ => grant.name(owner, attachment),
            };
            AssignmentReport {
                state: AssignmentState::Missing,
                id: Some(name.id_at(&grant.registry)),
                name: Some(name.to_string()),
            }
        }
    }
}

/// On an ABAC registry, AcrPull for the principal grants nothing: one warning per assignment.
fn ignored_acr_pull(assignments: &[RoleAssignment], principal: &PrincipalId) -> Vec<Finding> {
    assignments
        .iter()
        .filter(|a| {
            a.role() == Some(PullRole::AcrPull)
                && a.principal_id.eq_ignore_ascii_case(principal.as_str())
        })
        .map(|stray| {
            Finding::new(
                IGNORED_ACR_PULL,
                format!(
                    "AcrPull assignment {} for {principal} is ignored: this registry uses ABAC repository permissions, where the kubelet pulls with Container Registry Repository Reader",
                    stray.name
                ),
                format!(
                    "once Repository Reader is in place, remove it: az role assignment delete --ids {}",
                    stray.id
                ),
            )
        })
        .collect()
}

/// Repository roles leave catalog listing out on ABAC registries; some node bootstrap paths need
/// it. A warning when the principal holds no Catalog Lister there.
fn catalog_listing_missing(
    assignments: &[RoleAssignment],
    principal: &PrincipalId,
) -> Option<Finding> {
    let listed = assignments.iter().any(|a| {
        a.role() == Some(PullRole::CatalogLister)
            && a.principal_id.eq_ignore_ascii_case(principal.as_str())
    });
    (!listed).then(|| {
        Finding::new(
            CATALOG_LISTING_MISSING,
            format!(
                "{principal} cannot list this ABAC registry's catalog: Container Registry Repository Reader excludes catalog listing"
            ),
            "if anything on the nodes lists repositories, set spec.catalogListing: true",
        )
    })
}

/// Write is needed now for a missing assignment (a problem otherwise) and later to repair one
/// (a warning otherwise). Delete is needed on detach, except for an adopted assignment, which
/// acr-attach never deletes; without write, the write finding already says what to grant.
fn judge_access(report: &mut RegistryReport, role: PullRole, registry_name: &str) {
    if !report.write.permits() {
        let (message, fix) = write_gap(&report.write, role, registry_name);
        if report.assignment.state == AssignmentState::Missing {
            report.problem(Finding::new(reasons::AUTHORIZATION_FAILED, message, fix));
        } else {
            report.warnings.push(Finding::new(
                CANNOT_REPAIR,
                format!(
                    "{message}; the assignment exists, but acr-attach could not recreate it after drift or a mode change"
                ),
                fix,
            ));
        }
    } else if !report.delete.permits() && report.assignment.state != AssignmentState::Adopted {
        report.warnings.push(Finding::new(
            reasons::DETACH_BLOCKED,
            format!(
                "acr-attach's identity may not perform '{}' for {} on {registry_name}, so deleting the attachment would be blocked",
                delegation::DELETE,
                role.display_name()
            ),
            "grant roleAssignments/delete with the same condition (Role Based Access Control Administrator has it), or use deletionPolicy: Orphan",
        ));
    }
}

/// Why the operator may not write the assignment it needs, and the grant that fixes it.
fn write_gap(write: &Access, role: PullRole, registry_name: &str) -> (String, String) {
    if write.state == AccessState::Conditioned {
        return (
            format!(
                "acr-attach's identity may write role assignments on {registry_name} only under a condition: {}; it needs {} for {PRINCIPAL_TYPE}",
                delegation::describe(&write.conditions),
                role.display_name()
            ),
            format!(
                "add {} ({}) to the RoleDefinitionId sets (@Request and @Resource) of the condition on acr-attach's role assignment (README, Install)",
                role.display_name(),
                role.definition_guid()
            ),
        );
    }
    (
        format!(
            "acr-attach's identity may not perform '{}' on {registry_name}: none of its role assignments at or above the registry grants it",
            delegation::WRITE
        ),
        "grant it \"Role Based Access Control Administrator\" on the registry or its resource group, conditioned to AcrPull and Container Registry Repository Reader for service principals (README, Install)".to_string(),
    )
}

/// The kubelet identity from the AKS cluster's `identityProfile`, as `check` read it.
pub fn kubelet_from_cluster(
    cluster: &ClusterId,
    read: Result<Option<String>, ArmError>,
) -> Result<PrincipalId, Finding> {
    match read {
        Ok(Some(oid)) => PrincipalId::parse(&oid).map_err(|e| {
            Finding::new(
                reasons::KUBELET_IDENTITY_MISSING,
                format!("the cluster's kubelet identity is not an object id: {e}"),
                "pass --kubelet-object-id",
            )
        }),
        Ok(None) => Err(Finding::new(
            reasons::KUBELET_IDENTITY_MISSING,
            format!(
                "the AKS cluster {cluster} has no identityProfile.kubeletidentity (a service-principal cluster?)"
            ),
            "pass --kubelet-object-id, or set spec.principal.objectId",
        )),
        Err(e) => {
            let failure = e.classify();
            Err(Finding::new(
                failure.reason,
                format!("cannot read the kubelet identity: {}", failure.message),
                "grant acr-attach's identity Reader on the AKS cluster, or pass --kubelet-object-id",
            ))
        }
    }
}

/// The cluster's kubelet identity was not read, because no attachment checked uses it.
pub fn kubelet_not_read() -> Finding {
    Finding::new(
        reasons::KUBELET_IDENTITY_MISSING,
        "not read (no attachment uses it)",
        "",
    )
}

/// Neither --kubelet-object-id nor --cluster-resource-id.
pub fn kubelet_unconfigured() -> Finding {
    Finding::new(
        reasons::NO_PRINCIPAL_CONFIGURED,
        "no kubelet identity is configured, so attachments without spec.principal have no principal",
        "pass --cluster-resource-id (or --kubelet-object-id), as the operator's own flags should",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::validate::{Deletion, RequestedRole};
    use crate::model::azure::Operation;
    use crate::model::{RegistryId, RoleAssignmentName};

    const REGISTRY: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/shared";
    const KUBELET: &str = "11111111-1111-1111-1111-111111111111";
    const SPEC_PRINCIPAL: &str = "22222222-2222-2222-2222-222222222222";
    const LEGACY: Option<PermissionsMode> = Some(PermissionsMode::Legacy);
    const ABAC: Option<PermissionsMode> = Some(PermissionsMode::AbacRepository);
    const OWNER: &[&str] = &["*"];
    const READER: &[&str] = &["*/read"];

    fn registry_id() -> RegistryId {
        RegistryId::parse(REGISTRY).unwrap()
    }

    fn desired(principal: RequestedPrincipal) -> DesiredAttachment {
        DesiredAttachment {
            registry: registry_id(),
            role: RequestedRole::Auto,
            principals: vec![principal],
            repositories: Vec::new(),
            catalog_listing: false,
            deletion: Deletion::Delete,
        }
    }

    fn kubelet() -> PrincipalId {
        PrincipalId::parse(KUBELET).unwrap()
    }

    fn owner() -> OwnerId {
        OwnerId::new("cluster-a")
    }

    fn assignment_of(name: &str, role: PullRole, principal: &str) -> RoleAssignment {
        RoleAssignment {
            id: format!("{REGISTRY}/providers/Microsoft.Authorization/roleAssignments/{name}"),
            name: RoleAssignmentName::from_arm(name),
            scope: REGISTRY.to_string(),
            role_definition_id: role.definition_id("00000000-0000-0000-0000-000000000001"),
            principal_id: principal.to_string(),
            condition: None,
            description: None,
            principal_type: None,
        }
    }

    /// The AcrPull assignment the operator would create for the kubelet identity.
    fn ours() -> RoleAssignment {
        let name =
            RoleAssignmentName::derive(&registry_id(), &kubelet(), PullRole::AcrPull, &owner());
        assignment_of(name.as_str(), PullRole::AcrPull, KUBELET)
    }

    /// The same grant under a name acr-attach did not derive.
    fn foreign() -> RoleAssignment {
        assignment_of(
            "99999999-9999-9999-9999-999999999999",
            PullRole::AcrPull,
            KUBELET,
        )
    }

    fn permission(actions: &[&str]) -> Permission {
        Permission {
            actions: actions.iter().map(|s| s.to_string()).collect(),
            ..Permission::default()
        }
    }

    fn facts(
        mode: Option<PermissionsMode>,
        assignments: &[RoleAssignment],
        permissions: &[Permission],
    ) -> Result<RegistryFacts, ArmError> {
        Ok(RegistryFacts {
            registry: Registry {
                id: REGISTRY.to_string(),
                login_server: Some("shared.azurecr.io".to_string()),
                mode,
            },
            assignments: Ok(assignments.to_vec()),
            permissions: Ok(permissions.to_vec()),
            own: None,
        })
    }

    fn forbidden(operation: Operation) -> ArmError {
        ArmError::Response {
            operation,
            target: REGISTRY.to_string(),
            status: 403,
            code: "AuthorizationFailed".to_string(),
            message: "no".to_string(),
            retry_after: None,
            request_id: None,
        }
    }

    fn run_with(
        desired: &DesiredAttachment,
        facts: &Result<RegistryFacts, ArmError>,
        kubelet: &Result<PrincipalId, Finding>,
        login_suffix: Option<&str>,
    ) -> RegistryReport {
        let mut report = RegistryReport::new(REGISTRY, Some("shared".to_string()));
        let owner = owner();
        let context = Context {
            owner: &owner,
            kubelet,
            login_suffix,
        };
        evaluate(&mut report, desired, facts, &context);
        report
    }

    fn run(desired: &DesiredAttachment, facts: &Result<RegistryFacts, ArmError>) -> RegistryReport {
        run_with(desired, facts, &Ok(kubelet()), Some(".azurecr.io"))
    }

    /// The kubelet identity's attachment, on a registry in `mode` that holds `assignments`, for
    /// an operator whose one permissions entry has `actions`.
    fn check(
        mode: Option<PermissionsMode>,
        assignments: &[RoleAssignment],
        actions: &[&str],
    ) -> RegistryReport {
        let want = desired(RequestedPrincipal::KubeletIdentity);
        run(&want, &facts(mode, assignments, &[permission(actions)]))
    }

    fn codes(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.code).collect()
    }

    #[test]
    fn screening_stops_invalid_specs_and_refused_registries_before_azure() {
        let target = |desired| Target {
            attachment: Some("a".to_string()),
            registry_text: REGISTRY.to_string(),
            desired,
        };
        let anything = AllowList::default();
        let (report, query) = screen(target(Err("spec.role: bad".to_string())), &anything);
        assert!(query.is_none());
        assert_eq!(codes(&report.problems), [reasons::INVALID_SPEC]);
        assert!(!report.ok && report.allowed);
        assert_eq!(report.name, "shared");

        let other_subscription = ["00000000-0000-0000-0000-000000000002".to_string()];
        let elsewhere = AllowList::new(&other_subscription, &[], &[]).unwrap();
        let want = desired(RequestedPrincipal::KubeletIdentity);
        let as_target = |want: &DesiredAttachment| {
            let id = RegistryTarget::Id(want.registry.clone());
            Ok(want.clone().with_registry(id))
        };
        let (report, query) = screen(target(as_target(&want)), &elsewhere);
        assert!(query.is_none());
        assert!(!report.allowed && !report.ok);
        assert_eq!(codes(&report.problems), [reasons::REGISTRY_NOT_ALLOWED]);
        assert!(report.problems[0].fix.contains("--allowed-subscriptions"));

        let (report, query) = screen(target(as_target(&want)), &anything);
        assert_eq!(query, as_target(&want).ok());
        assert!(report.ok && report.problems.is_empty());
    }

    #[test]
    fn an_existing_grant_is_created_under_our_name_or_adopted_under_another() {
        let report = check(LEGACY, &[foreign(), ours()], OWNER);
        assert_eq!(report.assignment.state, AssignmentState::Created);
        assert_eq!(
            report.assignment.name.as_deref(),
            Some(ours().name.as_str())
        );
        assert_eq!(report.assignment.id, Some(ours().id));
        assert_eq!(report.role, Some("AcrPull"));
        assert_eq!(report.permissions_mode, Some("LegacyRegistryPermissions"));
        assert!(report.ok && report.warnings.is_empty(), "{report:?}");

        let report = check(LEGACY, &[foreign()], OWNER);
        assert_eq!(report.assignment.state, AssignmentState::Adopted);
        assert_eq!(
            report.assignment.name.as_deref(),
            Some(foreign().name.as_str())
        );
    }

    #[test]
    fn a_missing_grant_is_fine_only_when_the_operator_may_write_it() {
        let principal = PrincipalId::parse(SPEC_PRINCIPAL).unwrap();
        let want = desired(RequestedPrincipal::Explicit {
            principal: principal.clone(),
            kind: crate::model::PrincipalType::ServicePrincipal,
        });
        let report = run(&want, &facts(ABAC, &[], &[permission(OWNER)]));
        assert_eq!(report.assignment.state, AssignmentState::Missing);
        assert_eq!(report.role, Some("RepositoryReader"));
        let reported = report.principal.as_ref().unwrap();
        assert_eq!(reported.object_id, SPEC_PRINCIPAL);
        assert_eq!(reported.source, PrincipalSource::Spec);
        let expected = RoleAssignmentName::derive(
            &registry_id(),
            &principal,
            PullRole::RepositoryReader,
            &owner(),
        );
        assert_eq!(report.assignment.name.as_deref(), Some(expected.as_str()));
        assert_eq!(report.assignment.id, Some(expected.id_at(&registry_id())));
        assert!(report.ok);

        let report = run(&want, &facts(ABAC, &[], &[permission(READER)]));
        assert!(!report.ok);
        assert_eq!(codes(&report.problems), [reasons::AUTHORIZATION_FAILED]);
        let problem = &report.problems[0];
        assert!(problem.message.contains(delegation::WRITE));
        assert!(
            problem
                .fix
                .contains("Role Based Access Control Administrator")
        );
    }

    #[test]
    fn without_write_an_existing_grant_only_warns_that_it_cannot_be_repaired() {
        let report = check(LEGACY, &[ours()], READER);
        assert!(report.ok);
        assert_eq!(codes(&report.warnings), [CANNOT_REPAIR]);
        assert_eq!(report.write.state, AccessState::Denied);
    }

    #[test]
    fn a_conditioned_write_for_another_role_names_the_role_to_add() {
        let only_pull = format!(
            "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{}}}",
            PullRole::ACR_PULL_GUID
        );
        let conditioned = Permission {
            condition: Some(only_pull),
            ..permission(OWNER)
        };
        let want = desired(RequestedPrincipal::KubeletIdentity);
        let report = run(&want, &facts(ABAC, &[], &[conditioned]));
        assert_eq!(report.write.state, AccessState::Conditioned);
        assert_eq!(codes(&report.problems), [reasons::AUTHORIZATION_FAILED]);
        let message = &report.problems[0].message;
        assert!(
            message.contains("only AcrPull for any principal type"),
            "{message}"
        );
        assert!(
            message.contains("it needs Container Registry Repository Reader for ServicePrincipal")
        );
        assert!(
            report.problems[0]
                .fix
                .contains(PullRole::REPOSITORY_READER_GUID)
        );
    }

    #[test]
    fn delete_matters_unless_the_assignment_is_adopted() {
        let write_only = &[delegation::WRITE];
        let created = check(LEGACY, &[ours()], write_only);
        assert!(created.ok);
        assert_eq!(codes(&created.warnings), [reasons::DETACH_BLOCKED]);
        let missing = check(LEGACY, &[], write_only);
        assert_eq!(codes(&missing.warnings), [reasons::DETACH_BLOCKED]);
        let adopted = check(LEGACY, &[foreign()], write_only);
        assert!(adopted.ok && adopted.warnings.is_empty(), "{adopted:?}");
    }

    #[test]
    fn an_acr_pull_grant_on_an_abac_registry_is_a_warning() {
        let report = check(ABAC, &[ours()], OWNER);
        assert!(report.ok);
        assert_eq!(report.assignment.state, AssignmentState::Missing);
        assert_eq!(
            codes(&report.warnings),
            [IGNORED_ACR_PULL, CATALOG_LISTING_MISSING]
        );
        assert!(report.warnings[0].fix.contains(&ours().id));
        let mut listing = desired(RequestedPrincipal::KubeletIdentity);
        listing.catalog_listing = true;
        let asked = run(&listing, &facts(ABAC, &[], &[permission(OWNER)]));
        assert!(!codes(&asked.warnings).contains(&CATALOG_LISTING_MISSING));
    }

    #[test]
    fn the_first_fact_that_rules_the_attachment_out_is_its_only_problem() {
        let want = desired(RequestedPrincipal::KubeletIdentity);
        let report = run(&want, &Err(forbidden(Operation::GetRegistry)));
        assert_eq!(codes(&report.problems), [reasons::AUTHORIZATION_FAILED]);
        assert!(
            report.problems[0]
                .message
                .starts_with("cannot read the registry: ")
        );
        assert!(report.problems[0].fix.contains("read access"));
        assert_eq!(report.assignment.state, AssignmentState::Unknown);
        assert_eq!(report.write.state, AccessState::Unknown);

        let report = check(None, &[], OWNER);
        assert_eq!(codes(&report.problems), [reasons::REGISTRY_MODE_UNKNOWN]);
        assert_eq!(report.role, None);

        let unconfigured = Err(kubelet_unconfigured());
        let report = run_with(&want, &facts(LEGACY, &[], &[]), &unconfigured, None);
        assert_eq!(codes(&report.problems), [reasons::NO_PRINCIPAL_CONFIGURED]);
        assert!(report.principal.is_none());

        let mut no_permissions = facts(LEGACY, &[], &[]);
        if let Ok(f) = &mut no_permissions {
            f.permissions = Err(forbidden(Operation::ListPermissions));
        }
        let report = run(&want, &no_permissions);
        assert_eq!(codes(&report.problems), [reasons::AUTHORIZATION_FAILED]);
        let message = &report.problems[0].message;
        assert!(message.starts_with("cannot read acr-attach's own permissions"));
        assert_eq!(report.assignment.state, AssignmentState::Missing);
        assert_eq!(report.write.state, AccessState::Unknown);
    }

    #[test]
    fn a_login_server_outside_the_clouds_suffix_is_not_allowed() {
        let want = desired(RequestedPrincipal::KubeletIdentity);
        let read = facts(LEGACY, &[], &[permission(OWNER)]);
        let report = run_with(&want, &read, &Ok(kubelet()), Some(".azurecr.cn"));
        assert!(!report.allowed && !report.ok);
        assert_eq!(codes(&report.problems), [reasons::REGISTRY_NOT_ALLOWED]);
        assert_eq!(report.login_server.as_deref(), Some("shared.azurecr.io"));
        assert!(report.role.is_none());
    }

    #[test]
    fn the_kubelet_identity_read_from_the_cluster_becomes_a_principal_or_a_finding() {
        let cluster = ClusterId::parse("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks").unwrap();
        let read = |answer| kubelet_from_cluster(&cluster, answer);
        assert_eq!(read(Ok(Some(KUBELET.to_uppercase()))), Ok(kubelet()));
        let code = |answer| read(answer).unwrap_err().code;
        assert_eq!(
            code(Ok(Some("nope".to_string()))),
            reasons::KUBELET_IDENTITY_MISSING
        );
        assert_eq!(code(Ok(None)), reasons::KUBELET_IDENTITY_MISSING);
        let forbidden = forbidden(Operation::GetManagedCluster);
        assert_eq!(code(Err(forbidden)), reasons::AUTHORIZATION_FAILED);
    }
}
