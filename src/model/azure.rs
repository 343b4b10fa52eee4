//! Azure's answers as plain data: a registry, a role assignment, one entry of the permissions API,
//! and a failed ARM or Entra call (`ArmError`, with the operation it came from). The Azure client
//! produces these; the decision logic reads them. Nothing here performs I/O or classifies.

use std::fmt;
use std::time::Duration;

use crate::model::{PermissionsMode, PullRole, RoleAssignmentName};

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
    /// ServicePrincipal, Group, User (as ARM reports it).
    pub principal_type: Option<String>,
}

impl RoleAssignment {
    pub fn role(&self) -> Option<PullRole> {
        PullRole::from_definition_id(&self.role_definition_id)
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

/// The ARM operation a failure came from; also the `operation` label of request metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    GetRegistry,
    /// Registries_List / Registries_ListByResourceGroup (finding a registry by name).
    ListRegistries,
    GetIdentity,
    GetRoleAssignment,
    GetManagedCluster,
    ListRoleAssignments,
    PutRoleAssignment,
    DeleteRoleAssignment,
    /// `Microsoft.Authorization/permissions` (what the operator's identity may do; `check` only).
    ListPermissions,
    /// Getting an access token outside a request (`check` reads its own object id from it).
    GetToken,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::GetRegistry => "get_registry",
            Operation::ListRegistries => "list_registries",
            Operation::GetIdentity => "get_identity",
            Operation::GetRoleAssignment => "get_role_assignment",
            Operation::GetManagedCluster => "get_managed_cluster",
            Operation::ListRoleAssignments => "list_role_assignments",
            Operation::PutRoleAssignment => "put_role_assignment",
            Operation::DeleteRoleAssignment => "delete_role_assignment",
            Operation::ListPermissions => "list_permissions",
            Operation::GetToken => "get_token",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// The credential could not produce a token (misconfiguration, federated token missing, ...).
    #[error("{operation} {target}: could not get an Azure token: {message}")]
    Credential {
        operation: Operation,
        target: String,
        message: String,
    },
    /// No HTTP response: connection refused, TLS failure, timeout.
    #[error("{operation} {target}: could not reach Azure Resource Manager: {message}")]
    Transport {
        operation: Operation,
        target: String,
        message: String,
    },
    /// ARM answered with an error status and (usually) an `{"error":{"code","message"}}` body.
    #[error("{operation} {target}: HTTP {status} {code}: {message}")]
    Response {
        operation: Operation,
        target: String,
        status: u16,
        code: String,
        message: String,
        retry_after: Option<Duration>,
        /// ARM's `x-ms-request-id`, for a support ticket; `None` for a request not sent.
        request_id: Option<String>,
    },
    /// A success status whose body we could not read.
    #[error("{operation} {target}: unexpected response body: {message}")]
    Decode {
        operation: Operation,
        target: String,
        message: String,
    },
}

impl ArmError {
    pub fn operation(&self) -> Operation {
        match self {
            ArmError::Credential { operation, .. }
            | ArmError::Transport { operation, .. }
            | ArmError::Response { operation, .. }
            | ArmError::Decode { operation, .. } => *operation,
        }
    }

    /// True when ARM answered the write with a refusal, so nothing was created or changed (a
    /// 4xx other than 408 and 429); after a timeout or a 5xx the write may have happened.
    pub fn changed_nothing(&self) -> bool {
        matches!(self, ArmError::Response { status, .. } if (400..500).contains(status) && !matches!(status, 408 | 429))
            || matches!(self, ArmError::Credential { .. })
    }

    /// ARM error code, or a stable label for failures without one (metrics use it).
    pub fn code(&self) -> &str {
        match self {
            ArmError::Credential { .. } => "CredentialUnavailable",
            ArmError::Transport { .. } => "TransportError",
            ArmError::Response { code, .. } => code,
            ArmError::Decode { .. } => "UnexpectedResponse",
        }
    }
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
