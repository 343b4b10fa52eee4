//! The Azure boundary: the ARM operations acr-attach needs, as a small trait over the plain data of
//! `model::azure`, with the real ARM client (`arm`) and credential selection (`credential`) behind
//! it. Failures are reported as `ArmError`; what they mean is decided in `decide::failure`.

pub mod arm;
pub mod credential;

use async_trait::async_trait;

pub use crate::model::azure::{ArmError, Operation, Permission, Registry, RoleAssignment};
use crate::model::{
    ClusterId, IdentityId, PrincipalId, PrincipalType, PullRole, RegistryId, RoleAssignmentName,
};

/// The assignment acr-attach asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleAssignmentRequest {
    pub registry: RegistryId,
    pub name: RoleAssignmentName,
    pub principal: PrincipalId,
    pub principal_type: PrincipalType,
    pub role: PullRole,
    /// ABAC condition (sent with conditionVersion 2.0); `None`: unconditioned.
    pub condition: Option<String>,
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
    /// Every registry in the subscription, or in one resource group of it (Registries_List,
    /// all pages). ARM has no name filter; the caller matches names.
    async fn list_registries(
        &self,
        subscription: &str,
        resource_group: Option<&str>,
    ) -> Result<Vec<Registry>, ArmError>;
    /// `properties.identityProfile.kubeletidentity.objectId`, or `None` when the cluster has none.
    async fn get_kubelet_identity(&self, cluster: &ClusterId) -> Result<Option<String>, ArmError>;
    /// Assignments made exactly at the registry scope (inherited ones are filtered out).
    async fn list_role_assignments(
        &self,
        registry: &RegistryId,
    ) -> Result<Vec<RoleAssignment>, ArmError>;
    /// One assignment by its full id; `None` when ARM does not have it.
    async fn get_role_assignment(
        &self,
        assignment_id: &str,
    ) -> Result<Option<RoleAssignment>, ArmError>;
    /// `properties.principalId` of a user-assigned managed identity.
    async fn get_identity_principal(&self, identity: &IdentityId) -> Result<String, ArmError>;
    async fn put_role_assignment(
        &self,
        request: &RoleAssignmentRequest,
    ) -> Result<PutOutcome, ArmError>;
    async fn delete_role_assignment(&self, assignment_id: &str) -> Result<DeleteOutcome, ArmError>;
}
