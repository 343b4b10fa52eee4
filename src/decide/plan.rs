//! What to do in Azure, decided from plain data: which role to use for a registry's mode, whether
//! the grant exists (ours or someone else's), what to create, what stale assignment of ours to
//! retire, and what to delete on detach. Never plans to delete an assignment whose name is not the
//! one acr-attach derives, so nothing the operator did not create can be deleted.

use std::collections::HashSet;

use crate::azure::RoleAssignment;
use crate::crd::{AssignmentStatus, DeletionPolicy, Ownership, RegistryAttachment};
use crate::decide::reasons;
use crate::decide::validate::RequestedRole;
use crate::model::{PermissionsMode, PrincipalId, PullRole, RegistryId, RoleAssignmentName};

/// The grant that should exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    pub registry: RegistryId,
    pub principal: PrincipalId,
    pub role: PullRole,
}

impl Intent {
    pub fn name(&self) -> RoleAssignmentName {
        RoleAssignmentName::derive(&self.registry, &self.principal, self.role)
    }
    pub fn assignment_id(&self) -> String {
        self.name().id_at(&self.registry)
    }
}

/// A role that cannot be used on this registry; reported as Stalled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleProblem {
    pub reason: &'static str,
    pub message: String,
}

/// Auto follows the registry's mode; an explicit role that the mode ignores is refused rather
/// than applied, because it would look attached while pulls fail.
pub fn choose_role(
    requested: RequestedRole,
    mode: Option<PermissionsMode>,
) -> Result<PullRole, RoleProblem> {
    match (requested, mode) {
        (RequestedRole::Auto, Some(PermissionsMode::Legacy)) => Ok(PullRole::AcrPull),
        (RequestedRole::Auto, Some(PermissionsMode::AbacRepository)) => Ok(PullRole::RepositoryReader),
        (RequestedRole::Auto, None) => Err(RoleProblem {
            reason: reasons::REGISTRY_MODE_UNKNOWN,
            message: "the registry did not report properties.roleAssignmentMode, so the role cannot be chosen; set spec.role to AcrPull or RepositoryReader".to_string(),
        }),
        (RequestedRole::Fixed(PullRole::AcrPull), Some(PermissionsMode::AbacRepository)) => {
            Err(RoleProblem {
                reason: reasons::ROLE_NOT_EFFECTIVE,
                message: "the registry uses ABAC repository permissions, which ignore AcrPull; set spec.role to Auto or RepositoryReader".to_string(),
            })
        }
        (RequestedRole::Fixed(PullRole::RepositoryReader), Some(PermissionsMode::Legacy)) => {
            Err(RoleProblem {
                reason: reasons::ROLE_NOT_EFFECTIVE,
                message: "the registry uses classic registry permissions, where Container Registry Repository Reader grants no pull; set spec.role to Auto or AcrPull".to_string(),
            })
        }
        (RequestedRole::Fixed(role), _) => Ok(role),
    }
}

/// How the intended grant is (or will be) satisfied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ensure {
    /// It exists already; no write.
    Present {
        assignment_id: String,
        ownership: Ownership,
    },
    /// PUT it under the derived name.
    Create { name: RoleAssignmentName },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyPlan {
    pub ensure: Ensure,
    /// An assignment we created earlier for another principal, role or registry; deleted only
    /// after the new grant exists, so pulls never lose access in between.
    pub retire: Option<String>,
}

pub fn plan_apply(
    intent: &Intent,
    observed: &[RoleAssignment],
    previous: Option<&AssignmentStatus>,
    claimed_by_others: &HashSet<String>,
) -> ApplyPlan {
    let ours = intent.name();
    let matching: Vec<&RoleAssignment> = observed
        .iter()
        .filter(|assignment| assignment.grants(&intent.registry, &intent.principal, intent.role))
        .collect();
    let ensure = if let Some(own) = matching.iter().find(|a| a.name == ours) {
        Ensure::Present {
            assignment_id: own.id.clone(),
            ownership: Ownership::Created,
        }
    } else if let Some(foreign) = matching.first() {
        Ensure::Present {
            assignment_id: foreign.id.clone(),
            ownership: Ownership::Adopted,
        }
    } else {
        Ensure::Create { name: ours.clone() }
    };

    let retire = previous
        .filter(|previous| previous.ownership == Ownership::Created)
        .and_then(created_assignment_id)
        .filter(|id| !id.eq_ignore_ascii_case(&intent.assignment_id()))
        .filter(|id| !claimed_by_others.contains(&id.to_ascii_lowercase()));
    ApplyPlan { ensure, retire }
}

/// The id of an assignment recorded in status, if and only if its name is the one acr-attach
/// derives for its own registry, principal and role: proof that we made it.
fn created_assignment_id(record: &AssignmentStatus) -> Option<String> {
    let (scope, name) = record
        .id
        .rsplit_once("/providers/Microsoft.Authorization/roleAssignments/")
        .or_else(|| {
            // ARM ids may come back in any case.
            let lower = record.id.to_ascii_lowercase();
            let at = lower.rfind("/providers/microsoft.authorization/roleassignments/")?;
            Some((
                &record.id[..at],
                &record.id[at + "/providers/microsoft.authorization/roleassignments/".len()..],
            ))
        })?;
    let intent = Intent {
        registry: RegistryId::parse(scope).ok()?,
        principal: PrincipalId::parse(&record.principal_id).ok()?,
        role: PullRole::from_short_name(&record.role)?,
    };
    (intent.name().as_str().eq_ignore_ascii_case(name)).then(|| intent.assignment_id())
}

/// The intent recorded in an attachment's status (written before any PUT).
pub fn recorded_intent(attachment: &RegistryAttachment) -> Option<Intent> {
    let status = attachment.status.as_ref()?;
    Some(Intent {
        registry: RegistryId::parse(&status.registry.as_ref()?.id).ok()?,
        principal: PrincipalId::parse(&status.principal.as_ref()?.object_id).ok()?,
        role: PullRole::from_short_name(status.role.as_deref()?)?,
    })
}

/// Lower-cased ids of the assignments that live attachments other than `myself` rely on; those
/// are never retired or deleted on `myself`'s behalf.
pub fn claims_of_others<'a>(
    myself: &str,
    attachments: impl IntoIterator<Item = &'a RegistryAttachment>,
) -> HashSet<String> {
    attachments
        .into_iter()
        .filter(|other| other.metadata.name.as_deref() != Some(myself) && !other.is_deleting())
        .flat_map(|other| {
            let recorded = other
                .status
                .as_ref()
                .and_then(|status| status.assignment.as_ref())
                .map(|assignment| assignment.id.clone());
            let intended = recorded_intent(other).map(|intent| intent.assignment_id());
            recorded.into_iter().chain(intended)
        })
        .map(|id| id.to_ascii_lowercase())
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CleanupPlan {
    /// Remove the finalizer without touching Azure.
    Release { why: String },
    /// Delete these assignments (all ours), then release.
    Delete { assignment_ids: Vec<String> },
}

pub fn plan_cleanup(
    attachment: &RegistryAttachment,
    claimed_by_others: &HashSet<String>,
) -> CleanupPlan {
    if attachment.skip_cleanup() {
        return CleanupPlan::Release {
            why: format!(
                "annotation {} is set: left Azure untouched",
                crate::crd::SKIP_CLEANUP_ANNOTATION
            ),
        };
    }
    if attachment.spec.deletion_policy == DeletionPolicy::Orphan {
        return CleanupPlan::Release {
            why: "deletionPolicy is Orphan: the role assignment stays in Azure".to_string(),
        };
    }
    let recorded = attachment
        .status
        .as_ref()
        .and_then(|status| status.assignment.as_ref());
    let adopted_intent = recorded.is_some_and(|record| record.ownership == Ownership::Adopted);
    let mut candidates: Vec<String> = recorded
        .filter(|record| record.ownership == Ownership::Created)
        .and_then(created_assignment_id)
        .into_iter()
        .collect();
    if let Some(intent) = recorded_intent(attachment) {
        let adopted_same = adopted_intent
            && recorded.is_some_and(|record| {
                record
                    .principal_id
                    .eq_ignore_ascii_case(intent.principal.as_str())
                    && record.role == intent.role.short_name()
            });
        if !adopted_same {
            candidates.push(intent.assignment_id());
        }
    }
    let mut seen = HashSet::new();
    candidates.retain(|id| seen.insert(id.to_ascii_lowercase()));
    let before = candidates.len();
    candidates.retain(|id| !claimed_by_others.contains(&id.to_ascii_lowercase()));
    if candidates.is_empty() {
        let why = if before > 0 {
            "another RegistryAttachment still needs the role assignment: kept it".to_string()
        } else if adopted_intent {
            "the role assignment was adopted, not created, by acr-attach: kept it".to_string()
        } else {
            "acr-attach created no role assignment for this attachment".to_string()
        };
        return CleanupPlan::Release { why };
    }
    CleanupPlan::Delete {
        assignment_ids: candidates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        RegistryAttachmentSpec, RegistryAttachmentStatus, RegistryReference, ResolvedPrincipal,
        ResolvedRegistry, RoleChoice,
    };

    const REGISTRY: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/shared";
    const KUBELET: &str = "11111111-1111-1111-1111-111111111111";
    const NEW_KUBELET: &str = "22222222-2222-2222-2222-222222222222";

    fn intent(principal: &str, role: PullRole) -> Intent {
        Intent {
            registry: RegistryId::parse(REGISTRY).unwrap(),
            principal: PrincipalId::parse(principal).unwrap(),
            role,
        }
    }

    fn assignment(name: &str, principal: &str, role: PullRole) -> RoleAssignment {
        RoleAssignment {
            id: format!("{REGISTRY}/providers/Microsoft.Authorization/roleAssignments/{name}"),
            name: RoleAssignmentName::from_arm(name),
            scope: REGISTRY.to_string(),
            role_definition_id: format!(
                "/providers/Microsoft.Authorization/roleDefinitions/{}",
                role.definition_guid()
            ),
            principal_id: principal.to_string(),
            condition: None,
            description: None,
        }
    }

    fn record(of: &Intent, ownership: Ownership) -> AssignmentStatus {
        AssignmentStatus {
            id: of.assignment_id(),
            principal_id: of.principal.to_string(),
            role: of.role.short_name().to_string(),
            ownership,
        }
    }

    fn attachment(name: &str, recorded: Option<(&Intent, Ownership)>) -> RegistryAttachment {
        let mut ra = RegistryAttachment::new(
            name,
            RegistryAttachmentSpec {
                registry: RegistryReference {
                    resource_id: REGISTRY.to_string(),
                },
                role: RoleChoice::Auto,
                principal: None,
                deletion_policy: DeletionPolicy::Delete,
            },
        );
        if let Some((intent, ownership)) = recorded {
            ra.status = Some(RegistryAttachmentStatus {
                registry: Some(ResolvedRegistry {
                    id: REGISTRY.to_string(),
                    login_server: None,
                    permissions_mode: None,
                }),
                principal: Some(ResolvedPrincipal {
                    object_id: intent.principal.to_string(),
                    source: "Spec".to_string(),
                }),
                role: Some(intent.role.short_name().to_string()),
                assignment: Some(record(intent, ownership)),
                ..Default::default()
            });
        }
        ra
    }

    #[test]
    fn auto_follows_the_registry_mode_and_explicit_roles_must_work() {
        assert_eq!(
            choose_role(RequestedRole::Auto, Some(PermissionsMode::Legacy)),
            Ok(PullRole::AcrPull)
        );
        assert_eq!(
            choose_role(RequestedRole::Auto, Some(PermissionsMode::AbacRepository)),
            Ok(PullRole::RepositoryReader)
        );
        let refused = choose_role(
            RequestedRole::Fixed(PullRole::AcrPull),
            Some(PermissionsMode::AbacRepository),
        )
        .unwrap_err();
        assert_eq!(refused.reason, reasons::ROLE_NOT_EFFECTIVE);
        assert!(refused.message.contains("spec.role"));
        assert_eq!(
            choose_role(RequestedRole::Auto, None).unwrap_err().reason,
            reasons::REGISTRY_MODE_UNKNOWN
        );
    }

    #[test]
    fn missing_grant_is_created_under_the_derived_name() {
        let want = intent(KUBELET, PullRole::AcrPull);
        let plan = plan_apply(&want, &[], None, &HashSet::new());
        assert_eq!(plan.ensure, Ensure::Create { name: want.name() });
        assert_eq!(plan.retire, None);
    }

    #[test]
    fn an_equivalent_foreign_assignment_is_adopted_not_duplicated() {
        let want = intent(KUBELET, PullRole::AcrPull);
        let foreign = assignment(
            "aaaaaaaa-0000-0000-0000-000000000000",
            KUBELET,
            PullRole::AcrPull,
        );
        let plan = plan_apply(&want, std::slice::from_ref(&foreign), None, &HashSet::new());
        assert_eq!(
            plan.ensure,
            Ensure::Present {
                assignment_id: foreign.id,
                ownership: Ownership::Adopted
            }
        );
    }

    #[test]
    fn conditioned_or_other_role_assignments_do_not_count() {
        let want = intent(KUBELET, PullRole::AcrPull);
        let mut conditioned = assignment(
            "aaaaaaaa-0000-0000-0000-000000000000",
            KUBELET,
            PullRole::AcrPull,
        );
        conditioned.condition = Some("@Resource[x] StringEquals 'y'".to_string());
        let other_role = assignment(
            "bbbbbbbb-0000-0000-0000-000000000000",
            KUBELET,
            PullRole::RepositoryReader,
        );
        let plan = plan_apply(&want, &[conditioned, other_role], None, &HashSet::new());
        assert!(matches!(plan.ensure, Ensure::Create { .. }));
    }

    #[test]
    fn a_changed_principal_retires_our_old_assignment_after_the_new_one() {
        let old = intent(KUBELET, PullRole::AcrPull);
        let new = intent(NEW_KUBELET, PullRole::AcrPull);
        let plan = plan_apply(
            &new,
            &[],
            Some(&record(&old, Ownership::Created)),
            &HashSet::new(),
        );
        assert!(matches!(plan.ensure, Ensure::Create { .. }));
        assert_eq!(plan.retire, Some(old.assignment_id()));
    }

    #[test]
    fn adopted_or_shared_or_unrecognised_assignments_are_never_retired() {
        let old = intent(KUBELET, PullRole::AcrPull);
        let new = intent(KUBELET, PullRole::RepositoryReader);
        let adopted = plan_apply(
            &new,
            &[],
            Some(&record(&old, Ownership::Adopted)),
            &HashSet::new(),
        );
        assert_eq!(adopted.retire, None);
        let claimed: HashSet<String> = [old.assignment_id().to_ascii_lowercase()].into();
        let shared = plan_apply(&new, &[], Some(&record(&old, Ownership::Created)), &claimed);
        assert_eq!(shared.retire, None);
        let mut forged = record(&old, Ownership::Created);
        forged.id = format!(
            "{REGISTRY}/providers/Microsoft.Authorization/roleAssignments/aaaaaaaa-0000-0000-0000-000000000000"
        );
        let unrecognised = plan_apply(&new, &[], Some(&forged), &HashSet::new());
        assert_eq!(unrecognised.retire, None);
    }

    #[test]
    fn cleanup_deletes_only_what_we_created_and_nobody_else_needs() {
        let grant = intent(KUBELET, PullRole::AcrPull);
        let created = attachment("a", Some((&grant, Ownership::Created)));
        assert_eq!(
            plan_cleanup(&created, &HashSet::new()),
            CleanupPlan::Delete {
                assignment_ids: vec![grant.assignment_id()]
            }
        );
        let adopted = attachment("a", Some((&grant, Ownership::Adopted)));
        assert!(matches!(
            plan_cleanup(&adopted, &HashSet::new()),
            CleanupPlan::Release { .. }
        ));
        let other = attachment("b", Some((&grant, Ownership::Created)));
        let claims = claims_of_others("a", [&created, &other]);
        assert!(
            matches!(plan_cleanup(&created, &claims), CleanupPlan::Release { why } if why.contains("another"))
        );
    }

    #[test]
    fn cleanup_honours_orphan_and_the_skip_annotation() {
        let grant = intent(KUBELET, PullRole::AcrPull);
        let mut orphan = attachment("a", Some((&grant, Ownership::Created)));
        orphan.spec.deletion_policy = DeletionPolicy::Orphan;
        assert!(matches!(
            plan_cleanup(&orphan, &HashSet::new()),
            CleanupPlan::Release { .. }
        ));
        let mut skipped = attachment("a", Some((&grant, Ownership::Created)));
        skipped.metadata.annotations = Some(
            [(
                crate::crd::SKIP_CLEANUP_ANNOTATION.to_string(),
                "true".to_string(),
            )]
            .into(),
        );
        assert!(matches!(
            plan_cleanup(&skipped, &HashSet::new()),
            CleanupPlan::Release { .. }
        ));
    }

    #[test]
    fn cleanup_after_a_crash_before_the_status_write_still_finds_our_assignment() {
        // Intent recorded, assignment never recorded: the derived name is still ours to delete.
        let grant = intent(KUBELET, PullRole::AcrPull);
        let mut crashed = attachment("a", Some((&grant, Ownership::Created)));
        if let Some(status) = crashed.status.as_mut() {
            status.assignment = None;
        }
        assert_eq!(
            plan_cleanup(&crashed, &HashSet::new()),
            CleanupPlan::Delete {
                assignment_ids: vec![grant.assignment_id()]
            }
        );
    }
}
