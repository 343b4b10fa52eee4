//! Every condition reason acr-attach writes, in one place. CamelCase, stable: users match on them in
//! alerts and `kubectl wait`, so renaming one is a breaking change.

/// Ready=True: the role assignment exists for the right principal and role.
pub const ATTACHED: &str = "Attached";
/// Work in progress: recording intent, creating the assignment.
pub const ATTACHING: &str = "Attaching";
/// Deletion in progress.
pub const DETACHING: &str = "Detaching";
/// Event: the finalizer was released (after deleting our assignment, or leaving Azure alone).
pub const DETACHED: &str = "Detached";

// Transient: retried with backoff, Reconciling=True.
pub const AZURE_THROTTLED: &str = "AzureThrottled";
pub const AZURE_UNAVAILABLE: &str = "AzureUnavailable";
/// PrincipalNotFound inside the Entra replication window.
pub const PRINCIPAL_NOT_REPLICATED: &str = "PrincipalNotReplicated";

// Needs a human: Stalled=True, slow retry.
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const ROLE_NOT_EFFECTIVE: &str = "RoleNotEffective";
/// spec.repositories on a classic-mode registry, where AcrPull cannot be scoped.
pub const REPOSITORIES_NEED_ABAC: &str = "RepositoriesNeedAbac";
/// A user-assigned identity named in spec.principals does not exist.
pub const IDENTITY_NOT_FOUND: &str = "IdentityNotFound";
/// The reconcile did not finish within its deadline.
pub const RECONCILE_TIMED_OUT: &str = "ReconcileTimedOut";
pub const REGISTRY_MODE_UNKNOWN: &str = "RegistryModeUnknown";
pub const REGISTRY_NOT_FOUND: &str = "RegistryNotFound";
/// spec.registry.name matches no registry the operator's identity can list.
pub const REGISTRY_NAME_NOT_FOUND: &str = "RegistryNameNotFound";
/// spec.registry.name matches more than one registry in the list.
pub const REGISTRY_NAME_AMBIGUOUS: &str = "RegistryNameAmbiguous";
/// spec.registry.name without subscriptionId, and the operator knows no default subscription.
pub const REGISTRY_SUBSCRIPTION_UNKNOWN: &str = "RegistrySubscriptionUnknown";
/// Refused by the operator's allow-list (or its cloud's login-server suffix): no Azure call made.
pub const REGISTRY_NOT_ALLOWED: &str = "RegistryNotAllowed";
pub const CLUSTER_NOT_FOUND: &str = "ClusterNotFound";
pub const KUBELET_IDENTITY_MISSING: &str = "KubeletIdentityMissing";
pub const NO_PRINCIPAL_CONFIGURED: &str = "NoPrincipalConfigured";
pub const AUTHORIZATION_FAILED: &str = "AuthorizationFailed";
pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
pub const PRINCIPAL_NOT_FOUND: &str = "PrincipalNotFound";
pub const ROLE_ASSIGNMENT_LIMIT: &str = "RoleAssignmentLimitExceeded";
pub const AZURE_REQUEST_REJECTED: &str = "AzureRequestRejected";
/// A management lock on the registry or its resource group blocks role assignment changes.
pub const SCOPE_LOCKED: &str = "ScopeLocked";
pub const DETACH_BLOCKED: &str = "DetachBlocked";

// Normal (False) states of Reconciling and Stalled.
pub const RECONCILED: &str = "Reconciled";
/// Reconciling=False while Ready stays True: re-verifying a confirmed grant failed transiently
/// and is retried; the grant confirmed at status.lastSyncTime stands.
pub const VERIFICATION_DEFERRED: &str = "VerificationDeferred";
pub const NOT_STALLED: &str = "NotStalled";

// Warnings of `acr-attach check` (never conditions).
/// An AcrPull assignment an ABAC registry ignores.
pub const IGNORED_ACR_PULL: &str = "IgnoredAcrPull";
/// An ABAC registry where the principal cannot list the catalog (no Catalog Lister).
pub const CATALOG_LISTING_MISSING: &str = "CatalogListingMissing";
/// The assignment exists, but the operator could not write it again after a deletion.
pub const CANNOT_REPAIR: &str = "CannotRepair";
