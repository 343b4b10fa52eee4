//! Behaviour a platform engineer relies on, end to end through the production ARM client against
//! the ARM emulator: attach in both registry modes, adopt, repair drift, follow mode flips and
//! kubelet identity changes, detach safely, and fail in ways that say what to fix.

mod common;

use std::time::Duration;

use acr_attach::controller::KubeletIdentity;
use acr_attach::crd::{
    DeletionPolicy, Ownership, RegistryReference, RoleChoice, SKIP_CLEANUP_ANNOTATION,
};
use acr_attach::decide::reasons;
use acr_attach::model::PrincipalId;
use arm_emulator::Operation;
use arm_emulator::{FaultConfig, RegistryMode, UnknownPrincipal};
use common::*;

fn kubelet() -> KubeletIdentity {
    KubeletIdentity::ObjectId(PrincipalId::parse(KUBELET).unwrap())
}

#[tokio::test]
async fn fresh_attach_to_a_legacy_registry_assigns_acrpull_and_reports_ready() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("shared", spec(&registry("legacyacr")));

    let action = h.settle("shared").await;

    let assignments = h.assignments_for(KUBELET);
    assert_eq!(assignments.len(), 1, "{assignments:?}");
    let assignment = &assignments[0];
    assert_eq!(assignment.role_definition_guid(), ACR_PULL);
    assert_eq!(assignment.principal_type, "ServicePrincipal");
    assert!(
        assignment
            .scope
            .eq_ignore_ascii_case(&registry("legacyacr"))
    );
    assert!(
        assignment
            .description
            .as_deref()
            .unwrap_or_default()
            .contains("acr-attach")
    );

    let object = h.cluster.get("shared").unwrap();
    assert!(object.has_finalizer());
    let status = object.status.unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.role.as_deref(), Some("AcrPull"));
    let recorded = status.assignment.unwrap();
    assert_eq!(recorded.ownership, Ownership::Created);
    assert!(recorded.id.eq_ignore_ascii_case(&assignment.id));
    assert_eq!(
        status.registry.unwrap().permissions_mode.as_deref(),
        Some("LegacyRegistryPermissions")
    );
    assert_eq!(status.principal.unwrap().source, "OperatorConfig");
    assert!(status.last_sync_time.is_some());

    let ready = h.condition("shared", "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", reasons::ATTACHED)
    );
    assert_eq!(ready.observed_generation, Some(1));
    assert_eq!(h.condition("shared", "Reconciling").status, "False");
    assert_eq!(h.condition("shared", "Stalled").status, "False");
    let requeue = requeue_after(&action).expect("periodic resync");
    assert!(
        requeue >= h.settings.resync && requeue <= h.settings.resync.mul_f64(1.12),
        "{requeue:?}"
    );
    let events = h.cluster.events.lock().unwrap().clone();
    assert!(
        events
            .iter()
            .any(|(_, e)| e.reason == reasons::ATTACHED && !e.warning),
        "{events:?}"
    );
    println!(
        "ARM calls for one fresh attach: {:?}",
        h.arm.counts().entries()
    );
}

#[tokio::test]
async fn fresh_attach_to_an_abac_registry_assigns_repository_reader_via_workload_identity() {
    let h = Harness::start_with(tenant(), settings(kubelet()), Login::WorkloadIdentity).await;
    h.cluster.create("abac", spec(&registry("abacacr")));
    h.settle("abac").await;

    let assignments = h.assignments_for(KUBELET);
    assert_eq!(assignments.len(), 1);
    assert_eq!(assignments[0].role_definition_guid(), REPOSITORY_READER);
    let status = h.cluster.get("abac").unwrap().status.unwrap();
    assert_eq!(status.role.as_deref(), Some("RepositoryReader"));
    assert_eq!(h.condition("abac", "Ready").status, "True");
}

#[tokio::test]
async fn explicit_acrpull_on_an_abac_registry_is_stalled_and_not_applied() {
    let h = Harness::start(tenant(), kubelet()).await;
    let mut wrong = spec(&registry("abacacr"));
    wrong.role = RoleChoice::AcrPull;
    h.cluster.create("wrong", wrong);
    h.settle("wrong").await;
    assert!(h.assignments_for(KUBELET).is_empty());
    let stalled = h.condition("wrong", "Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", reasons::ROLE_NOT_EFFECTIVE)
    );
    assert!(stalled.message.contains("spec.role"));
    assert_eq!(h.condition("wrong", "Ready").status, "False");
    assert_eq!(h.arm.counts().get(Operation::PutRoleAssignment), 0);
}

#[tokio::test]
async fn an_existing_equivalent_assignment_is_adopted_and_never_deleted() {
    let h = Harness::start(tenant(), kubelet()).await;
    let foreign = h.arm.insert_role_assignment(
        &registry("legacyacr"),
        "0b5fe924-9a61-425c-96af-cfe6e287ca2d",
        ACR_PULL,
        KUBELET,
        Some("made with az aks update --attach-acr"),
    );
    h.cluster.create("shared", spec(&registry("legacyacr")));
    h.settle("shared").await;

    let status = h.cluster.get("shared").unwrap().status.unwrap();
    let recorded = status.assignment.unwrap();
    assert_eq!(recorded.ownership, Ownership::Adopted);
    assert!(recorded.id.eq_ignore_ascii_case(&foreign.id));
    assert_eq!(h.condition("shared", "Ready").status, "True");
    assert_eq!(h.arm.counts().get(Operation::PutRoleAssignment), 0);

    h.cluster.delete("shared");
    h.settle("shared").await;
    assert!(h.cluster.get("shared").is_none(), "finalizer released");
    assert_eq!(h.arm.counts().get(Operation::DeleteRoleAssignment), 0);
    assert_eq!(
        h.assignments_for(KUBELET).len(),
        1,
        "the adopted assignment survives"
    );
}

#[tokio::test]
async fn a_409_role_assignment_exists_is_adopted() {
    // The shared read of the registry predates the foreign assignment, so the PUT meets a 409.
    let h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("first", spec(&registry("legacyacr")));
    h.settle("first").await;
    let foreign = h.arm.insert_role_assignment(
        &registry("legacyacr"),
        "11111111-9a61-425c-96af-cfe6e287ca2d",
        ACR_PULL,
        KUBELET_2,
        None,
    );
    h.cluster
        .create("second", spec_for(&registry("legacyacr"), KUBELET_2));
    h.settle("second").await;

    let recorded = h
        .cluster
        .get("second")
        .unwrap()
        .status
        .unwrap()
        .assignment
        .unwrap();
    assert_eq!(recorded.ownership, Ownership::Adopted);
    assert!(recorded.id.eq_ignore_ascii_case(&foreign.id));
    assert_eq!(h.assignments_for(KUBELET_2).len(), 1, "no duplicate");
    assert!(h.arm.request_log().iter().any(|r| r.status == 409));
    // The record written before the PUT named an assignment that never came to exist: it must
    // not survive (a later detach would DELETE a name ARM never had and report it deleted).
    assert!(
        h.status("second").owned_assignments.is_empty(),
        "{:?}",
        h.status("second").owned_assignments
    );
    h.cluster.delete("second");
    h.settle("second").await;
    assert!(h.cluster.get("second").is_none());
    assert_eq!(h.arm.counts().get(Operation::DeleteRoleAssignment), 0);
    assert_eq!(
        h.assignments_for(KUBELET_2).len(),
        1,
        "the adopted grant stays"
    );
}

#[tokio::test]
async fn an_assignment_deleted_out_of_band_is_recreated_at_the_next_resync() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("shared", spec(&registry("legacyacr")));
    h.settle("shared").await;
    let original = h.assignments_for(KUBELET).remove(0);
    assert!(h.arm.remove_role_assignment(&original.id));

    h.pass_resync_window();
    h.settle("shared").await;

    let recreated = h.assignments_for(KUBELET);
    assert_eq!(recreated.len(), 1);
    assert_eq!(recreated[0].name, original.name, "same deterministic name");
    assert_eq!(h.condition("shared", "Ready").status, "True");
}

#[tokio::test]
async fn a_registry_switched_to_abac_gets_repository_reader_before_acrpull_is_removed() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("shared", spec(&registry("legacyacr")));
    h.settle("shared").await;
    assert!(
        h.arm
            .set_registry_mode(&registry("legacyacr"), RegistryMode::Abac)
    );
    h.arm.clear_request_log();

    h.pass_resync_window();
    h.settle("shared").await;

    let roles: Vec<_> = h
        .assignments_for(KUBELET)
        .iter()
        .map(|a| a.role_definition_guid().to_string())
        .collect();
    assert_eq!(roles, [REPOSITORY_READER]);
    let writes: Vec<_> = h
        .arm
        .request_log()
        .into_iter()
        .filter(|r| r.method == "PUT" || r.method == "DELETE")
        .map(|r| r.method)
        .collect();
    assert_eq!(
        writes,
        ["PUT", "DELETE"],
        "new role first, then the old one goes"
    );
    assert_eq!(
        h.cluster
            .get("shared")
            .unwrap()
            .status
            .unwrap()
            .role
            .as_deref(),
        Some("RepositoryReader")
    );
}

#[tokio::test]
async fn a_replaced_kubelet_identity_gets_the_role_before_the_old_one_loses_it() {
    let cluster = acr_attach::model::ClusterId::parse(&cluster_id()).unwrap();
    let h = Harness::start(tenant(), KubeletIdentity::FromCluster(cluster)).await;
    h.cluster.create("shared", spec(&registry("legacyacr")));
    h.settle("shared").await;
    assert_eq!(h.assignments_for(KUBELET).len(), 1);
    assert_eq!(
        h.cluster
            .get("shared")
            .unwrap()
            .status
            .unwrap()
            .principal
            .unwrap()
            .source,
        "ManagedCluster"
    );

    h.arm.set_kubelet_identity(
        &cluster_id(),
        Some(arm_emulator::KubeletIdentity {
            object_id: KUBELET_2.to_string(),
            ..arm_emulator::KubeletIdentity::generated(&cluster_id())
        }),
    );
    h.arm.clear_request_log();
    h.pass_resync_window();
    h.settle("shared").await;

    assert!(
        h.assignments_for(KUBELET).is_empty(),
        "old principal detached"
    );
    assert_eq!(
        h.assignments_for(KUBELET_2).len(),
        1,
        "new principal attached"
    );
    let writes: Vec<_> = h
        .arm
        .request_log()
        .into_iter()
        .filter(|r| r.method == "PUT" || r.method == "DELETE")
        .map(|r| r.method)
        .collect();
    assert_eq!(writes, ["PUT", "DELETE"]);
}

#[tokio::test]
async fn a_cluster_without_kubelet_identity_is_reported_clearly() {
    let mut no_identity = tenant();
    no_identity.clusters[0].kubelet_identity = None;
    let cluster = acr_attach::model::ClusterId::parse(&cluster_id()).unwrap();
    let h = Harness::start(no_identity, KubeletIdentity::FromCluster(cluster)).await;
    h.cluster.create("shared", spec(&registry("legacyacr")));
    h.settle("shared").await;
    let stalled = h.condition("shared", "Stalled");
    assert_eq!(stalled.reason, reasons::KUBELET_IDENTITY_MISSING);
    assert!(stalled.message.contains("spec.principal.objectId"));
    assert!(h.arm.role_assignments().is_empty());
}

#[tokio::test]
async fn delete_removes_the_created_assignment_and_releases_the_finalizer() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("shared", spec(&registry("legacyacr")));
    h.settle("shared").await;
    h.arm.reset_counts();
    h.cluster.delete("shared");
    h.settle("shared").await;
    assert!(h.cluster.get("shared").is_none());
    assert!(h.assignments_for(KUBELET).is_empty());
    println!("ARM calls for one detach: {:?}", h.arm.counts().entries());
    let events = h.cluster.events.lock().unwrap().clone();
    assert!(events.iter().any(|(_, e)| e.reason == "Detached"));
}

#[tokio::test]
async fn orphan_policy_and_skip_cleanup_leave_azure_alone() {
    let h = Harness::start(tenant(), kubelet()).await;
    let mut orphan = spec(&registry("legacyacr"));
    orphan.deletion_policy = DeletionPolicy::Orphan;
    h.cluster.create("orphan", orphan);
    h.cluster.create("skipped", spec(&registry("abacacr")));
    h.settle("orphan").await;
    h.settle("skipped").await;
    assert_eq!(h.assignments_for(KUBELET).len(), 2);

    h.cluster.delete("orphan");
    h.cluster
        .annotate("skipped", SKIP_CLEANUP_ANNOTATION, "true");
    h.cluster.delete("skipped");
    h.settle("orphan").await;
    h.settle("skipped").await;

    assert!(h.cluster.get("orphan").is_none() && h.cluster.get("skipped").is_none());
    assert_eq!(h.assignments_for(KUBELET).len(), 2);
    assert_eq!(h.arm.counts().get(Operation::DeleteRoleAssignment), 0);
}

#[tokio::test]
async fn a_refused_delete_keeps_the_finalizer_and_names_the_escape_hatch() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("shared", spec(&registry("legacyacr")));
    h.settle("shared").await;
    h.arm.deny(
        None,
        "Microsoft.Authorization/roleAssignments/delete",
        &registry("legacyacr"),
    );
    h.cluster.delete("shared");
    let action = h.settle("shared").await;

    let object = h
        .cluster
        .get("shared")
        .expect("still held by the finalizer");
    assert!(object.has_finalizer());
    let stalled = h.condition("shared", "Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", reasons::DETACH_BLOCKED)
    );
    assert!(
        stalled.message.contains(SKIP_CLEANUP_ANNOTATION),
        "{}",
        stalled.message
    );
    assert!(
        stalled
            .message
            .contains("Microsoft.Authorization/roleAssignments/delete")
    );
    assert_eq!(requeue_after(&action), Some(h.settings.stalled_retry));
    let events = h.cluster.events.lock().unwrap().clone();
    assert!(
        events
            .iter()
            .any(|(_, e)| e.reason == reasons::DETACH_BLOCKED && e.warning)
    );

    h.cluster
        .annotate("shared", SKIP_CLEANUP_ANNOTATION, "true");
    h.settle("shared").await;
    assert!(
        h.cluster.get("shared").is_none(),
        "the annotation releases it"
    );
    assert_eq!(
        h.assignments_for(KUBELET).len(),
        1,
        "and Azure is left as it was"
    );
}

#[tokio::test]
async fn two_attachments_share_one_assignment_until_the_last_one_goes() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("team-a", spec(&registry("legacyacr")));
    h.cluster.create("team-b", spec(&registry("legacyacr")));
    h.settle("team-a").await;
    h.settle("team-b").await;
    assert_eq!(h.assignments_for(KUBELET).len(), 1);
    assert_eq!(h.arm.counts().get(Operation::PutRoleAssignment), 1);

    h.cluster.delete("team-a");
    h.settle("team-a").await;
    assert!(h.cluster.get("team-a").is_none());
    assert_eq!(h.assignments_for(KUBELET).len(), 1, "team-b still needs it");

    h.cluster.delete("team-b");
    h.settle("team-b").await;
    assert!(h.assignments_for(KUBELET).is_empty());
}

#[tokio::test]
async fn principal_not_found_during_replication_is_retried_then_succeeds() {
    let mut replicating = tenant();
    replicating.faults = FaultConfig {
        principal_not_found_window_secs: 2,
        // Makes the emulator refuse even with principalType set, as ARM sometimes does.
        principal_not_found_ignores_principal_type: true,
        ..FaultConfig::default()
    };
    let h = Harness::start(replicating, kubelet()).await;
    let fresh = "5a1e0000-1111-4222-8333-0000000000f5";
    h.arm.add_principal(fresh);
    h.cluster
        .create("fresh", spec_for(&registry("legacyacr"), fresh));

    let action = h.reconcile("fresh").await.unwrap();
    let reconciling = h.condition("fresh", "Reconciling");
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", reasons::PRINCIPAL_NOT_REPLICATED)
    );
    assert_eq!(h.condition("fresh", "Stalled").status, "False");
    let delay = requeue_after(&action).unwrap();
    assert!(delay <= Duration::from_secs(10), "retried soon: {delay:?}");

    // The replication window passes on the emulator's clock, not the machine's.
    h.arm.advance_clock(Duration::from_millis(2200));
    h.settle("fresh").await;
    assert_eq!(h.condition("fresh", "Ready").status, "True");
    assert_eq!(h.assignments_for(fresh).len(), 1);
}

#[tokio::test]
async fn a_principal_that_never_appears_becomes_stalled_after_the_grace_period() {
    let mut strict = tenant();
    strict.faults.unknown_principal = UnknownPrincipal::Reject;
    let h = Harness::start(strict, kubelet()).await;
    let stranger = "5a1e0000-1111-4222-8333-0000000000aa";
    h.cluster
        .create("stranger", spec_for(&registry("legacyacr"), stranger));
    h.reconcile("stranger").await.unwrap();
    assert_eq!(
        h.condition("stranger", "Reconciling").reason,
        reasons::PRINCIPAL_NOT_REPLICATED
    );

    h.clock
        .advance(h.settings.principal_grace + Duration::from_secs(1));
    h.reconcile("stranger").await.unwrap();
    let stalled = h.condition("stranger", "Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", reasons::PRINCIPAL_NOT_FOUND)
    );
    assert!(stalled.message.contains("another Entra tenant"));
}

#[tokio::test]
async fn throttling_is_honoured_with_retry_after() {
    let mut throttled = tenant();
    throttled.faults.injected_retry_after_secs = 2;
    let h = Harness::start(throttled, kubelet()).await;
    h.arm.fail_next(Operation::PutRoleAssignment, 429, 1);
    h.cluster.create("shared", spec(&registry("legacyacr")));

    let next = h.reconcile("shared").await.unwrap();
    assert_eq!(
        h.condition("shared", "Reconciling").reason,
        reasons::AZURE_THROTTLED
    );
    assert!(
        requeue_after(&next).unwrap() >= Duration::from_secs(2),
        "{next:?}"
    );
    assert!(h.assignments_for(KUBELET).is_empty());

    // Asked again before Retry-After has passed, the operator does not even call ARM.
    let puts = h.arm.counts().get(Operation::PutRoleAssignment);
    h.reconcile("shared").await.unwrap();
    assert_eq!(h.arm.counts().get(Operation::PutRoleAssignment), puts);
    assert_eq!(
        h.condition("shared", "Reconciling").reason,
        reasons::AZURE_THROTTLED
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    h.settle("shared").await;
    assert_eq!(h.condition("shared", "Ready").status, "True");
}

#[tokio::test]
async fn one_retry_after_holds_back_every_attachment_of_the_subscription() {
    let mut throttled = tenant();
    throttled.faults.injected_retry_after_secs = 30;
    let h = Harness::start(throttled, kubelet()).await;
    h.arm.fail_next(Operation::GetRegistry, 429, 1);
    let names = ["legacy", "abac", "other"];
    for (name, registry_name) in names.iter().zip(["legacyacr", "abacacr", "otheracr"]) {
        h.cluster.create(name, spec(&registry(registry_name)));
    }
    for name in names {
        let next = h.reconcile(name).await.unwrap();
        assert_eq!(
            h.condition(name, "Reconciling").reason,
            reasons::AZURE_THROTTLED,
            "{name}"
        );
        assert!(
            requeue_after(&next).unwrap() >= Duration::from_secs(25),
            "{name}: waits out Retry-After: {next:?}"
        );
    }
    // Three attachments on three registries of one subscription: only the first request reached
    // ARM; the other two were held back by the client without a request.
    let counts = h.arm.counts();
    assert_eq!(counts.get(Operation::GetRegistry), 1, "{counts:?}");
    assert_eq!(counts.get(Operation::ListRoleAssignments), 0, "{counts:?}");
    assert_eq!(counts.get(Operation::PutRoleAssignment), 0, "{counts:?}");
    assert!(
        h.metrics().contains(
            "acr_attach_arm_requests_total{operation=\"get_registry\",status=\"held_back\"} 2"
        ),
        "{}",
        h.metrics()
    );
}

#[tokio::test]
async fn a_throttled_write_holds_back_writes_but_not_reads() {
    // ARM keeps separate buckets for reads, writes and deletes.
    let mut throttled = tenant();
    throttled.faults.injected_retry_after_secs = 30;
    let h = Harness::start(throttled, kubelet()).await;
    h.arm.fail_next(Operation::PutRoleAssignment, 429, 1);
    h.cluster.create("first", spec(&registry("legacyacr")));
    h.reconcile("first").await.unwrap();
    assert_eq!(
        h.condition("first", "Reconciling").reason,
        reasons::AZURE_THROTTLED
    );
    // Another attachment in the same subscription still reads its registry (GET, LIST); only its
    // PUT waits out the Retry-After, without a request.
    h.cluster.create("second", spec(&registry("otheracr")));
    h.reconcile("second").await.unwrap();
    let counts = h.arm.counts();
    assert_eq!(counts.get(Operation::GetRegistry), 2, "{counts:?}");
    assert_eq!(counts.get(Operation::ListRoleAssignments), 2, "{counts:?}");
    assert_eq!(counts.get(Operation::PutRoleAssignment), 1, "{counts:?}");
    let reconciling = h.condition("second", "Reconciling");
    assert_eq!(reconciling.reason, reasons::AZURE_THROTTLED);
    assert!(
        reconciling.message.contains("next writes"),
        "{}",
        reconciling.message
    );
}

#[tokio::test]
async fn a_failed_shared_read_is_reused_by_every_attachment_of_the_registry() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.arm.fail_next(Operation::GetRegistry, 503, 1);
    let names = ["one", "two", "three"];
    for name in names {
        h.cluster.create(name, spec(&registry("legacyacr")));
    }
    for name in names {
        h.reconcile(name).await.unwrap();
        assert_eq!(
            h.condition(name, "Reconciling").reason,
            reasons::AZURE_UNAVAILABLE,
            "{name}"
        );
    }
    assert_eq!(
        h.arm.counts().get(Operation::GetRegistry),
        1,
        "one request for the round, not one per attachment"
    );
    // Once the failure's reuse has passed, the next round reads again, once, and all attach.
    h.clock.advance(Duration::from_secs(6));
    for name in names {
        h.settle(name).await;
        assert_eq!(h.condition(name, "Ready").status, "True", "{name}");
    }
    assert_eq!(h.arm.counts().get(Operation::GetRegistry), 2);
    assert_eq!(h.arm.counts().get(Operation::ListRoleAssignments), 1);
}

#[tokio::test]
async fn transient_failures_back_off_exponentially_up_to_the_cap_and_reset_after_success() {
    let mut settings = settings(kubelet());
    settings.backoff_base = Duration::from_secs(5);
    settings.backoff_max = Duration::from_secs(40);
    let h = Harness::start_with(tenant(), settings, Login::ClientSecret).await;
    h.arm.fail_next(Operation::PutRoleAssignment, 503, 6);
    h.cluster.create("shared", spec(&registry("legacyacr")));
    // ±20% jitter around 5, 10, 20, 40 (the cap), 40, 40 seconds.
    let expected = [5, 10, 20, 40, 40, 40];
    for (attempt, nominal) in expected.into_iter().enumerate() {
        let next = h.reconcile("shared").await.unwrap();
        let wait = requeue_after(&next).expect("a retry is scheduled");
        let nominal = Duration::from_secs(nominal);
        assert!(
            wait >= nominal.mul_f64(0.8) && wait <= nominal.mul_f64(1.2),
            "attempt {}: {wait:?} is not within 20% of {nominal:?}",
            attempt + 1
        );
        h.clock.advance(wait);
    }
    h.settle("shared").await;
    assert_eq!(h.condition("shared", "Ready").status, "True");

    // Success reset the streak: the next failure starts again at the base delay.
    let grant = h.assignments_for(KUBELET).remove(0);
    h.arm.remove_role_assignment(&grant.id);
    h.arm.fail_next(Operation::PutRoleAssignment, 503, 1);
    h.pass_resync_window();
    let next = h.reconcile("shared").await.unwrap();
    let wait = requeue_after(&next).expect("a retry is scheduled");
    assert!(
        wait >= Duration::from_secs(4) && wait <= Duration::from_secs(6),
        "after a success the backoff starts over: {wait:?}"
    );
}

#[tokio::test]
async fn a_missing_permission_is_stalled_and_names_action_and_scope() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.arm.deny(
        None,
        "Microsoft.Authorization/roleAssignments/write",
        &registry("legacyacr"),
    );
    h.cluster.create("shared", spec(&registry("legacyacr")));
    let action = h.settle("shared").await;
    let stalled = h.condition("shared", "Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", reasons::AUTHORIZATION_FAILED)
    );
    assert!(
        stalled
            .message
            .contains("'Microsoft.Authorization/roleAssignments/write'"),
        "{}",
        stalled.message
    );
    assert!(
        stalled.message.contains("registries/legacyacr"),
        "{}",
        stalled.message
    );
    assert_eq!(h.condition("shared", "Ready").status, "False");
    assert_eq!(requeue_after(&action), Some(h.settings.stalled_retry));
}

#[tokio::test]
async fn a_missing_registry_is_stalled() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("gone", spec(&registry("retiredacr")));
    h.settle("gone").await;
    let stalled = h.condition("gone", "Stalled");
    assert_eq!(stalled.reason, reasons::REGISTRY_NOT_FOUND);
    assert!(stalled.message.contains("spec.registry.resourceId"));
}

#[tokio::test]
async fn a_crash_between_put_and_status_write_creates_no_duplicate() {
    let mut h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("shared", spec(&registry("legacyacr")));
    // First status write records intent; the second (after the PUT) fails like a crash would.
    h.cluster.fail_status_write(2);
    assert!(h.reconcile("shared").await.is_err());
    assert_eq!(h.assignments_for(KUBELET).len(), 1, "the PUT happened");

    h.restart_operator();
    h.settle("shared").await;
    let assignments = h.assignments_for(KUBELET);
    assert_eq!(assignments.len(), 1, "no duplicate: {assignments:?}");
    let recorded = h
        .cluster
        .get("shared")
        .unwrap()
        .status
        .unwrap()
        .assignment
        .unwrap();
    assert_eq!(
        recorded.ownership,
        Ownership::Created,
        "recognised as ours by its derived name"
    );

    // And it is still ours to delete.
    h.cluster.delete("shared");
    h.settle("shared").await;
    assert!(h.assignments_for(KUBELET).is_empty());
}

#[tokio::test]
async fn steady_state_resync_reads_each_registry_once_and_writes_nothing() {
    let cluster = acr_attach::model::ClusterId::parse(&cluster_id()).unwrap();
    let h = Harness::start(tenant(), KubeletIdentity::FromCluster(cluster)).await;
    for (name, registry_name) in [
        ("a1", "legacyacr"),
        ("a2", "legacyacr"),
        ("a3", "abacacr"),
        ("a4", "abacacr"),
        ("a5", "otheracr"),
    ] {
        h.cluster.create(name, spec(&registry(registry_name)));
    }
    for name in h.cluster.names() {
        h.settle(&name).await;
    }
    assert_eq!(h.arm.role_assignments().len(), 3);

    h.arm.reset_counts();
    h.pass_resync_window();
    let events_before = h.cluster.events.lock().unwrap().len();
    let writes_before = h
        .cluster
        .status_writes
        .load(std::sync::atomic::Ordering::SeqCst);
    for name in h.cluster.names() {
        h.reconcile(&name).await.unwrap();
    }
    let counts = h.arm.counts();
    println!("one resync window, 5 attachments on 3 registries: {counts:?}");
    assert_eq!(
        counts.get(Operation::GetRegistry),
        3,
        "one GET per registry"
    );
    assert_eq!(
        counts.get(Operation::ListRoleAssignments),
        3,
        "one LIST per registry"
    );
    assert_eq!(
        counts.get(Operation::GetManagedCluster),
        1,
        "one kubelet identity read"
    );
    assert_eq!(counts.get(Operation::PutRoleAssignment), 0);
    assert_eq!(counts.get(Operation::DeleteRoleAssignment), 0);
    let status_writes = h
        .cluster
        .status_writes
        .load(std::sync::atomic::Ordering::SeqCst)
        - writes_before;
    assert_eq!(
        h.cluster.events.lock().unwrap().len(),
        events_before,
        "nothing changed, so no event"
    );
    println!("Kubernetes status writes in that window: {status_writes}");
    assert_eq!(
        status_writes, 0,
        "a quiet window writes nothing to Kubernetes"
    );

    // Reconciles inside the same window (e.g. an unrelated watch event) cost nothing at all.
    h.arm.reset_counts();
    let writes_before = h
        .cluster
        .status_writes
        .load(std::sync::atomic::Ordering::SeqCst);
    for name in h.cluster.names() {
        h.reconcile(&name).await.unwrap();
    }
    assert_eq!(h.arm.counts().total(), 0);
    assert_eq!(
        h.cluster
            .status_writes
            .load(std::sync::atomic::Ordering::SeqCst),
        writes_before
    );
}

#[tokio::test]
async fn last_sync_time_is_refreshed_once_it_is_as_old_as_the_refresh_interval() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("shared", spec(&registry("legacyacr")));
    h.settle("shared").await;
    let first = h
        .status("shared")
        .last_sync_time
        .expect("recorded on attach");
    let writes = || {
        h.cluster
            .status_writes
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let before = writes();
    // Four quiet windows (12 minutes each in the harness): the recorded time stands, nothing
    // is written.
    for _ in 0..4 {
        h.pass_resync_window();
        h.reconcile("shared").await.unwrap();
    }
    assert_eq!(writes(), before);
    assert_eq!(
        h.status("shared").last_sync_time.as_deref(),
        Some(first.as_str())
    );
    // Past an hour (the default refresh) the next verification records its time: one write.
    h.pass_resync_window();
    h.reconcile("shared").await.unwrap();
    assert_eq!(writes(), before + 1);
    let refreshed = h.status("shared").last_sync_time.unwrap();
    assert!(refreshed > first, "{refreshed} after {first}");
    assert_eq!(h.condition("shared", "Ready").status, "True");
}

#[tokio::test]
async fn editing_the_spec_moves_the_grant_and_observed_generation_follows() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("shared", spec(&registry("legacyacr")));
    h.settle("shared").await;
    h.cluster.update_spec("shared", |spec| {
        spec.registry = RegistryReference::by_id(registry("otheracr"))
    });
    h.settle("shared").await;

    let assignments = h.assignments_for(KUBELET);
    assert_eq!(assignments.len(), 1);
    assert!(
        assignments[0]
            .scope
            .eq_ignore_ascii_case(&registry("otheracr"))
    );
    let status = h.cluster.get("shared").unwrap().status.unwrap();
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(h.condition("shared", "Ready").observed_generation, Some(2));
}

#[tokio::test]
async fn an_exhausted_write_budget_is_waited_out_not_hammered() {
    let mut tight = tenant();
    tight.faults.throttle.writes_burst = 1;
    tight.faults.throttle.writes_per_sec = 1;
    let h = Harness::start(tight, kubelet()).await;
    h.cluster.create("first", spec(&registry("legacyacr")));
    h.cluster.create("second", spec(&registry("otheracr")));
    h.settle("first").await;
    assert_eq!(h.condition("first", "Ready").status, "True");

    let action = h.reconcile("second").await.unwrap();
    assert_eq!(h.arm.counts().throttled(), 1, "ARM's token bucket said no");
    assert_eq!(
        h.condition("second", "Reconciling").reason,
        reasons::AZURE_THROTTLED
    );
    let delay = requeue_after(&action).unwrap();
    assert!(
        delay >= Duration::from_secs(1),
        "waits for Retry-After: {delay:?}"
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.settle("second").await;
    assert_eq!(h.condition("second", "Ready").status, "True");
    assert_eq!(h.arm.counts().throttled(), 1, "no second 429");
}

#[tokio::test]
async fn two_clusters_sharing_a_principal_never_delete_each_others_grant() {
    let a = Harness::start(tenant(), kubelet()).await;
    let b = a.another_cluster("cluster-b");
    a.cluster.create("shared", spec(&registry("legacyacr")));
    b.cluster.create("shared", spec(&registry("legacyacr")));
    a.settle("shared").await;
    b.settle("shared").await;
    let recorded = |h: &Harness| {
        h.cluster
            .get("shared")
            .unwrap()
            .status
            .unwrap()
            .assignment
            .unwrap()
    };
    assert_eq!(recorded(&a).ownership, Ownership::Created);
    assert_eq!(
        recorded(&b).ownership,
        Ownership::Shared,
        "B joined A's grant as a co-owner"
    );
    let shared = a.assignments_for(KUBELET);
    assert_eq!(shared.len(), 1);
    let description = shared[0].description.clone().unwrap_or_default();
    assert!(
        description.contains("owners: cluster-b, test-cluster; creator: test-cluster"),
        "{description}"
    );

    // Cluster B detaches: it takes itself off the owners; A's grant stays.
    b.cluster.delete("shared");
    b.settle("shared").await;
    assert!(b.cluster.get("shared").is_none());
    let left = a.assignments_for(KUBELET);
    assert_eq!(left.len(), 1);
    assert!(
        left[0]
            .description
            .as_deref()
            .is_some_and(|d| d.contains("owners: test-cluster;")),
        "{:?}",
        left[0].description
    );
    assert_eq!(a.arm.counts().get(Operation::DeleteRoleAssignment), 0);
    a.pass_resync_window();
    a.settle("shared").await;
    assert_eq!(a.condition("shared", "Ready").status, "True");
}

#[tokio::test]
async fn a_shared_grant_outlives_its_creator_and_goes_with_its_last_owner() {
    let a = Harness::start(tenant(), kubelet()).await;
    let b = a.another_cluster("cluster-b");
    a.cluster.create("shared", spec(&registry("legacyacr")));
    b.cluster.create("shared", spec(&registry("legacyacr")));
    a.settle("shared").await;
    b.settle("shared").await;

    // The creator detaches first: B is listed, so A only removes itself; B's nodes never lose pull.
    a.cluster.delete("shared");
    a.settle("shared").await;
    assert!(a.cluster.get("shared").is_none());
    assert_eq!(a.arm.counts().get(Operation::DeleteRoleAssignment), 0);
    assert!(
        a.arm
            .may_read_repository(&registry("legacyacr"), KUBELET, "app"),
        "B's nodes can still pull"
    );
    b.pass_resync_window();
    b.settle("shared").await;
    assert_eq!(b.condition("shared", "Ready").status, "True");

    // The last owner detaches: the assignment goes; nothing leaks.
    b.cluster.delete("shared");
    b.settle("shared").await;
    assert!(a.assignments_for(KUBELET).is_empty(), "nothing leaks");
    assert_eq!(a.arm.counts().get(Operation::DeleteRoleAssignment), 1);
}

#[tokio::test]
async fn two_co_owners_detaching_at_once_neither_leak_nor_cut_early() {
    for round in 0..3 {
        let a = Harness::start(tenant(), kubelet()).await;
        let b = a.another_cluster("cluster-b");
        a.cluster.create("shared", spec(&registry("legacyacr")));
        b.cluster.create("shared", spec(&registry("legacyacr")));
        a.settle("shared").await;
        b.settle("shared").await;
        a.cluster.delete("shared");
        b.cluster.delete("shared");
        // Both read "owners: a, b" before either writes.
        tokio::join!(a.settle("shared"), b.settle("shared"));
        assert!(a.cluster.get("shared").is_none(), "round {round}");
        assert!(b.cluster.get("shared").is_none(), "round {round}");
        assert!(
            a.assignments_for(KUBELET).is_empty(),
            "round {round}: leaked {:?}",
            a.assignments_for(KUBELET)
        );
    }
}

#[tokio::test]
async fn one_co_owner_detaching_while_the_other_stays_never_cuts_pull() {
    let a = Harness::start(tenant(), kubelet()).await;
    let b = a.another_cluster("cluster-b");
    a.cluster.create("shared", spec(&registry("legacyacr")));
    b.cluster.create("shared", spec(&registry("legacyacr")));
    a.settle("shared").await;
    b.settle("shared").await;
    a.cluster.delete("shared");
    b.pass_resync_window();
    // A leaves while B re-verifies.
    tokio::join!(a.settle("shared"), b.settle("shared"));
    assert!(a.cluster.get("shared").is_none());
    assert_eq!(a.assignments_for(KUBELET).len(), 1, "B still relies on it");
    assert_eq!(b.condition("shared", "Ready").status, "True");
}

#[tokio::test]
async fn a_lagging_watch_cache_cannot_make_a_detach_delete_a_fresh_claim() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("old", spec(&registry("legacyacr")));
    h.settle("old").await;
    // From here the operator's cache neither sees "new" nor "old" being deleted.
    h.cluster.freeze_view();
    h.cluster.create("new", spec(&registry("legacyacr")));
    h.settle("new").await;
    assert_eq!(h.condition("new", "Ready").status, "True");

    h.cluster.delete("old");
    h.settle("old").await;
    assert!(h.cluster.get("old").is_none());
    assert_eq!(
        h.assignments_for(KUBELET).len(),
        1,
        "\"new\" still relies on it"
    );
}

#[tokio::test]
async fn a_spec_edit_after_a_lost_response_retires_the_first_assignment() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("shared", spec(&registry("legacyacr")));
    // The PUT lands but the operator never records it (crash after the PUT).
    h.cluster.fail_status_write(2);
    assert!(h.reconcile("shared").await.is_err());
    h.cluster.update_spec("shared", |spec| {
        spec.registry = RegistryReference::by_id(registry("otheracr"))
    });
    h.settle("shared").await;

    let scopes: Vec<_> = h
        .assignments_for(KUBELET)
        .into_iter()
        .map(|a| a.scope.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(scopes, ["otheracr"], "nothing left behind on legacyacr");
}

#[tokio::test]
async fn a_refused_credential_is_stalled_but_an_unreachable_token_endpoint_is_retried() {
    let mut h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("shared", spec(&registry("legacyacr")));
    h.arm.fail_next(Operation::Token, 503, 1);
    h.reconcile("shared").await.unwrap();
    let reconciling = h.condition("shared", "Reconciling");
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", reasons::AUTHENTICATION_FAILED)
    );
    assert_eq!(h.condition("shared", "Stalled").status, "False");

    h.restart_operator_with(|azure| {
        azure.client_secret = Some(azure_core::credentials::Secret::new("not-the-secret"))
    });
    h.clock.advance(Duration::from_secs(10));
    h.reconcile("shared").await.unwrap();
    let stalled = h.condition("shared", "Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", reasons::AUTHENTICATION_FAILED)
    );
    assert!(stalled.message.contains("AADSTS"), "{}", stalled.message);
}

#[tokio::test]
async fn a_missing_grant_is_not_reported_ready_while_recreating_it_is_throttled() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("shared", spec(&registry("legacyacr")));
    h.settle("shared").await;
    let original = h.assignments_for(KUBELET).remove(0);
    h.arm.remove_role_assignment(&original.id);
    h.arm.fail_next(Operation::PutRoleAssignment, 503, 1);

    h.pass_resync_window();
    h.reconcile("shared").await.unwrap();
    let ready = h.condition("shared", "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reasons::AZURE_UNAVAILABLE),
        "the operator knows the grant is gone"
    );
}

#[tokio::test]
async fn a_throttled_or_failed_re_read_of_a_ready_attachment_keeps_it_ready() {
    // A 429 (ARM's throttling, with Retry-After) and a 503 on the re-read alike.
    for (status, reason) in [
        (429, reasons::AZURE_THROTTLED),
        (503, reasons::AZURE_UNAVAILABLE),
    ] {
        let h = Harness::start(tenant(), kubelet()).await;
        h.cluster.create("shared", spec(&registry("legacyacr")));
        h.settle("shared").await;
        h.arm.fail_next(Operation::GetRegistry, status, 1);
        h.pass_resync_window();
        let synced_before = h.status("shared").last_sync_time;
        h.reconcile("shared").await.unwrap();
        assert_eq!(h.condition("shared", "Ready").status, "True", "{status}");
        // kstatus checks Reconciling before Ready: it must not turn True for a deferred re-read.
        let reconciling = h.condition("shared", "Reconciling");
        assert_eq!(
            (reconciling.status.as_str(), reconciling.reason.as_str()),
            ("False", reasons::VERIFICATION_DEFERRED),
            "{status}"
        );
        assert!(
            reconciling.message.contains(reason),
            "{status}: {}",
            reconciling.message
        );
        if status == 429 {
            assert!(
                h.metrics().contains("acr_attach_arm_throttled_total 1"),
                "the re-read was answered 429: {}",
                h.metrics()
            );
        }
        // The staleness shows: lastSyncTime still names the last confirmation.
        assert_eq!(h.status("shared").last_sync_time, synced_before);
        let series = format!("acr_attach_verification_deferred_total{{reason=\"{reason}\"}} 1");
        assert!(h.metrics().contains(&series), "{}", h.metrics());
    }
}

#[tokio::test]
async fn deleting_one_attachment_keeps_the_grant_a_sibling_not_yet_reconciled_needs() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.cluster.create("first", spec(&registry("legacyacr")));
    h.settle("first").await;
    // A new sibling the operator has not reconciled yet: it has no status at all.
    h.cluster.create("second", spec(&registry("legacyacr")));
    h.cluster.delete("first");
    h.settle("first").await;
    assert!(h.cluster.get("first").is_none());
    assert_eq!(
        h.assignments_for(KUBELET).len(),
        1,
        "second's spec needs it"
    );
    assert_eq!(h.arm.counts().get(Operation::DeleteRoleAssignment), 0);
}

#[tokio::test]
async fn deleting_one_attachment_keeps_the_grant_of_a_sibling_that_crashed_before_reporting() {
    let h = Harness::start(tenant(), kubelet()).await;
    // "second" records the assignment, PUTs it, and crashes before its final status write.
    h.cluster.create("second", spec(&registry("legacyacr")));
    h.cluster.fail_status_write(2);
    assert!(h.reconcile("second").await.is_err());
    assert!(h.status("second").assignment.is_none());
    assert_eq!(h.status("second").owned_assignments.len(), 1);
    // A restarted operator (no in-memory claims) reconciles and deletes "first".
    let mut h = h;
    h.restart_operator();
    h.cluster.create("first", spec(&registry("legacyacr")));
    h.settle("first").await;
    h.cluster.delete("first");
    h.settle("first").await;
    assert_eq!(h.assignments_for(KUBELET).len(), 1, "second relies on it");
}

#[tokio::test]
async fn an_attachment_stalled_on_a_forbidden_registry_is_deleted_at_once() {
    let h = Harness::start(tenant(), kubelet()).await;
    h.arm.deny(
        None,
        "Microsoft.Authorization/roleAssignments/write",
        &registry("legacyacr"),
    );
    h.cluster.create("shared", spec(&registry("legacyacr")));
    h.settle("shared").await;
    assert_eq!(h.condition("shared", "Stalled").status, "True");
    assert!(
        h.status("shared").owned_assignments.is_empty(),
        "a refused PUT created nothing: no record"
    );
    h.cluster.delete("shared");
    h.settle("shared").await;
    assert!(
        h.cluster.get("shared").is_none(),
        "not stuck in DetachBlocked"
    );
    assert_eq!(h.arm.counts().get(Operation::DeleteRoleAssignment), 0);
}

#[tokio::test]
async fn a_malformed_element_in_a_listing_is_skipped_not_fatal() {
    let h = Harness::start(tenant(), kubelet()).await;
    let odd = h.arm.insert_role_assignment(
        &registry("legacyacr"),
        "22222222-9a61-425c-96af-cfe6e287ca2d",
        ACR_PULL,
        KUBELET_2,
        None,
    );
    h.arm.corrupt_in_list(&odd.name);
    h.cluster.create("shared", spec(&registry("legacyacr")));
    h.settle("shared").await;
    assert_eq!(h.condition("shared", "Ready").status, "True");
    assert!(
        h.metrics().contains(
            "acr_attach_arm_malformed_list_items_total{operation=\"list_role_assignments\"} 1"
        ),
        "{}",
        h.metrics()
    );
}
