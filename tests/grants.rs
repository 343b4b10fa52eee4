//! The set-based features through the production client against the ARM emulator: repository
//! scopes on ABAC registries, several principals (object ids, user-assigned identities, the
//! kubelet identity, groups), and catalog listing — each grant created, reported and removed on
//! its own. Pull rights are checked with the emulator's data-plane decision, not just by looking
//! at assignments.

mod common;

use acr_attach::crd::{PrincipalKind, PrincipalSpec, RoleChoice};
use acr_attach::decide::reasons;
use arm_emulator::{Operation, RegistryMode, UserAssignedIdentityConfig};
use common::*;

const CATALOG_LISTER: &str = "bfdb9389-c9a5-478a-bb2f-ba9ca092c3c7";

fn kubelet() -> acr_attach::controller::KubeletIdentity {
    acr_attach::controller::KubeletIdentity::ObjectId(
        acr_attach::model::PrincipalId::parse(KUBELET).unwrap(),
    )
}

fn object(id: &str) -> PrincipalSpec {
    PrincipalSpec {
        object_id: Some(id.to_string()),
        ..Default::default()
    }
}

fn the_kubelet() -> PrincipalSpec {
    PrincipalSpec {
        kubelet: Some(true),
        ..Default::default()
    }
}

fn can_pull(h: &Harness, principal: &str, repository: &str) -> bool {
    h.arm
        .may_read_repository(&registry("abacacr"), principal, repository)
}

#[tokio::test]
async fn repositories_scope_pull_and_an_edit_updates_the_same_assignment_in_place() {
    let h = Harness::start(tenant(), kubelet()).await;
    let mut scoped = spec(&registry("abacacr"));
    scoped.repositories = vec!["team-a/*".into(), "base/nginx".into()];
    h.cluster.create("team-a", scoped);
    h.settle("team-a").await;
    assert_eq!(h.condition("team-a", "Ready").status, "True");
    assert!(can_pull(&h, KUBELET, "team-a/api"));
    assert!(can_pull(&h, KUBELET, "base/nginx"));
    assert!(!can_pull(&h, KUBELET, "team-ab/api"), "a prefix ends in /");
    assert!(!can_pull(&h, KUBELET, "team-b/api"));
    let before = h.assignments_for(KUBELET);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].condition_version.as_deref(), Some("2.0"));
    let grants = h.status("team-a").grants;
    assert_eq!(grants[0].repositories, ["base/nginx", "team-a/*"]);

    h.cluster.update_spec("team-a", |spec| {
        spec.repositories = vec!["team-a/*".into(), "team-b/*".into()]
    });
    h.arm.clear_request_log();
    h.settle("team-a").await;
    let after = h.assignments_for(KUBELET);
    assert_eq!(after.len(), 1, "no second assignment");
    assert_eq!(after[0].name, before[0].name, "same name: updated in place");
    let put = h
        .arm
        .request_log()
        .into_iter()
        .find(|r| r.method == "PUT")
        .expect("a PUT");
    assert_eq!(put.status, 200, "an update, not a create");
    assert!(can_pull(&h, KUBELET, "team-b/api"));
    assert!(!can_pull(&h, KUBELET, "base/nginx"));

    // Back to the whole registry: a new unscoped grant first, then the scoped one goes.
    h.cluster
        .update_spec("team-a", |spec| spec.repositories.clear());
    h.settle("team-a").await;
    let whole = h.assignments_for(KUBELET);
    assert_eq!(whole.len(), 1, "{whole:?}");
    assert!(whole[0].condition.is_none());
    assert!(can_pull(&h, KUBELET, "anything/at-all"));
}

#[tokio::test]
async fn repositories_on_a_classic_registry_are_refused_and_a_mode_flip_is_reported_not_widened() {
    let h = Harness::start(tenant(), kubelet()).await;
    let mut scoped = spec(&registry("legacyacr"));
    scoped.repositories = vec!["team-a/*".into()];
    h.cluster.create("legacy", scoped);
    h.settle("legacy").await;
    let stalled = h.condition("legacy", "Stalled");
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", reasons::REPOSITORIES_NEED_ABAC)
    );
    assert!(h.assignments_for(KUBELET).is_empty(), "nothing written");

    let mut scoped = spec(&registry("abacacr"));
    scoped.repositories = vec!["team-a/*".into()];
    h.cluster.create("abac", scoped);
    h.settle("abac").await;
    assert!(can_pull(&h, KUBELET, "team-a/api"));
    h.arm
        .set_registry_mode(&registry("abacacr"), RegistryMode::Legacy);
    h.pass_resync_window();
    h.settle("abac").await;
    assert_eq!(
        h.condition("abac", "Stalled").reason,
        reasons::REPOSITORIES_NEED_ABAC
    );
    assert!(
        h.assignments_for(KUBELET)
            .iter()
            .all(|a| a.role_definition_id.ends_with(REPOSITORY_READER)),
        "no AcrPull for the whole registry was added"
    );
}

#[tokio::test]
async fn several_principals_each_get_their_own_grant_added_and_removed_independently() {
    let h = Harness::start(tenant(), kubelet()).await;
    let pool = h
        .arm
        .add_user_assigned_identity(UserAssignedIdentityConfig::new(format!(
            "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pool-b",
            rg()
        )));
    let pool_principal = pool.principal_id.clone().unwrap();
    let mut several = spec(&registry("legacyacr"));
    several.principals = vec![
        the_kubelet(),
        object(KUBELET_2),
        PrincipalSpec {
            identity_resource_id: Some(pool.id.clone()),
            ..Default::default()
        },
    ];
    h.cluster.create("pools", several);
    h.settle("pools").await;
    let status = h.status("pools");
    assert_eq!(status.ready_grants.as_deref(), Some("3/3"));
    let sources: Vec<_> = status.grants.iter().map(|g| g.source.as_str()).collect();
    assert_eq!(sources, ["OperatorConfig", "Spec", "Identity"]);
    for principal in [KUBELET, KUBELET_2, pool_principal.as_str()] {
        assert_eq!(h.assignments_for(principal).len(), 1, "{principal}");
    }
    assert_eq!(h.arm.counts().get(Operation::GetUserAssignedIdentity), 1);

    h.cluster.update_spec("pools", |spec| {
        spec.principals.remove(1);
    });
    h.settle("pools").await;
    assert_eq!(h.status("pools").ready_grants.as_deref(), Some("2/2"));
    assert!(
        h.assignments_for(KUBELET_2).is_empty(),
        "removed principal's grant goes"
    );
    assert_eq!(h.assignments_for(KUBELET).len(), 1);
    assert_eq!(h.assignments_for(&pool_principal).len(), 1);
}

#[tokio::test]
async fn one_bad_principal_does_not_hold_back_the_others() {
    let h = Harness::start(tenant(), kubelet()).await;
    let mut several = spec(&registry("legacyacr"));
    several.principals = vec![
        the_kubelet(),
        PrincipalSpec {
            identity_resource_id: Some(format!(
                "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/missing",
                rg()
            )),
            ..Default::default()
        },
    ];
    h.cluster.create("pools", several);
    h.settle("pools").await;
    let status = h.status("pools");
    assert_eq!(status.ready_grants.as_deref(), Some("1/2"));
    let ready = h.condition("pools", "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, reasons::IDENTITY_NOT_FOUND);
    assert!(
        ready.message.starts_with("1/2 grants ready"),
        "{}",
        ready.message
    );
    assert_eq!(
        h.assignments_for(KUBELET).len(),
        1,
        "the kubelet can pull meanwhile"
    );
}

#[tokio::test]
async fn a_group_principal_is_assigned_as_a_group_and_ready_warns_about_propagation() {
    let h = Harness::start(tenant(), kubelet()).await;
    let group = "9a0b0000-1111-4222-8333-0000000000aa";
    h.arm.add_group(group, [KUBELET]);
    let mut grouped = spec(&registry("legacyacr"));
    grouped.principals = vec![PrincipalSpec {
        object_id: Some(group.into()),
        type_: PrincipalKind::Group,
        ..Default::default()
    }];
    h.cluster.create("grouped", grouped);
    h.settle("grouped").await;
    let ready = h.condition("grouped", "Ready");
    assert_eq!(ready.status, "True", "{}", ready.message);
    assert!(ready.message.contains("propagated"), "{}", ready.message);
    assert_eq!(h.assignments_for(group)[0].principal_type, "Group");
    assert!(
        h.arm
            .may_read_repository(&registry("legacyacr"), KUBELET, "app"),
        "the kubelet pulls through its group"
    );
}

#[tokio::test]
async fn catalog_listing_adds_and_removes_the_catalog_lister_on_abac_registries() {
    let h = Harness::start(tenant(), kubelet()).await;
    let mut listing = spec(&registry("abacacr"));
    listing.catalog_listing = true;
    listing.role = RoleChoice::Auto;
    h.cluster.create("nodes", listing);
    h.settle("nodes").await;
    assert_eq!(h.status("nodes").ready_grants.as_deref(), Some("2/2"));
    assert!(h.arm.may_list_catalog(&registry("abacacr"), KUBELET));
    let roles: Vec<_> = h
        .assignments_for(KUBELET)
        .iter()
        .map(|a| a.role_definition_id.rsplit('/').next().unwrap().to_string())
        .collect();
    assert!(roles.contains(&CATALOG_LISTER.to_string()), "{roles:?}");

    h.cluster
        .update_spec("nodes", |spec| spec.catalog_listing = false);
    h.settle("nodes").await;
    assert!(!h.arm.may_list_catalog(&registry("abacacr"), KUBELET));
    assert!(can_pull(&h, KUBELET, "app"), "pull stays");
    assert_eq!(h.status("nodes").ready_grants.as_deref(), Some("1/1"));

    h.cluster.delete("nodes");
    h.settle("nodes").await;
    assert!(h.assignments_for(KUBELET).is_empty());
}

#[tokio::test]
async fn a_multi_grant_attachment_costs_shared_reads_only_in_steady_state() {
    let h = Harness::start(tenant(), kubelet()).await;
    let pool = h
        .arm
        .add_user_assigned_identity(UserAssignedIdentityConfig::new(format!(
            "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/pool-c",
            rg()
        )));
    let mut everything = spec(&registry("abacacr"));
    everything.repositories = vec!["team-a/*".into()];
    everything.catalog_listing = true;
    everything.principals = vec![
        the_kubelet(),
        object(KUBELET_2),
        PrincipalSpec {
            identity_resource_id: Some(pool.id.clone()),
            ..Default::default()
        },
    ];
    h.cluster.create("everything", everything);
    h.cluster.create("whole", spec(&registry("abacacr")));
    h.settle("everything").await;
    h.settle("whole").await;
    assert_eq!(h.status("everything").ready_grants.as_deref(), Some("6/6"));
    h.arm.reset_counts();
    h.pass_resync_window();
    h.settle("everything").await;
    h.settle("whole").await;
    let counts = h.arm.counts();
    println!("one resync window, 2 attachments (7 grants) on one ABAC registry: {counts:?}");
    assert_eq!(counts.get(Operation::GetRegistry), 1, "shared per registry");
    assert_eq!(
        counts.get(Operation::ListRoleAssignments),
        1,
        "shared per registry"
    );
    assert_eq!(
        counts.get(Operation::GetUserAssignedIdentity),
        1,
        "once per window"
    );
    assert_eq!(counts.get(Operation::PutRoleAssignment), 0);
    assert_eq!(counts.get(Operation::DeleteRoleAssignment), 0);
    assert_eq!(counts.get(Operation::GetRoleAssignment), 0);
}
