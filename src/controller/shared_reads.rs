//! Azure reads shared across attachments: one registry GET and one role-assignment LIST per
//! distinct registry per resync window, and one kubelet-identity read per window for the whole
//! operator. Our own writes update the cached list, so the cache stays true without re-reading.
//! Concurrent reconciles of attachments on one registry wait for a single fetch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::Mutex as AsyncMutex;

use crate::azure::{ArmError, AzureApi, Registry, RoleAssignment};
use crate::controller::clock::Clock;
use crate::model::{ClusterId, RegistryId};

/// What one registry looked like at one moment.
#[derive(Clone, Debug)]
pub struct RegistrySnapshot {
    pub registry: Registry,
    pub assignments: Vec<RoleAssignment>,
    pub fetched_at: Timestamp,
    /// After this the next reconcile re-reads; attachments requeue just after it.
    pub expires_at: Instant,
}

#[derive(Clone, Debug)]
struct KubeletEntry {
    object_id: Option<String>,
    expires_at: Instant,
}

pub struct SharedReads {
    window: Duration,
    clock: Arc<dyn Clock>,
    registries: Mutex<HashMap<String, Arc<AsyncMutex<Option<RegistrySnapshot>>>>>,
    kubelet: AsyncMutex<Option<KubeletEntry>>,
}

impl SharedReads {
    pub fn new(window: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            window,
            clock,
            registries: Mutex::new(HashMap::new()),
            kubelet: AsyncMutex::new(None),
        }
    }

    /// Up to +10% per fetch, so registries fetched together drift apart instead of hitting ARM in
    /// bursts every window.
    fn expiry(&self, now: Instant) -> Instant {
        now + self.window.mul_f64(1.0 + fastrand::f64() * 0.1)
    }

    fn slot(&self, registry: &RegistryId) -> Arc<AsyncMutex<Option<RegistrySnapshot>>> {
        let mut slots = self.registries.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(registry.key()).or_default().clone()
    }

    /// The registry and its role assignments, fetched at most once per window.
    pub async fn registry(
        &self,
        registry: &RegistryId,
        azure: &dyn AzureApi,
    ) -> Result<RegistrySnapshot, ArmError> {
        let slot = self.slot(registry);
        let mut cached = slot.lock().await;
        let now = self.clock.now();
        if let Some(snapshot) = cached.as_ref().filter(|s| s.expires_at > now) {
            return Ok(snapshot.clone());
        }
        let fetched = azure.get_registry(registry).await?;
        let assignments = azure.list_role_assignments(registry).await?;
        let snapshot = RegistrySnapshot {
            registry: fetched,
            assignments,
            fetched_at: self.clock.wall(),
            expires_at: self.expiry(self.clock.now()),
        };
        *cached = Some(snapshot.clone());
        Ok(snapshot)
    }

    /// Re-lists assignments now (after a 409 says ours is not the only view of the truth).
    pub async fn relist(
        &self,
        registry: &RegistryId,
        azure: &dyn AzureApi,
    ) -> Result<Vec<RoleAssignment>, ArmError> {
        let slot = self.slot(registry);
        let mut cached = slot.lock().await;
        let assignments = azure.list_role_assignments(registry).await?;
        if let Some(snapshot) = cached.as_mut() {
            snapshot.assignments = assignments.clone();
        }
        Ok(assignments)
    }

    pub async fn record_created(&self, registry: &RegistryId, assignment: RoleAssignment) {
        let slot = self.slot(registry);
        let mut cached = slot.lock().await;
        if let Some(snapshot) = cached.as_mut() {
            snapshot
                .assignments
                .retain(|existing| !existing.id.eq_ignore_ascii_case(&assignment.id));
            snapshot.assignments.push(assignment);
        }
    }

    pub async fn record_deleted(&self, assignment_id: &str) {
        let slots: Vec<_> = {
            let slots = self.registries.lock().unwrap_or_else(|p| p.into_inner());
            slots.values().cloned().collect()
        };
        for slot in slots {
            if let Some(snapshot) = slot.lock().await.as_mut() {
                snapshot
                    .assignments
                    .retain(|existing| !existing.id.eq_ignore_ascii_case(assignment_id));
            }
        }
    }

    /// The cluster's kubelet identity, read at most once per window for the whole operator.
    pub async fn kubelet_identity(
        &self,
        cluster: &ClusterId,
        azure: &dyn AzureApi,
    ) -> Result<Option<String>, ArmError> {
        let mut cached = self.kubelet.lock().await;
        let now = self.clock.now();
        if let Some(entry) = cached.as_ref().filter(|e| e.expires_at > now) {
            return Ok(entry.object_id.clone());
        }
        let object_id = azure.get_kubelet_identity(cluster).await?;
        *cached = Some(KubeletEntry {
            object_id: object_id.clone(),
            expires_at: self.expiry(self.clock.now()),
        });
        Ok(object_id)
    }
}
