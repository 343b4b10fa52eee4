//! Soak and crash safety: many attachments on many registries of both modes, against an ARM that
//! fails at random (500/503, connection resets, lost answers after a write took effect, 429s from
//! its token buckets, PrincipalNotFound windows), while the harness edits, deletes and recreates
//! attachments and deletes assignments out of band. The end state is checked as a user would:
//! every attachment Ready, every principal able to pull what its attachment names, exactly one
//! assignment per grant, nothing the operator did not create ever deleted, and nothing of its own
//! left once every attachment is gone.
//!
//! Size: `ACR_ATTACH_SOAK_ATTACHMENTS` (default 300, the CI size; the full size is 3000).
//! The test prints convergence time and ARM calls per attachment next to a fault-free run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arm_emulator::{
    ClusterConfig, FaultConfig, KubeletIdentity as ArmKubelet, PrincipalConfig, RegistryConfig,
    RegistryMode, RoleAssignmentConfig, TenantConfig, ThrottleConfig,
};
use common::*;

const REGISTRIES: usize = 30;
/// How long convergence (and then detaching everything) may take before the soak fails.
const PATIENCE: Duration = Duration::from_secs(300);
/// Principals besides the kubelet; created "now", so their replication window is live.
const FRESH_PRINCIPALS: [&str; 3] = [
    "5a1e0000-1111-4222-8333-0000000000a1",
    "5a1e0000-1111-4222-8333-0000000000a2",
    "5a1e0000-1111-4222-8333-0000000000a3",
];
/// Assignments someone else made before the operator arrived (the kubelet's AcrPull on two
/// legacy registries): adopted, never deleted.
const FOREIGN: [&str; 2] = [
    "f0000000-0000-4000-8000-00000000f001",
    "f0000000-0000-4000-8000-00000000f002",
];

fn attachments() -> usize {
    std::env::var("ACR_ATTACH_SOAK_ATTACHMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn registry_name(index: usize) -> String {
    let registry = index % REGISTRIES;
    if registry.is_multiple_of(2) {
        format!("legacy{registry:02}")
    } else {
        format!("abac{registry:02}")
    }
}

fn soak_tenant(faults: FaultConfig) -> TenantConfig {
    let mut tenant = tenant();
    tenant.registries = (0..REGISTRIES)
        .map(|r| {
            let mode = if r % 2 == 0 {
                RegistryMode::Legacy
            } else {
                RegistryMode::Abac
            };
            RegistryConfig::new(registry(&registry_name(r)), mode)
        })
        .collect();
    tenant.principals = FRESH_PRINCIPALS
        .iter()
        .map(|p| PrincipalConfig {
            object_id: p.to_string(),
            created_at_offset_secs: 0,
            ..Default::default()
        })
        .collect();
    tenant.role_assignments = FOREIGN
        .iter()
        .zip([0, 2])
        .map(|(name, r)| RoleAssignmentConfig {
            scope: registry(&registry_name(r)),
            name: name.to_string(),
            role_definition: ACR_PULL.to_string(),
            principal_id: KUBELET.to_string(),
            principal_type: Some("ServicePrincipal".to_string()),
            ..Default::default()
        })
        .collect();
    let mut cluster = ClusterConfig::new(cluster_id());
    cluster.kubelet_identity = Some(ArmKubelet {
        object_id: KUBELET.to_string(),
        ..ArmKubelet::generated(&cluster_id())
    });
    tenant.clusters = vec![cluster];
    tenant.faults = faults;
    tenant
}

fn random_faults(seed: u64) -> FaultConfig {
    FaultConfig {
        server_error_rate: 0.05,
        connection_reset_rate: 0.03,
        after_write_fault_rate: 0.15,
        principal_not_found_window_secs: 2,
        principal_not_found_ignores_principal_type: true,
        injected_retry_after_secs: 1,
        throttle: ThrottleConfig {
            reads_burst: 40,
            reads_per_sec: 40,
            writes_burst: 30,
            writes_per_sec: 20,
            deletes_burst: 30,
            deletes_per_sec: 20,
            enabled: true,
        },
        seed,
        ..FaultConfig::default()
    }
}

fn quiet() -> FaultConfig {
    FaultConfig {
        principal_not_found_window_secs: 0,
        throttle: ThrottleConfig {
            enabled: false,
            ..ThrottleConfig::default()
        },
        ..FaultConfig::default()
    }
}

/// The spec of attachment `index` in its `version`-th edit: registry, principal and (on ABAC
/// registries) repository scope all vary with the index; an edit moves the principal.
fn soak_spec(index: usize, version: usize) -> acr_attach::crd::RegistryAttachmentSpec {
    let registry_id = registry(&registry_name(index));
    let mut spec = match (index + version) % 4 {
        0 => spec(&registry_id),
        n => spec_for(&registry_id, FRESH_PRINCIPALS[n - 1]),
    };
    if (index % REGISTRIES) % 2 == 1 && index.is_multiple_of(3) {
        spec.repositories = vec![format!("team{}/*", index % 5)];
    }
    spec
}

fn name_of(index: usize) -> String {
    format!("soak-{index:05}")
}

/// A repository the attachment's principal must be able to pull.
fn pullable(spec: &acr_attach::crd::RegistryAttachmentSpec) -> (String, String, String) {
    let principal = spec
        .principal
        .as_ref()
        .map_or(KUBELET.to_string(), |p| p.object_id.clone());
    let repository = match spec.repositories.first() {
        Some(prefix) => prefix.replace('*', "app"),
        None => "any/image".to_string(),
    };
    let registry_id = match &spec.registry.resource_id {
        Some(id) => id.clone(),
        None => unreachable!("the soak names registries by id"),
    };
    (registry_id, principal, repository)
}

/// Small deterministic PRNG for the harness's own choices (which to edit, when to kill).
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Reconciles every object once (errors are part of the soak; the next round retries). A
/// `kill_every`-th reconcile is cut off after a random few milliseconds, and the operator then
/// restarts with empty caches: a process killed at that point, whatever it was doing.
async fn round(h: &mut Harness, dice: &mut Dice, kill_every: Option<u64>, kills: &mut Kills) {
    for name in h.cluster.names() {
        let Some(object) = h.cluster.get(&name) else {
            continue;
        };
        let killed = kill_every.is_some_and(|every| dice.below(every) == 0);
        if killed {
            let deadline = Duration::from_micros(100 + dice.below(8_000));
            let cut = tokio::time::timeout(
                deadline,
                acr_attach::controller::reconcile::reconcile_once(&object, &h.ctx),
            )
            .await;
            if cut.is_err() {
                kills.total += 1;
                if object.metadata.deletion_timestamp.is_some() {
                    kills.during_detach += 1;
                }
                h.restart_operator();
            }
        } else {
            let _ = h.reconcile(&name).await;
        }
    }
}

fn converged(h: &Harness, live: &BTreeMap<usize, usize>) -> Result<(), String> {
    for (index, version) in live {
        let name = name_of(*index);
        let object = h.cluster.get(&name).ok_or(format!("{name} missing"))?;
        let status = object.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .ok_or(format!("{name}: no Ready"))?;
        if ready.status != "True" || ready.observed_generation != object.metadata.generation {
            return Err(format!("{name}: Ready {} {}", ready.status, ready.message));
        }
        let (registry_id, principal, repository) = pullable(&soak_spec(*index, *version));
        if !h
            .arm
            .may_read_repository(&registry_id, &principal, &repository)
        {
            return Err(format!("{name}: {principal} cannot pull {repository}"));
        }
    }
    if h.cluster.names().len() != live.len() {
        return Err(format!(
            "{} objects, {} expected (a deletion is unfinished)",
            h.cluster.names().len(),
            live.len()
        ));
    }
    Ok(())
}

/// Every (scope, principal, role, condition) has exactly one assignment.
fn assert_no_duplicates(h: &Harness) {
    let mut grants: BTreeMap<(String, String, String, String), Vec<String>> = BTreeMap::new();
    for a in h.arm.role_assignments() {
        let key = (
            a.scope.to_ascii_lowercase(),
            a.principal_id.to_ascii_lowercase(),
            a.role_definition_guid().to_ascii_lowercase(),
            a.condition.clone().unwrap_or_default(),
        );
        grants.entry(key).or_default().push(a.name.clone());
    }
    let duplicated: Vec<_> = grants.iter().filter(|(_, names)| names.len() > 1).collect();
    assert!(
        duplicated.is_empty(),
        "duplicate assignments: {duplicated:?}"
    );
}

fn assert_foreign_untouched(h: &Harness) {
    let present: BTreeSet<String> = h
        .arm
        .role_assignments()
        .into_iter()
        .map(|a| a.name)
        .collect();
    for name in FOREIGN {
        assert!(
            present.contains(name),
            "the pre-existing assignment {name} was deleted"
        );
    }
}

/// Reconciles cut off mid-way, and how many of them were detaching.
#[derive(Default)]
struct Kills {
    total: usize,
    during_detach: usize,
}

struct Outcome {
    converged_after: Duration,
    arm_calls: u64,
    throttled: u64,
    kills: Kills,
    end_state: BTreeSet<(String, String, String, String)>,
}

/// Runs the soak: apply everything, churn for a few rounds, converge, check, delete everything,
/// check again.
async fn soak(n: usize, faults: FaultConfig, churn: bool, kill_every: Option<u64>) -> Outcome {
    let mut h = Harness::start(soak_tenant(faults), kubelet()).await;
    let mut dice = Dice(42);
    let mut kills = Kills::default();
    let mut live: BTreeMap<usize, usize> = (0..n).map(|i| (i, 0)).collect();
    let started = Instant::now();
    for index in 0..n {
        h.cluster.create(&name_of(index), soak_spec(index, 0));
    }
    let mut deleted_out_of_band = 0;
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(
            started.elapsed() < PATIENCE,
            "not converged after {rounds} rounds: {:?}",
            converged(&h, &live)
        );
        round(&mut h, &mut dice, kill_every, &mut kills).await;
        // A round held back by Retry-After passes in moments; let real time reach the window.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if churn && rounds <= 4 {
            churn_once(&h, &mut dice, &mut live, n, &mut deleted_out_of_band);
        }
        if rounds % 3 == 0 {
            // Drift is found at the next resync window.
            h.pass_resync_window();
        }
        if rounds > 4 && converged(&h, &live).is_ok() {
            break;
        }
    }
    let converged_after = started.elapsed();
    eprintln!("converged after {rounds} rounds in {converged_after:?}");
    assert_no_duplicates(&h);
    assert_foreign_untouched(&h);
    if churn {
        assert!(
            deleted_out_of_band > 0,
            "the harness did delete assignments out of band"
        );
    }
    let end_state = h
        .arm
        .role_assignments()
        .into_iter()
        .map(|a| {
            (
                a.scope.to_ascii_lowercase(),
                a.principal_id.to_ascii_lowercase(),
                a.role_definition_guid().to_ascii_lowercase(),
                a.condition.unwrap_or_default(),
            )
        })
        .collect();
    let counts = h.arm.counts();
    let (arm_calls, throttled) = (counts.total(), counts.throttled());

    for name in h.cluster.names() {
        h.cluster.delete(&name);
    }
    let detach_started = Instant::now();
    while !h.cluster.names().is_empty() && detach_started.elapsed() < PATIENCE {
        round(&mut h, &mut dice, kill_every, &mut kills).await;
        h.pass_resync_window();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        h.cluster.names().is_empty(),
        "deletions unfinished: {:?}",
        h.cluster.names()
    );
    let leftover: Vec<_> = h
        .arm
        .role_assignments()
        .into_iter()
        .filter(|a| !FOREIGN.contains(&a.name.as_str()))
        .collect();
    if !leftover.is_empty() {
        eprintln!("leaked: {leftover:#?}");
    }
    let left: Vec<String> = h
        .arm
        .role_assignments()
        .into_iter()
        .map(|a| a.name)
        .collect();
    let mut expected: Vec<String> = FOREIGN.iter().map(|s| s.to_string()).collect();
    expected.sort();
    let mut left_sorted = left.clone();
    left_sorted.sort();
    assert_eq!(
        left_sorted, expected,
        "after every attachment is gone only the assignments someone else made remain"
    );
    Outcome {
        converged_after,
        arm_calls,
        throttled,
        kills,
        end_state,
    }
}

/// One round of churn: edit, delete and recreate a few attachments, and delete a few of the
/// operator's assignments behind its back.
fn churn_once(
    h: &Harness,
    dice: &mut Dice,
    live: &mut BTreeMap<usize, usize>,
    n: usize,
    deleted_out_of_band: &mut usize,
) {
    let share = (n / 20).max(1);
    for _ in 0..share {
        let index = dice.below(n as u64) as usize;
        match (live.get(&index).copied(), dice.below(3)) {
            (Some(version), 0) => {
                h.cluster.update_spec(&name_of(index), |spec| {
                    *spec = soak_spec(index, version + 1)
                });
                live.insert(index, version + 1);
            }
            (Some(_), 1) => {
                h.cluster.delete(&name_of(index));
                live.remove(&index);
            }
            (None, _) if h.cluster.get(&name_of(index)).is_none() => {
                h.cluster.create(&name_of(index), soak_spec(index, 0));
                live.insert(index, 0);
            }
            _ => {}
        }
    }
    let foreign: BTreeSet<&str> = FOREIGN.into_iter().collect();
    let ours: Vec<String> = h
        .arm
        .role_assignments()
        .into_iter()
        .map(|a| a.name)
        .filter(|name| !foreign.contains(name.as_str()))
        .collect();
    for _ in 0..share.min(ours.len()) {
        let victim = &ours[dice.below(ours.len() as u64) as usize];
        if h.arm.remove_role_assignment(victim) {
            *deleted_out_of_band += 1;
        }
    }
}

fn kubelet() -> acr_attach::controller::KubeletIdentity {
    acr_attach::controller::KubeletIdentity::ObjectId(
        acr_attach::model::PrincipalId::parse(KUBELET).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_under_random_faults_and_churn_converges_to_exactly_the_wanted_grants() {
    let n = attachments();
    let calm = soak(n, quiet(), true, None).await;
    let stormy = soak(n, random_faults(7), true, None).await;
    println!(
        "soak of {n} attachments on {REGISTRIES} registries: fault-free {:.1} s, {:.2} ARM calls per \
         attachment; under faults {:.1} s, {:.2} ARM calls per attachment ({} answered 429)",
        calm.converged_after.as_secs_f64(),
        calm.arm_calls as f64 / n as f64,
        stormy.converged_after.as_secs_f64(),
        stormy.arm_calls as f64 / n as f64,
        stormy.throttled,
    );
    assert_eq!(
        calm.end_state, stormy.end_state,
        "faults change how long it takes, never where it ends"
    );
    // No hot loop: faults may cost retries, not an unbounded number of calls.
    assert!(
        stormy.arm_calls <= calm.arm_calls * 6,
        "{} calls under faults against {} without",
        stormy.arm_calls,
        calm.arm_calls
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_at_random_moments_ends_where_an_unkilled_one_does() {
    // Half the soak's size: the kills, not the size, are what this test is about.
    let n = attachments() / 2;
    let unkilled = soak(n, random_faults(11), false, None).await;
    let killed = soak(n, random_faults(11), false, Some(6)).await;
    println!(
        "crash soak of {n} attachments: {} kills ({} while detaching; reconciles cut off mid-way, \
         caches dropped), converged in {:.1} s against {:.1} s unkilled",
        killed.kills.total,
        killed.kills.during_detach,
        killed.converged_after.as_secs_f64(),
        unkilled.converged_after.as_secs_f64()
    );
    assert!(
        killed.kills.total >= 20,
        "only {} kills landed",
        killed.kills.total
    );
    assert!(
        killed.kills.during_detach >= 1,
        "no kill landed during a detach"
    );
    assert_eq!(killed.end_state, unkilled.end_state);
}
