//! What to do in Azure, decided from plain data. `wanted_grants` turns a validated spec, the
//! registry's mode and the resolved principals into the set of grants the attachment needs;
//! `plan` compares them with the assignments ARM lists and the ones this attachment recorded,
//! and says per grant whether it is present, must be PUT (created, or its condition updated in
//! place) or joined as a co-owner, and which recorded assignments to delete, leave (co-owned) or
//! forget (ARM does not have them). `plan_detach` is the same with nothing wanted.
//!
//! Deletions are only ever planned for assignments ARM lists under a name acr-attach derives
//! (from its owner id and a record), or — for a co-owned one — whose description proves that an
//! acr-attach installation made it, and that nobody else (sibling or other installation) needs.

use std::collections::HashSet;

use crate::crd::{DeletionPolicy, OwnedAssignment, Ownership, RegistryAttachment};
use crate::decide::claims::Claims;
use crate::decide::ownership::{self, Owners};
use crate::decide::reasons;
use crate::decide::repositories::render_condition;
use crate::decide::validate::{DesiredAttachment, RequestedRole};
use crate::model::azure::RoleAssignment;
use crate::model::grant::{Condition, Grant};
use crate::model::{
    OwnerId, PermissionsMode, PrincipalId, PrincipalType, PullRole, RegistryId, RoleAssignmentName,
};

/// A principal as this reconcile resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub principal: PrincipalId,
    pub kind: PrincipalType,
    /// Spec, Identity, OperatorConfig or ManagedCluster.
    pub source: &'static str,
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

/// The grants `desired` needs on a registry in `mode`, for each resolved principal: its pull role
/// (limited to `spec.repositories` when set), and Catalog Lister when asked for on ABAC.
pub fn wanted_grants(
    desired: &DesiredAttachment,
    mode: Option<PermissionsMode>,
    principals: &[Resolved],
) -> Result<Vec<Grant>, RoleProblem> {
    let role = choose_role(desired.role, mode)?;
    let condition = if desired.repositories.is_empty() {
        None
    } else if role == PullRole::RepositoryReader {
        Some(Condition::new(render_condition(&desired.repositories)))
    } else {
        return Err(RoleProblem {
            reason: reasons::REPOSITORIES_NEED_ABAC,
            message: "the registry uses classic registry permissions, where AcrPull cannot be limited to repositories; acr-attach will not widen the grant to the whole registry. Switch the registry to ABAC (az acr update --role-assignment-mode rbac-abac) or remove spec.repositories".to_string(),
        });
    };
    let mut grants = Vec::new();
    for resolved in principals {
        let pull = Grant {
            registry: desired.registry.clone(),
            principal: resolved.principal.clone(),
            principal_type: resolved.kind,
            role,
            condition: condition.clone(),
        };
        if desired.catalog_listing && role == PullRole::RepositoryReader {
            grants.push(pull.clone());
            grants.push(Grant {
                role: PullRole::CatalogLister,
                condition: None,
                ..pull
            });
        } else {
            grants.push(pull);
        }
    }
    Ok(grants)
}

/// The record that lets a later reconcile (or a restarted operator) find the assignment acr-attach
/// creates for `grant`.
pub fn record_of(grant: &Grant, attachment: &str) -> OwnedAssignment {
    OwnedAssignment {
        registry_id: grant.registry.to_string(),
        principal_id: grant.principal.to_string(),
        role: grant.role.short_name().to_string(),
        scoped_to: grant.condition.as_ref().map(|_| attachment.to_string()),
        shared_name: None,
    }
}

/// The record of a co-owned assignment another installation created.
fn shared_record_of(grant: &Grant, assignment: &RoleAssignment) -> OwnedAssignment {
    OwnedAssignment {
        registry_id: grant.registry.to_string(),
        principal_id: grant.principal.to_string(),
        role: grant.role.short_name().to_string(),
        scoped_to: None,
        shared_name: Some(assignment.name.as_str().to_string()),
    }
}

/// The registry, principal and role a record describes, and the assignment name it stands for;
/// `None` for a record that does not parse (it then never leads to a deletion).
fn parse_record(record: &OwnedAssignment, owner: &OwnerId) -> Option<(Grant, RoleAssignmentName)> {
    let grant = Grant {
        registry: RegistryId::parse(&record.registry_id).ok()?,
        principal: PrincipalId::parse(&record.principal_id).ok()?,
        principal_type: PrincipalType::ServicePrincipal,
        role: PullRole::from_short_name(&record.role)?,
        condition: None,
    };
    let name = match (&record.shared_name, &record.scoped_to) {
        (Some(shared), _) => RoleAssignmentName::from_arm(shared),
        (None, Some(attachment)) => RoleAssignmentName::derive_scoped(
            &grant.registry,
            &grant.principal,
            grant.role,
            owner,
            attachment,
        ),
        (None, None) => {
            RoleAssignmentName::derive(&grant.registry, &grant.principal, grant.role, owner)
        }
    };
    Some((grant, name))
}

/// Full ARM id of the assignment a record stands for.
pub fn owned_assignment_id(record: &OwnedAssignment, owner: &OwnerId) -> Option<String> {
    parse_record(record, owner).map(|(grant, name)| name.id_at(&grant.registry))
}

/// Registry keys the records point at (their retirement needs that registry's listing).
pub fn record_registries(records: &[OwnedAssignment]) -> Vec<RegistryId> {
    let mut seen = HashSet::new();
    records
        .iter()
        .filter_map(|record| RegistryId::parse(&record.registry_id).ok())
        .filter(|registry| seen.insert(registry.key()))
        .collect()
}

/// What the attachment's reconcile knows: its grants, ARM's assignments at the registries
/// involved, its records and what others rely on.
pub struct PlanInput<'a> {
    pub attachment: &'a str,
    pub owner: &'a OwnerId,
    pub wanted: &'a [Grant],
    /// Assignments at every registry in `listed` (the target and those records point at).
    pub existing: &'a [RoleAssignment],
    /// Keys of the registries whose assignments `existing` holds; records elsewhere are left as
    /// they are this time.
    pub listed: &'a HashSet<String>,
    pub owned: &'a [OwnedAssignment],
    pub claims: &'a Claims,
}

/// How one wanted grant is (or will be) satisfied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// It exists; no write.
    Present {
        assignment_id: String,
        ownership: Ownership,
    },
    /// PUT under our derived name: a new assignment, or ours with another condition (updated in
    /// place). The record must be in status before the PUT.
    Put {
        name: RoleAssignmentName,
        description: String,
        record: OwnedAssignment,
    },
    /// Another acr-attach installation's assignment provides it: PUT its description with this
    /// installation added as a co-owner.
    Join {
        assignment: RoleAssignment,
        description: String,
        record: OwnedAssignment,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantStep {
    pub grant: Grant,
    pub step: Step,
}

/// What happens to one recorded assignment that is no longer wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Release {
    /// Nobody else needs it: DELETE.
    Delete {
        record: OwnedAssignment,
        assignment_id: String,
    },
    /// Other installations are listed on it: PUT its description without this one.
    Leave {
        record: OwnedAssignment,
        assignment_id: String,
    },
    /// ARM does not have it (never created, or already gone), or it is not provably acr-attach's:
    /// drop the record, touch nothing.
    Forget { record: OwnedAssignment },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<GrantStep>,
    /// Applied only after every step succeeded, so a pull never sees a gap.
    pub releases: Vec<Release>,
}

impl Plan {
    /// Records the status must hold before any PUT.
    pub fn records_needed(&self) -> Vec<&OwnedAssignment> {
        self.steps
            .iter()
            .filter_map(|step| match &step.step {
                Step::Put { record, .. } | Step::Join { record, .. } => Some(record),
                Step::Present { .. } => None,
            })
            .collect()
    }
}

pub fn plan(input: &PlanInput<'_>) -> Plan {
    let steps: Vec<GrantStep> = input
        .wanted
        .iter()
        .map(|grant| GrantStep {
            grant: grant.clone(),
            step: step_for(grant, input),
        })
        .collect();
    let kept: Vec<OwnedAssignment> = steps
        .iter()
        .filter_map(|step| kept_record(step, input.attachment))
        .collect();
    let releases = input
        .owned
        .iter()
        .filter(|record| !record.is_among(&kept))
        .filter_map(|record| release_for(record, input))
        .collect();
    Plan { steps, releases }
}

/// The record a step keeps (ours or co-owned); an adopted grant keeps none.
pub fn kept_record(step: &GrantStep, attachment: &str) -> Option<OwnedAssignment> {
    match &step.step {
        Step::Put { record, .. } | Step::Join { record, .. } => Some(record.clone()),
        Step::Present {
            ownership: Ownership::Created,
            ..
        } => Some(record_of(&step.grant, attachment)),
        Step::Present {
            ownership: Ownership::Shared,
            assignment_id,
        } => {
            let name = assignment_id.rsplit('/').next().unwrap_or_default();
            Some(OwnedAssignment {
                shared_name: Some(name.to_ascii_lowercase()),
                ..record_of(&step.grant, attachment)
            })
        }
        Step::Present {
            ownership: Ownership::Adopted,
            ..
        } => None,
    }
}

fn step_for(grant: &Grant, input: &PlanInput<'_>) -> Step {
    let ours = grant.name(input.owner, input.attachment);
    let ours_listed = input
        .existing
        .iter()
        .find(|assignment| assignment.name == ours && grant.is_for(assignment));
    if let Some(own) = ours_listed
        && grant.is_provided_by(own)
    {
        return Step::Present {
            assignment_id: own.id.clone(),
            ownership: Ownership::Created,
        };
    }
    if ours_listed.is_none()
        && let Some(existing) = input.existing.iter().find(|a| grant.is_provided_by(a))
    {
        return adopt_or_join(grant, existing, input);
    }
    // Ours with another condition: PUT in place keeps the owners it lists.
    let owners = ours_listed
        .and_then(|own| ownership::parse(own.description.as_deref()))
        .map(|owners| owners.with(input.owner))
        .unwrap_or_else(|| Owners::created_by(input.owner));
    Step::Put {
        name: ours,
        description: ownership::describe(&owners, input.attachment),
        record: record_of(grant, input.attachment),
    }
}

/// An assignment someone else made provides the grant. One this installation made (a sibling's,
/// scoped or not) is shared: recorded, so that whichever sibling detaches last deletes it. One
/// another installation made is joined when unscoped; a scoped one carries its creator's
/// attachment name in its description, which a join would overwrite, so it is only adopted.
fn adopt_or_join(grant: &Grant, existing: &RoleAssignment, input: &PlanInput<'_>) -> Step {
    if ownership::made_by_acr_attach(existing, grant) {
        let owners = ownership::parse(existing.description.as_deref()).unwrap_or_default();
        if owners.lists(input.owner) {
            return Step::Present {
                assignment_id: existing.id.clone(),
                ownership: Ownership::Shared,
            };
        }
    }
    if grant.condition.is_none() && ownership::made_by_acr_attach(existing, grant) {
        let owners = ownership::parse(existing.description.as_deref()).unwrap_or_default();
        return Step::Join {
            assignment: existing.clone(),
            description: ownership::describe(&owners.with(input.owner), input.attachment),
            record: shared_record_of(grant, existing),
        };
    }
    Step::Present {
        assignment_id: existing.id.clone(),
        ownership: Ownership::Adopted,
    }
}

fn release_for(record: &OwnedAssignment, input: &PlanInput<'_>) -> Option<Release> {
    let Some((grant, name)) = parse_record(record, input.owner) else {
        // A record that names nothing we could have made: drop it.
        return Some(Release::Forget {
            record: record.clone(),
        });
    };
    if !input.listed.contains(&grant.registry.key()) {
        return None;
    }
    let forget = Some(Release::Forget {
        record: record.clone(),
    });
    let Some(assignment) = input
        .existing
        .iter()
        .find(|assignment| assignment.name == name && grant.is_for(assignment))
    else {
        return forget;
    };
    if input.claims.covers(assignment) {
        return None;
    }
    if record.shared_name.is_some() && !ownership::made_by_acr_attach(assignment, &grant) {
        return forget;
    }
    let others = ownership::parse(assignment.description.as_deref())
        .map(|owners| owners.without(input.owner))
        .filter(|owners| !owners.owners.is_empty());
    Some(match others {
        Some(_) => Release::Leave {
            record: record.clone(),
            assignment_id: assignment.id.clone(),
        },
        None => Release::Delete {
            record: record.clone(),
            assignment_id: assignment.id.clone(),
        },
    })
}

/// Whether a deleting attachment touches Azure at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Detach {
    /// Remove the finalizer without touching Azure.
    Release { why: String },
    /// Read the registries the records point at, then `plan` with nothing wanted.
    Clean,
}

pub fn detach_policy(attachment: &RegistryAttachment) -> Detach {
    if attachment.skip_cleanup() {
        return Detach::Release {
            why: format!(
                "annotation {} is set: left Azure untouched",
                crate::crd::SKIP_CLEANUP_ANNOTATION
            ),
        };
    }
    if attachment.spec.deletion_policy == DeletionPolicy::Orphan {
        return Detach::Release {
            why: "deletionPolicy is Orphan: the role assignments stay in Azure".to_string(),
        };
    }
    let records = attachment
        .status
        .as_ref()
        .map_or(0, |status| status.owned_assignments.len());
    if records == 0 {
        let adopted = attachment
            .status
            .iter()
            .flat_map(|status| status.grants.iter())
            .any(|grant| grant.ownership == Some(Ownership::Adopted));
        let why = if adopted {
            "the role assignment was adopted, not created, by acr-attach: kept it"
        } else {
            "acr-attach created no role assignment for this attachment"
        };
        return Detach::Release {
            why: why.to_string(),
        };
    }
    Detach::Clean
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        RegistryAttachmentSpec, RegistryAttachmentStatus, RegistryReference, RoleChoice,
    };
    use crate::decide::repositories::parse_pattern;
    use crate::decide::validate::{Deletion, RequestedPrincipal};

    const REGISTRY: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/shared";
    const KUBELET: &str = "11111111-1111-1111-1111-111111111111";
    const POOL_B: &str = "22222222-2222-2222-2222-222222222222";

    fn owner() -> OwnerId {
        OwnerId::new("cluster-a")
    }

    fn grant(principal: &str, role: PullRole, condition: Option<&str>) -> Grant {
        Grant {
            registry: RegistryId::parse(REGISTRY).unwrap(),
            principal: PrincipalId::parse(principal).unwrap(),
            principal_type: PrincipalType::ServicePrincipal,
            role,
            condition: condition.map(Condition::new),
        }
    }

    /// An assignment as ARM lists it, named `name`, providing `grant`.
    fn listed(
        name: &RoleAssignmentName,
        grant: &Grant,
        description: Option<String>,
    ) -> RoleAssignment {
        RoleAssignment {
            id: name.id_at(&grant.registry),
            name: name.clone(),
            scope: REGISTRY.to_string(),
            role_definition_id: grant
                .role
                .definition_id("00000000-0000-0000-0000-000000000001"),
            principal_id: grant.principal.to_string(),
            condition: grant.condition.as_ref().map(|c| c.as_str().to_string()),
            description,
            principal_type: Some("ServicePrincipal".into()),
        }
    }

    fn ours(grant: &Grant) -> RoleAssignment {
        let owners = Owners::created_by(&owner());
        listed(
            &grant.name(&owner(), "a"),
            grant,
            Some(ownership::describe(&owners, "a")),
        )
    }

    fn foreign(grant: &Grant) -> RoleAssignment {
        let name = RoleAssignmentName::from_arm("aaaaaaaa-0000-0000-0000-000000000000");
        listed(&name, grant, Some("made by hand".into()))
    }

    /// Made by acr-attach in another cluster (owner cluster-b), listing `owners`.
    fn other_clusters(grant: &Grant, owners: &[&str]) -> RoleAssignment {
        let b = OwnerId::new("cluster-b");
        let name = RoleAssignmentName::derive(&grant.registry, &grant.principal, grant.role, &b);
        let mut listed_owners = Owners::created_by(&b);
        for o in owners {
            listed_owners = listed_owners.with(&OwnerId::new(*o));
        }
        listed(&name, grant, Some(ownership::describe(&listed_owners, "b")))
    }

    fn run(
        wanted: &[Grant],
        existing: &[RoleAssignment],
        owned: &[OwnedAssignment],
        claims: &Claims,
    ) -> Plan {
        let listed: HashSet<String> = [RegistryId::parse(REGISTRY).unwrap().key()].into();
        plan(&PlanInput {
            attachment: "a",
            owner: &owner(),
            wanted,
            existing,
            listed: &listed,
            owned,
            claims,
        })
    }

    fn only_step(plan: &Plan) -> &Step {
        assert_eq!(plan.steps.len(), 1, "{plan:?}");
        &plan.steps[0].step
    }

    fn desired(role: RequestedRole, repositories: &[&str], catalog: bool) -> DesiredAttachment {
        DesiredAttachment {
            registry: RegistryId::parse(REGISTRY).unwrap(),
            role,
            principals: vec![RequestedPrincipal::KubeletIdentity],
            repositories: repositories
                .iter()
                .map(|r| parse_pattern(r).unwrap())
                .collect(),
            catalog_listing: catalog,
            deletion: Deletion::Delete,
        }
    }

    fn resolved(principals: &[&str]) -> Vec<Resolved> {
        principals
            .iter()
            .map(|p| Resolved {
                principal: PrincipalId::parse(p).unwrap(),
                kind: PrincipalType::ServicePrincipal,
                source: "Spec",
            })
            .collect()
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

    /// mode × role × repositories × catalog listing × principals → the grants wanted.
    #[test]
    fn wanted_grants_table() {
        use PermissionsMode::{AbacRepository as Abac, Legacy};
        use PullRole::{AcrPull, CatalogLister, RepositoryReader};
        let auto = RequestedRole::Auto;
        let reader = RequestedRole::Fixed(RepositoryReader);
        type Row<'a> = (
            Option<PermissionsMode>,
            RequestedRole,
            &'a [&'a str],
            bool,
            usize,
            Result<Vec<(PullRole, bool)>, &'static str>,
        );
        let table: &[Row] = &[
            (
                Some(Legacy),
                auto,
                &[],
                false,
                1,
                Ok(vec![(AcrPull, false)]),
            ),
            (Some(Legacy), auto, &[], true, 1, Ok(vec![(AcrPull, false)])),
            (
                Some(Abac),
                auto,
                &[],
                false,
                1,
                Ok(vec![(RepositoryReader, false)]),
            ),
            (
                Some(Abac),
                auto,
                &["team-a/*"],
                false,
                1,
                Ok(vec![(RepositoryReader, true)]),
            ),
            (
                Some(Abac),
                auto,
                &["team-a/*"],
                true,
                1,
                Ok(vec![(RepositoryReader, true), (CatalogLister, false)]),
            ),
            (
                Some(Abac),
                auto,
                &[],
                true,
                2,
                Ok(vec![
                    (RepositoryReader, false),
                    (CatalogLister, false),
                    (RepositoryReader, false),
                    (CatalogLister, false),
                ]),
            ),
            (
                Some(Legacy),
                auto,
                &["team-a/*"],
                false,
                1,
                Err(reasons::REPOSITORIES_NEED_ABAC),
            ),
            (
                Some(Legacy),
                reader,
                &[],
                false,
                1,
                Err(reasons::ROLE_NOT_EFFECTIVE),
            ),
            (
                None,
                reader,
                &["nginx"],
                false,
                1,
                Ok(vec![(RepositoryReader, true)]),
            ),
            (
                None,
                auto,
                &[],
                false,
                1,
                Err(reasons::REGISTRY_MODE_UNKNOWN),
            ),
            (Some(Abac), auto, &[], false, 0, Ok(vec![])),
        ];
        for (row, (mode, role, repositories, catalog, principals, expected)) in
            table.iter().enumerate()
        {
            let principals = &resolved(&[KUBELET, POOL_B])[..*principals];
            let got = wanted_grants(&desired(*role, repositories, *catalog), *mode, principals)
                .map(|grants| {
                    grants
                        .iter()
                        .map(|g| (g.role, g.condition.is_some()))
                        .collect::<Vec<_>>()
                })
                .map_err(|problem| problem.reason);
            assert_eq!(&got, expected, "row {row}");
        }
    }

    #[test]
    fn a_missing_grant_is_put_under_the_derived_name_with_its_record() {
        let want = grant(KUBELET, PullRole::AcrPull, None);
        let plan = run(std::slice::from_ref(&want), &[], &[], &Claims::default());
        let Step::Put {
            name,
            description,
            record,
        } = only_step(&plan)
        else {
            panic!("{plan:?}")
        };
        assert_eq!(*name, want.name(&owner(), "a"));
        assert!(description.contains("owners: cluster-a"), "{description}");
        assert_eq!(record, &record_of(&want, "a"));
        assert_eq!(plan.records_needed(), [record]);
        assert!(plan.releases.is_empty());
    }

    /// existing assignments (ours, adopted, other cluster's, conditioned, other role) → step.
    #[test]
    fn existing_assignments_table() {
        let want = grant(KUBELET, PullRole::AcrPull, None);
        let conditioned = grant(KUBELET, PullRole::AcrPull, Some("(x)"));
        let other_role = grant(KUBELET, PullRole::RepositoryReader, None);
        let present = |ownership| move |step: &Step| matches!(step, Step::Present { ownership: o, .. } if *o == ownership);
        let is_put = |step: &Step| matches!(step, Step::Put { .. });
        let is_join = |step: &Step| matches!(step, Step::Join { .. });
        type Expect = Box<dyn Fn(&Step) -> bool>;
        let table: Vec<(&str, Vec<RoleAssignment>, Expect)> = vec![
            (
                "ours",
                vec![ours(&want)],
                Box::new(present(Ownership::Created)),
            ),
            (
                "foreign",
                vec![foreign(&want)],
                Box::new(present(Ownership::Adopted)),
            ),
            (
                "ours and foreign",
                vec![foreign(&want), ours(&want)],
                Box::new(present(Ownership::Created)),
            ),
            (
                "other cluster's",
                vec![other_clusters(&want, &[])],
                Box::new(is_join),
            ),
            (
                "other cluster's, we are listed",
                vec![other_clusters(&want, &["cluster-a"])],
                Box::new(present(Ownership::Shared)),
            ),
            ("conditioned", vec![foreign(&conditioned)], Box::new(is_put)),
            ("other role", vec![foreign(&other_role)], Box::new(is_put)),
        ];
        for (case, existing, expect) in table {
            let plan = run(
                std::slice::from_ref(&want),
                &existing,
                &[],
                &Claims::default(),
            );
            assert!(expect(only_step(&plan)), "{case}: {plan:?}");
        }
    }

    #[test]
    fn editing_repositories_puts_the_same_name_with_the_new_condition() {
        let before = grant(KUBELET, PullRole::RepositoryReader, Some("(old)"));
        let after = grant(KUBELET, PullRole::RepositoryReader, Some("(new)"));
        let plan = run(
            std::slice::from_ref(&after),
            &[ours(&before)],
            &[record_of(&before, "a")],
            &Claims::default(),
        );
        let Step::Put { name, .. } = only_step(&plan) else {
            panic!("{plan:?}")
        };
        assert_eq!(*name, before.name(&owner(), "a"), "updated in place");
        assert!(
            plan.releases.is_empty(),
            "the record is the same: nothing to retire"
        );
        // Whitespace differences are not an edit.
        let spaced = grant(KUBELET, PullRole::RepositoryReader, Some(" ( new ) "));
        let plan = run(
            &[spaced],
            &[ours(&after)],
            &[record_of(&after, "a")],
            &Claims::default(),
        );
        assert!(matches!(
            only_step(&plan),
            Step::Present {
                ownership: Ownership::Created,
                ..
            }
        ));
    }

    #[test]
    fn a_scoped_grant_is_named_per_attachment_and_an_unscoped_one_is_shared() {
        let scoped = grant(KUBELET, PullRole::RepositoryReader, Some("(x)"));
        assert_ne!(scoped.name(&owner(), "a"), scoped.name(&owner(), "b"));
        let whole = grant(KUBELET, PullRole::RepositoryReader, None);
        assert_eq!(whole.name(&owner(), "a"), whole.name(&owner(), "b"));
        assert_eq!(record_of(&scoped, "a").scoped_to.as_deref(), Some("a"));
    }

    /// Records no longer wanted: present/absent × claimed × ownership → release.
    #[test]
    fn retirement_table() {
        let old = grant(KUBELET, PullRole::AcrPull, None);
        let new = grant(POOL_B, PullRole::AcrPull, None);
        let wanted = [new.clone()];
        let record = record_of(&old, "a");
        let mut claimed = Claims::default();
        claimed.add_grant(&old);
        let mut shared_with_b = ours(&old);
        shared_with_b.description = Some(ownership::describe(
            &Owners::created_by(&owner()).with(&OwnerId::new("cluster-b")),
            "a",
        ));
        let none = Claims::default();
        let cases: Vec<(&str, Vec<RoleAssignment>, &Claims, Option<&str>)> = vec![
            (
                "present, unclaimed",
                vec![ours(&old)],
                &none,
                Some("delete"),
            ),
            (
                "present, claimed by a sibling",
                vec![ours(&old)],
                &claimed,
                None,
            ),
            (
                "absent (never created or gone)",
                vec![],
                &none,
                Some("forget"),
            ),
            (
                "present, another installation listed",
                vec![shared_with_b],
                &none,
                Some("leave"),
            ),
            (
                "only a foreign equivalent",
                vec![foreign(&old)],
                &none,
                Some("forget"),
            ),
        ];
        for (case, existing, claims, expected) in cases {
            let plan = run(&wanted, &existing, std::slice::from_ref(&record), claims);
            let got = plan.releases.first().map(|release| match release {
                Release::Delete { assignment_id, .. } => {
                    assert_eq!(*assignment_id, old.name(&owner(), "a").id_at(&old.registry));
                    "delete"
                }
                Release::Leave { .. } => "leave",
                Release::Forget { .. } => "forget",
            });
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn records_of_unread_registries_are_left_alone_and_garbage_is_forgotten() {
        let elsewhere = OwnedAssignment {
            registry_id: REGISTRY.replace("shared", "elsewhere"),
            ..record_of(&grant(KUBELET, PullRole::AcrPull, None), "a")
        };
        let garbage = OwnedAssignment {
            registry_id: "/subscriptions/x".into(),
            ..elsewhere.clone()
        };
        let plan = run(&[], &[], &[elsewhere, garbage.clone()], &Claims::default());
        assert_eq!(plan.releases, [Release::Forget { record: garbage }]);
    }

    #[test]
    fn a_co_owned_record_is_deleted_only_when_acr_attach_provably_made_it() {
        let want = grant(KUBELET, PullRole::AcrPull, None);
        // cluster-b created it, we joined, cluster-b left: we are the last owner.
        let b = OwnerId::new("cluster-b");
        let mut last = other_clusters(&want, &["cluster-a"]);
        last.description = Some(ownership::describe(
            &Owners::created_by(&b).with(&owner()).without(&b),
            "b",
        ));
        let record = OwnedAssignment {
            shared_name: Some(last.name.to_string()),
            ..record_of(&want, "a")
        };
        let plan = run(
            &[],
            std::slice::from_ref(&last),
            std::slice::from_ref(&record),
            &Claims::default(),
        );
        assert!(
            matches!(plan.releases[..], [Release::Delete { .. }]),
            "{plan:?}"
        );
        // A tampered record naming a hand-made assignment is forgotten, never deleted.
        let hand_made = foreign(&want);
        let tampered = OwnedAssignment {
            shared_name: Some(hand_made.name.to_string()),
            ..record
        };
        let plan = run(&[], &[hand_made], &[tampered], &Claims::default());
        assert!(
            matches!(plan.releases[..], [Release::Forget { .. }]),
            "{plan:?}"
        );
    }

    #[test]
    fn a_siblings_scoped_assignment_is_shared_so_the_last_to_detach_deletes_it() {
        // Found by the soak: attachment "s" created the scoped assignment, "a" wants the same
        // grant. "a" used to adopt it and record nothing, so once "s" had left it to "a" and "a"
        // was deleted too, the assignment leaked.
        let want = grant(KUBELET, PullRole::RepositoryReader, Some("team-a/*"));
        let siblings = listed(
            &want.name(&owner(), "s"),
            &want,
            Some(ownership::describe(&Owners::created_by(&owner()), "s")),
        );
        let plan = run(
            std::slice::from_ref(&want),
            std::slice::from_ref(&siblings),
            &[],
            &Claims::default(),
        );
        assert!(
            matches!(
                plan.steps[0].step,
                Step::Present {
                    ownership: Ownership::Shared,
                    ..
                }
            ),
            "{plan:?}"
        );
        let record = kept_record(&plan.steps[0], "a").expect("a shared grant is recorded");
        let last = run(
            &[],
            std::slice::from_ref(&siblings),
            std::slice::from_ref(&record),
            &Claims::default(),
        );
        assert!(
            matches!(last.releases[..], [Release::Delete { .. }]),
            "{last:?}"
        );
        // Another installation's scoped assignment is adopted, never joined or deleted.
        let b = OwnerId::new("cluster-b");
        let theirs = listed(
            &want.name(&b, "x"),
            &want,
            Some(ownership::describe(&Owners::created_by(&b), "x")),
        );
        let plan = run(
            std::slice::from_ref(&want),
            std::slice::from_ref(&theirs),
            &[],
            &Claims::default(),
        );
        assert!(
            matches!(
                plan.steps[0].step,
                Step::Present {
                    ownership: Ownership::Adopted,
                    ..
                }
            ),
            "{plan:?}"
        );
    }

    #[test]
    fn a_record_an_earlier_release_wrote_still_names_the_same_assignment() {
        // Status as released versions wrote it: no scopedTo, no sharedName.
        let record: OwnedAssignment = serde_json::from_value(serde_json::json!({
            "registryId": REGISTRY,
            "principalId": KUBELET,
            "role": "AcrPull"
        }))
        .unwrap();
        let id = owned_assignment_id(
            &record,
            &OwnerId::new("6c1b4a7e-2f3d-4e5a-9b8c-0d1e2f3a4b5c"),
        )
        .unwrap();
        assert!(
            id.ends_with("/roleAssignments/1a5d3bce-146a-57ac-844c-8f0545388a5d"),
            "{id}"
        );
    }

    fn attachment_with(status: RegistryAttachmentStatus) -> RegistryAttachment {
        let mut ra = RegistryAttachment::new(
            "a",
            RegistryAttachmentSpec {
                registry: RegistryReference::by_id(REGISTRY.to_string()),
                role: RoleChoice::Auto,
                principal: None,
                principals: Vec::new(),
                repositories: Vec::new(),
                catalog_listing: false,
                deletion_policy: DeletionPolicy::Delete,
            },
        );
        ra.status = Some(status);
        ra
    }

    #[test]
    fn detach_touches_azure_only_with_records_and_without_orphan_or_skip() {
        let with_record = RegistryAttachmentStatus {
            owned_assignments: vec![record_of(&grant(KUBELET, PullRole::AcrPull, None), "a")],
            ..Default::default()
        };
        assert_eq!(
            detach_policy(&attachment_with(with_record.clone())),
            Detach::Clean
        );
        assert!(matches!(
            detach_policy(&attachment_with(Default::default())),
            Detach::Release { .. }
        ));
        let mut orphan = attachment_with(with_record.clone());
        orphan.spec.deletion_policy = DeletionPolicy::Orphan;
        assert!(
            matches!(detach_policy(&orphan), Detach::Release { why } if why.contains("Orphan"))
        );
        let mut skipped = attachment_with(with_record);
        skipped.metadata.annotations = Some(
            [(
                crate::crd::SKIP_CLEANUP_ANNOTATION.to_string(),
                "true".to_string(),
            )]
            .into(),
        );
        assert!(
            matches!(detach_policy(&skipped), Detach::Release { why } if why.contains("annotation"))
        );
    }
}
