//! What to do in Azure, decided from plain data: which role to use for a registry's mode, whether
//! the grant exists (ours or someone else's), what to create, which stale assignments of ours to
//! retire, and what to delete on detach. Deletions are only ever planned for names acr-attach
//! derives itself (from its owner id and an owned-assignment record), so nothing the operator did
//! not create can be deleted — not even through a tampered status.

use std::collections::HashSet;

use crate::crd::{DeletionPolicy, OwnedAssignment, Ownership, RegistryAttachment};
use crate::decide::reasons;
use crate::decide::validate::RequestedRole;
use crate::model::azure::RoleAssignment;
use crate::model::{
    OwnerId, PermissionsMode, PrincipalId, PullRole, RegistryId, RoleAssignmentName,
};

/// The grant that should exist, and who owns the assignment that provides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    pub registry: RegistryId,
    pub principal: PrincipalId,
    pub role: PullRole,
    pub owner: OwnerId,
}

impl Intent {
    pub fn name(&self) -> RoleAssignmentName {
        RoleAssignmentName::derive(&self.registry, &self.principal, self.role, &self.owner)
    }
    pub fn assignment_id(&self) -> String {
        self.name().id_at(&self.registry)
    }
    /// The status record that lets a later reconcile (or a restarted operator) find it.
    pub fn record(&self) -> OwnedAssignment {
        OwnedAssignment {
            registry_id: self.registry.to_string(),
            principal_id: self.principal.to_string(),
            role: self.role.short_name().to_string(),
        }
    }
    /// The intent an owned-assignment record describes; `None` for a record that does not parse
    /// (it then never leads to a deletion).
    pub fn from_record(record: &OwnedAssignment, owner: &OwnerId) -> Option<Intent> {
        Some(Intent {
            registry: RegistryId::parse(&record.registry_id).ok()?,
            principal: PrincipalId::parse(&record.principal_id).ok()?,
            role: PullRole::from_short_name(&record.role)?,
            owner: owner.clone(),
        })
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
    /// Assignments we created earlier for another principal, role or registry, with the records
    /// that name them; deleted only after the new grant exists, so pulls never lose access.
    pub retire: Vec<(OwnedAssignment, String)>,
}

fn lower(ids: &HashSet<String>, id: &str) -> bool {
    ids.contains(&id.to_ascii_lowercase())
}

pub fn plan_apply(
    intent: &Intent,
    observed: &[RoleAssignment],
    owned: &[OwnedAssignment],
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
    let current = intent.assignment_id();
    let retire = owned
        .iter()
        .filter_map(|record| {
            let id = Intent::from_record(record, &intent.owner)?.assignment_id();
            let keep = id.eq_ignore_ascii_case(&current) || lower(claimed_by_others, &id);
            (!keep).then(|| (record.clone(), id))
        })
        .collect();
    ApplyPlan { ensure, retire }
}

/// Lower-cased ids of the assignments that live attachments other than `myself` currently rely
/// on (their recorded grant); those are never retired or deleted on `myself`'s behalf.
pub fn claims_of_others<'a>(
    myself: &str,
    attachments: impl IntoIterator<Item = &'a RegistryAttachment>,
) -> HashSet<String> {
    attachments
        .into_iter()
        .filter(|other| other.metadata.name.as_deref() != Some(myself) && !other.is_deleting())
        .filter_map(|other| other.status.as_ref()?.assignment.as_ref())
        .map(|assignment| assignment.id.to_ascii_lowercase())
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
    owner: &OwnerId,
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
    let mut candidates: Vec<String> = attachment
        .status
        .iter()
        .flat_map(|status| status.owned_assignments.iter())
        .filter_map(|record| Intent::from_record(record, owner))
        .map(|intent| intent.assignment_id())
        .collect();
    let mut seen = HashSet::new();
    candidates.retain(|id| seen.insert(id.to_ascii_lowercase()));
    let before = candidates.len();
    candidates.retain(|id| !lower(claimed_by_others, id));
    if candidates.is_empty() {
        let adopted = attachment
            .status
            .as_ref()
            .and_then(|status| status.assignment.as_ref())
            .is_some_and(|assignment| assignment.ownership == Ownership::Adopted);
        let why = if before > 0 {
            "another RegistryAttachment still needs the role assignment: kept it".to_string()
        } else if adopted {
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
        AssignmentStatus, RegistryAttachmentSpec, RegistryAttachmentStatus, RegistryReference,
        RoleChoice,
    };

    const REGISTRY: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/shared";
    const KUBELET: &str = "11111111-1111-1111-1111-111111111111";
    const NEW_KUBELET: &str = "22222222-2222-2222-2222-222222222222";

    fn owner() -> OwnerId {
        OwnerId::new("cluster-a")
    }

    fn intent(principal: &str, role: PullRole) -> Intent {
        Intent {
            registry: RegistryId::parse(REGISTRY).unwrap(),
            principal: PrincipalId::parse(principal).unwrap(),
            role,
            owner: owner(),
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

    fn attachment(
        name: &str,
        grant: Option<(&Intent, Ownership)>,
        owned: &[&Intent],
    ) -> RegistryAttachment {
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
        ra.status = Some(RegistryAttachmentStatus {
            assignment: grant.map(|(intent, ownership)| AssignmentStatus {
                id: intent.assignment_id(),
                principal_id: intent.principal.to_string(),
                role: intent.role.short_name().to_string(),
                ownership,
            }),
            owned_assignments: owned.iter().map(|intent| intent.record()).collect(),
            ..Default::default()
        });
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
        let plan = plan_apply(&want, &[], &[], &HashSet::new());
        assert_eq!(plan.ensure, Ensure::Create { name: want.name() });
        assert!(plan.retire.is_empty());
    }

    #[test]
    fn an_equivalent_foreign_assignment_is_adopted_not_duplicated() {
        let want = intent(KUBELET, PullRole::AcrPull);
        let foreign = assignment(
            "aaaaaaaa-0000-0000-0000-000000000000",
            KUBELET,
            PullRole::AcrPull,
        );
        let plan = plan_apply(&want, std::slice::from_ref(&foreign), &[], &HashSet::new());
        assert_eq!(
            plan.ensure,
            Ensure::Present {
                assignment_id: foreign.id,
                ownership: Ownership::Adopted
            }
        );
    }

    #[test]
    fn another_clusters_assignment_is_adopted_not_claimed() {
        // Same registry, principal and role, made by acr-attach in another cluster.
        let want = intent(KUBELET, PullRole::AcrPull);
        let theirs = Intent {
            owner: OwnerId::new("cluster-b"),
            ..want.clone()
        };
        let observed = assignment(theirs.name().as_str(), KUBELET, PullRole::AcrPull);
        let plan = plan_apply(&want, &[observed], &[], &HashSet::new());
        assert!(matches!(
            plan.ensure,
            Ensure::Present {
                ownership: Ownership::Adopted,
                ..
            }
        ));
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
        let plan = plan_apply(&want, &[conditioned, other_role], &[], &HashSet::new());
        assert!(matches!(plan.ensure, Ensure::Create { .. }));
    }

    #[test]
    fn owned_assignments_for_old_principals_or_roles_are_retired() {
        let old = intent(KUBELET, PullRole::AcrPull);
        let new = intent(NEW_KUBELET, PullRole::AcrPull);
        let plan = plan_apply(&new, &[], &[old.record(), new.record()], &HashSet::new());
        assert!(matches!(plan.ensure, Ensure::Create { .. }));
        assert_eq!(plan.retire, vec![(old.record(), old.assignment_id())]);
    }

    #[test]
    fn shared_or_unparseable_records_are_never_retired() {
        let old = intent(KUBELET, PullRole::AcrPull);
        let new = intent(KUBELET, PullRole::RepositoryReader);
        let claimed: HashSet<String> = [old.assignment_id().to_ascii_lowercase()].into();
        assert!(
            plan_apply(&new, &[], &[old.record()], &claimed)
                .retire
                .is_empty()
        );
        let mut garbage = old.record();
        garbage.registry_id = "/subscriptions/x".to_string();
        assert!(
            plan_apply(&new, &[], &[garbage], &HashSet::new())
                .retire
                .is_empty()
        );
    }

    #[test]
    fn cleanup_deletes_only_what_we_created_and_nobody_else_needs() {
        let grant = intent(KUBELET, PullRole::AcrPull);
        let created = attachment("a", Some((&grant, Ownership::Created)), &[&grant]);
        assert_eq!(
            plan_cleanup(&created, &owner(), &HashSet::new()),
            CleanupPlan::Delete {
                assignment_ids: vec![grant.assignment_id()]
            }
        );
        let adopted = attachment("a", Some((&grant, Ownership::Adopted)), &[]);
        assert!(matches!(
            plan_cleanup(&adopted, &owner(), &HashSet::new()),
            CleanupPlan::Release { why } if why.contains("adopted")
        ));
        let other = attachment("b", Some((&grant, Ownership::Created)), &[&grant]);
        let claims = claims_of_others("a", [&created, &other]);
        assert!(matches!(
            plan_cleanup(&created, &owner(), &claims),
            CleanupPlan::Release { why } if why.contains("another")
        ));
    }

    #[test]
    fn cleanup_honours_orphan_and_the_skip_annotation() {
        let grant = intent(KUBELET, PullRole::AcrPull);
        let mut orphan = attachment("a", Some((&grant, Ownership::Created)), &[&grant]);
        orphan.spec.deletion_policy = DeletionPolicy::Orphan;
        assert!(matches!(
            plan_cleanup(&orphan, &owner(), &HashSet::new()),
            CleanupPlan::Release { .. }
        ));
        let mut skipped = attachment("a", Some((&grant, Ownership::Created)), &[&grant]);
        skipped.metadata.annotations = Some(
            [(
                crate::crd::SKIP_CLEANUP_ANNOTATION.to_string(),
                "true".to_string(),
            )]
            .into(),
        );
        assert!(matches!(
            plan_cleanup(&skipped, &owner(), &HashSet::new()),
            CleanupPlan::Release { .. }
        ));
    }

    #[test]
    fn cleanup_after_a_crash_before_the_grant_was_recorded_still_finds_our_assignment() {
        let grant = intent(KUBELET, PullRole::AcrPull);
        let crashed = attachment("a", None, &[&grant]);
        assert_eq!(
            plan_cleanup(&crashed, &owner(), &HashSet::new()),
            CleanupPlan::Delete {
                assignment_ids: vec![grant.assignment_id()]
            }
        );
    }

    #[test]
    fn a_tampered_record_can_only_name_our_own_derived_assignments() {
        // Whatever a status writer puts in a record, the id planned for deletion is derived.
        let grant = intent(KUBELET, PullRole::AcrPull);
        let mut tampered = attachment("a", None, &[&grant]);
        if let Some(status) = tampered.status.as_mut() {
            status.owned_assignments[0].registry_id =
                format!("{REGISTRY}/providers/Microsoft.Authorization/roleAssignments/foreign");
        }
        assert!(matches!(
            plan_cleanup(&tampered, &owner(), &HashSet::new()),
            CleanupPlan::Release { .. }
        ));
    }
}
