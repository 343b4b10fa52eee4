//! What role assignments written over HTTP grant on the data plane (`may_read_repository`,
//! `may_list_catalog`), role-assignment PUT details around conditions, and malformed LIST items.

mod common;

use arm_emulator::{
    ACR_PULL, ConditionStorage, FaultConfig, KubeletIdentity, ListCorruption, PrincipalConfig,
    REPOSITORY_CATALOG_LISTER, REPOSITORY_READER, RegistryConfig, RegistryMode, TenantConfig,
};
use common::*;
use serde_json::{Value, json};

const GROUP: &str = "0000aaaa-1111-4222-8333-0000000000f1";

fn kubelet() -> String {
    KubeletIdentity::generated(&cluster_id("aks-rg", "aks1")).object_id
}

fn legacy() -> String {
    registry_id("images", "legacyacr")
}

fn abac() -> String {
    registry_id("images", "abacacr")
}

fn tenant() -> TenantConfig {
    let cid = cluster_id("aks-rg", "aks1");
    TenantConfig {
        registries: vec![
            RegistryConfig::new(legacy(), RegistryMode::Legacy),
            RegistryConfig::new(abac(), RegistryMode::Abac),
        ],
        clusters: vec![arm_emulator::ClusterConfig {
            kubelet_identity: Some(KubeletIdentity::generated(&cid)),
            ..arm_emulator::ClusterConfig::new(cid)
        }],
        ..TenantConfig::default()
    }
}

/// The ACR article's prefix condition, as the operator would send it.
fn prefixes(ps: &[&str]) -> String {
    let inner = ps
        .iter()
        .map(|p| format!("@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringStartsWithIgnoreCase '{p}'"))
        .collect::<Vec<_>>()
        .join(" OR ");
    format!(
        "((!(ActionMatches{{'Microsoft.ContainerRegistry/registries/repositories/content/read'}}) AND !(ActionMatches{{'Microsoft.ContainerRegistry/registries/repositories/metadata/read'}})) OR ({inner}))"
    )
}

fn ra_path(scope: &str, name: &str) -> String {
    format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={RA_API}")
}

fn ra_body(role: &str, principal: &str, extra: Value) -> Value {
    let mut props = json!({
        "roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}"),
        "principalId": principal,
        "principalType": "ServicePrincipal",
    });
    if let (Some(p), Some(e)) = (props.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    json!({ "properties": props })
}

#[tokio::test]
async fn data_plane_follows_the_assignments_written_over_http() {
    let api = start(tenant()).await;
    let k = kubelet();
    assert!(!api.emu.may_read_repository(&legacy(), &k, "nginx"));
    assert!(!api.emu.may_read_repository(&abac(), &k, "team-a/app"));

    // AcrPull: the legacy registry only.
    let pull = guid();
    let r = api
        .put_ra(
            &rg_id("images"),
            &pull,
            ACR_PULL,
            &k,
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(api.emu.may_read_repository(&legacy(), &k, "nginx"));
    assert!(api.emu.may_list_catalog(&legacy(), &k));
    assert!(
        !api.emu.may_read_repository(&abac(), &k, "nginx"),
        "AcrPull is not honoured in ABAC mode"
    );

    // Repository Reader with a prefix condition on the ABAC registry.
    let reader = guid();
    let r = api
        .put(
            &ra_path(&abac(), &reader),
            ra_body(
                REPOSITORY_READER,
                &k,
                json!({"condition": prefixes(&["team-a/"]), "conditionVersion": "2.0"}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(api.emu.may_read_repository(&abac(), &k, "team-a/app"));
    assert!(api.emu.may_read_repository(&abac(), &k, "TEAM-A/app"));
    assert!(!api.emu.may_read_repository(&abac(), &k, "team-ab/app"));
    assert!(!api.emu.may_read_repository(&abac(), &k, "team-b/app"));
    assert!(
        !api.emu.may_list_catalog(&abac(), &k),
        "Repository Reader excludes the catalog"
    );

    // Widening the condition in place (same name) takes effect.
    let r = api
        .put(
            &ra_path(&abac(), &reader),
            ra_body(
                REPOSITORY_READER,
                &k,
                json!({"condition": prefixes(&["team-a/", "team-b/"])}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(api.emu.may_read_repository(&abac(), &k, "team-b/app"));

    // The catalog needs its own role, unconditioned.
    let lister = guid();
    let r = api
        .put_ra(
            &abac(),
            &lister,
            REPOSITORY_CATALOG_LISTER,
            &k,
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(api.emu.may_list_catalog(&abac(), &k));

    // Flipping the registry mode flips what counts.
    assert!(api.emu.set_registry_mode(&abac(), RegistryMode::Legacy));
    assert!(
        api.emu.may_read_repository(&abac(), &k, "anything"),
        "AcrPull on the resource group now counts"
    );
    assert!(api.emu.set_registry_mode(&abac(), RegistryMode::Abac));

    // Deleting takes the grant away.
    assert_eq!(api.delete(&ra_path(&abac(), &reader)).await.status, 200);
    assert!(!api.emu.may_read_repository(&abac(), &k, "team-a/app"));
    assert_eq!(
        api.delete(&ra_path(&rg_id("images"), &pull)).await.status,
        200
    );
    assert!(!api.emu.may_read_repository(&legacy(), &k, "nginx"));
    assert!(
        !api.emu
            .may_read_repository(&registry_id("images", "missing"), &k, "nginx")
    );
}

#[tokio::test]
async fn group_assignments_grant_their_members() {
    let mut cfg = tenant();
    cfg.principals = vec![PrincipalConfig {
        object_id: GROUP.to_string(),
        principal_type: "Group".to_string(),
        members: vec![kubelet()],
        ..PrincipalConfig::default()
    }];
    let api = start(cfg).await;
    let k = kubelet();
    let r = api.put_ra(&legacy(), &guid(), ACR_PULL, GROUP, None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["properties"]["principalType"], "Group");
    assert!(api.emu.may_read_repository(&legacy(), &k, "x"));
    let outsider = "0000aaaa-1111-4222-8333-0000000000f2";
    assert!(!api.emu.may_read_repository(&legacy(), outsider, "x"));
    // A group made through the handle, nested in the configured one.
    let team = "0000aaaa-1111-4222-8333-0000000000f3";
    api.emu.add_group(team, [outsider]);
    api.emu.add_group(GROUP, [k.as_str(), team]);
    assert!(api.emu.may_read_repository(&legacy(), outsider, "x"));
    api.emu.add_group(GROUP, Vec::<String>::new());
    assert!(!api.emu.may_read_repository(&legacy(), &k, "x"));
    assert!(!api.emu.may_read_repository(&legacy(), outsider, "x"));
}

#[tokio::test]
async fn catalog_lister_with_a_condition_is_refused() {
    let api = start(tenant()).await;
    let k = kubelet();
    let conditioned = ra_body(
        REPOSITORY_CATALOG_LISTER,
        &k,
        json!({"condition": prefixes(&["team-a/"]), "conditionVersion": "2.0"}),
    );
    let name = guid();
    let r = api.put(&ra_path(&abac(), &name), conditioned.clone()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.code(), "InvalidRoleAssignmentCondition");
    assert!(
        r.message()
            .contains("Container Registry Repository Catalog Lister"),
        "{}",
        r.message()
    );
    assert!(
        r.message().contains("does not support conditions"),
        "{}",
        r.message()
    );
    assert!(api.emu.role_assignments().is_empty());

    // Without the condition it works; adding one later is refused too.
    let plain = ra_body(REPOSITORY_CATALOG_LISTER, &k, json!({}));
    assert_eq!(api.put(&ra_path(&abac(), &name), plain).await.status, 201);
    let r = api.put(&ra_path(&abac(), &name), conditioned.clone()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "InvalidRoleAssignmentCondition");
    assert_eq!(api.emu.role_assignments()[0].condition, None);
    // Other roles take conditions.
    let r = api
        .put(
            &ra_path(&abac(), &guid()),
            ra_body(
                REPOSITORY_READER,
                &k,
                json!({"condition": prefixes(&["team-a/"])}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    api.emu.set_faults(FaultConfig {
        catalog_lister_rejects_conditions: false,
        ..FaultConfig::default()
    });
    let r = api.put(&ra_path(&abac(), &name), conditioned).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["properties"]["condition"], prefixes(&["team-a/"]));
}

#[tokio::test]
async fn condition_version_defaults_or_is_required() {
    let api = start(tenant()).await;
    let k = kubelet();
    let body = ra_body(
        REPOSITORY_READER,
        &k,
        json!({"condition": prefixes(&["a/"])}),
    );
    let name = guid();
    let r = api.put(&ra_path(&abac(), &name), body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["properties"]["conditionVersion"], "2.0");
    let r = api.get(&ra_path(&abac(), &name)).await;
    assert_eq!(r.body["properties"]["conditionVersion"], "2.0");

    api.emu.set_faults(FaultConfig {
        condition_version_required: true,
        ..FaultConfig::default()
    });
    let other = guid();
    let r = api
        .put(
            &ra_path(&legacy(), &other),
            ra_body(
                REPOSITORY_READER,
                &k,
                json!({"condition": prefixes(&["a/"])}),
            ),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.code(), "InvalidConditionVersion");
    let r = api
        .put(
            &ra_path(&legacy(), &other),
            ra_body(
                REPOSITORY_READER,
                &k,
                json!({"condition": prefixes(&["a/"]), "conditionVersion": "2.0"}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // No condition: no version needed.
    let r = api
        .put_ra(&legacy(), &guid(), ACR_PULL, &k, Some("ServicePrincipal"))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["properties"]["conditionVersion"], Value::Null);
}

#[tokio::test]
async fn condition_storage_as_sent_or_collapsed() {
    let api = start(tenant()).await;
    let k = kubelet();
    // The article's multi-line layout.
    let sent = "(\n (\n  !(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'})\n  AND\n  !(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/metadata/read'})\n )\n OR \n (\n  @Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEqualsIgnoreCase 'nginx'\n )\n)";
    let body = ra_body(REPOSITORY_READER, &k, json!({"condition": sent}));
    let name = guid();
    let r = api.put(&ra_path(&abac(), &name), body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["properties"]["condition"], sent);
    assert_eq!(
        api.get(&ra_path(&abac(), &name)).await.body["properties"]["condition"],
        sent
    );
    assert!(api.emu.may_read_repository(&abac(), &k, "nginx"));
    assert!(!api.emu.may_read_repository(&abac(), &k, "redis"));

    api.emu.set_faults(FaultConfig {
        condition_storage: ConditionStorage::CollapseWhitespace,
        ..FaultConfig::default()
    });
    let collapsed = "( ( !(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'}) AND !(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/metadata/read'}) ) OR ( @Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEqualsIgnoreCase 'nginx' ) )";
    let r = api.put(&ra_path(&abac(), &name), body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["properties"]["condition"], collapsed);
    let listed = api
        .get(&format!("{}/providers/Microsoft.Authorization/roleAssignments?api-version={RA_API}&$filter=atScope()", abac()))
        .await;
    assert_eq!(
        listed.body["value"][0]["properties"]["condition"],
        collapsed
    );
    assert!(api.emu.may_read_repository(&abac(), &k, "nginx"));
}

#[tokio::test]
async fn put_of_the_same_name_updates_condition_and_description_in_place() {
    let api = start(tenant()).await;
    let k = kubelet();
    let name = guid();
    let path = ra_path(&abac(), &name);
    let first = api
        .put(
            &path,
            ra_body(
                REPOSITORY_READER,
                &k,
                json!({"condition": prefixes(&["a/"]), "description": "one"}),
            ),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let other = api
        .put_ra(&abac(), &guid(), ACR_PULL, &k, Some("ServicePrincipal"))
        .await;
    assert_eq!(other.status, 201);

    let r = api
        .put(
            &path,
            ra_body(
                REPOSITORY_READER,
                &k,
                json!({"condition": prefixes(&["a/", "b/"]), "description": "one"}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["properties"]["condition"], prefixes(&["a/", "b/"]));
    let r = api
        .put(
            &path,
            ra_body(
                REPOSITORY_READER,
                &k,
                json!({"condition": prefixes(&["a/", "b/"]), "description": "two"}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["properties"]["description"], "two");

    let got = api.get(&path).await;
    assert_eq!(got.body["properties"]["condition"], prefixes(&["a/", "b/"]));
    assert_eq!(got.body["properties"]["description"], "two");
    assert_eq!(got.body["id"], first.body["id"]);
    assert_eq!(
        got.body["properties"]["createdOn"],
        first.body["properties"]["createdOn"]
    );
    let records = api.emu.role_assignments();
    assert_eq!(records.len(), 2, "updated, not duplicated");
    assert_eq!(records[0].name, name, "kept its position");
}

#[tokio::test]
async fn corrupt_list_items_leave_get_alone() {
    let mut cfg = tenant();
    cfg.faults.list_page_size = 2;
    let api = start(cfg).await;
    let k = kubelet();
    let names: Vec<String> = (0..3).map(|_| guid()).collect();
    for (i, n) in names.iter().enumerate() {
        let scope = match i {
            0 => legacy(),
            1 => abac(),
            _ => rg_id("images"),
        };
        let role = if i == 1 { REPOSITORY_READER } else { ACR_PULL };
        let r = api
            .put_ra(&scope, n, role, &k, Some("ServicePrincipal"))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let list = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments?api-version={RA_API}",
        rg_id("images")
    );
    let item = |items: &[Value], name: &str| {
        items
            .iter()
            .find(|i| i["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };

    api.emu.corrupt_in_list(&names[1].to_ascii_uppercase());
    let (items, pages) = api.list_all(&list).await;
    assert_eq!((items.len(), pages), (3, 2), "paging is unaffected");
    let bad = item(&items, &names[1]);
    assert!(bad["properties"]["principalId"].is_number(), "{bad}");
    assert_eq!(
        bad["id"],
        format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{}",
            abac(),
            names[1]
        )
    );
    for good in [&names[0], &names[2]] {
        assert_eq!(item(&items, good)["properties"]["principalId"], k.as_str());
    }
    let got = api.get(&ra_path(&abac(), &names[1])).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.body["properties"]["principalId"],
        k.as_str(),
        "GET stays well-formed"
    );

    api.emu
        .corrupt_in_list_as(&names[1], ListCorruption::PropertiesString);
    let r = api
        .get(&format!("{}/providers/Microsoft.Authorization/roleAssignments?api-version={RA_API}&$filter=atScope()", abac()))
        .await;
    assert_eq!(r.status, 200);
    let bad = item(
        r.body["value"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default(),
        &names[1],
    );
    assert!(bad["properties"].is_string(), "{bad}");

    api.emu.clear_corrupt_in_list();
    let (items, _) = api.list_all(&list).await;
    assert!(
        items
            .iter()
            .all(|i| i["properties"]["principalId"] == k.as_str())
    );
}
