//! The `RegistryAttachment` custom resource (cluster-scoped, `acrattach.io/v1alpha1`): its spec, its
//! status, and the schema rules the API server enforces at admission.
//!
//! The schema refuses what it can (patterns, enums, GUIDs); `decide::validate` repeats every check
//! so an object that reached us through an older CRD still cannot cause an Azure write.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "acrattach.io";
pub const FINALIZER: &str = "acrattach.io/cleanup";
/// Set to "true" to release a stuck deletion without touching Azure.
pub const SKIP_CLEANUP_ANNOTATION: &str = "acrattach.io/skip-cleanup";

/// ARM resource id of a registry; segment names are case-insensitive as in ARM. Character classes
/// are spelled out (no `\w`): Go's regexp, which the API server uses, and Rust's differ on it.
pub const REGISTRY_ID_PATTERN: &str = r"^/(?i:subscriptions)/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/(?i:resourceGroups)/[-a-zA-Z0-9_.()]{0,89}[-a-zA-Z0-9_()]/(?i:providers/Microsoft\.ContainerRegistry/registries)/[a-zA-Z0-9]{5,50}$";
/// ARM resource id of a user-assigned managed identity (the name: letters, digits, `-`, `_`,
/// starting with a letter or digit, at most 128).
pub const IDENTITY_ID_PATTERN: &str = r"^/(?i:subscriptions)/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/(?i:resourceGroups)/[-a-zA-Z0-9_.()]{0,89}[-a-zA-Z0-9_()]/(?i:providers/Microsoft\.ManagedIdentity/userAssignedIdentities)/[a-zA-Z0-9][-a-zA-Z0-9_]{0,127}$";
pub const REGISTRY_NAME_PATTERN: &str = r"^[a-zA-Z0-9]{5,50}$";
pub const RESOURCE_GROUP_PATTERN: &str = r"^[-a-zA-Z0-9_.()]{0,89}[-a-zA-Z0-9_()]$";
pub const GUID_PATTERN: &str =
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// Grants an identity (by default the cluster's kubelet identity) pull access to one Azure
/// Container Registry, choosing AcrPull or Container Registry Repository Reader from the
/// registry's permissions mode.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "acrattach.io",
    version = "v1alpha1",
    kind = "RegistryAttachment",
    plural = "registryattachments",
    shortname = "ra",
    category = "acr-attach",
    status = "RegistryAttachmentStatus",
    printcolumn = r#"{"name":"Registry","type":"string","jsonPath":".status.registry.loginServer"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".status.role"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","description":"Grants in place / grants wanted","jsonPath":".status.readyGrants"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RegistryAttachmentSpec {
    /// The registry to attach.
    pub registry: RegistryReference,
    /// Which role to assign. `Auto` reads the registry's permissions mode and picks AcrPull for
    /// classic registries or Container Registry Repository Reader for ABAC repository-permissions
    /// registries.
    #[serde(default)]
    pub role: RoleChoice,
    /// The identity that receives the role (the original single-principal form; equivalent to
    /// `principals: [{objectId: ...}]`). Set this or `principals`, not both. Without either, the
    /// cluster's kubelet identity from the operator's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<PrincipalReference>,
    /// The identities that receive the role, one role assignment each (e.g. several node-pool
    /// identities). Each entry names exactly one of `objectId`, `identityResourceId` or
    /// `kubelet: true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub principals: Vec<PrincipalSpec>,
    /// ABAC registries only: limit pull to these repositories — exact names (`team-a/api`) or
    /// prefixes (`team-a/*`, which never matches `team-ab/...`). Empty: the whole registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50), inner(length(max = 258)))]
    pub repositories: Vec<String>,
    /// ABAC registries only: also assign Container Registry Repository Catalog Lister, which the
    /// repository roles leave out and some node bootstrap paths need.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub catalog_listing: bool,
    /// What happens to the role assignment when this object is deleted: `Delete` removes the
    /// assignment acr-attach created; `Orphan` leaves it in Azure.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Which registry: its resource id, or its name (as `az aks update --attach-acr <name>` takes it),
/// which acr-attach looks up in the registry list of one subscription (or resource group).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.resourceId) != has(self.name)",
        "message": "set exactly one of resourceId or name"
    },
    {
        "rule": "has(self.name) || !(has(self.resourceGroup) || has(self.subscriptionId))",
        "message": "resourceGroup and subscriptionId go with name; a resourceId already names both"
    }
]))]
pub struct RegistryReference {
    /// ARM resource id: /subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.ContainerRegistry/registries/<name>
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = REGISTRY_ID_PATTERN), length(max = 300))]
    pub resource_id: Option<String>,
    /// Registry name (5-50 letters and digits), looked up in the registry list of
    /// `subscriptionId` (default: the operator's `--default-subscription`, else the cluster's
    /// subscription), narrowed to `resourceGroup` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = REGISTRY_NAME_PATTERN))]
    pub name: Option<String>,
    /// With `name`: the registry's resource group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = RESOURCE_GROUP_PATTERN))]
    pub resource_group: Option<String>,
    /// With `name`: the registry's subscription id (a GUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = GUID_PATTERN))]
    pub subscription_id: Option<String>,
}

impl RegistryReference {
    /// A reference by resource id.
    pub fn by_id(resource_id: impl Into<String>) -> Self {
        Self {
            resource_id: Some(resource_id.into()),
            ..Self::default()
        }
    }

    /// A reference by name, looked up in the default subscription.
    pub fn by_name(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrincipalReference {
    /// Entra object (principal) id of the identity, a GUID.
    #[schemars(regex(pattern = GUID_PATTERN))]
    pub object_id: String,
}

/// One identity that receives the role.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.objectId) ? 1 : 0) + (has(self.identityResourceId) ? 1 : 0) + (has(self.kubelet) && self.kubelet ? 1 : 0) == 1",
    "message": "set exactly one of objectId, identityResourceId or kubelet: true"
}]))]
pub struct PrincipalSpec {
    /// Entra object (principal) id, a GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = GUID_PATTERN))]
    pub object_id: Option<String>,
    /// ARM id of a user-assigned managed identity; its principalId is read from Azure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IDENTITY_ID_PATTERN), length(max = 400))]
    pub identity_resource_id: Option<String>,
    /// The cluster's kubelet identity, as the operator is configured to find it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<bool>,
    /// What kind of Entra object `objectId` is. A Group works only once the kubelet identity's
    /// membership has propagated.
    #[serde(default, rename = "type")]
    pub type_: PrincipalKind,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PrincipalKind {
    #[default]
    ServicePrincipal,
    Group,
    User,
    #[serde(other)]
    #[schemars(skip)]
    Unrecognized,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RoleChoice {
    #[default]
    Auto,
    AcrPull,
    RepositoryReader,
    /// Any value the schema would have refused; kept so one bad object cannot break the watch.
    #[serde(other)]
    #[schemars(skip)]
    Unrecognized,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Orphan,
    #[serde(other)]
    #[schemars(skip)]
    Unrecognized,
}

/// Observed state, written only by acr-attach.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryAttachmentStatus {
    /// The metadata.generation this status describes (kstatus reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled, with metav1.Condition semantics.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The registry as Azure describes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<ResolvedRegistry>,
    /// The identity that should hold the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<ResolvedPrincipal>,
    /// Effective role: AcrPull or RepositoryReader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Role definition id of the effective role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_definition_id: Option<String>,
    /// The role assignment that grants the first principal its pull role, once it exists
    /// (every grant is in `grants`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<AssignmentStatus>,
    /// Every grant this attachment wants, each with its own state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<GrantStatus>,
    /// Grants in place / grants wanted, e.g. "2/3" (the READY column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_grants: Option<String>,
    /// Role assignments acr-attach created (or was about to create) for this attachment and has
    /// not removed yet; recorded before each PUT, so detach and retirement find them after a crash.
    /// Only names acr-attach derives from these entries are ever deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owned_assignments: Vec<OwnedAssignment>,
    /// When the grants were last confirmed against Azure: rewritten whenever status changes, and
    /// otherwise once it is `--sync-time-refresh` (1h) old, so a quiet resync writes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedRegistry {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_server: Option<String>,
    /// LegacyRegistryPermissions or AbacRepositoryPermissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions_mode: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedPrincipal {
    pub object_id: String,
    /// Where the id came from: Spec, OperatorConfig or ManagedCluster.
    pub source: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentStatus {
    /// Full ARM id of the role assignment.
    pub id: String,
    /// Principal the assignment grants to.
    pub principal_id: String,
    /// AcrPull or RepositoryReader.
    pub role: String,
    /// Created (acr-attach made it and may delete it) or Adopted (it existed; never deleted).
    pub ownership: Ownership,
}

/// One grant of the attachment and how it stands.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantStatus {
    /// The principal, once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// ServicePrincipal, Group or User.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_type: Option<String>,
    /// Where the principal came from: Spec, Identity, OperatorConfig or ManagedCluster.
    pub source: String,
    /// AcrPull, RepositoryReader or CatalogLister, once chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The repositories the grant is limited to; empty: the whole registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<Ownership>,
    pub ready: bool,
    /// Attached, or why not (a condition reason).
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One assignment acr-attach may have created: the inputs its derived name is computed from.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnedAssignment {
    pub registry_id: String,
    pub principal_id: String,
    /// AcrPull, RepositoryReader or CatalogLister.
    pub role: String,
    /// Set for a grant scoped to repositories: the attachment whose name is part of the derived
    /// assignment name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scoped_to: Option<String>,
    /// Set for an assignment another acr-attach installation created and this one co-owns: its
    /// name (derived by that installation, which its description lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_name: Option<String>,
}

impl OwnedAssignment {
    /// True when both records name the same role assignment. ARM ids and GUIDs compare without
    /// regard to case, so a registry id spelt differently (a user editing the case of
    /// spec.registry.resourceId, a list answering in another case) is the same record, never a
    /// stale one to retire.
    pub fn same_assignment(&self, other: &OwnedAssignment) -> bool {
        let same_text = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        let same_option = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) => same_text(a, b),
            (None, None) => true,
            _ => false,
        };
        same_text(&self.registry_id, &other.registry_id)
            && same_text(&self.principal_id, &other.principal_id)
            && self.role == other.role
            && self.scoped_to == other.scoped_to
            && same_option(&self.shared_name, &other.shared_name)
    }

    /// True when `records` holds one naming the same assignment as `self`.
    pub fn is_among(&self, records: &[OwnedAssignment]) -> bool {
        records.iter().any(|record| record.same_assignment(self))
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Ownership {
    /// acr-attach (this installation) created it and removes it when nobody else needs it.
    Created,
    /// It existed; acr-attach never deletes it.
    Adopted,
    /// acr-attach in another installation created it; this one is listed as a co-owner on the
    /// assignment and, when detaching, removes only itself.
    Shared,
}

/// metav1.Condition, with the same JSON shape and semantics.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Changes only when status flips.
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

impl RegistryAttachment {
    pub fn skip_cleanup(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(SKIP_CLEANUP_ANNOTATION))
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }

    pub fn is_deleting(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }

    pub fn has_finalizer(&self) -> bool {
        self.metadata
            .finalizers
            .as_ref()
            .is_some_and(|finalizers| finalizers.iter().any(|f| f == FINALIZER))
    }
}

/// The CRD as YAML, exactly what `acr-attach crd` prints and `crds/` holds.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = RegistryAttachment::crd();
    // serde-saphyr cannot fail on a CRD (plain maps, strings and numbers).
    serde_saphyr::to_string(&crd).unwrap_or_else(|error| format!("# cannot render CRD: {error}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_enum_values_do_not_break_deserialisation() {
        let spec: RegistryAttachmentSpec = serde_json::from_value(serde_json::json!({
            "registry": {"resourceId": "x"},
            "role": "Owner",
            "deletionPolicy": "Sometimes"
        }))
        .unwrap();
        assert_eq!(spec.role, RoleChoice::Unrecognized);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Unrecognized);
    }

    #[test]
    fn defaults_are_auto_and_delete() {
        let spec: RegistryAttachmentSpec =
            serde_json::from_value(serde_json::json!({"registry": {"resourceId": "x"}})).unwrap();
        assert_eq!(spec.role, RoleChoice::Auto);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Delete);
    }
}
