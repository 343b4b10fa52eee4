//! What other attachments rely on, so that retiring or detaching one attachment never removes a
//! grant a sibling needs. A sibling's claims come from its validated spec (what it will want, even
//! before its first reconcile), from the grants its status reports, and — when detaching — from
//! the assignments it recorded as its own (it may have crashed between recording and reporting).

use std::collections::{HashMap, HashSet};

use crate::crd::RegistryAttachment;
use crate::decide::plan::owned_assignment_id;
use crate::decide::registry_lookup::{list_scope, resolve};
use crate::decide::repositories::render_condition;
use crate::decide::validate::RegistryTarget;
use crate::decide::validate::{RequestedPrincipal, RequestedRole, validate};
use crate::model::azure::{Registry, RoleAssignment};
use crate::model::grant::{Condition, Grant};
use crate::model::{OwnerId, PermissionsMode, PrincipalId, PullRole, RegistryId};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClaimKey {
    registry: String,
    principal: String,
    role: PullRole,
    condition: Option<Condition>,
}

/// Grants and assignment ids that someone else relies on.
#[derive(Clone, Debug, Default)]
pub struct Claims {
    grants: HashSet<ClaimKey>,
    assignment_ids: HashSet<String>,
}

impl Claims {
    pub fn add_grant(&mut self, grant: &Grant) {
        self.grants.insert(ClaimKey {
            registry: grant.registry.key(),
            principal: grant.principal.as_str().to_string(),
            role: grant.role,
            condition: grant.condition.clone(),
        });
    }

    pub fn add_assignment_id(&mut self, id: &str) {
        self.assignment_ids.insert(id.to_ascii_lowercase());
    }

    pub fn extend(&mut self, other: Claims) {
        self.grants.extend(other.grants);
        self.assignment_ids.extend(other.assignment_ids);
    }

    /// True when someone relies on `assignment` (by id, or on the grant it provides).
    pub fn covers(&self, assignment: &RoleAssignment) -> bool {
        if self
            .assignment_ids
            .contains(&assignment.id.to_ascii_lowercase())
        {
            return true;
        }
        let condition = assignment
            .condition
            .as_deref()
            .filter(|text| !text.trim().is_empty());
        self.grants.iter().any(|key| {
            key.registry.eq_ignore_ascii_case(&assignment.scope)
                && key.principal.eq_ignore_ascii_case(&assignment.principal_id)
                && assignment.role() == Some(key.role)
                && match &key.condition {
                    None => condition.is_none(),
                    Some(wanted) => wanted.matches(condition),
                }
        })
    }
}

/// What is known about the world when reading a sibling's spec.
#[derive(Clone, Debug, Default)]
pub struct ClaimContext {
    /// The kubelet identity, when known (a sibling's default principal).
    pub kubelet: Option<PrincipalId>,
    /// Permissions mode per registry key, for registries read in this process.
    pub modes: HashMap<String, Option<PermissionsMode>>,
    /// Principal ids of user-assigned identities resolved in this process, by lower-cased id.
    pub identities: HashMap<String, PrincipalId>,
    /// Registry lists read in this process, by `ListScope::key`: a sibling naming its registry
    /// by name claims the registry the list resolves it to.
    pub registry_lists: HashMap<String, Vec<Registry>>,
    /// Where a sibling's registry name without subscription is looked up.
    pub default_subscription: Option<String>,
    /// Also count siblings' recorded assignments (detach: a sibling that crashed after recording
    /// may rely on one its status does not show yet).
    pub include_records: bool,
}

/// Claims of every live attachment other than `myself`.
pub fn claims_of_others<'a>(
    myself: &str,
    attachments: impl IntoIterator<Item = &'a RegistryAttachment>,
    context: &ClaimContext,
    owner: &OwnerId,
) -> Claims {
    let mut claims = Claims::default();
    for other in attachments {
        if other.metadata.name.as_deref() == Some(myself) || other.is_deleting() {
            continue;
        }
        claims_from_status(other, context, owner, &mut claims);
        claims_from_spec(other, context, &mut claims);
    }
    claims
}

fn claims_from_status(
    other: &RegistryAttachment,
    context: &ClaimContext,
    owner: &OwnerId,
    claims: &mut Claims,
) {
    let Some(status) = &other.status else { return };
    if let Some(assignment) = &status.assignment {
        claims.add_assignment_id(&assignment.id);
    }
    for grant in &status.grants {
        if let Some(id) = &grant.assignment_id {
            claims.add_assignment_id(id);
        }
    }
    if context.include_records {
        for record in &status.owned_assignments {
            if let Some(id) = owned_assignment_id(record, owner) {
                claims.add_assignment_id(&id);
            }
        }
    }
}

/// The registry a sibling's spec names: its resource id, or where its name resolves in a list
/// read this window, else the registry its status reports (it resolved the name before).
fn sibling_registry(
    other: &RegistryAttachment,
    target: &RegistryTarget,
    context: &ClaimContext,
) -> Option<RegistryId> {
    let lookup = match target {
        RegistryTarget::Id(id) => return Some(id.clone()),
        RegistryTarget::Name(lookup) => lookup,
    };
    let listed = list_scope(lookup, context.default_subscription.as_deref())
        .ok()
        .and_then(|scope| {
            let listed = context.registry_lists.get(&scope.key())?;
            resolve(lookup, &scope, listed).ok()
        });
    listed.or_else(|| {
        let reported = other.status.as_ref()?.registry.as_ref()?;
        RegistryId::parse(&reported.id)
            .ok()
            .filter(|id| id.name().eq_ignore_ascii_case(&lookup.name))
    })
}

/// The grants a sibling's spec asks for, as far as they can be known without Azure: an Auto role
/// on a registry of unknown mode claims both pull roles.
fn claims_from_spec(other: &RegistryAttachment, context: &ClaimContext, claims: &mut Claims) {
    let Ok(requested) = validate(&other.spec) else {
        return;
    };
    let Some(registry) = sibling_registry(other, &requested.registry, context) else {
        return;
    };
    let desired = requested.with_registry(registry);
    let mode = context
        .modes
        .get(&desired.registry.key())
        .copied()
        .flatten();
    let roles: Vec<PullRole> = match (desired.role, mode) {
        (RequestedRole::Fixed(role), _) => vec![role],
        (RequestedRole::Auto, Some(PermissionsMode::Legacy)) => vec![PullRole::AcrPull],
        (RequestedRole::Auto, Some(PermissionsMode::AbacRepository)) => {
            vec![PullRole::RepositoryReader]
        }
        (RequestedRole::Auto, None) => vec![PullRole::AcrPull, PullRole::RepositoryReader],
    };
    let condition = (!desired.repositories.is_empty())
        .then(|| Condition::new(render_condition(&desired.repositories)));
    for requested in &desired.principals {
        let principal = match requested {
            RequestedPrincipal::Explicit { principal, .. } => Some(principal.clone()),
            RequestedPrincipal::KubeletIdentity => context.kubelet.clone(),
            RequestedPrincipal::Identity(identity) => {
                context.identities.get(&identity.key()).cloned()
            }
        };
        let Some(principal) = principal else { continue };
        for role in &roles {
            let mut grant = Grant {
                registry: desired.registry.clone(),
                principal: principal.clone(),
                principal_type: Default::default(),
                role: *role,
                condition: None,
            };
            if *role == PullRole::RepositoryReader {
                grant.condition = condition.clone();
            }
            claims.add_grant(&grant);
            if desired.catalog_listing && *role == PullRole::RepositoryReader {
                claims.add_grant(&Grant {
                    role: PullRole::CatalogLister,
                    condition: None,
                    ..grant
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{RegistryAttachmentSpec, RegistryReference, ResolvedRegistry};
    use crate::model::RoleAssignmentName;

    const SUB: &str = "00000000-0000-4000-8000-000000000001";
    const KUBELET: &str = "6b1e0000-0000-4000-8000-0000000000b1";

    fn registry_id(group: &str) -> String {
        format!(
            "/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/teamimages"
        )
    }

    fn sibling() -> RegistryAttachment {
        RegistryAttachment::new(
            "by-name",
            RegistryAttachmentSpec {
                registry: RegistryReference::by_name("TeamImages"),
                role: Default::default(),
                principal: None,
                principals: Vec::new(),
                repositories: Vec::new(),
                catalog_listing: false,
                deletion_policy: Default::default(),
            },
        )
    }

    fn acr_pull_on(scope: &str) -> RoleAssignment {
        RoleAssignment {
            id: format!("{scope}/providers/Microsoft.Authorization/roleAssignments/x"),
            name: RoleAssignmentName::from_arm("x"),
            scope: scope.to_string(),
            role_definition_id: PullRole::AcrPull.definition_id(SUB),
            principal_id: KUBELET.to_string(),
            condition: None,
            description: None,
            principal_type: None,
        }
    }

    fn context(lists: &[(&str, Vec<Registry>)]) -> ClaimContext {
        ClaimContext {
            kubelet: PrincipalId::parse(KUBELET).ok(),
            modes: HashMap::new(),
            registry_lists: lists
                .iter()
                .map(|(key, listed)| (key.to_string(), listed.clone()))
                .collect(),
            default_subscription: Some(SUB.to_string()),
            ..Default::default()
        }
    }

    fn claimed(sibling: &RegistryAttachment, context: &ClaimContext) -> Claims {
        claims_of_others("me", [sibling], context, &OwnerId::new("owner"))
    }

    #[test]
    fn a_sibling_named_by_name_claims_the_registry_its_name_resolves_to() {
        let listed = vec![Registry {
            id: registry_id("team-rg"),
            login_server: None,
            mode: None,
        }];
        let claims = claimed(&sibling(), &context(&[(SUB, listed)]));
        assert!(claims.covers(&acr_pull_on(&registry_id("team-rg"))));
        assert!(!claims.covers(&acr_pull_on(&registry_id("other-rg"))));
    }

    #[test]
    fn without_a_list_read_a_sibling_falls_back_to_the_registry_its_status_reports() {
        let unresolved = sibling();
        assert!(
            !claimed(&unresolved, &context(&[])).covers(&acr_pull_on(&registry_id("team-rg"))),
            "nothing is known about where the name points"
        );
        let mut resolved_before = sibling();
        resolved_before.status = Some(crate::crd::RegistryAttachmentStatus {
            registry: Some(ResolvedRegistry {
                id: registry_id("team-rg"),
                login_server: None,
                permissions_mode: None,
            }),
            ..Default::default()
        });
        let claims = claimed(&resolved_before, &context(&[]));
        assert!(claims.covers(&acr_pull_on(&registry_id("team-rg"))));
    }
}
