//! How acr-attach's cost scales: 200 attachments on 40 registries (5 per registry, one kubelet
//! identity), through the production ARM client against the ARM emulator. Prints the ARM calls
//! and wall time of the first convergence and of one steady-state resync window, so a change that
//! makes the operator chattier against ARM shows up as a number. Run: cargo bench --bench reconcile_scale

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use acr_attach::controller::KubeletIdentity;
use acr_attach::model::ClusterId;
use arm_emulator::{Operation, RegistryConfig, RegistryMode};
use common::*;

const REGISTRIES: usize = 40;
const PER_REGISTRY: usize = 5;

fn report(label: &str, arm: &arm_emulator::ArmEmulator, took: std::time::Duration) {
    let counts = arm.counts();
    println!(
        "{label:<28} {:>7.1} ms  GET registry {:>3}  LIST {:>3}  GET cluster {:>2}  PUT {:>3}  DELETE {:>3}  token {:>2}  429s {:>2}",
        took.as_secs_f64() * 1000.0,
        counts.get(Operation::GetRegistry),
        counts.get(Operation::ListRoleAssignments),
        counts.get(Operation::GetManagedCluster),
        counts.get(Operation::PutRoleAssignment),
        counts.get(Operation::DeleteRoleAssignment),
        counts.get(Operation::Token),
        counts.throttled(),
    );
}

#[tokio::main]
async fn main() {
    let mut tenant = tenant();
    for n in 0..REGISTRIES {
        tenant.registries.push(RegistryConfig::new(
            registry(&format!("scale{n:03}")),
            if n % 2 == 0 {
                RegistryMode::Legacy
            } else {
                RegistryMode::Abac
            },
        ));
    }
    let cluster = ClusterId::parse(&cluster_id()).unwrap();
    let h = Harness::start(tenant, KubeletIdentity::FromCluster(cluster)).await;
    for n in 0..REGISTRIES {
        for k in 0..PER_REGISTRY {
            h.cluster.create(
                &format!("a{n:03}-{k}"),
                spec(&registry(&format!("scale{n:03}"))),
            );
        }
    }
    let names = h.cluster.names();
    println!("{} attachments on {REGISTRIES} registries", names.len());

    let started = Instant::now();
    for name in &names {
        h.settle(name).await;
    }
    report("first convergence", &h.arm, started.elapsed());
    assert_eq!(h.arm.role_assignments().len(), REGISTRIES);

    h.arm.reset_counts();
    h.pass_resync_window();
    let started = Instant::now();
    for name in &names {
        h.reconcile(name).await.unwrap();
    }
    report("one resync window", &h.arm, started.elapsed());

    h.arm.reset_counts();
    let started = Instant::now();
    for name in &names {
        h.reconcile(name).await.unwrap();
    }
    report("reconciles within the window", &h.arm, started.elapsed());
}
