//! What other attachments rely on, so that retiring or detaching one attachment never removes a
//! grant a sibling needs. A sibling's claims come from its validated spec (what it will want, even
//! before its first reconcile), from the grants its status reports, and — when detaching — from
//! the assignments it recorded as its own (it may have crashed between recording and reporting).

use std::collections::{HashMap, HashSet};

use crate::crd::RegistryAttachment;
use crate::decide::plan::owned_assignment_id;
use crate::decide::registry_lookup::{list_scope, resolve};
use crate::decide::repositories::render_condition;
use crate::decide::validate::{RegistryTarget, RequestedPrincipal, RequestedRole, validate};
use crate::model::azure::{Registry, RoleAssignment};
use crate::model::grant::{Condition, Grant};
use crate::model::{OwnerId, PermissionsMode, PrincipalId, PullRole, RegistryId};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClaimKey {
    registry: RegistryMatch,
    principal: String,
    role: PullRole,
    condition: Option<Condition>,
}

/// Which registries a claim is on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum RegistryMatch {
    /// One registry, by lower-cased resource id.
    Id(String),
    /// A sibling names its registry by name and where that name resolves is not known in this
    /// process (no list read this window, no status yet): every registry of that name in its
    /// subscription (any, when the subscription is not known either) and resource group, so a
    /// grant it may rely on is never removed because a list happened not to be cached.
    Named {
        name: String,
        subscription: Option<String>,
        resource_group: Option<String>,
    },
}

impl RegistryMatch {
    fn matches(&self, scope: &str) -> bool {
        match self {
            RegistryMatch::Id(id) => id.eq_ignore_ascii_case(scope),
            RegistryMatch::Named {
                name,
                subscription,
                resource_group,
            } => RegistryId::parse(scope).is_ok_and(|registry| {
                registry.name().eq_ignore_ascii_case(name)
                    && subscription
                        .as_ref()
                        .is_none_or(|s| registry.subscription().eq_ignore_ascii_case(s))
                    && resource_group
                        .as_ref()
                        .is_none_or(|g| registry.resource_group().eq_ignore_ascii_case(g))
            }),
        }
    }
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
            registry: RegistryMatch::Id(grant.registry.key()),
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
            key.registry.matches(&assignment.scope)
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
) -> RegistryMatch {
    let lookup = match target {
        RegistryTarget::Id(id) => return RegistryMatch::Id(id.key()),
        RegistryTarget::Name(lookup) => lookup,
    };
    let listed = list_scope(lookup, context.default_subscription.as_deref())
        .ok()
        .and_then(|scope| {
            let listed = context.registry_lists.get(&scope.key())?;
            resolve(lookup, &scope, listed).ok()
        });
    let found = listed.or_else(|| {
        let reported = other.status.as_ref()?.registry.as_ref()?;
        RegistryId::parse(&reported.id)
            .ok()
            .filter(|id| id.name().eq_ignore_ascii_case(&lookup.name))
    });
    match found {
        Some(id) => RegistryMatch::Id(id.key()),
        None => RegistryMatch::Named {
            name: lookup.name.clone(),
            subscription: (lookup.subscription.clone())
                .or_else(|| context.default_subscription.clone()),
            resource_group: lookup.resource_group.clone(),
        },
    }
}

/// The grants a sibling's spec asks for, as far as they can be known without Azure: an Auto role
/// on a registry of unknown mode claims both pull roles.
fn claims_from_spec(other: &RegistryAttachment, context: &ClaimContext, claims: &mut Claims) {
    let Ok(requested) = validate(&other.spec) else {
        return;
    };
    let registry = sibling_registry(other, &requested.registry, context);
    let desired = requested.with_registry(());
    let mode = match &registry {
        RegistryMatch::Id(key) => context.modes.get(key).copied().flatten(),
        RegistryMatch::Named { .. } => None,
    };
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
            let claim = |role: PullRole, condition: Option<Condition>| ClaimKey {
                registry: registry.clone(),
                principal: principal.as_str().to_string(),
                role,
                condition,
            };
            if *role == PullRole::RepositoryReader {
                claims.grants.insert(claim(*role, condition.clone()));
                if desired.catalog_listing {
                    claims.grants.insert(claim(PullRole::CatalogLister, None));
                }
            } else {
                claims.grants.insert(claim(*role, None));
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
    fn without_a_list_read_a_sibling_claims_every_registry_of_its_name_in_its_subscription() {
        let unresolved = claimed(&sibling(), &context(&[]));
        assert!(unresolved.covers(&acr_pull_on(&registry_id("team-rg"))));
        assert!(unresolved.covers(&acr_pull_on(&registry_id("other-rg"))));
        let elsewhere = registry_id("team-rg").replace(SUB, "00000000-0000-4000-8000-000000000002");
        assert!(
            !unresolved.covers(&acr_pull_on(&elsewhere)),
            "another subscription"
        );
        let other_name = registry_id("team-rg").replace("teamimages", "otherimages");
        assert!(!unresolved.covers(&acr_pull_on(&other_name)));
    }

    #[test]
    fn without_a_list_read_a_sibling_falls_back_to_the_registry_its_status_reports() {
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
        assert!(
            !claims.covers(&acr_pull_on(&registry_id("other-rg"))),
            "the reported registry, not every one of that name"
        );
    }
}
