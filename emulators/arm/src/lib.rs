//! Test double for the Azure side of acr-attach: a stateful HTTPS emulator of the Azure Resource
//! Manager subset the operator uses, plus the Entra token endpoint its credentials call.
//!
//! This crate owns:
//! - Entra `POST /{tenant}/oauth2/v2.0/token` (client secret and federated-assertion client
//!   credentials, as `azure_identity` 1.0's `ClientSecretCredential` and
//!   `WorkloadIdentityCredential` send them) and the App Service managed-identity endpoint
//!   (`/msi/token`, for `ManagedIdentityCredential` with `IDENTITY_ENDPOINT`/`IDENTITY_HEADER`);
//! - ARM GET of `Microsoft.ContainerRegistry/registries` (with `roleAssignmentMode` on the
//!   api-versions that have it) and `Microsoft.ContainerService/managedClusters` (kubelet identity);
//! - `Microsoft.Authorization/roleAssignments` PUT/GET/DELETE/LIST at any existing scope, with
//!   ARM's idempotency, conflict, replication-delay, paging and filter semantics;
//! - `Microsoft.Authorization/permissions` (what the caller may do at a scope);
//! - Registries_List (subscription and resource group) and `userAssignedIdentities` GET;
//! - data-plane answers for tests ([`ArmEmulator::may_read_repository`],
//!   [`ArmEmulator::may_list_catalog`]): what ACR would allow a principal given its role
//!   assignments, the registry's mode and repository ABAC conditions;
//! - ARM's cross-cutting behaviour: bearer-token checks, per-(caller, subscription) token-bucket
//!   throttling, authorization (allow-all with deny rules, or real RBAC from the caller's role
//!   assignments including delegation conditions), request ids, and injectable faults;
//! - a handle ([`ArmEmulator`]) to inspect and change state, count calls and read the request log
//!   (with each request's User-Agent and client address).
//!
//! Each emulator generates its own CA at start; clients trust [`ArmEmulator::ca_pem`] and use
//! [`ArmEmulator::endpoint`] both as the ARM endpoint and as the authority host.
//! Behaviour that the research could not confirm is switchable in [`FaultConfig`]; see README.md.

mod arm;
mod config;
mod dataplane;
mod entra;
mod rbac;
pub mod roles;
mod server;
mod state;
mod util;

pub use config::{
    AbacDenialWording, ApiVersions, AuthorizationMode, ClusterConfig, ConditionStorage, CustomRole,
    DEFAULT_IDENTITY_HEADER, DEFAULT_OPERATOR_CLIENT_ID, DEFAULT_OPERATOR_CLIENT_SECRET,
    DEFAULT_OPERATOR_OBJECT_ID, DEFAULT_SUBSCRIPTION_ID, DEFAULT_TENANT_ID, FaultConfig,
    IdentityConfig, KubeletIdentity, PrincipalConfig, RegistryConfig, RegistryMode,
    RoleAssignmentConfig, RoleDefinitionIdFormat, RolePermissions, TenantConfig, ThrottleConfig,
    UnknownPrincipal, UserAssignedIdentityConfig,
};
pub use roles::*;
pub use state::{
    ANONYMOUS, CallCounts, EXTERNAL, InjectedFault, ListCorruption, LoggedRequest, Operation,
    RawAnswer, RoleAssignmentRecord,
};

use server::Shared;
use state::{DenyRule, State};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("invalid emulator configuration: {0}")]
    Config(String),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// Handle to a running emulator. Clones share the server; it stops when [`ArmEmulator::shutdown`]
/// is called or the last clone is dropped.
#[derive(Clone)]
pub struct ArmEmulator {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: String,
    shutdown: watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.held.send_replace(Default::default());
        let _ = self.shutdown.send(true);
    }
}

impl std::fmt::Debug for ArmEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmEmulator")
            .field("endpoint", &self.inner.shared.endpoint)
            .finish_non_exhaustive()
    }
}

impl ArmEmulator {
    /// Starts on `127.0.0.1` with an ephemeral port.
    pub async fn start(config: TenantConfig) -> Result<ArmEmulator, EmulatorError> {
        Self::start_on(config, SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await
    }

    /// Starts on a fixed address (e.g. for a sandbox command).
    pub async fn start_on(
        config: TenantConfig,
        addr: SocketAddr,
    ) -> Result<ArmEmulator, EmulatorError> {
        let sans = config.tls_subject_alt_names.clone();
        let state = State::new(config).map_err(EmulatorError::Config)?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let host = if local.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            local.ip()
        };
        let addr = SocketAddr::new(host, local.port());
        let tls = server::make_tls(local.ip(), &sans).map_err(EmulatorError::Tls)?;
        let mut state = state;
        // Tokens requested for any name the certificate covers are "for this endpoint".
        state.own_audiences = tls
            .sans
            .iter()
            .map(|san| match san.parse::<IpAddr>() {
                Ok(IpAddr::V6(ip)) => format!("https://[{ip}]:{}", local.port()),
                _ => format!("https://{san}:{}", local.port()),
            })
            .collect();
        let shared = Arc::new(Shared::new(state, format!("https://{addr}")));
        let (tx, rx) = watch::channel(false);
        tokio::spawn(server::serve(
            listener,
            tls.server_config,
            shared.clone(),
            rx,
        ));
        Ok(ArmEmulator {
            inner: Arc::new(Inner {
                shared,
                addr,
                ca_pem: tls.ca_pem,
                shutdown: tx,
            }),
        })
    }

    /// Stops accepting connections and closes open ones.
    pub fn shutdown(&self) {
        self.inner.shared.held.send_replace(Default::default());
        let _ = self.inner.shutdown.send(true);
    }

    /// From now on, requests of `op` take effect (and are logged and counted) as usual, but their
    /// answer is held back until [`release_answers`](Self::release_answers): a test can kill the
    /// client exactly between ARM acting and the client learning that it did.
    pub fn hold_answers(&self, op: Operation) {
        self.inner.shared.held.send_modify(|held| {
            held.insert(op);
        });
    }

    /// Sends the held answers of `op` and stops holding new ones.
    pub fn release_answers(&self, op: Operation) {
        self.inner.shared.held.send_modify(|held| {
            held.remove(&op);
        });
    }

    /// How many requests have taken effect and wait for their answer right now.
    pub fn held_answers(&self) -> usize {
        self.inner
            .shared
            .waiting
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `https://127.0.0.1:PORT`: the ARM endpoint and the Entra authority host.
    pub fn endpoint(&self) -> String {
        self.inner.shared.endpoint.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// PEM of the CA that signed the server certificate.
    pub fn ca_pem(&self) -> String {
        self.inner.ca_pem.clone()
    }

    pub fn tenant_id(&self) -> String {
        self.inner.shared.lock().tenant_id.clone()
    }

    /// The token scope for ARM calls: `{endpoint}/.default`.
    pub fn arm_scope(&self) -> String {
        format!("{}/.default", self.endpoint())
    }

    /// The first configured identity (the operator's). Empty if none is configured.
    pub fn operator_identity(&self) -> IdentityConfig {
        self.inner
            .shared
            .lock()
            .identities
            .first()
            .cloned()
            .unwrap_or_default()
    }

    pub fn add_identity(&self, identity: IdentityConfig) {
        let mut st = self.inner.shared.lock();
        st.add_principal(&identity.object_id, -86_400.0, "ServicePrincipal");
        st.identities.push(identity);
    }

    /// All role assignments, oldest first.
    pub fn role_assignments(&self) -> Vec<RoleAssignmentRecord> {
        self.inner
            .shared
            .lock()
            .assignments
            .values()
            .cloned()
            .collect()
    }

    /// Creates a role assignment as "someone else" would (`created_by` = [`EXTERNAL`]), bypassing
    /// every check. An empty `name` generates one; an existing assignment with that name is replaced.
    pub fn insert_role_assignment(
        &self,
        scope: &str,
        name: &str,
        role_definition_guid: &str,
        principal_id: &str,
        description: Option<&str>,
    ) -> RoleAssignmentRecord {
        self.inner
            .shared
            .lock()
            .insert_external(&RoleAssignmentConfig {
                scope: scope.to_string(),
                name: name.to_string(),
                role_definition: role_definition_guid.to_string(),
                principal_id: principal_id.to_string(),
                principal_type: None,
                description: description.map(str::to_string),
                condition: None,
            })
    }

    /// Like [`ArmEmulator::insert_role_assignment`] with every field under control.
    pub fn insert_role_assignment_with(
        &self,
        assignment: RoleAssignmentConfig,
    ) -> RoleAssignmentRecord {
        self.inner.shared.lock().insert_external(&assignment)
    }

    /// Out-of-band deletion (drift). Matches the name or the full id, case-insensitively.
    pub fn remove_role_assignment(&self, id_or_name: &str) -> bool {
        self.inner.shared.lock().remove_assignment(id_or_name)
    }

    /// Flips `roleAssignmentMode`; false if the registry does not exist.
    pub fn set_registry_mode(&self, registry_id: &str, mode: RegistryMode) -> bool {
        let mut st = self.inner.shared.lock();
        match st.registries.get_mut(&state::norm_id(registry_id)) {
            Some(r) => {
                r.config.mode = mode;
                true
            }
            None => false,
        }
    }

    /// Adds or replaces a registry (its subscription and resource group appear implicitly).
    pub fn add_registry(&self, registry: RegistryConfig) {
        if let Err(e) = self.inner.shared.lock().add_registry(registry) {
            tracing::warn!(error = %e, "arm-emulator: registry not added");
        }
    }

    /// Deletes a registry. Role assignments scoped to it stay behind, orphaned, as in Azure.
    pub fn remove_registry(&self, id: &str) -> bool {
        self.inner
            .shared
            .lock()
            .registries
            .remove(&state::norm_id(id))
            .is_some()
    }

    /// Adds or replaces a cluster; a kubelet identity it names joins the directory "now".
    pub fn add_cluster(&self, cluster: ClusterConfig) {
        let mut st = self.inner.shared.lock();
        let now = st.now();
        if let Err(e) = st.add_cluster(cluster, now) {
            tracing::warn!(error = %e, "arm-emulator: cluster not added");
        }
    }

    pub fn remove_cluster(&self, id: &str) -> bool {
        self.inner
            .shared
            .lock()
            .clusters
            .remove(&state::norm_id(id))
            .is_some()
    }

    /// Replaces the kubelet identity (e.g. rotation). A new object id joins the directory "now",
    /// so it is subject to the replication window. False if the cluster does not exist.
    pub fn set_kubelet_identity(
        &self,
        cluster_id: &str,
        identity: Option<KubeletIdentity>,
    ) -> bool {
        let mut st = self.inner.shared.lock();
        let now = st.now();
        if let Some(k) = &identity {
            st.add_principal(&k.object_id, now, "ServicePrincipal");
        }
        match st.clusters.get_mut(&state::norm_id(cluster_id)) {
            Some(c) => {
                c.kubelet_identity = identity;
                true
            }
            None => false,
        }
    }

    /// Adds a service principal created "now" (subject to the replication window).
    pub fn add_principal(&self, object_id: &str) {
        let mut st = self.inner.shared.lock();
        let now = st.now();
        st.add_principal(object_id, now, "ServicePrincipal");
    }

    /// Adds or replaces a user-assigned identity (its subscription and resource group appear
    /// implicitly) and returns it with `principalId`/`clientId` filled in (generated
    /// deterministically from the id when absent). Its principal joins the directory as a
    /// service principal created long ago. An invalid id or non-GUID ids are logged and the
    /// identity is returned unchanged but not added.
    pub fn add_user_assigned_identity(
        &self,
        identity: UserAssignedIdentityConfig,
    ) -> UserAssignedIdentityConfig {
        let fallback = identity.clone();
        match self
            .inner
            .shared
            .lock()
            .add_user_assigned_identity(identity)
        {
            Ok(filled) => filled,
            Err(e) => {
                tracing::warn!(error = %e, "arm-emulator: user-assigned identity not added");
                fallback
            }
        }
    }

    /// Deletes a user-assigned identity (its principal stays in the directory).
    pub fn remove_user_assigned_identity(&self, id: &str) -> bool {
        self.inner
            .shared
            .lock()
            .user_identities
            .remove(&state::norm_id(id))
            .is_some()
    }

    /// Makes `object_id` a directory group (created long ago unless it already exists) whose
    /// direct members are exactly `members` (object ids; groups nest). Membership counts for
    /// [`ArmEmulator::may_read_repository`] and [`ArmEmulator::may_list_catalog`] only.
    pub fn add_group<I, S>(&self, object_id: &str, members: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let members: Vec<String> = members
            .into_iter()
            .map(|m| m.as_ref().to_string())
            .collect();
        self.inner.shared.lock().set_members(object_id, &members);
    }

    /// Would ACR let `principal_id` pull from `repository` of this registry? Legacy mode: a
    /// role whose `actions` grant `Microsoft.ContainerRegistry/registries/pull/read`. ABAC
    /// mode: `dataActions` granting `repositories/content/read` and `repositories/metadata/read`,
    /// with the assignments' repository conditions evaluated (an unparseable condition grants
    /// nothing). Assignments at or above the registry, to the principal or to a group it belongs
    /// to. False for a registry the emulator does not have. Independent of `authorization`.
    pub fn may_read_repository(
        &self,
        registry_id: &str,
        principal_id: &str,
        repository: &str,
    ) -> bool {
        dataplane::may_read_repository(
            &self.inner.shared.lock(),
            registry_id,
            principal_id,
            repository,
        )
    }

    /// Would ACR let `principal_id` list the registry's catalog? Legacy mode: as
    /// [`ArmEmulator::may_read_repository`]; ABAC mode: `dataActions` granting
    /// `Microsoft.ContainerRegistry/registries/catalog/read`.
    pub fn may_list_catalog(&self, registry_id: &str, principal_id: &str) -> bool {
        dataplane::may_list_catalog(&self.inner.shared.lock(), registry_id, principal_id)
    }

    /// Role-assignment LIST pages render the assignment named `assignment_name` malformed
    /// (`properties.principalId` a number); GET of it is unaffected.
    pub fn corrupt_in_list(&self, assignment_name: &str) {
        self.corrupt_in_list_as(assignment_name, ListCorruption::default());
    }

    /// Like [`ArmEmulator::corrupt_in_list`] with the kind of damage chosen.
    pub fn corrupt_in_list_as(&self, assignment_name: &str, corruption: ListCorruption) {
        self.inner
            .shared
            .lock()
            .corrupt_in_list
            .insert(assignment_name.trim().to_ascii_lowercase(), corruption);
    }

    /// Renders every assignment well-formed in LIST pages again.
    pub fn clear_corrupt_in_list(&self) {
        self.inner.shared.lock().corrupt_in_list.clear();
    }

    /// Removes a principal from the directory (its assignments stay, as in Azure).
    pub fn remove_principal(&self, object_id: &str) -> bool {
        self.inner
            .shared
            .lock()
            .principals
            .remove(&object_id.to_ascii_lowercase())
            .is_some()
    }

    /// Requests by `caller` (object or client id; `None` = everyone) for `action` (exact, or a
    /// prefix ending in `*`) on targets at or under `scope_prefix` (`""` = everywhere) get 403.
    pub fn deny(&self, caller: Option<&str>, action: &str, scope_prefix: &str) {
        self.inner.shared.lock().deny.push(DenyRule {
            caller: caller.map(str::to_string),
            action: action.to_string(),
            scope_prefix: scope_prefix.to_string(),
        });
    }

    /// Removes every deny rule.
    pub fn allow_all(&self) {
        self.inner.shared.lock().deny.clear();
    }

    /// Switches between allow-all (plus deny rules) and real RBAC from role assignments.
    pub fn set_authorization(&self, mode: AuthorizationMode) {
        self.inner.shared.lock().authorization = mode;
    }

    /// The next `times` requests of `op` fail with `status` (500, 502, 503, 504 or 429 get ARM's
    /// bodies; 429/503 carry `Retry-After`). Injected failures happen after authentication and
    /// before throttling.
    /// The next request of `op` (after authentication) is answered with `answer` as is: a proxy's
    /// HTML error page, truncated or mistyped JSON, a huge body.
    pub fn answer_next_raw(&self, op: Operation, answer: RawAnswer) {
        let mut st = self.inner.shared.lock();
        st.raw_next.entry(op).or_default().push_back(answer);
    }

    pub fn fail_next(&self, op: Operation, status: u16, times: usize) {
        let mut st = self.inner.shared.lock();
        let q = st.fail_next.entry(op).or_default();
        q.extend(std::iter::repeat_n(status, times));
    }

    /// Replaces the fault configuration; resets throttling buckets and the error-rate PRNG.
    pub fn set_faults(&self, faults: FaultConfig) {
        self.inner.shared.lock().set_faults(faults);
    }

    pub fn faults(&self) -> FaultConfig {
        self.inner.shared.lock().faults.clone()
    }

    /// Stops the emulator's clock (throttling buckets, PrincipalNotFound windows, token
    /// lifetimes): from now on it moves only by [`ArmEmulator::advance_clock`], so tests need not
    /// sleep through a window and cannot flake on a loaded machine.
    pub fn use_manual_clock(&self) {
        self.inner.shared.lock().use_manual_clock();
    }

    /// Moves the emulator's clock forward (stopping it first if it was running).
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.inner.shared.lock().advance_clock(by);
    }

    /// Makes every issued access token expired (ARM answers 401 ExpiredAuthenticationToken).
    pub fn expire_tokens(&self) {
        let mut st = self.inner.shared.lock();
        let now = st.now();
        for t in st.tokens.values_mut() {
            t.expires_at = now;
        }
    }

    pub fn counts(&self) -> CallCounts {
        self.inner.shared.lock().counts.clone()
    }

    pub fn reset_counts(&self) {
        self.inner.shared.lock().counts = CallCounts::default();
    }

    /// Handled requests, oldest first (the last 100 000).
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.inner.shared.lock().log.iter().cloned().collect()
    }

    pub fn clear_request_log(&self) {
        self.inner.shared.lock().log.clear();
    }
}
