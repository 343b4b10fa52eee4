//! Failure classification — the one place that decides whether a failed Azure call is retried
//! soon, needs a human, or is permanent, and which condition reason and fix-it text it surfaces
//! as. The Azure client only reports what happened (`ArmError`); the meaning is decided here.

use std::time::Duration;

use crate::decide::reasons;
use crate::model::azure::{ArmError, Operation};

/// How the controller treats a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: back off and retry; Reconciling=True.
    RetrySoon,
    /// Only a human can fix it: Stalled=True, slow retry.
    NeedsHuman,
    /// Retrying cannot help until the object changes.
    Permanent,
}

/// A classified failure: what to do and what to tell the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub class: ErrorClass,
    pub reason: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// ARM's `x-ms-request-id` of the failed call, for logs (never in conditions: it changes on
    /// every retry and would rewrite status each time).
    pub request_id: Option<String>,
}

impl Failure {
    pub fn new(class: ErrorClass, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            class,
            reason,
            message: message.into(),
            retry_after: None,
            request_id: None,
        }
    }
}

/// Classifies a failed Azure call.
pub trait Classify {
    fn classify(&self) -> Failure;
}

impl Classify for ArmError {
    fn classify(&self) -> Failure {
        match self {
            // azure_identity reports every token failure as a credential error. Entra's own
            // refusals carry an AADSTS code and need a human; anything else (the token endpoint
            // unreachable, 5xx, IMDS not ready) is retried like any transient failure.
            ArmError::Credential { message, .. } if is_entra_refusal(message) => Failure::new(
                ErrorClass::NeedsHuman,
                reasons::AUTHENTICATION_FAILED,
                format!(
                    "Entra ID refused acr-attach's credential ({message}); check the --credential flag and the identity's client id, tenant and federation"
                ),
            ),
            ArmError::Credential { message, .. } if is_local_credential_problem(message) => {
                Failure::new(
                    ErrorClass::NeedsHuman,
                    reasons::AUTHENTICATION_FAILED,
                    format!(
                        "acr-attach cannot build its Azure credential from this pod ({message}); check the projected service-account token (azure.workload.identity/use label, AZURE_FEDERATED_TOKEN_FILE) and the certificate files the --credential flag points at"
                    ),
                )
            }
            ArmError::Credential { message, .. } => Failure::new(
                ErrorClass::RetrySoon,
                reasons::AUTHENTICATION_FAILED,
                format!("acr-attach could not get an Azure token yet ({message}); retrying"),
            ),
            ArmError::Transport { .. } => Failure::new(
                ErrorClass::RetrySoon,
                reasons::AZURE_UNAVAILABLE,
                self.to_string(),
            ),
            ArmError::Decode { .. } => Failure::new(
                ErrorClass::NeedsHuman,
                reasons::AZURE_REQUEST_REJECTED,
                self.to_string(),
            ),
            ArmError::Response {
                operation,
                target,
                status,
                code,
                message,
                retry_after,
                request_id,
            } => {
                let mut failure = classify_response(*operation, target, *status, code, message);
                failure.retry_after = *retry_after;
                failure.request_id = request_id.clone();
                failure
            }
        }
    }
}

/// An Entra answer that retrying will not change: an AADSTS code that is not one of Entra's
/// transient ones (AADSTS90033 "A transient error has occurred", temporarily_unavailable,
/// server_error).
fn is_entra_refusal(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    let transient = [
        "aadsts90033",
        "transient error",
        "temporarily_unavailable",
        "server_error",
    ]
    .iter()
    .any(|marker| lower.contains(marker));
    lower.contains("aadsts") && !transient
}

/// A credential failure that is about this pod, not about Entra: a token or certificate file
/// that is missing or unreadable, or a credential that is not configured. Retrying cannot help.
fn is_local_credential_problem(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    [
        "no such file",
        "os error 2",
        "os error 13",
        "permission denied",
        "is a directory",
        "not set",
        "missing environment variable",
        "environment variable",
    ]
    .iter()
    .any(|marker| lower.contains(marker))
}

fn classify_response(
    operation: Operation,
    target: &str,
    status: u16,
    code: &str,
    message: &str,
) -> Failure {
    let retry = |reason| Failure::new(ErrorClass::RetrySoon, reason, format!("{code}: {message}"));
    let human = |reason, text: String| Failure::new(ErrorClass::NeedsHuman, reason, text);
    match (status, code) {
        (429, _) => retry(reasons::AZURE_THROTTLED),
        (408, _) | (500..=599, _) => retry(reasons::AZURE_UNAVAILABLE),
        (_, "PrincipalNotFound") => retry(reasons::PRINCIPAL_NOT_REPLICATED),
        (401, _) => human(
            reasons::AUTHENTICATION_FAILED,
            format!("Azure refused acr-attach's token ({code}: {message})"),
        ),
        (403, _) => human(
            reasons::AUTHORIZATION_FAILED,
            describe_authorization_failure(code, message),
        ),
        (404, _) => match operation {
            Operation::GetIdentity => human(
                reasons::IDENTITY_NOT_FOUND,
                format!(
                    "the user-assigned identity {target} was not found ({code}); fix spec.principals[].identityResourceId"
                ),
            ),
            Operation::ListRegistries => human(
                reasons::REGISTRY_NAME_NOT_FOUND,
                format!(
                    "{target} was not found ({code}: {message}); fix spec.registry.subscriptionId or spec.registry.resourceGroup"
                ),
            ),
            Operation::GetManagedCluster => human(
                reasons::CLUSTER_NOT_FOUND,
                format!(
                    "the AKS cluster {target} was not found ({code}); fix --cluster-resource-id or set spec.principal.objectId"
                ),
            ),
            _ => human(
                reasons::REGISTRY_NOT_FOUND,
                format!(
                    "the registry {target} was not found ({code}: {message}); fix spec.registry.resourceId"
                ),
            ),
        },
        (_, "RoleAssignmentLimitExceeded") => human(
            reasons::ROLE_ASSIGNMENT_LIMIT,
            format!(
                "the subscription has no room for another role assignment ({message}); remove unused assignments"
            ),
        ),
        (409, "ScopeLocked") => human(
            reasons::SCOPE_LOCKED,
            format!(
                "a management lock blocks changing role assignments on {target} ({message}); remove the lock (or, when detaching, set the skip-cleanup annotation)"
            ),
        ),
        // A conflict with an operation still running passes; any other conflict is a state
        // that retrying will not change (e.g. a role assignment update ARM does not permit).
        (409, code) if code.to_ascii_lowercase().contains("inprogress") => {
            retry(reasons::AZURE_UNAVAILABLE)
        }
        _ => human(
            reasons::AZURE_REQUEST_REJECTED,
            format!("Azure rejected {operation} for {target}: HTTP {status} {code}: {message}"),
        ),
    }
}

/// Names the missing action and scope, and what to grant, from ARM's AuthorizationFailed text:
/// "... does not have authorization to perform action 'X' over scope 'Y' or the scope is invalid."
fn describe_authorization_failure(code: &str, message: &str) -> String {
    let quoted_after = |marker: &str| {
        let start = message.find(marker)? + marker.len();
        let rest = &message[start..];
        let end = rest.find('\'')?;
        Some(rest[..end].to_string())
    };
    match (
        quoted_after("perform action '"),
        quoted_after("over scope '"),
    ) {
        (Some(action), Some(scope)) if action.to_ascii_lowercase().ends_with("/read") => format!(
            "acr-attach's Azure identity is not allowed to perform '{action}' on '{scope}' ({code}); grant it Reader there"
        ),
        (Some(action), Some(scope)) => format!(
            "acr-attach's Azure identity is not allowed to perform '{action}' on '{scope}' ({code}); grant it \"Role Based Access Control Administrator\" (conditioned to AcrPull and Container Registry Repository Reader) on the registry, and Reader on the AKS cluster"
        ),
        _ => format!("acr-attach's Azure identity was refused ({code}: {message})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::azure::Operation;

    fn response(operation: Operation, status: u16, code: &str, message: &str) -> ArmError {
        ArmError::Response {
            operation,
            target: "/subscriptions/s/x".to_string(),
            status,
            code: code.to_string(),
            message: message.to_string(),
            retry_after: None,
            request_id: None,
        }
    }

    #[test]
    fn throttling_and_server_errors_retry_soon() {
        for (status, code) in [
            (429, "SubscriptionRequestsThrottled"),
            (500, "InternalServerError"),
            (503, "ServiceUnavailable"),
        ] {
            let failure = response(Operation::GetRegistry, status, code, "m").classify();
            assert_eq!(failure.class, ErrorClass::RetrySoon, "{status}");
        }
    }

    #[test]
    fn authorization_failure_names_action_and_scope() {
        let failure = response(
            Operation::PutRoleAssignment,
            403,
            "AuthorizationFailed",
            "The client 'c' with object id 'o' does not have authorization to perform action 'Microsoft.Authorization/roleAssignments/write' over scope '/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r/providers/Microsoft.Authorization/roleAssignments/n' or the scope is invalid. If access was recently granted, please refresh your credentials.",
        )
        .classify();
        assert_eq!(failure.class, ErrorClass::NeedsHuman);
        assert_eq!(failure.reason, reasons::AUTHORIZATION_FAILED);
        assert!(
            failure
                .message
                .contains("'Microsoft.Authorization/roleAssignments/write'")
        );
        assert!(failure.message.contains("registries/r/providers"));
    }

    #[test]
    fn a_refused_read_asks_for_reader_not_for_the_rbac_role() {
        let failure = response(
            Operation::ListRegistries,
            403,
            "AuthorizationFailed",
            "The client 'c' with object id 'o' does not have authorization to perform action 'Microsoft.ContainerRegistry/registries/read' over scope '/subscriptions/s' or the scope is invalid.",
        )
        .classify();
        assert_eq!(failure.reason, reasons::AUTHORIZATION_FAILED);
        assert!(
            failure.message.contains("grant it Reader there"),
            "{}",
            failure.message
        );
        assert!(failure.message.contains("'/subscriptions/s'"));
        assert!(!failure.message.contains("Role Based Access Control"));
    }

    #[test]
    fn not_found_depends_on_what_was_missing() {
        assert_eq!(
            response(Operation::GetRegistry, 404, "ResourceNotFound", "m")
                .classify()
                .reason,
            reasons::REGISTRY_NOT_FOUND
        );
        assert_eq!(
            response(Operation::GetManagedCluster, 404, "ResourceNotFound", "m")
                .classify()
                .reason,
            reasons::CLUSTER_NOT_FOUND
        );
        let listed =
            response(Operation::ListRegistries, 404, "ResourceGroupNotFound", "m").classify();
        assert_eq!(listed.reason, reasons::REGISTRY_NAME_NOT_FOUND);
        assert!(listed.message.contains("spec.registry.resourceGroup"));
    }

    #[test]
    fn entra_refusals_need_a_human_but_an_unreachable_token_endpoint_is_retried() {
        let credential = |message: &str| ArmError::Credential {
            operation: Operation::GetRegistry,
            target: "t".to_string(),
            message: message.to_string(),
        };
        let refused = credential("AADSTS7000215: Invalid client secret provided.").classify();
        assert_eq!(refused.class, ErrorClass::NeedsHuman);
        let busy =
            credential("AADSTS90033: A transient error has occurred. Please try again.").classify();
        assert_eq!(busy.class, ErrorClass::RetrySoon);
        let unreachable = credential("failed to execute `reqwest` request").classify();
        assert_eq!(unreachable.class, ErrorClass::RetrySoon);
        assert_eq!(unreachable.reason, reasons::AUTHENTICATION_FAILED);
    }

    #[test]
    fn a_management_lock_needs_a_human() {
        let failure = response(
            Operation::DeleteRoleAssignment,
            409,
            "ScopeLocked",
            "locked",
        )
        .classify();
        assert_eq!(failure.class, ErrorClass::NeedsHuman);
        assert_eq!(failure.reason, reasons::SCOPE_LOCKED);
    }

    #[test]
    fn local_credential_problems_and_unknown_conflicts_need_a_human() {
        let credential = |message: &str| ArmError::Credential {
            operation: Operation::GetRegistry,
            target: "t".to_string(),
            message: message.to_string(),
        };
        let missing_file = credential(
            "failed to read federated token from /var/run/secrets/azure/tokens/azure-identity-token: No such file or directory (os error 2)",
        )
        .classify();
        assert_eq!(missing_file.class, ErrorClass::NeedsHuman);
        assert!(missing_file.message.contains("AZURE_FEDERATED_TOKEN_FILE"));
        let unknown = response(Operation::PutRoleAssignment, 409, "SomethingNew", "m").classify();
        assert_eq!(unknown.class, ErrorClass::NeedsHuman);
        let busy = response(
            Operation::PutRoleAssignment,
            409,
            "AnotherOperationInProgress",
            "m",
        )
        .classify();
        assert_eq!(busy.class, ErrorClass::RetrySoon);
    }

    #[test]
    fn principal_not_found_starts_as_transient() {
        let failure =
            response(Operation::PutRoleAssignment, 400, "PrincipalNotFound", "m").classify();
        assert_eq!(failure.class, ErrorClass::RetrySoon);
        assert_eq!(failure.reason, reasons::PRINCIPAL_NOT_REPLICATED);
    }
}
