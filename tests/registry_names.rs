//! Registries named by name (`spec.registry.name`, optionally with `resourceGroup` and
//! `subscriptionId`), end to end through the production ARM client against the ARM emulator: the
//! name is looked up in Registries_List (or Registries_ListByResourceGroup) once per resync window
//! per scope, and a name that finds nothing, finds too much, has no subscription to look in, or
//! points outside the allow-list is reported with what to fix — before anything is written.

mod common;

use std::time::Duration;

use acr_attach::controller::{KubeletIdentity, Settings};
use acr_attach::crd::{Ownership, RegistryAttachmentSpec, RegistryReference};
use acr_attach::decide::allowlist::AllowList;
use acr_attach::decide::reasons;
use acr_attach::model::{ClusterId, PrincipalId};
use arm_emulator::{Operation, RegistryConfig, RegistryMode};
use common::*;

/// A subscription the tenant does not have.
const OTHER_SUB: &str = "00000000-0000-4000-8000-0000000000ff";

fn kubelet() -> KubeletIdentity {
    KubeletIdentity::ObjectId(PrincipalId::parse(KUBELET).unwrap())
}

/// The operator with `--kubelet-object-id` and `--default-subscription SUB`.
fn named_settings() -> Settings {
    let mut settings = settings(kubelet());
    settings.default_subscription = Some(SUB.to_string());
    settings
}

async fn start(settings: Settings) -> Harness {
    Harness::start_with(tenant(), settings, Login::ClientSecret).await
}

fn by_name(name: &str) -> RegistryAttachmentSpec {
    RegistryAttachmentSpec {
        registry: RegistryReference::by_name(name),
        ..spec(&registry("unused"))
    }
}

fn registry_in(group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/{name}"
    )
}

fn lists(h: &Harness) -> u64 {
    h.arm.counts().get(Operation::ListRegistries)
}

fn puts(h: &Harness) -> u64 {
    h.arm.counts().get(Operation::PutRoleAssignment)
}

/// Asserts Stalled=True with `reason` (and Ready=False) and returns the message.
fn stalled_message(h: &Harness, name: &str, reason: &str) -> String {
    let stalled = h.condition(name, "Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", reason),
        "{}",
        stalled.message
    );
    let ready = h.condition(name, "Ready");
    assert_eq!(ready.status, "False", "{}", ready.message);
    stalled.message
}

fn assert_ready(h: &Harness, name: &str) {
    let ready = h.condition(name, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", reasons::ATTACHED),
        "{}",
        ready.message
    );
    assert_eq!(h.condition(name, "Stalled").status, "False");
}

fn reported_registry(h: &Harness, name: &str) -> String {
    h.status(name).registry.expect("status.registry").id
}

#[tokio::test]
async fn a_name_in_the_default_subscription_attaches_and_shares_the_grant_with_an_id_reference() {
    let h = start(named_settings()).await;
    h.cluster.create("by-name", by_name("legacyacr"));
    h.settle("by-name").await;

    assert_ready(&h, "by-name");
    assert_eq!(reported_registry(&h, "by-name"), registry("legacyacr"));
    let assignments = h.assignments_for(KUBELET);
    assert_eq!(assignments.len(), 1, "{assignments:?}");
    assert!(
        assignments[0]
            .scope
            .eq_ignore_ascii_case(&registry("legacyacr")),
        "{}",
        assignments[0].scope
    );
    assert_eq!(assignments[0].role_definition_guid(), ACR_PULL);
    assert!(
        h.arm
            .may_read_repository(&registry("legacyacr"), KUBELET, "app"),
        "the kubelet can pull"
    );
    let recorded = h.status("by-name").assignment.expect("status.assignment");
    assert_eq!(recorded.ownership, Ownership::Created);
    assert!(h.cluster.get("by-name").unwrap().has_finalizer());
    assert_eq!(lists(&h), 1);

    // The same registry by resource id: the same grant, not a second one.
    h.cluster.create("by-id", spec(&registry("legacyacr")));
    h.settle("by-id").await;
    assert_ready(&h, "by-id");
    assert_eq!(h.assignments_for(KUBELET).len(), 1);
    assert_eq!(puts(&h), 1, "one PUT for both");
    let by_id = h.status("by-id").assignment.unwrap();
    assert!(by_id.id.eq_ignore_ascii_case(&recorded.id));

    // Either one going leaves the other's grant in place; the last one takes it along.
    h.cluster.delete("by-id");
    h.settle("by-id").await;
    assert!(h.cluster.get("by-id").is_none());
    assert_eq!(
        h.assignments_for(KUBELET).len(),
        1,
        "by-name still needs it"
    );
    assert_eq!(h.arm.counts().get(Operation::DeleteRoleAssignment), 0);
    h.cluster.delete("by-name");
    h.settle("by-name").await;
    assert!(h.cluster.get("by-name").is_none());
    assert!(h.assignments_for(KUBELET).is_empty());
}

#[tokio::test]
async fn the_name_matches_case_insensitively() {
    let h = start(named_settings()).await;
    h.cluster.create("shouty", by_name("LegacyACR"));
    h.settle("shouty").await;
    assert_ready(&h, "shouty");
    assert_eq!(reported_registry(&h, "shouty"), registry("legacyacr"));
    let assignments = h.assignments_for(KUBELET);
    assert_eq!(assignments.len(), 1);
    assert!(
        assignments[0]
            .scope
            .eq_ignore_ascii_case(&registry("legacyacr"))
    );
}

#[tokio::test]
async fn without_a_default_the_clusters_subscription_is_used() {
    let cluster = ClusterId::parse(&cluster_id()).unwrap();
    let h = start(settings(KubeletIdentity::FromCluster(cluster))).await;
    h.cluster.create("named", by_name("abacacr"));
    h.settle("named").await;
    assert_ready(&h, "named");
    assert_eq!(reported_registry(&h, "named"), registry("abacacr"));
    assert_eq!(h.assignments_for(KUBELET).len(), 1);
    assert_eq!(
        h.assignments_for(KUBELET)[0].role_definition_guid(),
        REPOSITORY_READER
    );
    assert_eq!(
        h.status("named").principal.unwrap().source,
        "ManagedCluster"
    );
}

#[tokio::test]
async fn with_no_subscription_to_look_in_the_name_is_stalled_before_any_azure_call() {
    // --kubelet-object-id, no --default-subscription, no --cluster-resource-id.
    let h = start(settings(kubelet())).await;
    h.cluster.create("nowhere", by_name("legacyacr"));
    h.settle("nowhere").await;
    let message = stalled_message(&h, "nowhere", reasons::REGISTRY_SUBSCRIPTION_UNKNOWN);
    assert!(
        message.contains("spec.registry.subscriptionId"),
        "{message}"
    );
    assert!(message.contains("--default-subscription"), "{message}");
    assert!(message.contains("legacyacr"), "{message}");
    assert_eq!(h.arm.counts().total(), 0, "{:?}", h.arm.counts().entries());
    assert!(
        !h.cluster.get("nowhere").unwrap().has_finalizer(),
        "nothing in Azure to clean up, so no finalizer"
    );

    // Naming the subscription in the spec fixes it.
    h.cluster.update_spec("nowhere", |spec| {
        spec.registry.subscription_id = Some(SUB.to_string())
    });
    h.settle("nowhere").await;
    assert_ready(&h, "nowhere");
    assert_eq!(h.assignments_for(KUBELET).len(), 1);
}

#[tokio::test]
async fn an_unknown_name_is_stalled_names_the_subscription_and_suggests_a_near_miss() {
    let h = start(named_settings()).await;
    h.cluster.create("typo", by_name("legacyac"));
    h.cluster.create("unknown", by_name("nosuchregistry"));
    h.settle("typo").await;
    h.settle("unknown").await;

    let typo = stalled_message(&h, "typo", reasons::REGISTRY_NAME_NOT_FOUND);
    assert!(typo.contains(SUB), "{typo}");
    assert!(typo.contains("legacyac"), "{typo}");
    assert!(typo.contains("did you mean legacyacr?"), "{typo}");
    let unknown = stalled_message(&h, "unknown", reasons::REGISTRY_NAME_NOT_FOUND);
    assert!(unknown.contains(SUB), "{unknown}");
    assert!(unknown.contains("nosuchregistry"), "{unknown}");
    assert!(!unknown.contains("did you mean"), "{unknown}");

    assert_eq!(puts(&h), 0, "nothing written");
    assert!(h.arm.role_assignments().is_empty());
    assert_eq!(lists(&h), 1, "both looked in the same (cached) list");
    assert!(!h.cluster.get("typo").unwrap().has_finalizer());

    // Fixing the name attaches.
    h.cluster.update_spec("typo", |spec| {
        spec.registry = RegistryReference::by_name("legacyacr")
    });
    h.settle("typo").await;
    assert_ready(&h, "typo");
    assert_eq!(h.assignments_for(KUBELET).len(), 1);
}

#[tokio::test]
async fn a_subscription_that_does_not_exist_is_reported_as_the_thing_to_fix() {
    let h = start(named_settings()).await;
    let mut elsewhere = by_name("legacyacr");
    elsewhere.registry.subscription_id = Some(OTHER_SUB.to_string());
    h.cluster.create("elsewhere", elsewhere);
    h.settle("elsewhere").await;
    let message = stalled_message(&h, "elsewhere", reasons::REGISTRY_NAME_NOT_FOUND);
    assert!(message.contains(OTHER_SUB), "{message}");
    assert!(
        message.contains("spec.registry.subscriptionId"),
        "{message}"
    );
    assert_eq!(puts(&h), 0);
}

#[tokio::test]
async fn the_same_name_in_two_resource_groups_is_ambiguous_until_the_group_is_given() {
    let h = start(named_settings()).await;
    let twin = registry_in("images-dr", "legacyacr");
    h.arm
        .add_registry(RegistryConfig::new(twin.clone(), RegistryMode::Legacy));
    h.cluster.create("twins", by_name("legacyacr"));
    h.settle("twins").await;

    let message = stalled_message(&h, "twins", reasons::REGISTRY_NAME_AMBIGUOUS);
    assert!(message.contains(&registry("legacyacr")), "{message}");
    assert!(message.contains(&twin), "{message}");
    assert!(message.contains("spec.registry.resourceGroup"), "{message}");
    assert_eq!(puts(&h), 0, "nothing written while it is unclear which");
    assert!(h.arm.role_assignments().is_empty());

    h.cluster.update_spec("twins", |spec| {
        spec.registry.resource_group = Some("images-dr".to_string())
    });
    h.settle("twins").await;
    assert_ready(&h, "twins");
    assert_eq!(reported_registry(&h, "twins"), twin);
    let assignments = h.assignments_for(KUBELET);
    assert_eq!(assignments.len(), 1);
    assert!(
        assignments[0].scope.eq_ignore_ascii_case(&twin),
        "{assignments:?}"
    );
    assert_eq!(
        lists(&h),
        2,
        "one subscription list, one resource-group list"
    );
}

#[tokio::test]
async fn the_registry_list_is_read_once_per_window_per_scope() {
    let h = start(named_settings()).await;
    for (name, registry_name) in [
        ("a1", "legacyacr"),
        ("a2", "LEGACYACR"),
        ("a3", "abacacr"),
        ("a4", "abacacr"),
        ("a5", "otheracr"),
    ] {
        h.cluster.create(name, by_name(registry_name));
    }
    for name in h.cluster.names() {
        h.settle(&name).await;
    }
    for name in h.cluster.names() {
        assert_ready(&h, &name);
    }
    assert_eq!(h.arm.role_assignments().len(), 3);
    assert_eq!(lists(&h), 1, "{:?}", h.arm.counts().entries());

    h.pass_resync_window();
    for name in h.cluster.names() {
        h.reconcile(&name).await.unwrap();
    }
    assert_eq!(lists(&h), 2, "one more in the next window");
    for name in h.cluster.names() {
        assert_ready(&h, &name);
    }
    assert_eq!(puts(&h), 3, "nothing rewritten");

    // Inside the window: no list at all.
    for name in h.cluster.names() {
        h.reconcile(&name).await.unwrap();
    }
    assert_eq!(lists(&h), 2);

    // Another scope (a resource group) is a list of its own, read once per window too.
    for name in ["g1", "g2"] {
        let mut grouped = by_name("otheracr");
        grouped.registry.resource_group = Some("images".to_string());
        h.cluster.create(name, grouped);
        h.settle(name).await;
        assert_ready(&h, name);
    }
    assert_eq!(lists(&h), 3, "one resource-group list for both");
    assert_eq!(puts(&h), 3, "the same registry, the same grant");
}

#[tokio::test]
async fn a_subscription_outside_the_allow_list_is_refused_without_reading_the_list() {
    let mut settings = named_settings();
    settings.allow_list = AllowList::new(&[OTHER_SUB.to_string()], &[], &[]).unwrap();
    let h = start(settings).await;
    h.cluster.create("refused", by_name("legacyacr"));
    h.settle("refused").await;
    let message = stalled_message(&h, "refused", reasons::REGISTRY_NOT_ALLOWED);
    assert!(message.contains("--allowed-subscriptions"), "{message}");
    assert!(message.contains(SUB), "{message}");
    assert_eq!(h.arm.counts().total(), 0, "{:?}", h.arm.counts().entries());
    assert!(!h.cluster.get("refused").unwrap().has_finalizer());
}

#[tokio::test]
async fn a_found_registry_outside_the_allowed_registries_is_refused_after_one_list() {
    let mut settings = named_settings();
    settings.allow_list = AllowList::new(&[SUB.to_string()], &[], &[registry("otheracr")]).unwrap();
    let h = start(settings).await;
    h.cluster.create("refused", by_name("legacyacr"));
    h.cluster.create("allowed", by_name("otheracr"));
    h.settle("refused").await;
    h.settle("allowed").await;

    let message = stalled_message(&h, "refused", reasons::REGISTRY_NOT_ALLOWED);
    assert!(message.contains("--allowed-registries"), "{message}");
    assert!(message.contains("legacyacr"), "{message}");
    assert_eq!(lists(&h), 1, "{:?}", h.arm.counts().entries());
    assert!(
        !h.cluster.get("refused").unwrap().has_finalizer(),
        "refused before anything could be written"
    );

    assert_ready(&h, "allowed");
    let assignments = h.assignments_for(KUBELET);
    assert_eq!(assignments.len(), 1, "only on the allowed registry");
    assert!(
        assignments[0]
            .scope
            .eq_ignore_ascii_case(&registry("otheracr"))
    );
    assert_eq!(puts(&h), 1);
}

#[tokio::test]
async fn deleting_a_by_name_attachment_removes_the_assignment_it_created() {
    let mut h = start(named_settings()).await;
    h.cluster.create("named", by_name("legacyacr"));
    h.settle("named").await;
    assert_eq!(h.assignments_for(KUBELET).len(), 1);

    // A fresh process: detach does not need the name looked up again.
    h.restart_operator();
    h.arm.reset_counts();
    h.cluster.delete("named");
    h.settle("named").await;
    assert!(h.cluster.get("named").is_none(), "finalizer released");
    assert!(h.assignments_for(KUBELET).is_empty());
    assert_eq!(h.arm.counts().get(Operation::DeleteRoleAssignment), 1);
    assert_eq!(lists(&h), 0, "{:?}", h.arm.counts().entries());
    let events = h.cluster.events.lock().unwrap().clone();
    assert!(
        events.iter().any(|(_, e)| e.reason == reasons::DETACHED),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_name_that_comes_to_mean_another_registry_moves_the_grant_at_the_next_window() {
    let h = start(named_settings()).await;
    h.cluster.create("named", by_name("legacyacr"));
    h.settle("named").await;
    assert_ready(&h, "named");
    let old = registry("legacyacr");
    assert_eq!(h.assignments_for(KUBELET).len(), 1);
    assert!(
        h.status("named")
            .owned_assignments
            .iter()
            .any(|record| record.registry_id.eq_ignore_ascii_case(&old)),
        "{:?}",
        h.status("named").owned_assignments
    );

    // The registry is deleted and created again, under the same name, in another group.
    assert!(h.arm.remove_registry(&old));
    let new = registry_in("images-new", "legacyacr");
    h.arm
        .add_registry(RegistryConfig::new(new.clone(), RegistryMode::Legacy));
    h.arm.clear_request_log();

    h.pass_resync_window();
    h.settle("named").await;

    assert_ready(&h, "named");
    assert_eq!(reported_registry(&h, "named"), new);
    let on_new: Vec<_> = h
        .assignments_for(KUBELET)
        .into_iter()
        .filter(|a| a.scope.eq_ignore_ascii_case(&new))
        .collect();
    assert_eq!(on_new.len(), 1, "{:?}", h.assignments_for(KUBELET));
    assert!(h.arm.may_read_repository(&new, KUBELET, "app"));
    let status = h.status("named");
    assert!(
        status
            .owned_assignments
            .iter()
            .all(|record| record.registry_id.eq_ignore_ascii_case(&new)),
        "the old registry's record is forgotten: {:?}",
        status.owned_assignments
    );
    assert!(
        status.assignment.as_ref().is_some_and(|a| a
            .id
            .to_ascii_lowercase()
            .starts_with(&new.to_ascii_lowercase())),
        "{:?}",
        status.assignment
    );
    let failed: Vec<_> = h
        .arm
        .request_log()
        .into_iter()
        .filter(|r| r.method != "GET" && r.status >= 400)
        .collect();
    assert!(failed.is_empty(), "no failed write: {failed:?}");

    // And a later window stays quiet and Ready.
    h.pass_resync_window();
    h.settle("named").await;
    assert_ready(&h, "named");
    assert_eq!(h.condition("named", "Reconciling").status, "False");
}

#[tokio::test]
async fn an_unavailable_registry_list_is_retried_not_stalled() {
    let h = start(named_settings()).await;
    h.arm.fail_next(Operation::ListRegistries, 503, 1);
    h.cluster.create("named", by_name("legacyacr"));

    let next = h.reconcile("named").await.unwrap();
    let reconciling = h.condition("named", "Reconciling");
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", reasons::AZURE_UNAVAILABLE),
        "{}",
        reconciling.message
    );
    assert_eq!(h.condition("named", "Stalled").status, "False");
    assert_eq!(h.condition("named", "Ready").status, "False");
    let delay = requeue_after(&next).expect("retried");
    assert!(delay <= Duration::from_secs(30), "retried soon: {delay:?}");
    assert!(h.assignments_for(KUBELET).is_empty());

    // The shared failure is reused for a few seconds (at least 5 s), then the retry reaches ARM.
    h.clock.advance(delay.max(Duration::from_secs(6)));
    h.settle("named").await;
    assert_ready(&h, "named");
    assert_eq!(h.condition("named", "Reconciling").status, "False");
    assert_eq!(h.assignments_for(KUBELET).len(), 1);
    assert_eq!(lists(&h), 2, "the failed one and the retry");
}

#[tokio::test]
async fn a_ready_attachment_whose_list_cannot_be_re_read_stays_ready() {
    let h = start(named_settings()).await;
    h.cluster.create("named", by_name("legacyacr"));
    h.settle("named").await;
    assert_ready(&h, "named");
    h.arm.fail_next(Operation::ListRegistries, 503, 1);
    h.pass_resync_window();
    h.reconcile("named").await.unwrap();
    assert_eq!(h.condition("named", "Ready").status, "True");
    let reconciling = h.condition("named", "Reconciling");
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("False", reasons::VERIFICATION_DEFERRED),
        "{}",
        reconciling.message
    );
    assert_eq!(h.assignments_for(KUBELET).len(), 1, "the grant stands");
}

#[tokio::test]
async fn replacing_an_id_reference_by_a_name_never_cuts_the_grant() {
    // Migration: the by-name attachment is applied and the by-id one deleted together; the
    // operator handles the deletion first, before any registry list was read in this window.
    let h = start(named_settings()).await;
    h.cluster.create("old", spec(&registry("legacyacr")));
    h.settle("old").await;
    h.cluster.create("new", by_name("legacyacr"));
    h.cluster.delete("old");
    h.settle("old").await;
    assert!(h.cluster.get("old").is_none());
    assert_eq!(h.assignments_for(KUBELET).len(), 1, "new's spec needs it");
    assert_eq!(h.arm.counts().get(Operation::DeleteRoleAssignment), 0);
    h.settle("new").await;
    assert_ready(&h, "new");
    assert_eq!(puts(&h), 1, "no delete-and-recreate");
}

#[tokio::test]
async fn replacing_an_id_reference_by_a_name_keeps_the_grant_once_the_list_is_known() {
    // The same migration while the list of the subscription is fresh in this process (another
    // by-name attachment read it this window): the new attachment's claim resolves.
    let h = start(named_settings()).await;
    h.cluster.create("other", by_name("otheracr"));
    h.settle("other").await;
    h.cluster.create("old", spec(&registry("legacyacr")));
    h.settle("old").await;
    h.cluster.create("new", by_name("legacyacr"));
    h.cluster.delete("old");
    h.settle("old").await;
    assert!(h.cluster.get("old").is_none());
    let on_legacy = |h: &Harness| {
        h.assignments_for(KUBELET)
            .iter()
            .filter(|a| a.scope.eq_ignore_ascii_case(&registry("legacyacr")))
            .count()
    };
    assert_eq!(on_legacy(&h), 1, "new's spec needs it");
    assert_eq!(h.arm.counts().get(Operation::DeleteRoleAssignment), 0);
    h.settle("new").await;
    assert_ready(&h, "new");
    assert_eq!(on_legacy(&h), 1);
}

#[tokio::test]
async fn moving_an_id_reference_away_keeps_the_grant_a_by_name_sibling_needs() {
    let h = start(named_settings()).await;
    h.cluster.create("old", spec(&registry("legacyacr")));
    h.settle("old").await;
    h.cluster.create("new", by_name("legacyacr"));
    h.cluster.update_spec("old", |spec| {
        spec.registry = RegistryReference::by_id(registry("otheracr"))
    });
    h.settle("old").await;
    assert_ready(&h, "old");
    assert_eq!(h.arm.counts().get(Operation::DeleteRoleAssignment), 0);
    assert!(
        h.assignments_for(KUBELET)
            .iter()
            .any(|a| a.scope.eq_ignore_ascii_case(&registry("legacyacr"))),
        "new's spec needs the grant on legacyacr: {:?}",
        h.assignments_for(KUBELET)
    );
}

#[tokio::test]
async fn a_name_edited_to_one_that_does_not_exist_keeps_the_old_grant_until_deleted() {
    let h = start(named_settings()).await;
    h.cluster.create("named", by_name("legacyacr"));
    h.settle("named").await;
    h.cluster.update_spec("named", |spec| {
        spec.registry = RegistryReference::by_name("nosuchregistry")
    });
    h.settle("named").await;
    stalled_message(&h, "named", reasons::REGISTRY_NAME_NOT_FOUND);
    assert_eq!(h.status("named").observed_generation, Some(2));

    h.cluster.delete("named");
    h.settle("named").await;
    assert!(h.cluster.get("named").is_none());
    assert!(
        h.assignments_for(KUBELET).is_empty(),
        "the grant made for the old name does not leak"
    );
}
