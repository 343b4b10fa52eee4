//! Spec validation: turns a `RegistryAttachmentSpec` into a typed `DesiredAttachment`, or into
//! field errors that name the field and the fix. Nothing reaches Azure before this passes.

use std::fmt;

use crate::crd::{DeletionPolicy, RegistryAttachmentSpec, RoleChoice};
use crate::model::{PrincipalId, PullRole, RegistryId};

/// What the user asked for, in checked form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredAttachment {
    pub registry: RegistryId,
    pub role: RequestedRole,
    pub principal: RequestedPrincipal,
    pub deletion: Deletion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestedRole {
    /// Pick from the registry's permissions mode.
    Auto,
    Fixed(PullRole),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestedPrincipal {
    /// `spec.principal.objectId`.
    Explicit(PrincipalId),
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
    pub field: &'static str,
    pub message: String,
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

pub fn validate(spec: &RegistryAttachmentSpec) -> Result<DesiredAttachment, Vec<FieldError>> {
    let mut errors = Vec::new();

    let resource_id = spec.registry.resource_id.trim();
    let registry = if resource_id != spec.registry.resource_id {
        errors.push(FieldError {
            field: "spec.registry.resourceId",
            message: "must not have leading or trailing whitespace".to_string(),
        });
        None
    } else {
        RegistryId::parse(resource_id)
            .map_err(|problem| {
                errors.push(FieldError {
                    field: "spec.registry.resourceId",
                    message: problem.to_string(),
                })
            })
            .ok()
    };

    let role = match spec.role {
        RoleChoice::Auto => Some(RequestedRole::Auto),
        RoleChoice::AcrPull => Some(RequestedRole::Fixed(PullRole::AcrPull)),
        RoleChoice::RepositoryReader => Some(RequestedRole::Fixed(PullRole::RepositoryReader)),
        RoleChoice::Unrecognized => {
            errors.push(FieldError {
                field: "spec.role",
                message: "unsupported value: use Auto, AcrPull or RepositoryReader".to_string(),
            });
            None
        }
    };

    let principal = match &spec.principal {
        None => Some(RequestedPrincipal::KubeletIdentity),
        Some(reference) => PrincipalId::parse(&reference.object_id)
            .map(RequestedPrincipal::Explicit)
            .map_err(|problem| {
                errors.push(FieldError {
                    field: "spec.principal.objectId",
                    message: problem.to_string(),
                })
            })
            .ok(),
    };

    let deletion = match spec.deletion_policy {
        DeletionPolicy::Delete => Some(Deletion::Delete),
        DeletionPolicy::Orphan => Some(Deletion::Orphan),
        DeletionPolicy::Unrecognized => {
            errors.push(FieldError {
                field: "spec.deletionPolicy",
                message: "unsupported value: use Delete or Orphan".to_string(),
            });
            None
        }
    };

    match (registry, role, principal, deletion) {
        (Some(registry), Some(role), Some(principal), Some(deletion)) if errors.is_empty() => {
            Ok(DesiredAttachment {
                registry,
                role,
                principal,
                deletion,
            })
        }
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{PrincipalReference, RegistryReference};

    const GOOD: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-images/providers/Microsoft.ContainerRegistry/registries/sharedimages";

    fn spec(resource_id: &str) -> RegistryAttachmentSpec {
        RegistryAttachmentSpec {
            registry: RegistryReference {
                resource_id: resource_id.to_string(),
            },
            role: RoleChoice::Auto,
            principal: None,
            deletion_policy: DeletionPolicy::Delete,
        }
    }

    #[test]
    fn a_good_spec_validates_with_defaults() {
        let desired = validate(&spec(GOOD)).unwrap();
        assert_eq!(desired.registry.name(), "sharedimages");
        assert_eq!(desired.role, RequestedRole::Auto);
        assert_eq!(desired.principal, RequestedPrincipal::KubeletIdentity);
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
        let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
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
}
