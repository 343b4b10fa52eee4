//! Controller glue: the shared context (Azure and Kubernetes boundaries, shared reads, clock,
//! metrics, per-object retry state), the watch that triggers reconciles, and the error policy.

pub mod clock;
pub mod cluster;
pub mod reconcile;
pub mod shared_reads;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::{PredicateConfig, WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use crate::azure::AzureApi;
use crate::crd::{RegistryAttachment, SKIP_CLEANUP_ANNOTATION};
use crate::metrics::Metrics;
use crate::model::{ClusterId, OwnerId, PrincipalId};
use clock::Clock;
use cluster::{ClusterApi, KubeCluster};
use reconcile::{ReconcileError, reconcile};
use shared_reads::SharedReads;

/// Where the default principal (the kubelet identity) comes from.
#[derive(Clone, Debug)]
pub enum KubeletIdentity {
    /// Given directly (--kubelet-object-id).
    ObjectId(PrincipalId),
    /// Read from the AKS cluster (--cluster-resource-id), once per resync window.
    FromCluster(ClusterId),
    /// Neither: every attachment must name spec.principal.objectId.
    Unconfigured,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub kubelet_identity: KubeletIdentity,
    /// This installation's identity, part of every assignment name it derives.
    pub owner: OwnerId,
    /// How often every attachment is verified against Azure (drift repair).
    pub resync: Duration,
    /// How long PrincipalNotFound counts as Entra replication lag before it needs a human.
    pub principal_grace: Duration,
    /// Retry interval for failures only a human can fix.
    pub stalled_retry: Duration,
    /// First and longest delay of the transient-failure backoff.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl std::fmt::Display for KubeletIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KubeletIdentity::ObjectId(principal) => write!(f, "object id {principal}"),
            KubeletIdentity::FromCluster(cluster) => write!(f, "read from {cluster}"),
            KubeletIdentity::Unconfigured => f.write_str("not configured"),
        }
    }
}

/// Defaults of the timing settings; the CLI's flags default to the same values.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(600);
pub const DEFAULT_PRINCIPAL_GRACE: Duration = Duration::from_secs(600);
pub const DEFAULT_STALLED_RETRY: Duration = Duration::from_secs(300);

impl Settings {
    pub fn new(kubelet_identity: KubeletIdentity, owner: OwnerId) -> Self {
        Self {
            kubelet_identity,
            owner,
            resync: DEFAULT_RESYNC,
            principal_grace: DEFAULT_PRINCIPAL_GRACE,
            stalled_retry: DEFAULT_STALLED_RETRY,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
        }
    }
}

pub struct Context {
    pub azure: Arc<dyn AzureApi>,
    pub cluster: Arc<dyn ClusterApi>,
    pub reads: SharedReads,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Consecutive transient failures per attachment, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// When each attachment first saw PrincipalNotFound in its current streak.
    principal_missing_since: Mutex<HashMap<String, Instant>>,
    /// Serialises planning and writing per registry, so two reconciles never decide about the
    /// same assignment at once (one creating or adopting it while the other deletes it).
    registry_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Assignment ids each attachment relies on, as decided in this process: ahead of the watch
    /// cache, which learns of a status write only when its event arrives.
    claims: Mutex<HashMap<String, HashSet<String>>>,
}

impl Context {
    pub fn new(
        azure: Arc<dyn AzureApi>,
        cluster: Arc<dyn ClusterApi>,
        settings: Settings,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            reads: SharedReads::new(settings.resync, clock.clone()),
            azure,
            cluster,
            settings,
            clock,
            metrics,
            failures: Mutex::default(),
            principal_missing_since: Mutex::default(),
            registry_locks: Mutex::default(),
            claims: Mutex::default(),
        }
    }

    /// Locks the given registries (by key) in a fixed order, so overlapping sets cannot deadlock.
    pub async fn lock_registries(
        &self,
        keys: impl IntoIterator<Item = String>,
    ) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let keys: BTreeSet<String> = keys.into_iter().collect();
        let locks: Vec<_> = {
            let mut registry_locks = self
                .registry_locks
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            keys.into_iter()
                .map(|key| registry_locks.entry(key).or_default().clone())
                .collect()
        };
        let mut guards = Vec::with_capacity(locks.len());
        for lock in locks {
            guards.push(lock.lock_owned().await);
        }
        guards
    }

    /// Records that `attachment` now relies on `assignment_id`.
    pub fn claim(&self, attachment: &str, assignment_id: &str) {
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                attachment.to_string(),
                [assignment_id.to_ascii_lowercase()].into(),
            );
    }

    pub fn drop_claims(&self, attachment: &str) {
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(attachment);
    }

    /// Exponential backoff with ±20% jitter, never shorter than ARM's Retry-After.
    pub fn next_backoff(&self, attachment: &str, retry_after: Option<Duration>) -> Duration {
        let attempt = {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            let count = failures.entry(attachment.to_string()).or_insert(0);
            *count = count.saturating_add(1);
            *count
        };
        let exponential = self
            .settings
            .backoff_base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)))
            .min(self.settings.backoff_max);
        let jittered = exponential.mul_f64(0.8 + fastrand::f64() * 0.4);
        jittered.max(retry_after.unwrap_or_default())
    }

    pub fn reset_backoff(&self, attachment: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(attachment);
    }

    /// How long this attachment has been seeing PrincipalNotFound (zero on the first sighting).
    pub fn principal_failure_age(&self, attachment: &str) -> Duration {
        let now = self.clock.now();
        let mut since = self
            .principal_missing_since
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let first = *since.entry(attachment.to_string()).or_insert(now);
        now.saturating_duration_since(first)
    }

    pub fn forget_principal_failure(&self, attachment: &str) {
        self.principal_missing_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(attachment);
    }

    /// Assignments that live attachments other than `attachment` rely on: from their status in the
    /// watch cache, and from decisions this process made that the cache may not show yet (an
    /// attachment created a moment ago may not be in the cache at all).
    pub fn claims_of_others(&self, attachment: &str) -> HashSet<String> {
        let cached = self.cluster.attachments();
        let mut claimed =
            crate::decide::plan::claims_of_others(attachment, cached.iter().map(Arc::as_ref));
        let deleting: HashSet<&str> = cached
            .iter()
            .filter(|other| other.is_deleting())
            .filter_map(|other| other.metadata.name.as_deref())
            .collect();
        let claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        for (other, ids) in claims.iter() {
            if other != attachment && !deleting.contains(other.as_str()) {
                claimed.extend(ids.iter().cloned());
            }
        }
        claimed
    }
}

/// What makes a watch event worth a reconcile: spec changes (generation), deletion, and the
/// skip-cleanup annotation. Status writes — including our own — change none of these.
fn trigger_fingerprint(attachment: &RegistryAttachment) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    attachment.metadata.generation.hash(&mut hasher);
    attachment
        .metadata
        .deletion_timestamp
        .is_some()
        .hash(&mut hasher);
    attachment
        .annotations()
        .get(SKIP_CLEANUP_ANNOTATION)
        .hash(&mut hasher);
    Some(hasher.finish())
}

fn error_policy(
    attachment: Arc<RegistryAttachment>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    warn!(attachment = %attachment.name_any(), %error, "reconcile failed");
    Action::requeue(ctx.next_backoff(&attachment.name_any(), None))
}

/// Builds the context over a real cluster and runs the controller until shutdown.
pub async fn run(
    client: Client,
    azure: Arc<dyn AzureApi>,
    settings: Settings,
    metrics: Arc<Metrics>,
    readiness: Arc<crate::http::Readiness>,
    instance: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api = Api::<RegistryAttachment>::all(client.clone());
    let (reader, writer) = reflector::store();
    let synced = reader.clone();
    tokio::spawn(async move {
        if synced.wait_until_ready().await.is_ok() {
            readiness.set_ready();
        }
    });
    let cluster = Arc::new(KubeCluster::new(client, reader.clone(), instance));
    let ctx = Arc::new(Context::new(
        azure,
        cluster,
        settings,
        Arc::new(clock::SystemClock),
        metrics,
    ));
    let triggers = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(trigger_fingerprint, PredicateConfig::default());
    info!("acr-attach controller started");
    Controller::for_stream(triggers, reader)
        .with_config(ControllerConfig::default().concurrency(8))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "controller");
            }
        })
        .await;
    info!("acr-attach controller stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{RegistryAttachmentSpec, RegistryAttachmentStatus, RegistryReference};

    fn attachment() -> RegistryAttachment {
        let mut attachment = RegistryAttachment::new(
            "a",
            RegistryAttachmentSpec {
                registry: RegistryReference {
                    resource_id: "x".to_string(),
                },
                role: Default::default(),
                principal: None,
                deletion_policy: Default::default(),
            },
        );
        attachment.metadata.generation = Some(1);
        attachment
    }

    #[test]
    fn our_own_status_and_finalizer_writes_do_not_trigger_a_reconcile() {
        let before = attachment();
        let mut after = before.clone();
        after.status = Some(RegistryAttachmentStatus {
            role: Some("AcrPull".to_string()),
            ..Default::default()
        });
        after.metadata.finalizers = Some(vec![crate::crd::FINALIZER.to_string()]);
        after.metadata.resource_version = Some("42".to_string());
        assert_eq!(trigger_fingerprint(&before), trigger_fingerprint(&after));
    }

    #[test]
    fn spec_changes_deletion_and_the_skip_annotation_do() {
        let base = trigger_fingerprint(&attachment());
        let mut edited = attachment();
        edited.metadata.generation = Some(2);
        assert_ne!(trigger_fingerprint(&edited), base);
        let mut annotated = attachment();
        annotated.metadata.annotations =
            Some([(SKIP_CLEANUP_ANNOTATION.to_string(), "true".to_string())].into());
        assert_ne!(trigger_fingerprint(&annotated), base);
        let mut deleting = attachment();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        assert_ne!(trigger_fingerprint(&deleting), base);
    }
}
