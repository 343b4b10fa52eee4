//! Leader election on a `coordination.k8s.io/v1` Lease, so that `replicas: 2` is safe: only the
//! replica that holds the Lease reconciles and writes to Azure; the other keeps its caches warm and
//! takes over within the lease duration when the leader dies, or at once when the leader releases
//! the Lease on shutdown. This module owns the Lease protocol and nothing else: the caller watches
//! the `watch::Receiver<bool>` it hands out and starts/stops its work accordingly.
//!
//! # Why not `kube-lease-manager`
//!
//! The crate (0.13.1) was reviewed and not used, because of flaws that break the guarantee above:
//!
//! - **A leader that cannot reach the API never steps down.** A failed renewal only logs and backs
//!   off (1 s, doubling to 30 s); the published state stays `true` forever, also long after the
//!   lease expired and the other replica, which can reach the API, took over: two leaders.
//! - **Taking over an expired lease is not conditional.** It clears `holderIdentity` with a
//!   strategic-merge patch that carries no `resourceVersion`, so a standby acting on a stale read
//!   can wipe a lease the leader renewed a moment earlier; both then believe they lead until the
//!   old leader's next renewal, which only happens shortly before expiry.
//! - **Expiry is judged by comparing the holder's `renewTime` with the local wall clock.** A
//!   standby whose clock runs ahead by more than the "grace" takes over a live lease.
//! - Durations are whole seconds, and invalid parameters panic.
//!
//! # The protocol (the one client-go and controller-runtime use)
//!
//! - Every write is a `GET` then a `PUT` carrying the `resourceVersion` that was read (or a
//!   `POST` when the Lease does not exist), so of two concurrent writers exactly one wins and the
//!   other gets `409 Conflict`.
//! - Clock skew: no replica ever compares a timestamp written by another one with its own clock. A
//!   standby notes, on its own monotonic clock, when it last saw the Lease *change*, and treats the
//!   holder as gone only once `max(lease_duration, spec.leaseDurationSeconds)` has passed since
//!   then without a change. Only the clocks' rates must agree, not their settings.
//! - The leader renews every `retry_period`. It stops reporting leadership as soon as `renew_deadline`
//!   has passed since the start of its last successful renewal (each API call is cut off at that
//!   deadline, so a hanging connection cannot delay it), or at once when it reads another holder.
//!   Because a standby measures from a moment no earlier than that renewal, the leader is gone
//!   `lease_duration - renew_deadline` before any standby may take over; that margin is what the
//!   caller has to stop its in-flight work.
//! - Release clears `holderIdentity` (conditionally), so a standby acquires at its next try.
//! - After losing leadership a replica becomes a candidate again; the receiver may go back to `true`.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use tracing::{debug, info, warn};

/// client-go / controller-runtime defaults.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// A candidate waits `retry_period` plus up to this fraction of it between tries, so that
/// replicas started together do not hit the API in lockstep; small, so that a released lease is
/// taken within 1.2 retry periods.
const CANDIDATE_JITTER: f64 = 0.2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Namespace of the Lease (usually the operator's own).
    pub namespace: String,
    /// Name of the Lease; every replica of one installation must use the same.
    pub name: String,
    /// Unique per process; written to `spec.holderIdentity`.
    pub identity: String,
    /// How long a standby waits, after the Lease last changed, before it takes over.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// Interval between tries to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Settings with the client-go default timings.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }

    /// Refuses settings that would allow two leaders or never elect one; the message names the
    /// flag to fix.
    pub fn validate(&self) -> Result<(), String> {
        let Self {
            lease_duration: lease,
            renew_deadline: renew,
            retry_period: retry,
            ..
        } = self;
        if !is_dns_label(&self.namespace) {
            return Err(format!(
                "--leader-election-namespace {:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63 characters)",
                self.namespace
            ));
        }
        if !is_dns_subdomain(&self.name) {
            return Err(format!(
                "--leader-election-lease-name {:?} is not a valid Lease name (lowercase letters, digits, '-' and '.', at most 253 characters)",
                self.name
            ));
        }
        if self.identity.trim().is_empty() {
            return Err(
                "the leader election identity is empty: set POD_NAME (downward API) or leave the default"
                    .to_string(),
            );
        }
        if *lease < Duration::from_secs(1) {
            return Err(format!(
                "--leader-election-lease-duration ({lease:?}) must be at least 1s: the Lease records it in whole seconds"
            ));
        }
        if retry.is_zero() {
            return Err("--leader-election-retry-period must be greater than 0".to_string());
        }
        if lease <= renew {
            return Err(format!(
                "--leader-election-lease-duration ({lease:?}) must be longer than --leader-election-renew-deadline ({renew:?}): \
                 a standby takes over once the lease duration has passed, so the leader must give up before that"
            ));
        }
        if renew <= retry {
            return Err(format!(
                "--leader-election-renew-deadline ({renew:?}) must be longer than --leader-election-retry-period ({retry:?}): \
                 the leader renews every retry period and gives up when the renew deadline passes without success"
            ));
        }
        Ok(())
    }

    fn lease_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// `spec.leaseDurationSeconds`: rounded up, so a standby that reads it never waits less.
    fn lease_duration_seconds(&self) -> i32 {
        let secs = self.lease_duration.as_secs_f64().ceil();
        secs.clamp(1.0, f64::from(i32::MAX)) as i32
    }
}

/// `POD_NAME` (set it from the downward API: a container restarted in the same pod then resumes
/// its own lease at once), else the hostname plus `_` and a random suffix, like client-go.
pub fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.trim().is_empty()
    {
        return pod.trim().to_string();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "acr-attach".to_string());
    format!("{host}_{}", uuid::Uuid::new_v4().simple())
}

/// A running elector. Dropping it without [`LeaderElection::release`] stops it like a crash: the
/// Lease is left to expire. The receiver returned by [`LeaderElection::start`] reads `false` once
/// the elector has stopped, however it stopped.
pub struct LeaderElection {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    settings: LeaseSettings,
}

impl LeaderElection {
    /// Starts campaigning in a background task (needs a Tokio runtime). The receiver is `true`
    /// while this process leads. Refuses invalid settings (see [`LeaseSettings::validate`]).
    pub fn start(
        client: Client,
        settings: LeaseSettings,
    ) -> Result<(Self, watch::Receiver<bool>), String> {
        settings.validate()?;
        let (leading_tx, leading_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let elector = Elector {
            api: Api::namespaced(client, &settings.namespace),
            settings: settings.clone(),
            observed: None,
            failing: false,
        };
        let task = tokio::spawn(elector.run(LeaderFlag(leading_tx), stop_rx));
        Ok((
            Self {
                stop: stop_tx,
                task: Some(task),
                settings,
            },
            leading_rx,
        ))
    }

    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// Stops campaigning. If this process leads, the receiver turns `false` first, then the Lease
    /// is released (holder cleared, conditionally) so a standby acquires at its next try. Call it
    /// after the leader's work has stopped. Takes at most about twice the renew deadline.
    pub async fn release(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LeaderElection {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The published leadership; reads `false` when the task ends or is aborted.
struct LeaderFlag(watch::Sender<bool>);

impl LeaderFlag {
    fn set(&self, leading: bool) {
        self.0.send_replace(leading);
    }
}

impl Drop for LeaderFlag {
    fn drop(&mut self) {
        self.0.send_replace(false);
    }
}

/// The Lease as last read or written, and when (monotonic) it last changed.
struct Observed {
    lease: Lease,
    changed_at: Instant,
}

enum Attempt {
    /// The Lease names us, freshly renewed.
    Held,
    /// Another holder whose lease has not expired.
    HeldBy(String),
    /// Someone else wrote the Lease between our read and our write (409); the next read tells.
    Raced,
    /// The API refused or could not be reached; try again.
    Failed(String),
}

struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    observed: Option<Observed>,
    /// Whether the previous try failed: errors are logged when they start and when they end.
    failing: bool,
}

impl Elector {
    async fn run(mut self, flag: LeaderFlag, mut stop: watch::Receiver<bool>) {
        let lease = self.settings.lease_ref();
        let identity = self.settings.identity.clone();
        loop {
            // Candidate: try until the Lease is ours. Stop is honoured between tries, never in the
            // middle of one; a try cut off by the timeout may still have landed, which the next
            // try (or the release) reads back.
            let acquired_at = loop {
                let started = Instant::now();
                match timeout(self.settings.renew_deadline, self.try_acquire_or_renew()).await {
                    Ok(Attempt::Held) => break started,
                    Ok(Attempt::HeldBy(_) | Attempt::Raced) => {}
                    Ok(Attempt::Failed(e)) => self.note_failure(&e),
                    Err(_) => self.note_failure("the API did not answer within the renew deadline"),
                }
                let pause = self
                    .settings
                    .retry_period
                    .mul_f64(1.0 + fastrand::f64() * CANDIDATE_JITTER);
                tokio::select! {
                    _ = sleep(pause) => {}
                    _ = stopped(&mut stop) => {
                        self.release().await;
                        return;
                    }
                }
            };
            if *stop.borrow() {
                // Stop was requested while the winning try was in flight: never report it.
                self.release().await;
                return;
            }
            flag.set(true);
            info!(%identity, %lease, "became leader");

            // Leader: renew every retry period; give up when the renew deadline passes.
            let mut last_renewal = acquired_at;
            let reason = loop {
                let deadline = last_renewal + self.settings.renew_deadline;
                let next = (Instant::now() + self.settings.retry_period).min(deadline);
                tokio::select! {
                    _ = sleep_until(next) => {}
                    _ = stopped(&mut stop) => {
                        flag.set(false);
                        info!(%identity, %lease, "stepping down: shutting down");
                        self.release().await;
                        return;
                    }
                }
                if Instant::now() >= deadline {
                    break "no successful renewal within the renew deadline".to_string();
                }
                let started = Instant::now();
                match timeout_at(deadline, self.try_acquire_or_renew()).await {
                    Ok(Attempt::Held) => last_renewal = started,
                    Ok(Attempt::HeldBy(holder)) => {
                        break format!("the lease is now held by {holder}");
                    }
                    // The deadline still applies: leadership is only kept by renewing.
                    Ok(Attempt::Raced) => {}
                    Ok(Attempt::Failed(e)) => self.note_failure(&e),
                    Err(_) => {
                        break "no successful renewal within the renew deadline (the API did not answer)".to_string();
                    }
                }
            };
            flag.set(false);
            warn!(%identity, %lease, %reason, "lost leadership");
        }
    }

    fn note_failure(&mut self, error: &str) {
        if !self.failing {
            warn!(identity = %self.settings.identity, lease = %self.settings.lease_ref(), %error,
                "leader election: cannot read or write the lease; retrying every retry period");
        } else {
            debug!(identity = %self.settings.identity, %error, "leader election: still failing");
        }
        self.failing = true;
    }

    /// Records what was read or written; the expiry clock restarts whenever the Lease changed.
    fn observe(&mut self, lease: Lease) {
        let same = self.observed.as_ref().is_some_and(|o| {
            o.lease.metadata.resource_version == lease.metadata.resource_version
                && o.lease.spec == lease.spec
        });
        if same {
            return;
        }
        let old_holder = self.observed.as_ref().and_then(|o| holder_of(&o.lease));
        let new_holder = holder_of(&lease);
        if old_holder != new_holder && new_holder.as_deref() != Some(&self.settings.identity) {
            info!(identity = %self.settings.identity, lease = %self.settings.lease_ref(),
                holder = new_holder.as_deref().unwrap_or("<none>"), "lease holder observed");
        }
        self.observed = Some(Observed {
            lease,
            changed_at: Instant::now(),
        });
    }

    async fn try_acquire_or_renew(&mut self) -> Attempt {
        let attempt = self.try_once().await;
        if !matches!(attempt, Attempt::Failed(_)) && self.failing {
            info!(identity = %self.settings.identity, lease = %self.settings.lease_ref(),
                "leader election: the lease is reachable again");
            self.failing = false;
        }
        attempt
    }

    async fn try_once(&mut self) -> Attempt {
        let s = self.settings.clone();
        let now = MicroTime(Timestamp::now());
        let current = match self.api.get_opt(&s.name).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(s.name.clone()),
                        namespace: Some(s.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(s.identity.clone()),
                        lease_duration_seconds: Some(s.lease_duration_seconds()),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(created) => {
                        self.observe(created);
                        Attempt::Held
                    }
                    Err(kube::Error::Api(status)) if status.is_already_exists() => Attempt::Raced,
                    Err(e) => Attempt::Failed(describe(&e)),
                };
            }
            Err(e) => return Attempt::Failed(describe(&e)),
        };
        self.observe(current.clone());

        let spec = current.spec.clone().unwrap_or_default();
        let holder = holder_of(&current);
        let ours = holder.as_deref() == Some(s.identity.as_str());
        if let Some(other) = holder.filter(|_| !ours) {
            let recorded =
                Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
            let wait = s.lease_duration.max(recorded);
            let changed_at = self
                .observed
                .as_ref()
                .map_or_else(Instant::now, |o| o.changed_at);
            if changed_at.elapsed() < wait {
                return Attempt::HeldBy(other);
            }
            info!(identity = %s.identity, lease = %s.lease_ref(), previous = %other,
                "the lease expired; taking it over");
        }

        let transitions = spec.lease_transitions.unwrap_or(0);
        let mut next = current;
        next.spec = Some(LeaseSpec {
            holder_identity: Some(s.identity.clone()),
            lease_duration_seconds: Some(s.lease_duration_seconds()),
            acquire_time: if ours {
                spec.acquire_time.or_else(|| Some(now.clone()))
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if ours { transitions } else { transitions + 1 }),
            ..spec
        });
        // `next` carries the resourceVersion just read: the PUT fails with 409 if anyone wrote since.
        match self
            .api
            .replace(&s.name, &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                self.observe(written);
                Attempt::Held
            }
            Err(kube::Error::Api(status)) if status.is_conflict() => Attempt::Raced,
            Err(e) => Attempt::Failed(describe(&e)),
        }
    }

    /// Clears the holder if it is us, conditionally on the resourceVersion read, bounded in time.
    async fn release(&mut self) {
        let s = self.settings.clone();
        let work = async {
            for _ in 0..3 {
                let current = match self.api.get_opt(&s.name).await {
                    Ok(Some(lease)) => lease,
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(describe(&e)),
                };
                if holder_of(&current).as_deref() != Some(s.identity.as_str()) {
                    return Ok(());
                }
                let now = MicroTime(Timestamp::now());
                let mut next = current;
                let spec = next.spec.take().unwrap_or_default();
                next.spec = Some(LeaseSpec {
                    holder_identity: None,
                    lease_duration_seconds: Some(1),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    ..spec
                });
                match self
                    .api
                    .replace(&s.name, &PostParams::default(), &next)
                    .await
                {
                    Ok(_) => {
                        info!(identity = %s.identity, lease = %s.lease_ref(), "released the lease");
                        return Ok(());
                    }
                    Err(kube::Error::Api(status)) if status.is_conflict() => continue,
                    Err(e) => return Err(describe(&e)),
                }
            }
            Err("the lease kept changing".to_string())
        };
        match timeout(s.renew_deadline, work).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                warn!(identity = %s.identity, lease = %s.lease_ref(), %error,
                    "could not release the lease; a standby takes over when it expires");
            }
            Err(_) => {
                warn!(identity = %s.identity, lease = %s.lease_ref(),
                    "could not release the lease in time; a standby takes over when it expires");
            }
        }
    }
}

/// Resolves when stop was requested (or the handle is gone); holds no guard across awaits.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The holder, treating an empty string like none (client-go releases with "").
fn holder_of(lease: &Lease) -> Option<String> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .filter(|h| !h.is_empty())
}

fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message)
        }
        other => other.to_string(),
    }
}

/// RFC 1123 label (namespace names): at most 63 characters.
fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_label_chars(s)
}

/// RFC 1123 subdomain (most object names, Leases included): at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label_chars)
}

fn is_label_chars(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
