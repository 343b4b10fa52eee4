//! The emulated tenant's mutable state, shared by the HTTP handlers and the test handle.

use crate::config::{
    AuthorizationMode, ClusterConfig, FaultConfig, IdentityConfig, RegistryConfig,
    RoleAssignmentConfig, RoleDefinitionIdFormat, RolePermissions, TenantConfig,
    UserAssignedIdentityConfig,
};
use crate::roles;
use crate::util::{Rng, arm_timestamp, is_guid};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

/// Caller recorded for requests that carry no valid token (and token requests for unknown clients).
pub const ANONYMOUS: &str = "anonymous";
/// `created_by` of role assignments that the emulator's user (not an HTTP caller) created.
pub const EXTERNAL: &str = "external";

/// Bound on the request log so a long sandbox run does not grow without limit.
const MAX_LOGGED_REQUESTS: usize = 100_000;

/// The requests the emulator understands, for counting and fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    /// Entra token endpoint and the managed-identity endpoints.
    Token,
    GetRegistry,
    GetManagedCluster,
    PutRoleAssignment,
    GetRoleAssignment,
    DeleteRoleAssignment,
    ListRoleAssignments,
    /// `GET {scope}/providers/Microsoft.Authorization/permissions`.
    ListPermissions,
    /// Registries_List and Registries_ListByResourceGroup
    /// (`GET /subscriptions/S[/resourceGroups/RG]/providers/Microsoft.ContainerRegistry/registries`).
    ListRegistries,
    /// `GET …/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}`.
    GetUserAssignedIdentity,
}

/// How [`crate::ArmEmulator::corrupt_in_list`] breaks an assignment in role-assignment LIST pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum ListCorruption {
    /// `properties.principalId` is a JSON number instead of a string.
    #[default]
    PrincipalIdNumber,
    /// `properties` is a JSON string instead of an object.
    PropertiesString,
}

/// ARM's three throttling buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum OpKind {
    Read,
    Write,
    Delete,
}

impl OpKind {
    pub fn word(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Write => "write",
            OpKind::Delete => "delete",
        }
    }

    pub fn header(self) -> &'static str {
        match self {
            OpKind::Read => "x-ms-ratelimit-remaining-subscription-reads",
            OpKind::Write => "x-ms-ratelimit-remaining-subscription-writes",
            OpKind::Delete => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }
}

impl Operation {
    pub(crate) fn kind(self) -> Option<OpKind> {
        match self {
            Operation::Token => None,
            Operation::GetRegistry
            | Operation::GetManagedCluster
            | Operation::GetRoleAssignment
            | Operation::ListRoleAssignments
            | Operation::ListPermissions
            | Operation::ListRegistries
            | Operation::GetUserAssignedIdentity => Some(OpKind::Read),
            Operation::PutRoleAssignment => Some(OpKind::Write),
            Operation::DeleteRoleAssignment => Some(OpKind::Delete),
        }
    }

    /// The RBAC action ARM authorizes the request against. The permissions API needs none: any
    /// caller may ask what it may do itself.
    pub fn action(self) -> Option<&'static str> {
        match self {
            Operation::Token | Operation::ListPermissions => None,
            Operation::GetRegistry | Operation::ListRegistries => {
                Some("Microsoft.ContainerRegistry/registries/read")
            }
            Operation::GetUserAssignedIdentity => {
                Some("Microsoft.ManagedIdentity/userAssignedIdentities/read")
            }
            Operation::GetManagedCluster => Some("Microsoft.ContainerService/managedClusters/read"),
            Operation::GetRoleAssignment | Operation::ListRoleAssignments => {
                Some("Microsoft.Authorization/roleAssignments/read")
            }
            Operation::PutRoleAssignment => Some("Microsoft.Authorization/roleAssignments/write"),
            Operation::DeleteRoleAssignment => {
                Some("Microsoft.Authorization/roleAssignments/delete")
            }
        }
    }
}

/// A stored role assignment, as the emulator's user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAssignmentRecord {
    /// `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`
    pub id: String,
    pub name: String,
    pub scope: String,
    /// Full role definition id as rendered in responses.
    pub role_definition_id: String,
    pub principal_id: String,
    pub principal_type: String,
    pub description: Option<String>,
    pub condition: Option<String>,
    pub condition_version: Option<String>,
    /// Object id of the caller that created it, or [`EXTERNAL`].
    pub created_by: String,
    pub updated_by: String,
    pub created_on: String,
    pub updated_on: String,
}

impl RoleAssignmentRecord {
    /// The trailing GUID of `role_definition_id`.
    pub fn role_definition_guid(&self) -> &str {
        self.role_definition_id
            .rsplit('/')
            .next()
            .unwrap_or_default()
    }
}

/// Request counts per (operation, caller), including failed requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCounts {
    by: BTreeMap<(Operation, String), u64>,
    throttled: BTreeMap<String, u64>,
}

impl CallCounts {
    /// All requests of `op`, whoever sent them.
    pub fn get(&self, op: Operation) -> u64 {
        self.by
            .iter()
            .filter(|((o, _), _)| *o == op)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests of `op` by `caller` (object id, or [`ANONYMOUS`]).
    pub fn get_by(&self, op: Operation, caller: &str) -> u64 {
        self.by
            .iter()
            .filter(|((o, c), _)| *o == op && c.eq_ignore_ascii_case(caller))
            .map(|(_, n)| n)
            .sum()
    }

    /// All requests counted.
    pub fn total(&self) -> u64 {
        self.by.values().sum()
    }

    /// 429 responses served (throttling and injected 429s).
    pub fn throttled(&self) -> u64 {
        self.throttled.values().sum()
    }

    /// 429 responses served to `caller`.
    pub fn throttled_by(&self, caller: &str) -> u64 {
        self.throttled
            .iter()
            .filter(|(c, _)| c.eq_ignore_ascii_case(caller))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every (operation, caller, count) triple.
    pub fn entries(&self) -> Vec<(Operation, String, u64)> {
        self.by
            .iter()
            .map(|((o, c), n)| (*o, c.clone(), *n))
            .collect()
    }

    pub(crate) fn record(&mut self, op: Operation, caller: &str, status: u16) {
        *self.by.entry((op, caller.to_string())).or_default() += 1;
        if status == 429 {
            *self.throttled.entry(caller.to_string()).or_default() += 1;
        }
    }
}

/// One handled request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    /// Path as sent (still percent-encoded).
    pub path: String,
    /// Raw query string, without `?`.
    pub query: String,
    pub status: u16,
    /// Object id of the authenticated caller, or [`ANONYMOUS`].
    pub caller: String,
    /// `None` for requests the emulator does not route.
    pub operation: Option<Operation>,
    /// The request's `User-Agent` header, as sent.
    pub user_agent: Option<String>,
    /// The client's address (one per connection, so two processes never share one).
    pub peer: Option<SocketAddr>,
    /// A random fault of [`crate::FaultConfig`] that changed what the client got. `status` is
    /// still what ARM decided (0 when the connection was reset before the request was handled).
    pub injected: Option<InjectedFault>,
}

/// The random faults that change an answer after routing (see [`crate::FaultConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InjectedFault {
    /// The connection was closed before the request was handled: nothing happened.
    ConnectionReset,
    /// The write happened, and the client got a 500 instead of its answer.
    AnswerReplacedBy500,
    /// The write happened, and the connection was closed instead of answering.
    AnswerDropped,
    /// The answer came `slow_answer_ms` late.
    SlowAnswer,
}

#[derive(Debug, Clone)]
pub(crate) struct IssuedToken {
    pub client_id: String,
    pub object_id: String,
    /// Normalised (see `normalize_audience`).
    pub audience: String,
    /// Emulator clock seconds.
    pub expires_at: f64,
    pub expires_at_wall: SystemTime,
}

#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// Emulator clock seconds (may be negative: created before start).
    pub created_at: f64,
    pub principal_type: String,
    /// Direct members (lower-case object ids) when `principal_type` is `Group`.
    pub members: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Registry {
    pub config: RegistryConfig,
    pub created: SystemTime,
    /// Position in Registries_List (and its `$skipToken`); kept when the registry is replaced.
    pub seq: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct DenyRule {
    pub caller: Option<String>,
    pub action: String,
    pub scope_prefix: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    pub tokens: f64,
    pub last: f64,
}

pub(crate) struct State {
    pub tenant_id: String,
    pub faults: FaultConfig,
    pub api_versions: crate::config::ApiVersions,
    pub token_lifetime_secs: u64,
    pub identity_header: String,
    pub extra_audiences: Vec<String>,
    /// `https://{name}:{port}` for every certificate name; filled in once the port is known.
    pub own_audiences: Vec<String>,
    clock: EmulatorClock,
    subscriptions: HashSet<String>,
    resource_groups: HashSet<String>,
    resources: HashSet<String>,
    pub registries: HashMap<String, Registry>,
    next_registry_seq: u64,
    pub clusters: HashMap<String, ClusterConfig>,
    /// Keyed by normalised id; ids are always filled in.
    pub user_identities: HashMap<String, UserAssignedIdentityConfig>,
    pub identities: Vec<IdentityConfig>,
    pub principals: HashMap<String, Principal>,
    pub role_definitions: HashSet<String>,
    /// Permissions per role definition GUID (built-ins and `customRoles`); roles listed only in
    /// `roleDefinitions` have none.
    pub role_permissions: HashMap<String, RolePermissions>,
    pub authorization: AuthorizationMode,
    /// Keyed by creation sequence number, which is also the LIST order and the `$skipToken`.
    pub assignments: BTreeMap<u64, RoleAssignmentRecord>,
    next_seq: u64,
    pub tokens: HashMap<String, IssuedToken>,
    pub buckets: HashMap<(String, String, OpKind), Bucket>,
    pub counts: CallCounts,
    pub log: VecDeque<LoggedRequest>,
    pub deny: Vec<DenyRule>,
    pub fail_next: HashMap<Operation, VecDeque<u16>>,
    /// Answers sent as is to the next requests of an operation (see `ArmEmulator::answer_next_raw`).
    pub raw_next: HashMap<Operation, VecDeque<RawAnswer>>,
    pub rng: Rng,
    /// Lower-case assignment names rendered malformed in role-assignment LIST pages.
    pub corrupt_in_list: HashMap<String, ListCorruption>,
}

/// What `State::now` reads: time since start, or a time only tests move. Throttling buckets,
/// PrincipalNotFound windows and token lifetimes all run on it, so a test on a loaded machine can
/// step through a window instead of sleeping through it.
#[derive(Debug, Clone, Copy)]
enum EmulatorClock {
    Real(Instant),
    Manual(f64),
}

/// A malformed or foreign answer, sent as is: a proxy's HTML page, truncated JSON, a huge body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAnswer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Lowercased, leading `/`, no trailing `/`: ARM compares resource ids case-insensitively.
pub(crate) fn norm_id(id: &str) -> String {
    let trimmed = id.trim().trim_matches('/');
    format!("/{}", trimmed.to_ascii_lowercase())
}

/// The `roleDefinitionId` ARM puts in a role-assignment body.
pub(crate) fn render_role_definition_id(
    format: RoleDefinitionIdFormat,
    subscription: &str,
    guid: &str,
    as_sent: Option<&str>,
) -> String {
    match (format, as_sent) {
        (RoleDefinitionIdFormat::AsSent, Some(sent)) => sent.to_string(),
        (RoleDefinitionIdFormat::Tenant, _) => {
            format!("/providers/Microsoft.Authorization/roleDefinitions/{guid}")
        }
        _ if subscription.is_empty() => {
            format!("/providers/Microsoft.Authorization/roleDefinitions/{guid}")
        }
        _ => format!(
            "/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
        ),
    }
}

pub(crate) fn id_segments(id: &str) -> Vec<&str> {
    id.split('/').filter(|s| !s.is_empty()).collect()
}

impl State {
    pub fn new(config: TenantConfig) -> Result<State, String> {
        let mut st = State {
            tenant_id: config.tenant_id.clone(),
            faults: config.faults.clone(),
            api_versions: config.api_versions.clone(),
            token_lifetime_secs: config.token_lifetime_secs,
            identity_header: config.identity_header.clone(),
            extra_audiences: config.extra_audiences.clone(),
            own_audiences: Vec::new(),
            clock: EmulatorClock::Real(Instant::now()),
            subscriptions: HashSet::new(),
            resource_groups: HashSet::new(),
            resources: HashSet::new(),
            registries: HashMap::new(),
            next_registry_seq: 1,
            clusters: HashMap::new(),
            user_identities: HashMap::new(),
            identities: config.identities.clone(),
            principals: HashMap::new(),
            role_definitions: roles::BUILT_IN_ROLES
                .iter()
                .map(|(g, _)| g.to_string())
                .collect(),
            role_permissions: roles::BUILT_IN
                .iter()
                .map(|r| (r.guid.to_string(), r.permissions()))
                .collect(),
            authorization: config.authorization,
            assignments: BTreeMap::new(),
            next_seq: 1,
            tokens: HashMap::new(),
            buckets: HashMap::new(),
            counts: CallCounts::default(),
            log: VecDeque::new(),
            deny: Vec::new(),
            fail_next: HashMap::new(),
            raw_next: HashMap::new(),
            rng: Rng::new(config.faults.seed),
            corrupt_in_list: HashMap::new(),
        };
        if !is_guid(&config.tenant_id) {
            return Err(format!("tenantId '{}' is not a GUID", config.tenant_id));
        }
        for g in &config.role_definitions {
            st.role_definitions.insert(g.to_ascii_lowercase());
        }
        for role in &config.custom_roles {
            if !is_guid(&role.id) {
                return Err(format!("customRoles id '{}' is not a GUID", role.id));
            }
            let guid = role.id.to_ascii_lowercase();
            st.role_definitions.insert(guid.clone());
            st.role_permissions.insert(guid, role.permissions.clone());
        }
        for s in &config.subscriptions {
            st.subscriptions.insert(s.to_ascii_lowercase());
        }
        for rg in &config.resource_groups {
            st.add_resource_group(rg)?;
        }
        for r in &config.resources {
            st.add_resource(r)?;
        }
        for r in &config.registries {
            st.add_registry(r.clone())?;
        }
        for c in &config.clusters {
            st.add_cluster(c.clone(), -86_400.0)?;
        }
        for u in &config.user_assigned_identities {
            st.add_user_assigned_identity(u.clone())?;
        }
        for i in &config.identities {
            st.add_principal(&i.object_id, -86_400.0, "ServicePrincipal");
        }
        for p in &config.principals {
            st.add_principal(
                &p.object_id,
                p.created_at_offset_secs as f64,
                &p.principal_type,
            );
            if !p.members.is_empty() {
                st.set_members(&p.object_id, &p.members);
            }
        }
        for ra in &config.role_assignments {
            st.insert_config_assignment(ra)?;
        }
        Ok(st)
    }

    /// Seconds since the emulator started, on its real or its manual clock.
    pub fn now(&self) -> f64 {
        match self.clock {
            EmulatorClock::Real(start) => start.elapsed().as_secs_f64(),
            EmulatorClock::Manual(seconds) => seconds,
        }
    }

    /// Stops the clock where it is; from now on only [`State::advance_clock`] moves it.
    pub fn use_manual_clock(&mut self) {
        self.clock = EmulatorClock::Manual(self.now());
    }

    /// Moves the clock forward (switching it to manual first).
    pub fn advance_clock(&mut self, by: std::time::Duration) {
        self.clock = EmulatorClock::Manual(self.now() + by.as_secs_f64());
    }

    /// One roll of the fault PRNG against a probability; never true for a rate of zero.
    pub fn roll(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.rng.next_f64() < rate
    }

    pub fn subscription_exists(&self, sub: &str) -> bool {
        self.subscriptions.contains(&sub.to_ascii_lowercase())
    }

    pub fn resource_group_exists(&self, sub: &str, rg: &str) -> bool {
        self.resource_groups.contains(&norm_id(&format!(
            "/subscriptions/{sub}/resourceGroups/{rg}"
        )))
    }

    pub fn resource_exists(&self, id: &str) -> bool {
        let key = norm_id(id);
        self.registries.contains_key(&key)
            || self.clusters.contains_key(&key)
            || self.user_identities.contains_key(&key)
            || self.resources.contains(&key)
    }

    /// Registers the subscription and resource group an id lives in.
    fn add_parents(&mut self, id: &str) -> Result<(), String> {
        let segs = id_segments(id);
        if segs.len() < 2 || !segs[0].eq_ignore_ascii_case("subscriptions") {
            return Err(format!("'{id}' is not a subscription-scoped id"));
        }
        self.subscriptions.insert(segs[1].to_ascii_lowercase());
        if segs.len() >= 4 {
            if !segs[2].eq_ignore_ascii_case("resourceGroups") {
                return Err(format!("'{id}' is not a resource-group-scoped id"));
            }
            self.resource_groups.insert(norm_id(&format!(
                "/subscriptions/{}/resourceGroups/{}",
                segs[1], segs[3]
            )));
        }
        Ok(())
    }

    pub fn add_resource_group(&mut self, id: &str) -> Result<(), String> {
        if id_segments(id).len() != 4 {
            return Err(format!("'{id}' is not a resource group id"));
        }
        self.add_parents(id)
    }

    fn resource_id_shape(id: &str, provider: Option<(&str, &str)>) -> Result<(), String> {
        let segs = id_segments(id);
        let ok = segs.len() >= 8
            && segs.len().is_multiple_of(2)
            && segs[4].eq_ignore_ascii_case("providers")
            && provider.is_none_or(|(ns, ty)| {
                segs.len() == 8
                    && segs[5].eq_ignore_ascii_case(ns)
                    && segs[6].eq_ignore_ascii_case(ty)
            });
        if ok {
            Ok(())
        } else {
            Err(format!("'{id}' is not a resource id of the expected type"))
        }
    }

    pub fn add_resource(&mut self, id: &str) -> Result<(), String> {
        Self::resource_id_shape(id, None)?;
        self.add_parents(id)?;
        self.resources.insert(norm_id(id));
        Ok(())
    }

    pub fn add_registry(&mut self, config: RegistryConfig) -> Result<(), String> {
        Self::resource_id_shape(
            &config.id,
            Some(("Microsoft.ContainerRegistry", "registries")),
        )?;
        self.add_parents(&config.id)?;
        let key = norm_id(&config.id);
        let seq = match self.registries.get(&key) {
            Some(existing) => existing.seq,
            None => {
                self.next_registry_seq += 1;
                self.next_registry_seq - 1
            }
        };
        self.registries.insert(
            key,
            Registry {
                config,
                created: SystemTime::now(),
                seq,
            },
        );
        Ok(())
    }

    /// Adds or replaces a user-assigned identity; returns it with its ids filled in. Its
    /// principal joins the directory as a service principal created long ago.
    pub fn add_user_assigned_identity(
        &mut self,
        config: UserAssignedIdentityConfig,
    ) -> Result<UserAssignedIdentityConfig, String> {
        Self::resource_id_shape(
            &config.id,
            Some(("Microsoft.ManagedIdentity", "userAssignedIdentities")),
        )?;
        let filled = config.with_generated_ids();
        for id in [&filled.principal_id, &filled.client_id] {
            let id = id.as_deref().unwrap_or_default();
            if !is_guid(id) {
                return Err(format!(
                    "userAssignedIdentities '{}': '{id}' is not a GUID",
                    filled.id
                ));
            }
        }
        self.add_parents(&filled.id)?;
        self.add_principal(
            filled.principal_id.as_deref().unwrap_or_default(),
            -86_400.0,
            "ServicePrincipal",
        );
        self.user_identities
            .insert(norm_id(&filled.id), filled.clone());
        Ok(filled)
    }

    /// Makes `object_id` a group (created long ago unless it exists) with exactly these members.
    pub fn set_members(&mut self, object_id: &str, members: &[String]) {
        if object_id.is_empty() {
            return;
        }
        let p = self
            .principals
            .entry(object_id.to_ascii_lowercase())
            .or_insert_with(|| Principal {
                created_at: -86_400.0,
                principal_type: "Group".to_string(),
                members: Vec::new(),
            });
        p.principal_type = "Group".to_string();
        p.members = members
            .iter()
            .map(|m| m.trim().to_ascii_lowercase())
            .filter(|m| !m.is_empty())
            .collect();
    }

    /// `object_id` and every group it belongs to, directly or through nested groups (lower-case).
    pub fn principal_and_groups(&self, object_id: &str) -> HashSet<String> {
        let mut found: HashSet<String> = HashSet::from([object_id.to_ascii_lowercase()]);
        loop {
            let more: Vec<String> = self
                .principals
                .iter()
                .filter(|(gid, g)| {
                    !found.contains(*gid)
                        && g.principal_type.eq_ignore_ascii_case("Group")
                        && g.members.iter().any(|m| found.contains(m))
                })
                .map(|(gid, _)| gid.clone())
                .collect();
            if more.is_empty() {
                return found;
            }
            found.extend(more);
        }
    }

    pub fn add_cluster(
        &mut self,
        config: ClusterConfig,
        kubelet_created_at: f64,
    ) -> Result<(), String> {
        Self::resource_id_shape(
            &config.id,
            Some(("Microsoft.ContainerService", "managedClusters")),
        )?;
        self.add_parents(&config.id)?;
        if let Some(k) = &config.kubelet_identity {
            self.add_principal(&k.object_id, kubelet_created_at, "ServicePrincipal");
        }
        self.clusters.insert(norm_id(&config.id), config);
        Ok(())
    }

    /// Adds a directory entry unless it exists (an existing entry keeps its creation time).
    pub fn add_principal(&mut self, object_id: &str, created_at: f64, principal_type: &str) {
        if object_id.is_empty() {
            return;
        }
        self.principals
            .entry(object_id.to_ascii_lowercase())
            .or_insert_with(|| Principal {
                created_at,
                principal_type: principal_type.to_string(),
                members: Vec::new(),
            });
    }

    pub fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    pub fn find_assignment_by_name(&self, name: &str) -> Option<(u64, &RoleAssignmentRecord)> {
        self.assignments
            .iter()
            .find(|(_, r)| r.name.eq_ignore_ascii_case(name))
            .map(|(k, r)| (*k, r))
    }

    /// Inserts an assignment as if created out of band; replaces one with the same name.
    pub fn insert_external(&mut self, ra: &RoleAssignmentConfig) -> RoleAssignmentRecord {
        let (scope, name, role_definition, principal_id) = (
            ra.scope.as_str(),
            ra.name.as_str(),
            ra.role_definition.as_str(),
            ra.principal_id.as_str(),
        );
        let (principal_type, description, condition) = (
            ra.principal_type.as_deref(),
            ra.description.as_deref(),
            ra.condition.as_deref(),
        );
        let name = if name.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            name.to_string()
        };
        if let Some((seq, _)) = self.find_assignment_by_name(&name) {
            self.assignments.remove(&seq);
        }
        let scope = format!("/{}", scope.trim().trim_matches('/'));
        let guid = role_definition.rsplit('/').next().unwrap_or_default();
        let sub = id_segments(&scope)
            .get(1)
            .map(|s| s.to_string())
            .unwrap_or_default();
        let now = arm_timestamp(SystemTime::now());
        let principal_type = principal_type.map(str::to_string).unwrap_or_else(|| {
            self.principals
                .get(&principal_id.to_ascii_lowercase())
                .map(|p| p.principal_type.clone())
                .unwrap_or_else(|| "ServicePrincipal".to_string())
        });
        let rec = RoleAssignmentRecord {
            id: format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
            name,
            scope,
            role_definition_id: render_role_definition_id(
                self.faults.role_definition_id_format,
                &sub,
                guid,
                role_definition.contains('/').then_some(role_definition),
            ),
            principal_id: principal_id.to_string(),
            principal_type,
            description: description.map(str::to_string),
            condition: condition.map(str::to_string),
            condition_version: condition.map(|_| "2.0".to_string()),
            created_by: EXTERNAL.to_string(),
            updated_by: EXTERNAL.to_string(),
            created_on: now.clone(),
            updated_on: now,
        };
        let seq = self.next_seq();
        self.assignments.insert(seq, rec.clone());
        rec
    }

    fn insert_config_assignment(&mut self, ra: &RoleAssignmentConfig) -> Result<(), String> {
        if ra.scope.is_empty() || ra.principal_id.is_empty() || ra.role_definition.is_empty() {
            return Err("role assignments need scope, principalId and roleDefinition".to_string());
        }
        if !ra.name.is_empty() && !is_guid(&ra.name) {
            return Err(format!("role assignment name '{}' is not a GUID", ra.name));
        }
        self.insert_external(ra);
        Ok(())
    }

    pub fn remove_assignment(&mut self, id_or_name: &str) -> bool {
        let key = id_or_name.trim();
        let seq = self
            .assignments
            .iter()
            .find(|(_, r)| r.name.eq_ignore_ascii_case(key) || norm_id(&r.id) == norm_id(key))
            .map(|(s, _)| *s);
        match seq {
            Some(s) => self.assignments.remove(&s).is_some(),
            None => false,
        }
    }

    pub fn log_request(&mut self, entry: LoggedRequest) {
        if let Some(op) = entry.operation {
            self.counts.record(op, &entry.caller, entry.status);
        } else if entry.status == 429 {
            *self
                .counts
                .throttled
                .entry(entry.caller.clone())
                .or_default() += 1;
        }
        if self.log.len() >= MAX_LOGGED_REQUESTS {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }

    pub fn set_faults(&mut self, faults: FaultConfig) {
        self.rng = Rng::new(faults.seed);
        self.buckets.clear();
        self.faults = faults;
    }
}
