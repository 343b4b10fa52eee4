//! Configuration of the emulated tenant: what exists at start and how the emulator misbehaves.
//!
//! Every type here is `Deserialize` with defaults everywhere, so a sandbox can describe a tenant
//! in a few lines of YAML/JSON.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Tenant (directory) id of the default configuration.
pub const DEFAULT_TENANT_ID: &str = "72f988bf-0000-4000-8000-00000000a77e";
/// The one subscription of the default configuration.
pub const DEFAULT_SUBSCRIPTION_ID: &str = "00000000-0000-4000-8000-000000000001";
/// Client (application) id of the default operator identity.
pub const DEFAULT_OPERATOR_CLIENT_ID: &str = "0a7e0000-0000-4000-8000-00000000c11e";
/// Object (principal) id of the default operator identity.
pub const DEFAULT_OPERATOR_OBJECT_ID: &str = "0a7e0000-0000-4000-8000-00000000b1ec";
/// Client secret of the default operator identity.
pub const DEFAULT_OPERATOR_CLIENT_SECRET: &str = "emulator-operator-secret";
/// Value the App Service managed-identity endpoint expects in `X-IDENTITY-HEADER`.
pub const DEFAULT_IDENTITY_HEADER: &str = "emulator-identity-header";

/// The emulated tenant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct TenantConfig {
    pub tenant_id: String,
    /// Subscription ids. Subscriptions referenced by other ids are created implicitly.
    pub subscriptions: Vec<String>,
    /// Ids like `/subscriptions/S/resourceGroups/RG`. Groups referenced by other ids are created implicitly.
    pub resource_groups: Vec<String>,
    /// Other resource ids that exist only so role assignments can be scoped to them
    /// (GET on them is not emulated).
    pub resources: Vec<String>,
    pub registries: Vec<RegistryConfig>,
    pub clusters: Vec<ClusterConfig>,
    /// Identities that can obtain tokens. The first one is the operator's.
    pub identities: Vec<IdentityConfig>,
    /// Extra directory entries. Identities and kubelet identities are added automatically
    /// (as created long ago).
    pub principals: Vec<PrincipalConfig>,
    /// Role assignments that exist at start, created by "someone else".
    pub role_assignments: Vec<RoleAssignmentConfig>,
    /// Extra role definition GUIDs (custom roles) assignments may reference besides the built-in ones.
    pub role_definitions: Vec<String>,
    /// Token audiences ARM accepts besides the emulator's own endpoint.
    /// Real ARM also accepts the classic `https://management.core.windows.net/` resource id.
    pub extra_audiences: Vec<String>,
    /// `expires_in` of issued access tokens.
    pub token_lifetime_secs: u64,
    /// Secret the App Service managed-identity endpoint (`/msi/token`) expects in `X-IDENTITY-HEADER`.
    pub identity_header: String,
    /// Extra subject alternative names for the server certificate (besides 127.0.0.1 and localhost),
    /// e.g. a hostname a container reaches the emulator by.
    pub tls_subject_alt_names: Vec<String>,
    pub api_versions: ApiVersions,
    pub faults: FaultConfig,
    /// `AllowAll` (default): every authenticated request is authorized unless a `deny` rule says
    /// otherwise. `Rbac`: requests are authorized from the caller's own role assignments (role
    /// permissions with wildcards, notActions, and the delegation conditions on them).
    pub authorization: AuthorizationMode,
    /// Custom role definitions with their permissions (usable in `roleAssignments`).
    pub custom_roles: Vec<CustomRole>,
    /// `Microsoft.ManagedIdentity/userAssignedIdentities` that exist (GET-able, usable as scopes);
    /// each one's principal joins the directory as a service principal created long ago.
    pub user_assigned_identities: Vec<UserAssignedIdentityConfig>,
}

/// How the emulator decides whether an authenticated caller may perform an action.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum AuthorizationMode {
    /// Everything is allowed unless a `deny` rule matches.
    #[default]
    AllowAll,
    /// ARM's model: an action is allowed when one of the caller's role assignments at or above the
    /// target grants it (an `actions` pattern matches and no `notActions` pattern of that same
    /// role does) and the assignment's condition, if any, is fulfilled. `deny` rules still apply.
    Rbac,
}

/// A role's permission set, as `GET roleDefinitions` and the permissions API show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct RolePermissions {
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub not_data_actions: Vec<String>,
}

/// A custom role definition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct CustomRole {
    /// The role definition GUID.
    pub id: String,
    pub role_name: String,
    pub permissions: RolePermissions,
}

impl Default for TenantConfig {
    fn default() -> Self {
        TenantConfig {
            tenant_id: DEFAULT_TENANT_ID.to_string(),
            subscriptions: vec![DEFAULT_SUBSCRIPTION_ID.to_string()],
            resource_groups: Vec::new(),
            resources: Vec::new(),
            registries: Vec::new(),
            clusters: Vec::new(),
            identities: vec![IdentityConfig {
                client_id: DEFAULT_OPERATOR_CLIENT_ID.to_string(),
                object_id: DEFAULT_OPERATOR_OBJECT_ID.to_string(),
                client_secret: Some(DEFAULT_OPERATOR_CLIENT_SECRET.to_string()),
                display_name: "acr-attach-operator".to_string(),
            }],
            principals: Vec::new(),
            role_assignments: Vec::new(),
            role_definitions: Vec::new(),
            extra_audiences: vec!["https://management.core.windows.net/".to_string()],
            token_lifetime_secs: 3599,
            identity_header: DEFAULT_IDENTITY_HEADER.to_string(),
            tls_subject_alt_names: Vec::new(),
            api_versions: ApiVersions::default(),
            faults: FaultConfig::default(),
            authorization: AuthorizationMode::AllowAll,
            custom_roles: Vec::new(),
            user_assigned_identities: Vec::new(),
        }
    }
}

impl TenantConfig {
    /// The default tenant plus one resource group holding a legacy-mode registry, an ABAC-mode
    /// registry and an MSI cluster with a kubelet identity; handy for a sandbox.
    pub fn sample() -> Self {
        let rg = format!("/subscriptions/{DEFAULT_SUBSCRIPTION_ID}/resourceGroups/acr-attach-rg");
        let cluster_id = format!("{rg}/providers/Microsoft.ContainerService/managedClusters/aks1");
        TenantConfig {
            resource_groups: vec![rg.clone()],
            registries: vec![
                RegistryConfig::new(
                    format!("{rg}/providers/Microsoft.ContainerRegistry/registries/legacyacr"),
                    RegistryMode::Legacy,
                ),
                RegistryConfig::new(
                    format!("{rg}/providers/Microsoft.ContainerRegistry/registries/abacacr"),
                    RegistryMode::Abac,
                ),
            ],
            clusters: vec![ClusterConfig {
                kubelet_identity: Some(KubeletIdentity::generated(&cluster_id)),
                ..ClusterConfig::new(cluster_id)
            }],
            ..TenantConfig::default()
        }
    }
}

/// `properties.roleAssignmentMode` of a registry.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
pub enum RegistryMode {
    /// AcrPull/AcrPush/AcrDelete are honoured.
    #[default]
    #[serde(rename = "LegacyRegistryPermissions", alias = "Legacy")]
    Legacy,
    /// Only the Container Registry Repository* roles (optionally with ABAC conditions) are honoured.
    #[serde(rename = "AbacRepositoryPermissions", alias = "Abac")]
    Abac,
}

impl RegistryMode {
    /// The wire value of `properties.roleAssignmentMode`.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryMode::Legacy => "LegacyRegistryPermissions",
            RegistryMode::Abac => "AbacRepositoryPermissions",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct RegistryConfig {
    /// `/subscriptions/S/resourceGroups/RG/providers/Microsoft.ContainerRegistry/registries/NAME`
    pub id: String,
    /// Defaults to `<lowercased name>.azurecr.io`.
    pub login_server: Option<String>,
    pub mode: RegistryMode,
    pub location: String,
    pub sku: String,
    pub tags: BTreeMap<String, String>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            id: String::new(),
            login_server: None,
            mode: RegistryMode::Legacy,
            location: "westus".to_string(),
            sku: "Standard".to_string(),
            tags: BTreeMap::new(),
        }
    }
}

impl RegistryConfig {
    pub fn new(id: impl Into<String>, mode: RegistryMode) -> Self {
        RegistryConfig {
            id: id.into(),
            mode,
            ..RegistryConfig::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterConfig {
    /// `/subscriptions/S/resourceGroups/RG/providers/Microsoft.ContainerService/managedClusters/NAME`
    pub id: String,
    /// `None` models a cluster whose GET has no `properties.identityProfile`.
    pub kubelet_identity: Option<KubeletIdentity>,
    pub location: String,
    /// Object id of the cluster (control-plane) identity, top-level `identity.principalId`.
    /// Generated from the id when absent.
    pub control_plane_principal_id: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            id: String::new(),
            kubelet_identity: None,
            location: "westus".to_string(),
            control_plane_principal_id: None,
        }
    }
}

impl ClusterConfig {
    pub fn new(id: impl Into<String>) -> Self {
        ClusterConfig {
            id: id.into(),
            ..ClusterConfig::default()
        }
    }
}

/// `properties.identityProfile.kubeletidentity` of a managed cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeletIdentity {
    pub client_id: String,
    pub object_id: String,
    pub resource_id: String,
}

impl KubeletIdentity {
    /// A kubelet identity with ids derived deterministically from the cluster id, shaped like the
    /// `<cluster>-agentpool` identity AKS creates in the node resource group.
    pub fn generated(cluster_id: &str) -> Self {
        let key = cluster_id.to_ascii_lowercase();
        let segments: Vec<&str> = cluster_id.split('/').filter(|s| !s.is_empty()).collect();
        let sub = segments.get(1).copied().unwrap_or(DEFAULT_SUBSCRIPTION_ID);
        let rg = segments.get(3).copied().unwrap_or("rg");
        let name = segments.last().copied().unwrap_or("cluster");
        KubeletIdentity {
            client_id: uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_URL,
                format!("kubelet-client:{key}").as_bytes(),
            )
            .to_string(),
            object_id: uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_URL,
                format!("kubelet-object:{key}").as_bytes(),
            )
            .to_string(),
            resource_id: format!(
                "/subscriptions/{sub}/resourcegroups/MC_{rg}_{name}_westus/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}-agentpool"
            ),
        }
    }
}

/// An identity that can obtain tokens (client secret, federated assertion or managed identity).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct IdentityConfig {
    pub client_id: String,
    pub object_id: String,
    /// `None`: only federated assertions / the managed-identity endpoint work for this identity.
    pub client_secret: Option<String>,
    pub display_name: String,
}

/// An entry of the directory (someone who can be the principal of a role assignment).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct PrincipalConfig {
    pub object_id: String,
    /// When the principal was created, relative to emulator start (negative: before start).
    /// Drives the PrincipalNotFound replication window.
    pub created_at_offset_secs: i64,
    /// `User`, `Group` or `ServicePrincipal`; managed identities are `ServicePrincipal`.
    pub principal_type: String,
    /// For `principalType: Group`: object ids of its direct members (users, service principals or
    /// other groups; nesting is followed). Only the data-plane checks
    /// (`ArmEmulator::may_read_repository`, `may_list_catalog`) look at membership.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

impl Default for PrincipalConfig {
    fn default() -> Self {
        PrincipalConfig {
            object_id: String::new(),
            created_at_offset_secs: -86_400,
            principal_type: "ServicePrincipal".to_string(),
            members: Vec::new(),
        }
    }
}

/// A `Microsoft.ManagedIdentity/userAssignedIdentities` resource.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct UserAssignedIdentityConfig {
    /// `/subscriptions/S/resourceGroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/NAME`
    pub id: String,
    /// Object id of its service principal (what role assignments name). Generated from the id
    /// when absent.
    pub principal_id: Option<String>,
    /// Application (client) id (what token requests name). Generated from the id when absent.
    pub client_id: Option<String>,
    pub location: String,
    pub tags: BTreeMap<String, String>,
}

impl Default for UserAssignedIdentityConfig {
    fn default() -> Self {
        UserAssignedIdentityConfig {
            id: String::new(),
            principal_id: None,
            client_id: None,
            location: "westus".to_string(),
            tags: BTreeMap::new(),
        }
    }
}

impl UserAssignedIdentityConfig {
    pub fn new(id: impl Into<String>) -> Self {
        UserAssignedIdentityConfig {
            id: id.into(),
            ..UserAssignedIdentityConfig::default()
        }
    }

    /// The same identity with absent ids generated deterministically from the resource id
    /// (case-insensitively), as `ArmEmulator::add_user_assigned_identity` stores it.
    pub fn with_generated_ids(mut self) -> Self {
        let key = self.id.trim().trim_matches('/').to_ascii_lowercase();
        let derive = |kind: &str| {
            uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_URL,
                format!("uami-{kind}:/{key}").as_bytes(),
            )
            .to_string()
        };
        if self.principal_id.as_deref().is_none_or(str::is_empty) {
            self.principal_id = Some(derive("principal"));
        }
        if self.client_id.as_deref().is_none_or(str::is_empty) {
            self.client_id = Some(derive("client"));
        }
        self
    }
}

/// A role assignment present at start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct RoleAssignmentConfig {
    pub scope: String,
    /// GUID; generated when empty.
    pub name: String,
    /// Role definition GUID (or a full role definition id).
    pub role_definition: String,
    pub principal_id: String,
    pub principal_type: Option<String>,
    pub description: Option<String>,
    pub condition: Option<String>,
}

/// api-versions the emulator accepts, per resource type. Anything else is rejected as ARM does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ApiVersions {
    /// Registry GET versions whose body includes `properties.roleAssignmentMode`.
    pub registries_with_role_assignment_mode: Vec<String>,
    /// Registry GET versions whose body omits it (the field did not exist yet).
    pub registries_without_role_assignment_mode: Vec<String>,
    pub managed_clusters: Vec<String>,
    pub role_assignments: Vec<String>,
    /// `Microsoft.Authorization/permissions`; versions before 2018-07-01 have no data actions.
    pub permissions: Vec<String>,
    /// `Microsoft.ManagedIdentity/userAssignedIdentities` GET.
    pub user_assigned_identities: Vec<String>,
}

impl Default for ApiVersions {
    fn default() -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ApiVersions {
            registries_with_role_assignment_mode: v(&["2025-05-01-preview", "2025-11-01"]),
            registries_without_role_assignment_mode: v(&["2023-07-01", "2025-04-01"]),
            managed_clusters: v(&["2024-09-01", "2025-01-01", "2025-05-01", "2025-07-01"]),
            role_assignments: v(&[
                "2020-04-01-preview",
                "2020-10-01-preview",
                "2022-01-01-preview",
                "2022-04-01",
            ]),
            permissions: v(&[
                "2015-07-01",
                "2018-01-01-preview",
                "2022-04-01",
                "2022-05-01-preview",
            ]),
            user_assigned_identities: v(&["2023-01-31", "2024-11-30"]),
        }
    }
}

/// What happens when a role assignment names a principal the directory does not know at all.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum UnknownPrincipal {
    /// 400 PrincipalNotFound, whatever `principalType` says.
    #[default]
    Reject,
    /// Create the assignment (it would show up as "Identity not found" in the portal).
    Accept,
    /// 400 PrincipalNotFound only when the request has no `principalType`
    /// (with it, ARM skips the directory lookup it would need to notice).
    RejectUnlessPrincipalType,
}

/// How `properties.roleDefinitionId` is rendered in responses.
/// UNCONFIRMED which form ARM returns: the spec examples show the tenant form, real
/// `az role assignment list` output shows the subscription form. Clients must compare by GUID.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum RoleDefinitionIdFormat {
    /// `/subscriptions/{sub of the scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}`
    #[default]
    Subscription,
    /// `/providers/Microsoft.Authorization/roleDefinitions/{guid}`
    Tenant,
    /// Whatever the PUT body sent.
    AsSent,
}

/// Failure modes and behaviours whose real-world details are uncertain. Changeable at runtime
/// with `ArmEmulator::set_faults`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultConfig {
    /// For this long after a principal is created, role-assignment PUTs naming it fail with
    /// PrincipalNotFound (Entra replication delay).
    pub principal_not_found_window_secs: u64,
    /// UNCONFIRMED. `false` (docs): any `principalType` in the PUT body skips the replication check.
    /// `true`: the window applies even with `principalType`.
    pub principal_not_found_ignores_principal_type: bool,
    pub unknown_principal: UnknownPrincipal,
    pub throttle: ThrottleConfig,
    /// Probability (0..1) that an ARM request fails with 500 or 503; deterministic given `seed`.
    pub server_error_rate: f64,
    pub seed: u64,
    /// Added to every request before it is handled.
    pub latency_ms: u64,
    /// Probability (0..1) that an ARM request's connection is closed with no answer at all,
    /// before the request takes effect (a reset by a proxy or a load balancer).
    pub connection_reset_rate: f64,
    /// Probability (0..1) that a role-assignment PUT or DELETE takes effect and its answer is
    /// then lost: half the time a 500, half the time a closed connection. This is the
    /// `phase: after` fault: the client must not assume that an error means nothing happened.
    pub after_write_fault_rate: f64,
    /// Probability (0..1) that an ARM answer is held for `slow_answer_ms` after the request took
    /// effect. Set `slow_answer_ms` above the client's timeout to test timeouts.
    pub slow_answer_rate: f64,
    pub slow_answer_ms: u64,
    /// Role-assignment LIST page size; more results than this produce a `nextLink`.
    pub list_page_size: usize,
    /// UNCONFIRMED whether ARM lets a PUT change `roleDefinitionId` of an existing assignment.
    /// `false`: 400 RoleAssignmentUpdateNotPermitted.
    pub role_definition_update_allowed: bool,
    /// Role assignments per subscription (4000 public cloud, 2000 sovereign clouds).
    pub role_assignment_limit: usize,
    /// UNCONFIRMED whether `condition` is part of the duplicate check behind 409 RoleAssignmentExists.
    /// `false`: (scope, principal, role, condition) must all match for a 409.
    pub conflict_ignores_condition: bool,
    /// UNCONFIRMED. Status of DELETE for an assignment that does not exist (spec: 204).
    pub delete_absent_status: u16,
    pub role_definition_id_format: RoleDefinitionIdFormat,
    /// `Retry-After` seconds on injected 429/503 responses (`fail_next`, `server_error_rate`).
    pub injected_retry_after_secs: u64,
    /// Which 403s use ARM's "does not have authorization or an ABAC condition not fulfilled"
    /// wording. UNCONFIRMED whether ARM uses it for every role-assignment denial (real captures
    /// show it for callers that simply lack the permission) or only for failed conditions.
    pub abac_denial_wording: AbacDenialWording,
    /// UNCONFIRMED. `true`: permissions API entries carry `condition`/`conditionVersion` of the
    /// caller's role assignment they come from. `false`: only the four permission arrays, as the
    /// 2022-04-01 schema defines them.
    pub permissions_show_assignment_conditions: bool,
    /// UNCONFIRMED. Registries_List in `Rbac` mode (and under deny rules): `true` leaves out the
    /// registries the caller may not read and answers 200 even when that is all of them; `false`
    /// requires `Microsoft.ContainerRegistry/registries/read` at the list scope (else 403) and
    /// then returns every registry there.
    pub registry_list_trims_unreadable: bool,
    /// UNCONFIRMED (docs: the role "does not support ABAC conditions"; the exact error is not
    /// published). `true`: a PUT of Container Registry Repository Catalog Lister with a non-empty
    /// condition gets 400 `InvalidRoleAssignmentCondition`.
    pub catalog_lister_rejects_conditions: bool,
    /// UNCONFIRMED. `false`: a PUT with a condition and no `conditionVersion` stores "2.0" (what
    /// the CLI sends by default). `true`: 400 `InvalidConditionVersion`.
    pub condition_version_required: bool,
    /// UNCONFIRMED whether ARM reformats a condition it stores.
    pub condition_storage: ConditionStorage,
}

/// See [`FaultConfig::condition_storage`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum ConditionStorage {
    /// The condition text exactly as the PUT body sent it.
    #[default]
    AsSent,
    /// Every run of whitespace (spaces, tabs, newlines) becomes one space; leading and trailing
    /// whitespace is dropped.
    CollapseWhitespace,
}

impl ConditionStorage {
    pub(crate) fn apply(self, condition: String) -> String {
        match self {
            ConditionStorage::AsSent => condition,
            ConditionStorage::CollapseWhitespace => {
                condition.split_whitespace().collect::<Vec<_>>().join(" ")
            }
        }
    }
}

/// See [`FaultConfig::abac_denial_wording`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum AbacDenialWording {
    /// Every denied `Microsoft.Authorization/roleAssignments/*` action, and every failed condition.
    #[default]
    RoleAssignmentActions,
    /// Only denials where a role would have granted the action but its condition failed.
    ConditionFailuresOnly,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            principal_not_found_window_secs: 10,
            principal_not_found_ignores_principal_type: false,
            unknown_principal: UnknownPrincipal::Reject,
            throttle: ThrottleConfig::default(),
            server_error_rate: 0.0,
            seed: 1,
            latency_ms: 0,
            connection_reset_rate: 0.0,
            after_write_fault_rate: 0.0,
            slow_answer_rate: 0.0,
            slow_answer_ms: 0,
            list_page_size: 100,
            role_definition_update_allowed: false,
            role_assignment_limit: 4000,
            conflict_ignores_condition: false,
            delete_absent_status: 204,
            role_definition_id_format: RoleDefinitionIdFormat::Subscription,
            injected_retry_after_secs: 1,
            abac_denial_wording: AbacDenialWording::RoleAssignmentActions,
            permissions_show_assignment_conditions: true,
            registry_list_trims_unreadable: true,
            catalog_lister_rejects_conditions: true,
            condition_version_required: false,
            condition_storage: ConditionStorage::AsSent,
        }
    }
}

/// ARM's token buckets, one per (caller, subscription) and operation kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ThrottleConfig {
    pub enabled: bool,
    pub reads_burst: u64,
    pub reads_per_sec: u64,
    pub writes_burst: u64,
    pub writes_per_sec: u64,
    pub deletes_burst: u64,
    pub deletes_per_sec: u64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            enabled: true,
            reads_burst: 250,
            reads_per_sec: 25,
            writes_burst: 200,
            writes_per_sec: 10,
            deletes_burst: 200,
            deletes_per_sec: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_json_config_fills_defaults() {
        let cfg: TenantConfig = serde_json::from_str(
            r#"{
                "registries": [{"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r", "mode": "AbacRepositoryPermissions"}],
                "principals": [{"objectId": "p"}],
                "faults": {"listPageSize": 5, "throttle": {"readsBurst": 3}}
            }"#,
        )
        .expect("parses");
        assert_eq!(cfg.tenant_id, DEFAULT_TENANT_ID);
        assert_eq!(cfg.registries[0].mode, RegistryMode::Abac);
        assert_eq!(cfg.registries[0].location, "westus");
        assert_eq!(cfg.principals[0].principal_type, "ServicePrincipal");
        assert_eq!(cfg.faults.list_page_size, 5);
        assert_eq!(cfg.faults.throttle.reads_burst, 3);
        assert_eq!(cfg.faults.throttle.reads_per_sec, 25);
        assert_eq!(cfg.faults.role_assignment_limit, 4000);
        assert_eq!(cfg.identities.len(), 1);

        let round_trip: TenantConfig = serde_json::from_value(
            serde_json::to_value(TenantConfig::sample()).expect("serializes"),
        )
        .expect("parses");
        assert_eq!(round_trip, TenantConfig::sample());
        let legacy: RegistryMode = serde_json::from_str("\"Legacy\"").expect("alias");
        assert_eq!(legacy, RegistryMode::Legacy);
    }

    #[test]
    fn identities_groups_and_new_faults_parse() {
        let cfg: TenantConfig = serde_json::from_str(
            r#"{
                "userAssignedIdentities": [
                    {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a"},
                    {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/b", "principalId": "p", "location": "eastus"}
                ],
                "principals": [{"objectId": "g", "principalType": "Group", "members": ["m1", "m2"]}],
                "faults": {"registryListTrimsUnreadable": false, "conditionStorage": "CollapseWhitespace", "conditionVersionRequired": true, "catalogListerRejectsConditions": false}
            }"#,
        )
        .expect("parses");
        assert_eq!(cfg.user_assigned_identities[0].location, "westus");
        assert_eq!(cfg.user_assigned_identities[0].principal_id, None);
        assert_eq!(
            cfg.user_assigned_identities[1].principal_id.as_deref(),
            Some("p")
        );
        assert_eq!(cfg.principals[0].members, vec!["m1", "m2"]);
        assert!(!cfg.faults.registry_list_trims_unreadable);
        assert!(cfg.faults.condition_version_required);
        assert!(!cfg.faults.catalog_lister_rejects_conditions);
        assert_eq!(
            cfg.faults.condition_storage,
            ConditionStorage::CollapseWhitespace
        );
        assert_eq!(
            cfg.api_versions.user_assigned_identities,
            vec!["2023-01-31", "2024-11-30"]
        );

        let d = FaultConfig::default();
        assert!(d.registry_list_trims_unreadable && d.catalog_lister_rejects_conditions);
        assert!(!d.condition_version_required);
        assert_eq!(d.condition_storage, ConditionStorage::AsSent);

        let a = cfg.user_assigned_identities[0].clone().with_generated_ids();
        let upper = UserAssignedIdentityConfig::new(a.id.to_ascii_uppercase()).with_generated_ids();
        assert_eq!(
            a.principal_id, upper.principal_id,
            "ids are derived case-insensitively"
        );
        assert_ne!(a.principal_id, a.client_id);
        let b = cfg.user_assigned_identities[1].clone().with_generated_ids();
        assert_eq!(b.principal_id.as_deref(), Some("p"), "given ids are kept");
        assert_ne!(b.client_id, a.client_id);

        assert_eq!(
            ConditionStorage::CollapseWhitespace.apply("  a \n\t b  ".to_string()),
            "a b"
        );
        assert_eq!(
            ConditionStorage::AsSent.apply(" a\n b ".to_string()),
            " a\n b "
        );
    }
}
