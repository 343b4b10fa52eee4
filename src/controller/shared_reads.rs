//! Azure reads shared across attachments: one registry GET and one role-assignment LIST per
//! distinct registry per resync window, one registry list per subscription (or resource group)
//! that attachments name registries in, and one kubelet-identity read per window for the whole
//! operator. Our own writes update the cached list, so the cache stays true without re-reading.
//! Concurrent reconciles of attachments on one registry wait for a single fetch, and a failed
//! read is shared for a short while too, so a missing registry or a throttled subscription costs
//! one request per round, not one per attachment.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::Mutex as AsyncMutex;

use crate::azure::{ArmError, AzureApi, Registry, RoleAssignment};
use crate::controller::clock::Clock;
use crate::decide::failure::{Classify, Failure};
use crate::decide::reasons;
use crate::decide::registry_lookup::ListScope;
use crate::model::{ClusterId, IdentityId, PermissionsMode, RegistryId};

/// How long a failed read is reused before the next attempt reaches ARM (at least; ARM's
/// Retry-After wins when longer).
const FAILURE_REUSE: Duration = Duration::from_secs(5);

/// What one registry looked like at one moment.
#[derive(Clone, Debug)]
pub struct RegistrySnapshot {
    pub registry_id: RegistryId,
    pub registry: Registry,
    pub assignments: Vec<RoleAssignment>,
    pub fetched_at: Timestamp,
    /// After this the next reconcile re-reads; attachments requeue just after it.
    pub expires_at: Instant,
}

/// What one registry read returns, as cached.
#[derive(Clone)]
struct RegistryRead {
    registry: Registry,
    assignments: Vec<RoleAssignment>,
    fetched_at: Timestamp,
}

enum Slot<T> {
    Empty,
    Fresh { value: T, expires_at: Instant },
    Failed { failure: Failure, until: Instant },
}

pub struct SharedReads {
    window: Duration,
    clock: Arc<dyn Clock>,
    registries: Slots<RegistryRead>,
    kubelet: AsyncMutex<Slot<Option<String>>>,
    /// principalId per user-assigned identity (lower-cased id).
    identities: Slots<String>,
    /// Registry lists per lookup scope (`ListScope::key`), for registries named by name.
    lists: Slots<Vec<Registry>>,
}

impl SharedReads {
    pub fn new(window: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            window,
            clock,
            registries: Mutex::new(HashMap::new()),
            kubelet: AsyncMutex::new(Slot::Empty),
            identities: Mutex::new(HashMap::new()),
            lists: Mutex::new(HashMap::new()),
        }
    }

    /// Up to +10% per fetch, so registries fetched together drift apart instead of hitting ARM in
    /// bursts every window.
    fn expiry(&self) -> Instant {
        self.clock.now() + self.window.mul_f64(1.0 + fastrand::f64() * 0.1)
    }

    fn slot(&self, registry: &RegistryId) -> Arc<AsyncMutex<Slot<RegistryRead>>> {
        keyed_slot(&self.registries, registry.key())
    }

    /// Returns the cached value (with its expiry) or failure, or runs `fetch` and caches what it
    /// gives.
    async fn read_through<T: Clone, F>(
        &self,
        slot: &mut Slot<T>,
        fetch: impl FnOnce() -> F,
    ) -> Result<(T, Instant), Failure>
    where
        F: Future<Output = Result<T, ArmError>>,
    {
        let now = self.clock.now();
        match slot {
            Slot::Fresh { value, expires_at } if *expires_at > now => {
                return Ok((value.clone(), *expires_at));
            }
            Slot::Failed { failure, until } if *until > now => return Err(failure.clone()),
            _ => {}
        }
        match fetch().await {
            Ok(value) => {
                let expires_at = self.expiry();
                *slot = Slot::Fresh {
                    value: value.clone(),
                    expires_at,
                };
                Ok((value, expires_at))
            }
            Err(error) => {
                let failure = error.classify();
                let reuse = failure.retry_after.unwrap_or_default().max(FAILURE_REUSE);
                *slot = Slot::Failed {
                    failure: failure.clone(),
                    until: self.clock.now() + reuse,
                };
                Err(failure)
            }
        }
    }

    /// The registry and its role assignments, fetched at most once per window.
    pub async fn registry(
        &self,
        registry: &RegistryId,
        azure: &dyn AzureApi,
    ) -> Result<RegistrySnapshot, Failure> {
        let slot = self.slot(registry);
        let mut cached = slot.lock().await;
        let (read, expires_at) = self
            .read_through(&mut cached, || async {
                let fetched_at = self.clock.wall();
                let fetched = azure.get_registry(registry).await?;
                let assignments = azure.list_role_assignments(registry).await?;
                Ok(RegistryRead {
                    registry: fetched,
                    assignments,
                    fetched_at,
                })
            })
            .await?;
        Ok(RegistrySnapshot {
            registry_id: registry.clone(),
            registry: read.registry,
            assignments: read.assignments,
            fetched_at: read.fetched_at,
            expires_at,
        })
    }

    /// Re-lists assignments now (after a 409 says the cached list missed one).
    pub async fn relist(
        &self,
        registry: &RegistryId,
        azure: &dyn AzureApi,
    ) -> Result<Vec<RoleAssignment>, Failure> {
        let slot = self.slot(registry);
        let mut cached = slot.lock().await;
        let assignments = azure
            .list_role_assignments(registry)
            .await
            .map_err(|error| error.classify())?;
        if let Slot::Fresh { value, .. } = &mut *cached {
            value.assignments = assignments.clone();
        }
        Ok(assignments)
    }

    pub async fn record_created(&self, registry: &RegistryId, assignment: RoleAssignment) {
        let slot = self.slot(registry);
        if let Slot::Fresh { value, .. } = &mut *slot.lock().await {
            value
                .assignments
                .retain(|existing| !existing.id.eq_ignore_ascii_case(&assignment.id));
            value.assignments.push(assignment);
        }
    }

    pub async fn record_deleted(&self, assignment_id: &str) {
        let slots: Vec<_> = {
            let slots = self.registries.lock().unwrap_or_else(|p| p.into_inner());
            slots.values().cloned().collect()
        };
        for slot in slots {
            if let Slot::Fresh { value, .. } = &mut *slot.lock().await {
                value
                    .assignments
                    .retain(|existing| !existing.id.eq_ignore_ascii_case(assignment_id));
            }
        }
    }

    /// The registry's listing as cached now (with our own writes applied), if it is fresh.
    pub async fn cached_assignments(&self, registry: &RegistryId) -> Option<Vec<RoleAssignment>> {
        let slot = self.slot(registry);
        let cached = slot.lock().await;
        match &*cached {
            Slot::Fresh { value, .. } => Some(value.assignments.clone()),
            _ => None,
        }
    }

    /// True when the last read of the registry found it gone.
    pub async fn registry_is_gone(&self, registry: &RegistryId) -> bool {
        let slot = self.slot(registry);
        let cached = slot.lock().await;
        matches!(&*cached, Slot::Failed { failure, .. } if failure.reason == reasons::REGISTRY_NOT_FOUND)
    }

    /// Permissions modes of the registries read (and not being read right now).
    pub fn known_modes(&self) -> HashMap<String, Option<PermissionsMode>> {
        let slots = self.registries.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .filter_map(|(key, slot)| match &*slot.try_lock().ok()? {
                Slot::Fresh { value, .. } => Some((key.clone(), value.registry.mode)),
                _ => None,
            })
            .collect()
    }

    /// Principal ids of the identities resolved in this window.
    pub fn known_identities(&self) -> HashMap<String, crate::model::PrincipalId> {
        let slots = self.identities.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .filter_map(|(key, slot)| match &*slot.try_lock().ok()? {
                Slot::Fresh { value, .. } => {
                    Some((key.clone(), crate::model::PrincipalId::parse(value).ok()?))
                }
                _ => None,
            })
            .collect()
    }

    /// The kubelet identity if it has been read (and is not being read right now).
    pub fn known_kubelet(&self) -> Option<String> {
        match &*self.kubelet.try_lock().ok()? {
            Slot::Fresh { value, .. } => value.clone(),
            _ => None,
        }
    }

    /// A user-assigned identity's principalId, read at most once per window.
    pub async fn identity(
        &self,
        identity: &IdentityId,
        azure: &dyn AzureApi,
    ) -> Result<String, Failure> {
        let slot = keyed_slot(&self.identities, identity.key());
        let mut cached = slot.lock().await;
        self.read_through(&mut cached, || azure.get_identity_principal(identity))
            .await
            .map(|(principal, _)| principal)
    }

    /// The registries listed in `scope`, read at most once per window.
    pub async fn registry_list(
        &self,
        scope: &ListScope,
        azure: &dyn AzureApi,
    ) -> Result<Vec<Registry>, Failure> {
        let slot = keyed_slot(&self.lists, scope.key());
        let mut cached = slot.lock().await;
        self.read_through(&mut cached, || {
            azure.list_registries(&scope.subscription, scope.resource_group.as_deref())
        })
        .await
        .map(|(listed, _)| listed)
    }

    /// The registry lists read this window, by `ListScope::key` (siblings' claims resolve names
    /// in them).
    pub fn known_lists(&self) -> HashMap<String, Vec<Registry>> {
        let slots = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .filter_map(|(key, slot)| match &*slot.try_lock().ok()? {
                Slot::Fresh { value, .. } => Some((key.clone(), value.clone())),
                _ => None,
            })
            .collect()
    }

    /// The cluster's kubelet identity, read at most once per window for the whole operator.
    pub async fn kubelet_identity(
        &self,
        cluster: &ClusterId,
        azure: &dyn AzureApi,
    ) -> Result<Option<String>, Failure> {
        let mut cached = self.kubelet.lock().await;
        self.read_through(&mut cached, || azure.get_kubelet_identity(cluster))
            .await
            .map(|(object_id, _)| object_id)
    }
}

type Slots<T> = Mutex<HashMap<String, Arc<AsyncMutex<Slot<T>>>>>;

/// The cache slot for `key`, created empty on first use.
fn keyed_slot<T>(slots: &Slots<T>, key: String) -> Arc<AsyncMutex<Slot<T>>> {
    let mut slots = slots.lock().unwrap_or_else(|p| p.into_inner());
    slots
        .entry(key)
        .or_insert_with(|| Arc::new(AsyncMutex::new(Slot::Empty)))
        .clone()
}
