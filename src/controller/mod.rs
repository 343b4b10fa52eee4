//! Controller glue: the shared context (Azure and Kubernetes boundaries, shared reads, clock,
//! metrics, per-object retry state), the watch that triggers reconciles, and the error policy.

mod attach;
pub mod clock;
pub mod cluster;
mod detach;
mod execute;
pub mod leader;
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
use crate::decide::allowlist::AllowList;
use crate::decide::claims::{ClaimContext, Claims};
use crate::decide::report::GrantReport;
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
    /// Registries this installation may touch at all (checked before any Azure call).
    pub allow_list: AllowList,
    /// Login servers must end with this (the cloud's ACR suffix); `None` skips the check.
    pub registry_suffix: Option<String>,
    /// The longest one reconcile may take before it is dropped and retried.
    pub reconcile_deadline: Duration,
    /// How long to wait after leaving a co-owned assignment before reading it back (to repair a
    /// concurrent co-owner's write that crossed ours).
    pub co_owner_settle: Duration,
    /// Where `spec.registry.name` without `subscriptionId` is looked up (--default-subscription);
    /// `None`: the cluster's subscription, when the cluster is known.
    pub default_subscription: Option<String>,
    /// How old `status.lastSyncTime` may get before a quiet verification rewrites it; until then
    /// a resync that changes nothing writes nothing to Kubernetes.
    pub sync_time_refresh: Duration,
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
pub const DEFAULT_RECONCILE_DEADLINE: Duration = Duration::from_secs(120);
pub const DEFAULT_CO_OWNER_SETTLE: Duration = Duration::from_secs(3);
pub const DEFAULT_SYNC_TIME_REFRESH: Duration = Duration::from_secs(3600);

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
            allow_list: AllowList::default(),
            registry_suffix: None,
            reconcile_deadline: DEFAULT_RECONCILE_DEADLINE,
            co_owner_settle: DEFAULT_CO_OWNER_SETTLE,
            default_subscription: None,
            sync_time_refresh: DEFAULT_SYNC_TIME_REFRESH,
        }
    }

    /// The subscription registry names are looked up in when the spec gives none:
    /// --default-subscription, else the subscription of --cluster-resource-id.
    pub fn lookup_subscription(&self) -> Option<String> {
        self.default_subscription
            .clone()
            .or(match &self.kubelet_identity {
                KubeletIdentity::FromCluster(cluster) => Some(cluster.subscription().to_string()),
                _ => None,
            })
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
    /// What each attachment relies on, as decided in this process: ahead of the watch cache,
    /// which learns of a status write only when its event arrives.
    claims: Mutex<HashMap<String, Claims>>,
    /// True while this replica leads (always, without leader election).
    leading: tokio::sync::watch::Receiver<bool>,
    /// When this process first saw each (attachment, generation) not yet Ready: the start of the
    /// generation-to-Ready latency.
    generation_seen: Mutex<HashMap<(String, i64), Instant>>,
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
            leading: tokio::sync::watch::channel(true).1,
            generation_seen: Mutex::default(),
        }
    }

    /// Reconcile only while `leading` says so.
    pub fn with_leadership(mut self, leading: tokio::sync::watch::Receiver<bool>) -> Self {
        self.leading = leading;
        self
    }

    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Notes the first sighting of a generation (the start of its way to Ready).
    pub fn saw_generation(&self, attachment: &str, generation: i64) {
        let now = self.clock.now();
        self.generation_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((attachment.to_string(), generation))
            .or_insert(now);
    }

    /// The generation is Ready: how long it took since it was first seen, once per generation.
    pub fn generation_ready(&self, attachment: &str, generation: i64) -> Option<Duration> {
        let mut seen = self
            .generation_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let first = seen.remove(&(attachment.to_string(), generation))?;
        // Older generations of this attachment will never become Ready: forget them.
        seen.retain(|(name, _), _| name != attachment);
        Some(self.clock.now().saturating_duration_since(first))
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

    /// Records what `attachment` now relies on: every grant it wants, and the assignments that
    /// provide them.
    pub fn claim(&self, attachment: &str, reports: &[GrantReport]) {
        let mut claims = Claims::default();
        for report in reports {
            claims.add_grant(&report.grant);
            if let Ok((id, _)) = &report.state {
                claims.add_assignment_id(id);
            }
        }
        self.claims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(attachment.to_string(), claims);
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

    /// What live attachments other than `attachment` rely on: from their specs and status in
    /// the watch cache (and, for a detach, their records), and from decisions this process made
    /// that the cache may not show yet (an attachment created a moment ago may not be in it).
    pub fn claims_of_others(&self, attachment: &str, include_records: bool) -> Claims {
        let cached = self.cluster.attachments();
        let context = ClaimContext {
            kubelet: self.known_kubelet(),
            modes: self.reads.known_modes(),
            identities: self.reads.known_identities(),
            registry_lists: self.reads.known_lists(),
            default_subscription: self.settings.lookup_subscription(),
            include_records,
        };
        let mut claimed = crate::decide::claims::claims_of_others(
            attachment,
            cached.iter().map(Arc::as_ref),
            &context,
            &self.settings.owner,
        );
        let deleting: HashSet<&str> = cached
            .iter()
            .filter(|other| other.is_deleting())
            .filter_map(|other| other.metadata.name.as_deref())
            .collect();
        let claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        for (other, decided) in claims.iter() {
            if other != attachment && !deleting.contains(other.as_str()) {
                claimed.extend(decided.clone());
            }
        }
        claimed
    }

    /// The kubelet identity, when configured or already read.
    fn known_kubelet(&self) -> Option<PrincipalId> {
        match &self.settings.kubelet_identity {
            KubeletIdentity::ObjectId(principal) => Some(principal.clone()),
            KubeletIdentity::FromCluster(_) => self
                .reads
                .known_kubelet()
                .and_then(|id| PrincipalId::parse(&id).ok()),
            KubeletIdentity::Unconfigured => None,
        }
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

/// How `run` is to behave beyond the reconciler's settings.
pub struct RunOptions {
    /// This replica's name (the pod), for events and the Lease.
    pub instance: Option<String>,
    /// Elect a leader on this Lease; `None`: this process is the only replica and always leads.
    pub election: Option<leader::LeaseSettings>,
    /// After the shutdown signal, how long in-flight reconciles may run before `run` returns.
    pub shutdown_grace: Duration,
}

/// Why `run` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The shutdown signal came (SIGTERM): in-flight work finished or its grace ran out, and the
    /// Lease was released.
    Shutdown,
    /// Another replica holds the Lease now. The process must exit (and restart as a standby):
    /// anything still in flight here would race the new leader.
    LostLeadership,
    /// The election could not start (bad settings).
    ElectionRefused,
}

/// Builds the context over a real cluster and runs the controller until shutdown. Every replica
/// watches (so a standby's cache is warm and `/readyz` can pass); only the leader reconciles.
pub async fn run(
    client: Client,
    azure: Arc<dyn AzureApi>,
    settings: Settings,
    metrics: Arc<Metrics>,
    readiness: Arc<crate::http::Readiness>,
    options: RunOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Stopped {
    let Some((election, leading)) = start_election(&client, options.election) else {
        return Stopped::ElectionRefused;
    };
    let api = Api::<RegistryAttachment>::all(client.clone());
    let (reader, writer) = reflector::store();
    let cluster = Arc::new(KubeCluster::new(client, reader.clone(), options.instance));
    let ctx = Arc::new(
        Context::new(
            azure,
            cluster,
            settings,
            Arc::new(clock::SystemClock),
            metrics.clone(),
        )
        .with_leadership(leading.clone()),
    );
    // Readiness is taken from the stream itself, right after the reflector has applied the end
    // of the initial list. (`Store::wait_until_ready` is not used: kube-runtime's controller
    // waits on the same one-shot, and a second waiter may never be woken.)
    let triggers = attachment_triggers(api, writer, readiness.clone());
    let summary = tokio::spawn(report_attachments(reader.clone(), metrics.clone()));
    let leadership = tokio::spawn(follow_leadership(
        leading.clone(),
        readiness.clone(),
        metrics.clone(),
    ));

    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let lost = futures::FutureExt::shared(lost_rx);
    let stop = {
        let (shutdown, lost) = (shutdown.clone(), lost.clone());
        async move {
            tokio::select! {
                _ = shutdown => {},
                _ = lost => {},
            }
        }
    };
    let watch_leadership = tokio::spawn(signal_lost_leadership(leading.clone(), lost_tx));
    info!("acr-attach controller started");
    let mut controller = Box::pin(
        Controller::for_stream(triggers, reader)
            .with_config(ControllerConfig::default().concurrency(8))
            // A replica that becomes leader looks at every attachment at once.
            .reconcile_all_on(became_leader(leading))
            .graceful_shutdown_on(stop)
            .run(reconcile, error_policy, ctx)
            .for_each(|result| async move {
                if let Err(error) = result {
                    warn!(%error, "controller");
                }
            }),
    );
    let grace = options.shutdown_grace;
    let stopped = tokio::select! {
        _ = &mut controller => Stopped::Shutdown,
        _ = lost.clone() => Stopped::LostLeadership,
        _ = async { shutdown.clone().await; tokio::time::sleep(grace).await } => {
            warn!(grace = ?grace, "in-flight reconciles did not finish within the shutdown grace; stopping them");
            Stopped::Shutdown
        }
    };
    // Nothing of ours may run once we stop leading or shut down: dropping the controller cancels
    // whatever reconcile is still in flight.
    drop(controller);
    for task in [summary, leadership, watch_leadership] {
        task.abort();
    }
    release_election(election, stopped).await;
    info!("acr-attach controller stopped");
    stopped
}

/// The watch of every attachment, through the reflector, filtered to changes worth a reconcile.
/// Readiness is taken from the stream itself, right after the reflector has applied the end of
/// the initial list.
fn attachment_triggers(
    api: Api<RegistryAttachment>,
    writer: reflector::store::Writer<RegistryAttachment>,
    readiness: Arc<crate::http::Readiness>,
) -> impl futures::Stream<Item = Result<RegistryAttachment, watcher::Error>> + Send + 'static {
    watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                readiness.set_synced();
            }
        })
        .applied_objects()
        .predicate_filter(trigger_fingerprint, PredicateConfig::default())
}

/// Starts the election on the Lease (or, without one, leads from the start); `None` when the
/// election cannot start.
fn start_election(
    client: &Client,
    lease: Option<leader::LeaseSettings>,
) -> Option<(
    Option<leader::LeaderElection>,
    tokio::sync::watch::Receiver<bool>,
)> {
    match lease {
        Some(lease) => match leader::LeaderElection::start(client.clone(), lease) {
            Ok((election, leading)) => Some((Some(election), leading)),
            Err(problem) => {
                tracing::error!(error = %problem, "cannot start leader election");
                None
            }
        },
        // A lone replica leads from the start; the sender may go, the value stays.
        None => Some((None, tokio::sync::watch::channel(true).1)),
    }
}

/// A replica that lost leadership drops the Lease at once; one shutting down releases it so a
/// standby takes over without waiting for it to expire.
async fn release_election(election: Option<leader::LeaderElection>, stopped: Stopped) {
    if stopped == Stopped::LostLeadership {
        tracing::error!("lost leadership: stopping at once so nothing here races the new leader");
        drop(election);
    } else if let Some(election) = election {
        election.release().await;
        info!("released the leader lease");
    }
}

/// A stream that yields each time this replica becomes leader (including at start, if it leads).
fn became_leader(
    leading: tokio::sync::watch::Receiver<bool>,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold((leading, false), |(mut leading, mut was)| async move {
        loop {
            let now = *leading.borrow_and_update();
            let rose = now && !was;
            was = now;
            if rose {
                return Some(((), (leading, was)));
            }
            leading.changed().await.ok()?;
        }
    })
}

/// Resolves the oneshot when a replica that led stops leading.
async fn signal_lost_leadership(
    mut leading: tokio::sync::watch::Receiver<bool>,
    lost: tokio::sync::oneshot::Sender<()>,
) {
    let mut led = false;
    loop {
        let now = *leading.borrow_and_update();
        if led && !now {
            let _ = lost.send(());
            return;
        }
        led |= now;
        if leading.changed().await.is_err() {
            // No election (or it stopped): leadership cannot be lost any more. Keep `lost`
            // pending rather than dropping it, which would read as a loss.
            std::future::pending::<()>().await;
        }
    }
}

/// Mirrors leadership into `/readyz`'s body and the `leader` gauge.
async fn follow_leadership(
    mut leading: tokio::sync::watch::Receiver<bool>,
    readiness: Arc<crate::http::Readiness>,
    metrics: Arc<Metrics>,
) {
    loop {
        let now = *leading.borrow_and_update();
        readiness.set_leading(now);
        metrics.set_leader(now);
        if now {
            info!("leading: this replica reconciles");
        } else {
            info!("standby: another replica leads; keeping the watch cache warm");
        }
        if leading.changed().await.is_err() {
            return;
        }
    }
}

/// Keeps the `attachments{ready,reason}` gauge in step with the watch cache.
async fn report_attachments(reader: reflector::Store<RegistryAttachment>, metrics: Arc<Metrics>) {
    loop {
        let counts = crate::decide::conditions::count_by_ready(
            reader
                .state()
                .iter()
                .map(|attachment| attachment.status.as_ref()),
        );
        metrics.set_attachments(counts.into_iter().map(|((ready, reason), count)| {
            (crate::metrics::AttachmentLabels { ready, reason }, count)
        }));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{RegistryAttachmentSpec, RegistryAttachmentStatus, RegistryReference};

    fn attachment() -> RegistryAttachment {
        let mut attachment = RegistryAttachment::new(
            "a",
            RegistryAttachmentSpec {
                registry: RegistryReference::by_id("x".to_string()),
                role: Default::default(),
                principal: None,
                principals: Vec::new(),
                repositories: Vec::new(),
                catalog_listing: false,
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
