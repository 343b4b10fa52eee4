//! Leader election (`acr_attach::controller::leader`) against the in-process Kubernetes API
//! emulator, with short timings (lease 2s, renew deadline 1.5s, retry 0.2s). Each elector gets its
//! own client, like two pods. What a user of `replicas: 2` relies on: never two leaders, a quick
//! handover on shutdown, a failover after the lease duration (not before) when the leader dies, and
//! a leader that steps down by itself when it loses the API or the Lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use acr_attach::controller::leader::{
    DEFAULT_LEASE_DURATION, DEFAULT_RENEW_DEADLINE, DEFAULT_RETRY_PERIOD, LeaderElection,
    LeaseSettings, default_identity,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use kube_emulator::KubeEmulator;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

const NAMESPACE: &str = "default";
const LEASE: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_millis(1500);
const RETRY: Duration = Duration::from_millis(200);

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("acr_attach=debug")
        .try_init();
}

async fn client(emu: &KubeEmulator) -> Client {
    acr_attach::install_crypto_provider();
    let kubeconfig = Kubeconfig::from_yaml(&emu.kubeconfig_yaml()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

fn settings(lease: &str, identity: &str) -> LeaseSettings {
    LeaseSettings {
        namespace: NAMESPACE.into(),
        name: lease.into(),
        identity: identity.into(),
        lease_duration: LEASE,
        renew_deadline: RENEW,
        retry_period: RETRY,
    }
}

struct Candidate {
    identity: String,
    elector: LeaderElection,
    leading: watch::Receiver<bool>,
}

async fn candidate(emu: &KubeEmulator, lease: &str, identity: &str) -> Candidate {
    let (elector, leading) = LeaderElection::start(client(emu).await, settings(lease, identity))
        .expect("valid settings");
    Candidate {
        identity: identity.into(),
        elector,
        leading,
    }
}

fn leads(rx: &watch::Receiver<bool>) -> bool {
    *rx.borrow()
}

async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// Index of the first of `rxs` to lead, waiting up to `within`.
async fn first_leader(rxs: &[&watch::Receiver<bool>], within: Duration) -> usize {
    wait_until("a leader", within, || rxs.iter().any(|r| leads(r))).await;
    rxs.iter().position(|r| leads(r)).expect("a leader")
}

async fn lease_of(api: &Api<Lease>, name: &str) -> LeaseSpec {
    api.get(name)
        .await
        .expect("lease")
        .spec
        .expect("lease spec")
}

/// Samples every few milliseconds how many of the receivers report leadership *at one moment*:
/// a receiver counts only if it was `true` when first read and has not changed when every other
/// one has been read too, so a thread descheduled between two reads cannot fake an overlap.
struct Sampler {
    done: Arc<AtomicBool>,
    task: JoinHandle<(usize, usize)>,
}

fn leaders_at_one_moment(rxs: &mut [watch::Receiver<bool>]) -> usize {
    let first: Vec<bool> = rxs.iter_mut().map(|r| *r.borrow_and_update()).collect();
    rxs.iter()
        .zip(first)
        .filter(|(r, was)| *was && !r.has_changed().unwrap_or(true))
        .count()
}

impl Sampler {
    fn start(rxs: Vec<watch::Receiver<bool>>) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let mut rxs = rxs;
        let task = tokio::spawn(async move {
            let (mut samples, mut most) = (0, 0);
            loop {
                // Read the flag first: the last sample is taken after finish() was called.
                let last = flag.load(Ordering::Relaxed);
                most = most.max(leaders_at_one_moment(&mut rxs));
                samples += 1;
                if last {
                    return (samples, most);
                }
                sleep(Duration::from_millis(3)).await;
            }
        });
        Self { done, task }
    }

    /// (samples taken, most leaders seen at once)
    async fn finish(self) -> (usize, usize) {
        self.done.store(true, Ordering::Relaxed);
        self.task.await.expect("sampler")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_electors_exactly_one_leads_and_it_stays_leader() {
    init_logs();
    let emu = KubeEmulator::start().await.expect("emulator");
    let api: Api<Lease> = Api::namespaced(client(&emu).await, NAMESPACE);
    let a = candidate(&emu, "one-leader", "replica-a").await;
    let b = candidate(&emu, "one-leader", "replica-b").await;
    let sampler = Sampler::start(vec![a.leading.clone(), b.leading.clone()]);

    let first = first_leader(&[&a.leading, &b.leading], LEASE).await;
    let (leader, standby) = if first == 0 { (&a, &b) } else { (&b, &a) };
    // Two lease durations: the leader must keep renewing, the standby must keep waiting.
    let start = Instant::now();
    while start.elapsed() < LEASE * 2 {
        assert!(
            leads(&leader.leading),
            "{} lost leadership",
            leader.identity
        );
        assert!(!leads(&standby.leading), "{} leads too", standby.identity);
        sleep(Duration::from_millis(5)).await;
    }
    let (samples, most) = sampler.finish().await;
    assert!(samples > 500, "only {samples} samples");
    assert_eq!(
        most, 1,
        "two electors reported leadership at the same moment"
    );

    let spec = lease_of(&api, "one-leader").await;
    assert_eq!(
        spec.holder_identity.as_deref(),
        Some(leader.identity.as_str())
    );
    assert_eq!(spec.lease_duration_seconds, Some(2));
    assert_eq!(spec.lease_transitions, Some(0), "one holder since creation");
    let renewed = spec.renew_time.expect("renewTime").0;
    let age = Timestamp::now().duration_since(renewed);
    assert!(
        age.as_secs_f64() < RENEW.as_secs_f64(),
        "renewTime is {age:?} old: the leader does not renew every retry period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_hands_over_to_the_standby_at_once() {
    init_logs();
    let emu = KubeEmulator::start().await.expect("emulator");
    let api: Api<Lease> = Api::namespaced(client(&emu).await, NAMESPACE);
    let a = candidate(&emu, "handover", "replica-a").await;
    wait_until("replica-a leads", LEASE, || leads(&a.leading)).await;
    let b = candidate(&emu, "handover", "replica-b").await;
    // Let the standby see the held lease a few times.
    sleep(RETRY * 4).await;
    assert!(!leads(&b.leading));
    let before = lease_of(&api, "handover").await;
    assert_eq!(before.holder_identity.as_deref(), Some("replica-a"));

    let sampler = Sampler::start(vec![a.leading.clone(), b.leading.clone()]);
    let a_leading = a.leading.clone();
    let released = Instant::now();
    a.elector.release().await;
    assert!(
        !leads(&a_leading),
        "released elector still reports leadership"
    );
    wait_until("replica-b takes over", LEASE, || leads(&b.leading)).await;
    let handover = released.elapsed(); // from the release call, so including the release itself
    println!("handover after release: {handover:?} (retry period {RETRY:?})");
    assert!(
        handover <= RETRY.mul_f64(1.2) + Duration::from_millis(250),
        "handover took {handover:?}; a released lease must be taken at the next try, not after the lease duration"
    );
    let (samples, most) = sampler.finish().await;
    assert_eq!(
        most, 1,
        "{most} leaders at one moment during the handover ({samples} samples)"
    );

    let after = lease_of(&api, "handover").await;
    assert_eq!(after.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(
        after.lease_transitions,
        Some(before.lease_transitions.unwrap_or(0) + 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_the_standby_leaves_the_leader_alone() {
    init_logs();
    let emu = KubeEmulator::start().await.expect("emulator");
    let api: Api<Lease> = Api::namespaced(client(&emu).await, NAMESPACE);
    let a = candidate(&emu, "standby-release", "replica-a").await;
    wait_until("replica-a leads", LEASE, || leads(&a.leading)).await;
    let b = candidate(&emu, "standby-release", "replica-b").await;
    sleep(RETRY * 3).await;
    b.elector.release().await;
    sleep(LEASE + RETRY * 2).await;
    assert!(
        leads(&a.leading),
        "the leader lost the lease when the standby shut down"
    );
    let spec = lease_of(&api, "standby-release").await;
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_leader_is_replaced_after_the_lease_duration_not_before() {
    init_logs();
    let emu = KubeEmulator::start().await.expect("emulator");
    let api: Api<Lease> = Api::namespaced(client(&emu).await, NAMESPACE);
    let a = candidate(&emu, "crash", "replica-a").await;
    let b = candidate(&emu, "crash", "replica-b").await;
    let first = first_leader(&[&a.leading, &b.leading], LEASE).await;
    let (leader, standby) = if first == 0 { (a, b) } else { (b, a) };
    sleep(Duration::from_secs(1)).await;

    // Watch the Lease: the last renewTime written by the old leader, then the new acquireTime.
    let watcher = {
        let api = api.clone();
        let old = leader.identity.clone();
        tokio::spawn(async move {
            let mut last_renewal = None;
            loop {
                let spec = lease_of(&api, "crash").await;
                if spec.holder_identity.as_deref() == Some(old.as_str()) {
                    last_renewal = spec.renew_time.clone();
                } else if spec.holder_identity.is_some() {
                    return (last_renewal.expect("saw the old leader"), spec);
                }
                sleep(Duration::from_millis(10)).await;
            }
        })
    };
    sleep(Duration::from_millis(50)).await;

    let old_rx = leader.leading.clone();
    let crashed = Instant::now();
    drop(leader); // no release: the task is aborted, like a killed pod
    tokio::task::yield_now().await;
    wait_until(
        "the dropped elector reads false",
        Duration::from_millis(100),
        || !leads(&old_rx),
    )
    .await;
    let failover = wait_until("the standby takes over", LEASE * 3, || {
        leads(&standby.leading)
    })
    .await;
    println!(
        "failover after a crash: {failover:?} (lease duration {LEASE:?}, retry period {RETRY:?})"
    );
    let (MicroTime(last_renewal), new) = watcher.await.expect("lease watcher");
    let MicroTime(acquired) = new.acquire_time.expect("acquireTime");
    let gap = acquired.duration_since(last_renewal);
    println!("old renewTime -> new acquireTime: {gap:?}");
    assert_eq!(
        new.holder_identity.as_deref(),
        Some(standby.identity.as_str())
    );
    assert!(
        gap.as_secs_f64() >= LEASE.as_secs_f64(),
        "the standby took over {gap:?} after the old leader's last renewal, before the lease duration {LEASE:?}"
    );
    // The old leader's last renewal was at most one retry period (plus a request) before the crash.
    assert!(
        failover + RETRY + Duration::from_millis(100) >= LEASE,
        "failover after {failover:?}: before the lease could have expired"
    );
    assert!(
        failover <= LEASE + RETRY * 3 + Duration::from_millis(300),
        "failover after {failover:?}: much later than the lease duration {LEASE:?}"
    );
    assert!(crashed.elapsed() >= failover);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_standbys_race_for_an_expired_lease_and_only_one_wins() {
    init_logs();
    let emu = KubeEmulator::start().await.expect("emulator");
    let api: Api<Lease> = Api::namespaced(client(&emu).await, NAMESPACE);
    let mut all = Vec::new();
    for i in 0..4 {
        all.push(candidate(&emu, "race", &format!("replica-{i}")).await);
    }
    let sampler = Sampler::start(all.iter().map(|c| c.leading.clone()).collect());
    let rxs: Vec<_> = all.iter().map(|c| c.leading.clone()).collect();
    let first = first_leader(&rxs.iter().collect::<Vec<_>>(), LEASE).await;
    sleep(Duration::from_millis(600)).await;
    drop(all.remove(first)); // crash: three standbys see the lease expire at about the same time
    let rxs: Vec<_> = all.iter().map(|c| c.leading.clone()).collect();
    let second = first_leader(&rxs.iter().collect::<Vec<_>>(), LEASE * 3).await;
    sleep(LEASE).await; // the losers must keep standing by
    let (samples, most) = sampler.finish().await;
    assert_eq!(most, 1, "{most} leaders at one moment ({samples} samples)");
    for (i, c) in all.iter().enumerate() {
        assert_eq!(leads(&c.leading), i == second, "{}", c.identity);
    }
    let spec = lease_of(&api, "race").await;
    assert_eq!(
        spec.holder_identity.as_deref(),
        Some(all[second].identity.as_str())
    );
    assert_eq!(spec.lease_transitions, Some(1), "exactly one takeover");

    // Every write to the Lease is conditional: a POST, or a PUT carrying the resourceVersion read.
    let writes: Vec<_> = emu
        .request_log()
        .into_iter()
        .filter(|r| r.path.contains("/leases") && r.method != "GET")
        .collect();
    assert!(writes.iter().any(|r| r.method == "PUT"));
    for w in &writes {
        assert!(
            w.method == "POST" || (w.method == "PUT" && w.body.contains("\"resourceVersion\"")),
            "unconditional lease write: {} {} {}",
            w.method,
            w.path,
            w.body
        );
    }
    let conflicts = writes.iter().filter(|w| w.status == 409).count();
    println!(
        "lease writes: {}, refused with 409: {conflicts}",
        writes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_that_loses_the_api_steps_down_within_the_renew_deadline() {
    init_logs();
    let emu = KubeEmulator::start().await.expect("emulator");
    let a = candidate(&emu, "unreachable", "replica-a").await;
    let b = candidate(&emu, "unreachable", "replica-b").await;
    let first = first_leader(&[&a.leading, &b.leading], LEASE).await;
    let (leader, standby) = if first == 0 { (&a, &b) } else { (&b, &a) };
    sleep(Duration::from_millis(700)).await;
    let sampler = Sampler::start(vec![a.leading.clone(), b.leading.clone()]);

    emu.shutdown();
    let stepped_down = wait_until("the leader steps down", LEASE * 2, || {
        !leads(&leader.leading)
    })
    .await;
    println!(
        "API gone -> leader stepped down after {stepped_down:?} (renew deadline {RENEW:?}, lease {LEASE:?})"
    );
    // The last successful renewal was at most a retry period (plus a request) before the API went
    // away, and the leader must be gone before that renewal + the lease duration.
    assert!(
        stepped_down + RETRY + Duration::from_millis(100) < LEASE,
        "stepped down after {stepped_down:?}: a standby could already have taken over"
    );
    assert!(
        stepped_down <= RENEW + Duration::from_millis(150),
        "stepped down after {stepped_down:?}, later than the renew deadline {RENEW:?}"
    );
    // It keeps leading through failures shorter than the renew deadline (no flapping on one error).
    assert!(
        stepped_down + RETRY + Duration::from_millis(150) >= RENEW,
        "stepped down after {stepped_down:?}, at the first failed renewal rather than at the deadline"
    );
    sleep(LEASE).await;
    assert!(
        !leads(&standby.leading),
        "a replica without the API became leader"
    );
    let (samples, most) = sampler.finish().await;
    assert_eq!(most, 1, "{most} leaders at one moment ({samples} samples)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_steps_down_when_someone_else_recreates_the_lease() {
    init_logs();
    let emu = KubeEmulator::start().await.expect("emulator");
    let api: Api<Lease> = Api::namespaced(client(&emu).await, NAMESPACE);
    let a = candidate(&emu, "taken", "replica-a").await;
    wait_until("replica-a leads", LEASE, || leads(&a.leading)).await;
    sleep(Duration::from_millis(500)).await;

    // Delete the Lease and recreate it held by an intruder. The elector may recreate it in between
    // (it does that for a missing Lease); then try again.
    let mut taken = None;
    for _ in 0..20 {
        let _ = api.delete("taken", &DeleteParams::default()).await;
        let now = MicroTime(Timestamp::now());
        let intruder = Lease {
            metadata: ObjectMeta {
                name: Some("taken".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some("intruder".into()),
                lease_duration_seconds: Some(2),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        if api.create(&PostParams::default(), &intruder).await.is_ok() {
            taken = Some(Instant::now());
            break;
        }
    }
    let taken = taken.expect("recreated the lease with another holder");
    let stepped_down = wait_until("replica-a steps down", RENEW, || !leads(&a.leading)).await;
    println!("lease taken by another holder -> stepped down after {stepped_down:?}");
    assert!(
        stepped_down <= RETRY * 2 + Duration::from_millis(100),
        "stepped down after {stepped_down:?}: it should notice at its next renewal"
    );

    // The intruder never renews: replica-a may take the lease back only once it expired.
    while taken.elapsed() < LEASE - Duration::from_millis(50) {
        assert!(
            !leads(&a.leading),
            "replica-a took the lease back after {:?}, before the intruder's lease expired",
            taken.elapsed()
        );
        sleep(Duration::from_millis(5)).await;
    }
    wait_until("replica-a takes the expired lease", LEASE, || {
        leads(&a.leading)
    })
    .await;
    let spec = lease_of(&api, "taken").await;
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-a"));
    assert_eq!(spec.lease_transitions, Some(1));
}

#[tokio::test]
async fn bad_settings_are_refused_naming_the_flag() {
    let ok = settings("acr-attach", "pod-0");
    assert_eq!(ok.validate(), Ok(()));
    let defaults = LeaseSettings::new("acr-attach-system", "acr-attach", "pod-0");
    assert_eq!(defaults.validate(), Ok(()));
    assert_eq!(
        (
            defaults.lease_duration,
            defaults.renew_deadline,
            defaults.retry_period
        ),
        (
            Duration::from_secs(15),
            Duration::from_secs(10),
            Duration::from_secs(2)
        ),
        "client-go / controller-runtime defaults"
    );
    assert_eq!(
        (
            DEFAULT_LEASE_DURATION,
            DEFAULT_RENEW_DEADLINE,
            DEFAULT_RETRY_PERIOD
        ),
        (
            defaults.lease_duration,
            defaults.renew_deadline,
            defaults.retry_period
        )
    );

    let cases: Vec<(LeaseSettings, &[&str])> = vec![
        (
            LeaseSettings {
                renew_deadline: LEASE,
                ..ok.clone()
            },
            &[
                "--leader-election-lease-duration",
                "--leader-election-renew-deadline",
            ],
        ),
        (
            LeaseSettings {
                lease_duration: Duration::from_secs(10),
                renew_deadline: Duration::from_secs(12),
                ..ok.clone()
            },
            &[
                "--leader-election-lease-duration",
                "--leader-election-renew-deadline",
            ],
        ),
        (
            LeaseSettings {
                retry_period: RENEW,
                ..ok.clone()
            },
            &[
                "--leader-election-renew-deadline",
                "--leader-election-retry-period",
            ],
        ),
        (
            LeaseSettings {
                retry_period: Duration::ZERO,
                ..ok.clone()
            },
            &["--leader-election-retry-period"],
        ),
        (
            LeaseSettings {
                lease_duration: Duration::from_millis(900),
                renew_deadline: Duration::from_millis(500),
                retry_period: Duration::from_millis(100),
                ..ok.clone()
            },
            &["--leader-election-lease-duration", "1s"],
        ),
        (
            LeaseSettings {
                name: "Acr_Attach".into(),
                ..ok.clone()
            },
            &["--leader-election-lease-name", "Acr_Attach"],
        ),
        (
            LeaseSettings {
                namespace: String::new(),
                ..ok.clone()
            },
            &["--leader-election-namespace"],
        ),
        (
            LeaseSettings {
                identity: " ".into(),
                ..ok.clone()
            },
            &["identity", "POD_NAME"],
        ),
    ];
    let emu = KubeEmulator::start().await.expect("emulator");
    for (bad, needles) in cases {
        let message = bad.validate().expect_err(&format!("{bad:?} accepted"));
        for needle in needles {
            assert!(
                message.contains(needle),
                "{message:?} does not mention {needle}"
            );
        }
        // start() refuses them too, with the same message.
        match LeaderElection::start(client(&emu).await, bad) {
            Err(e) => assert_eq!(e, message),
            Ok(_) => panic!("start accepted invalid settings"),
        }
    }
}

#[test]
fn default_identity_is_unique_per_process_unless_pod_name_is_set() {
    let (one, two) = (default_identity(), default_identity());
    assert!(!one.trim().is_empty());
    match std::env::var("POD_NAME") {
        Ok(pod) if !pod.trim().is_empty() => assert_eq!(one, pod.trim()),
        _ => {
            assert_ne!(
                one, two,
                "two processes on one host would share an identity"
            );
            assert!(one.contains('_'), "{one}: expected hostname_suffix");
        }
    }
}
