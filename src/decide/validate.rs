//! Spec validation: turns a `RegistryAttachmentSpec` into a typed `DesiredAttachment`, or into
//! field errors that name the field and the fix. Nothing reaches Azure before this passes.

use std::fmt;

use crate::crd::{
    DeletionPolicy, PrincipalKind, PrincipalSpec, RegistryAttachmentSpec, RegistryReference,
    RoleChoice,
};
use crate::decide::repositories::{RepositoryPattern, parse_pattern};
use crate::model::{
    IdentityId, PrincipalId, PrincipalType, PullRole, RegistryId, RegistryLookup,
    check_resource_group, is_subscription_id, registry_name_problem,
};

/// What the user asked for, in checked form. `validate` gives the registry as written (a
/// [`RegistryTarget`]); once a name is looked up the attachment carries its [`RegistryId`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredAttachment<R = RegistryId> {
    pub registry: R,
    pub role: RequestedRole,
    /// At least one, no two alike.
    pub principals: Vec<RequestedPrincipal>,
    /// Sorted and without duplicates; empty: the whole registry.
    pub repositories: Vec<RepositoryPattern>,
    pub catalog_listing: bool,
    pub deletion: Deletion,
}

/// The registry as the spec names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryTarget {
    Id(RegistryId),
    /// Looked up by name through ARM (`decide::registry_lookup`).
    Name(RegistryLookup),
}

impl<R> DesiredAttachment<R> {
    /// The same attachment for `registry`: the id a name was looked up to, or an id as a target.
    pub fn with_registry<S>(self, registry: S) -> DesiredAttachment<S> {
        DesiredAttachment {
            registry,
            role: self.role,
            principals: self.principals,
            repositories: self.repositories,
            catalog_listing: self.catalog_listing,
            deletion: self.deletion,
        }
    }
}

impl DesiredAttachment<RegistryTarget> {
    /// The attachment when the spec gives a resource id; `None` for a name not looked up yet.
    pub fn by_id(self) -> Option<DesiredAttachment> {
        match &self.registry {
            RegistryTarget::Id(id) => {
                let id = id.clone();
                Some(self.with_registry(id))
            }
            RegistryTarget::Name(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestedRole {
    /// Pick from the registry's permissions mode.
    Auto,
    Fixed(PullRole),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestedPrincipal {
    /// `objectId` (or the original `spec.principal.objectId`).
    Explicit {
        principal: PrincipalId,
        kind: PrincipalType,
    },
    /// A user-assigned managed identity, resolved to its principalId through ARM.
    Identity(IdentityId),
    /// The cluster's kubelet identity, from operator configuration.
    KubeletIdentity,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    Delete,
    Orphan,
}

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All field errors, joined for a condition message.
pub fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn validate(
    spec: &RegistryAttachmentSpec,
) -> Result<DesiredAttachment<RegistryTarget>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let registry = validate_registry(&spec.registry, &mut errors);
    let role = match spec.role {
        RoleChoice::Auto => Some(RequestedRole::Auto),
        RoleChoice::AcrPull => Some(RequestedRole::Fixed(PullRole::AcrPull)),
        RoleChoice::RepositoryReader => Some(RequestedRole::Fixed(PullRole::RepositoryReader)),
        RoleChoice::Unrecognized => {
            errors.push(FieldError::new(
                "spec.role",
                "unsupported value: use Auto, AcrPull or RepositoryReader",
            ));
            None
        }
    };
    let principals = validate_principals(spec, &mut errors);
    let repositories = validate_repositories(&spec.repositories, &mut errors);
    if !repositories.is_empty() && role == Some(RequestedRole::Fixed(PullRole::AcrPull)) {
        errors.push(FieldError::new(
            "spec.repositories",
            "AcrPull cannot be limited to repositories: use role Auto or RepositoryReader on an ABAC registry, or remove spec.repositories",
        ));
    }
    let deletion = match spec.deletion_policy {
        DeletionPolicy::Delete => Some(Deletion::Delete),
        DeletionPolicy::Orphan => Some(Deletion::Orphan),
        DeletionPolicy::Unrecognized => {
            errors.push(FieldError::new(
                "spec.deletionPolicy",
                "unsupported value: use Delete or Orphan",
            ));
            None
        }
    };
    match (registry, role, deletion) {
        (Some(registry), Some(role), Some(deletion)) if errors.is_empty() => {
            Ok(DesiredAttachment {
                registry,
                role,
                principals,
                repositories,
                catalog_listing: spec.catalog_listing,
                deletion,
            })
        }
        _ => Err(errors),
    }
}

/// Exactly one of `resourceId` or `name` (the CRD's CEL rule, repeated for objects stored under an
/// older CRD); `resourceGroup` and `subscriptionId` only with `name`.
fn validate_registry(
    reference: &RegistryReference,
    errors: &mut Vec<FieldError>,
) -> Option<RegistryTarget> {
    let fields = [
        ("spec.registry.resourceId", &reference.resource_id),
        ("spec.registry.name", &reference.name),
        ("spec.registry.resourceGroup", &reference.resource_group),
        ("spec.registry.subscriptionId", &reference.subscription_id),
    ];
    let mut well_formed = true;
    for (field, value) in fields {
        if value.as_deref().is_some_and(|text| text.trim() != text) {
            errors.push(FieldError::new(
                field,
                "must not have leading or trailing whitespace",
            ));
            well_formed = false;
        }
    }
    if !well_formed {
        return None;
    }
    match (&reference.resource_id, &reference.name) {
        (Some(_), Some(_)) | (None, None) => {
            errors.push(FieldError::new(
                "spec.registry",
                "set exactly one of resourceId or name",
            ));
            None
        }
        (Some(resource_id), None) => {
            if reference.resource_group.is_some() || reference.subscription_id.is_some() {
                errors.push(FieldError::new(
                    "spec.registry",
                    "resourceGroup and subscriptionId go with name; a resourceId already names both: remove them",
                ));
                return None;
            }
            RegistryId::parse(resource_id)
                .map(RegistryTarget::Id)
                .map_err(|problem| {
                    errors.push(FieldError::new(
                        "spec.registry.resourceId",
                        problem.to_string(),
                    ))
                })
                .ok()
        }
        (None, Some(name)) => validate_lookup(reference, name, errors).map(RegistryTarget::Name),
    }
}

fn validate_lookup(
    reference: &RegistryReference,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<RegistryLookup> {
    let before = errors.len();
    if let Some(problem) = registry_name_problem(name) {
        errors.push(FieldError::new("spec.registry.name", problem.to_string()));
    }
    if let Some(group) = &reference.resource_group
        && let Err(problem) = check_resource_group(group)
    {
        errors.push(FieldError::new(
            "spec.registry.resourceGroup",
            problem.to_string(),
        ));
    }
    if let Some(subscription) = &reference.subscription_id
        && !is_subscription_id(subscription)
    {
        errors.push(FieldError::new(
            "spec.registry.subscriptionId",
            format!("{subscription:?} is not a subscription id: expected a GUID other than the nil GUID (`az account show --query id -o tsv`)"),
        ));
    }
    (errors.len() == before).then(|| RegistryLookup {
        name: name.to_string(),
        resource_group: reference.resource_group.clone(),
        subscription: reference
            .subscription_id
            .as_ref()
            .map(|s| s.to_ascii_lowercase()),
    })
}

/// `spec.principal` (the original form) or `spec.principals`; neither means the kubelet identity.
fn validate_principals(
    spec: &RegistryAttachmentSpec,
    errors: &mut Vec<FieldError>,
) -> Vec<RequestedPrincipal> {
    let mut principals = Vec::new();
    match (&spec.principal, spec.principals.is_empty()) {
        (Some(_), false) => errors.push(FieldError::new(
            "spec.principal",
            "set spec.principal or spec.principals, not both: move the object id into spec.principals",
        )),
        (Some(reference), true) => match PrincipalId::parse(&reference.object_id) {
            Ok(principal) => principals.push(RequestedPrincipal::Explicit {
                principal,
                kind: PrincipalType::ServicePrincipal,
            }),
            Err(problem) => errors.push(FieldError::new(
                "spec.principal.objectId",
                problem.to_string(),
            )),
        },
        (None, true) => principals.push(RequestedPrincipal::KubeletIdentity),
        (None, false) => {
            for (index, entry) in spec.principals.iter().enumerate() {
                let field = format!("spec.principals[{index}]");
                if let Some(principal) = validate_principal(entry, &field, errors) {
                    if principals.contains(&principal) {
                        errors.push(FieldError::new(field, "names the same identity as an earlier entry: remove one"));
                    } else {
                        principals.push(principal);
                    }
                }
            }
        }
    }
    principals
}

fn validate_principal(
    entry: &PrincipalSpec,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<RequestedPrincipal> {
    let kind = match entry.type_ {
        PrincipalKind::ServicePrincipal => PrincipalType::ServicePrincipal,
        PrincipalKind::Group => PrincipalType::Group,
        PrincipalKind::User => PrincipalType::User,
        PrincipalKind::Unrecognized => {
            errors.push(FieldError::new(
                format!("{field}.type"),
                "unsupported value: use ServicePrincipal, Group or User",
            ));
            return None;
        }
    };
    let kubelet = entry.kubelet == Some(true);
    let named = [
        entry.object_id.is_some(),
        entry.identity_resource_id.is_some(),
        kubelet,
    ];
    if named.iter().filter(|set| **set).count() != 1 {
        errors.push(FieldError::new(
            field,
            "set exactly one of objectId, identityResourceId or kubelet: true",
        ));
        return None;
    }
    if kind != PrincipalType::ServicePrincipal && entry.object_id.is_none() {
        errors.push(FieldError::new(
            format!("{field}.type"),
            "managed identities are service principals: type applies to objectId entries only",
        ));
        return None;
    }
    if let Some(object_id) = &entry.object_id {
        return PrincipalId::parse(object_id)
            .map(|principal| RequestedPrincipal::Explicit { principal, kind })
            .map_err(|problem| {
                errors.push(FieldError::new(
                    format!("{field}.objectId"),
                    problem.to_string(),
                ))
            })
            .ok();
    }
    if let Some(resource_id) = &entry.identity_resource_id {
        return IdentityId::parse(resource_id)
            .map(RequestedPrincipal::Identity)
            .map_err(|problem| {
                errors.push(FieldError::new(
                    format!("{field}.identityResourceId"),
                    problem.to_string(),
                ))
            })
            .ok();
    }
    Some(RequestedPrincipal::KubeletIdentity)
}

fn validate_repositories(
    entries: &[String],
    errors: &mut Vec<FieldError>,
) -> Vec<RepositoryPattern> {
    let mut patterns: Vec<RepositoryPattern> = entries
        .iter()
        .enumerate()
        .filter_map(|(index, entry)| {
            parse_pattern(entry)
                .map_err(|problem| {
                    errors.push(FieldError::new(
                        format!("spec.repositories[{index}]"),
                        problem,
                    ))
                })
                .ok()
        })
        .collect();
    patterns.sort();
    patterns.dedup();
    patterns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{PrincipalReference, RegistryReference};
    use crate::model::PrincipalType;

    const GOOD: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-images/providers/Microsoft.ContainerRegistry/registries/sharedimages";

    fn spec(resource_id: &str) -> RegistryAttachmentSpec {
        RegistryAttachmentSpec {
            registry: RegistryReference::by_id(resource_id),
            role: RoleChoice::Auto,
            principal: None,
            principals: Vec::new(),
            repositories: Vec::new(),
            catalog_listing: false,
            deletion_policy: DeletionPolicy::Delete,
        }
    }

    #[test]
    fn a_good_spec_validates_with_defaults() {
        let desired = validate(&spec(GOOD)).unwrap().by_id().unwrap();
        assert_eq!(desired.registry.name(), "sharedimages");
        assert_eq!(desired.role, RequestedRole::Auto);
        assert_eq!(desired.principals, [RequestedPrincipal::KubeletIdentity]);
        assert!(desired.repositories.is_empty());
        assert_eq!(desired.deletion, Deletion::Delete);
    }

    #[test]
    fn provider_segments_are_case_insensitive_like_arm() {
        let lower = GOOD
            .replace("resourceGroups", "resourcegroups")
            .replace("Microsoft.ContainerRegistry", "microsoft.containerregistry");
        assert!(validate(&spec(&lower)).is_ok());
    }

    #[test]
    fn every_error_names_its_field() {
        let mut bad = spec("not-an-id");
        bad.role = RoleChoice::Unrecognized;
        bad.principal = Some(PrincipalReference {
            object_id: "kubelet".to_string(),
        });
        bad.deletion_policy = DeletionPolicy::Unrecognized;
        let errors = validate(&bad).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.registry.resourceId",
                "spec.role",
                "spec.principal.objectId",
                "spec.deletionPolicy"
            ]
        );
    }

    #[test]
    fn several_principals_each_name_one_identity() {
        let mut several = spec(GOOD);
        several.principals = vec![
            PrincipalSpec {
                object_id: Some("AAAAAAAA-1111-1111-1111-111111111111".to_string()),
                type_: PrincipalKind::Group,
                ..Default::default()
            },
            PrincipalSpec {
                kubelet: Some(true),
                ..Default::default()
            },
            PrincipalSpec {
                identity_resource_id: Some("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pool-b".to_string()),
                ..Default::default()
            },
        ];
        let desired = validate(&several).unwrap();
        assert_eq!(desired.principals.len(), 3);
        assert!(matches!(
            &desired.principals[0],
            RequestedPrincipal::Explicit { kind: PrincipalType::Group, principal } if principal.as_str().starts_with("aaaaaaaa")
        ));
        several.principals.push(PrincipalSpec {
            kubelet: Some(true),
            object_id: Some("aaaaaaaa-1111-1111-1111-111111111111".to_string()),
            ..Default::default()
        });
        several.principals.push(PrincipalSpec {
            kubelet: Some(true),
            ..Default::default()
        });
        several.principal = None;
        let errors = validate(&several).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.principals[3]", "spec.principals[4]"]);
        assert!(errors[0].message.contains("exactly one"));
        assert!(errors[1].message.contains("same identity"));
    }

    #[test]
    fn principal_and_principals_together_are_refused() {
        let mut both = spec(GOOD);
        both.principal = Some(PrincipalReference {
            object_id: "11111111-1111-1111-1111-111111111111".to_string(),
        });
        both.principals = vec![PrincipalSpec {
            kubelet: Some(true),
            ..Default::default()
        }];
        let errors = validate(&both).unwrap_err();
        assert_eq!(errors[0].field, "spec.principal");
    }

    #[test]
    fn repositories_are_checked_sorted_and_refused_with_acr_pull() {
        let mut scoped = spec(GOOD);
        scoped.repositories = vec!["team-b/*".into(), "nginx".into(), "nginx".into()];
        let desired = validate(&scoped).unwrap();
        assert_eq!(
            desired.repositories,
            [
                RepositoryPattern::Exact("nginx".into()),
                RepositoryPattern::Prefix("team-b/".into())
            ]
        );
        scoped.repositories.push("Bad Name".into());
        scoped.role = RoleChoice::AcrPull;
        let errors = validate(&scoped).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.repositories[3]", "spec.repositories"]);
    }
}
