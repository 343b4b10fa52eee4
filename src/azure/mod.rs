//! The Azure boundary: the five ARM operations acr-attach needs, as a small trait over plain data,
//! with the real ARM client (`arm`), credential selection (`credential`) and the one place ARM
//! failures are classified (`error`) behind it.

pub mod arm;
pub mod credential;
pub mod error;

use async_trait::async_trait;

pub use error::{ArmError, ErrorClass};

use crate::model::{
    ClusterId, PermissionsMode, PrincipalId, PullRole, RegistryId, RoleAssignmentName,
};

/// A registry as ARM describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    pub id: String,
    pub login_server: Option<String>,
    /// `None` when ARM did not report `roleAssignmentMode`: unknown, never assumed legacy.
    pub mode: Option<PermissionsMode>,
}

/// A role assignment as ARM lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleAssignment {
    pub id: String,
    pub name: RoleAssignmentName,
    pub scope: String,
    pub role_definition_id: String,
    pub principal_id: String,
    pub condition: Option<String>,
    pub description: Option<String>,
}

impl RoleAssignment {
    pub fn role(&self) -> Option<PullRole> {
        PullRole::from_definition_id(&self.role_definition_id)
    }

    /// True when this assignment grants exactly `role` to `principal` on `registry`, unconditioned:
    /// what ARM would call the same assignment (409 RoleAssignmentExists).
    pub fn grants(&self, registry: &RegistryId, principal: &PrincipalId, role: PullRole) -> bool {
        self.scope.eq_ignore_ascii_case(registry.as_str())
            && self.principal_id.eq_ignore_ascii_case(principal.as_str())
            && self.role() == Some(role)
            && self
                .condition
                .as_deref()
                .is_none_or(|c| c.trim().is_empty())
    }
}

/// One entry of `Microsoft.Authorization/permissions`: what one of the caller's role assignments
/// lets it do at the scope asked about. `condition` is the assignment's ABAC condition when ARM
/// reports it (the 2022-04-01 schema has no such field, so it may well be absent in Azure).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permission {
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub not_data_actions: Vec<String>,
    pub condition: Option<String>,
}

impl Permission {
    /// An entry allows a control-plane action when one of its `actions` matches and none of its
    /// own `notActions` does. NotActions are not deny rules: another entry may still allow it.
    pub fn allows(&self, action: &str) -> bool {
        self.actions.iter().any(|p| action_matches(p, action))
            && !self.not_actions.iter().any(|p| action_matches(p, action))
    }
}

/// ARM action patterns: `*` matches any run of characters (across `/`), case-insensitively, so
/// `*`, `*/write`, `Microsoft.Authorization/*` and `Microsoft.Authorization/*/Write` all match
/// `Microsoft.Authorization/roleAssignments/write`, and `*/read` does not.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let action = action.to_ascii_lowercase();
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = action.strip_prefix(first) else {
        return false;
    };
    let tail: Vec<&str> = parts.collect();
    let Some((last, middle)) = tail.split_last() else {
        // No star: the whole action must equal the pattern.
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// The assignment acr-attach asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleAssignmentRequest {
    pub registry: RegistryId,
    pub name: RoleAssignmentName,
    pub principal: PrincipalId,
    pub role: PullRole,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// 201 or 200: the assignment under our name exists now.
    Applied(RoleAssignment),
    /// 409 RoleAssignmentExists: the same grant exists under another name (someone else's).
    AlreadyExists { existing_name: Option<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// 204 (or 404 for a scope that is gone): nothing to delete.
    AlreadyGone,
}

/// The ARM operations the reconciler uses. The real implementation is `arm::ArmClient`.
#[async_trait]
pub trait AzureApi: Send + Sync + 'static {
    async fn get_registry(&self, registry: &RegistryId) -> Result<Registry, ArmError>;
    /// `properties.identityProfile.kubeletidentity.objectId`, or `None` when the cluster has none.
    async fn get_kubelet_identity(&self, cluster: &ClusterId) -> Result<Option<String>, ArmError>;
    /// Assignments made exactly at the registry scope (inherited ones are filtered out).
    async fn list_role_assignments(
        &self,
        registry: &RegistryId,
    ) -> Result<Vec<RoleAssignment>, ArmError>;
    async fn put_role_assignment(
        &self,
        request: &RoleAssignmentRequest,
    ) -> Result<PutOutcome, ArmError>;
    async fn delete_role_assignment(&self, assignment_id: &str) -> Result<DeleteOutcome, ArmError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_patterns_match_like_arm() {
        let write = "Microsoft.Authorization/roleAssignments/write";
        for pattern in [
            "*",
            "*/write",
            "Microsoft.Authorization/*",
            "Microsoft.Authorization/*/Write",
            "microsoft.authorization/roleassignments/*",
            write,
        ] {
            assert!(action_matches(pattern, write), "{pattern}");
        }
        for pattern in [
            "*/read",
            "Microsoft.Authorization/*/read",
            "Microsoft.Authorization/roleAssignments/read",
            "Microsoft.Support/*",
            "Microsoft.Authorization/roleAssignments/writeX",
            "*/write/*",
        ] {
            assert!(!action_matches(pattern, write), "{pattern}");
        }
        assert!(action_matches("a*b*c", "abbbc"));
        assert!(!action_matches("a*bc*bc", "abc"));
    }
}
