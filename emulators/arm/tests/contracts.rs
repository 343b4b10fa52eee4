//! Contract tests: for each published Azure REST API example in `contracts/`, set up the same
//! state, send the same request, and require the same status and JSON shape (same keys
//! recursively, same value types, equal `type` values; ids, names and other values may differ).

mod common;

use arm_emulator::{
    ArmEmulator, PrincipalConfig, RegistryConfig, RegistryMode, RoleAssignmentConfig, TenantConfig,
};
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;

/// Fields real 2022-04-01 responses carry that the spec examples leave out.
const RA_EXTRAS: &[&str] = &[
    "condition",
    "conditionVersion",
    "createdOn",
    "updatedOn",
    "createdBy",
    "updatedBy",
    "delegatedManagedIdentityResourceId",
    "description",
];

fn fixture(name: &str) -> Value {
    let path = format!("{}/contracts/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of `expected` exists in `actual` with a value of the same type, recursively; keys
/// only in `actual` must be listed in `extras`. `tags` is a free-form map.
fn assert_same_shape(path: &str, expected: &Value, actual: &Value, extras: &[&str]) {
    assert_eq!(
        type_name(expected),
        type_name(actual),
        "type mismatch at {path}: expected {expected}, got {actual}"
    );
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            if path.ends_with(".tags") {
                return;
            }
            for (k, ev) in e {
                let av = a
                    .get(k)
                    .unwrap_or_else(|| panic!("missing key {path}.{k} in {actual}"));
                if k == "type" {
                    assert_eq!(ev, av, "`type` differs at {path}");
                }
                assert_same_shape(&format!("{path}.{k}"), ev, av, extras);
            }
            for k in a.keys() {
                assert!(
                    e.contains_key(k) || extras.contains(&k.as_str()),
                    "unexpected key {path}.{k}"
                );
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let Some(first) = e.first() {
                assert!(
                    !a.is_empty(),
                    "empty array at {path}, expected items like {first}"
                );
                for (i, item) in a.iter().enumerate() {
                    assert_same_shape(&format!("{path}[{i}]"), first, item, extras);
                }
            }
        }
        _ => {}
    }
}

fn response(fx: &Value, status: &str) -> Value {
    fx["responses"][status]["body"].clone()
}

fn registry_config(fx: &Value, mode: RegistryMode) -> TenantConfig {
    let p = &fx["parameters"];
    let id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerRegistry/registries/{}",
        p["subscriptionId"].as_str().unwrap_or_default(),
        p["resourceGroupName"].as_str().unwrap_or_default(),
        p["registryName"].as_str().unwrap_or_default(),
    );
    let body = &fx["responses"]["200"]["body"];
    let tags: BTreeMap<String, String> =
        serde_json::from_value(body["tags"].clone()).unwrap_or_default();
    TenantConfig {
        registries: vec![RegistryConfig {
            location: body["location"].as_str().unwrap_or("westus").to_string(),
            tags,
            login_server: body["properties"]["loginServer"]
                .as_str()
                .map(str::to_string),
            ..RegistryConfig::new(id, mode)
        }],
        ..TenantConfig::default()
    }
}

async fn check_registry_get(file: &str, mode: RegistryMode, extras: &[&str]) {
    let fx = fixture(file);
    let api = start(registry_config(&fx, mode)).await;
    let p = &fx["parameters"];
    let path = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerRegistry/registries/{}?api-version={}",
        p["subscriptionId"].as_str().unwrap_or_default(),
        p["resourceGroupName"].as_str().unwrap_or_default(),
        p["registryName"].as_str().unwrap_or_default(),
        p["api-version"].as_str().unwrap_or_default(),
    );
    let r = api.get(&path).await;
    assert_eq!(r.status, 200, "{file}: {}", r.body);
    let expected = response(&fx, "200");
    assert_same_shape(file, &expected, &r.body, extras);
    assert_eq!(
        r.body["properties"]["roleAssignmentMode"],
        expected["properties"]["roleAssignmentMode"]
    );
    assert_eq!(r.body["id"], expected["id"]);
}

#[tokio::test]
async fn registry_get_2025_11_01() {
    check_registry_get("acr_2025-11-01_RegistryGet.json", RegistryMode::Legacy, &[]).await;
}

#[tokio::test]
async fn registry_get_2025_05_01_preview() {
    check_registry_get(
        "acr_2025-05-01-preview_RegistryGet.json",
        RegistryMode::Legacy,
        &[],
    )
    .await;
}

#[tokio::test]
async fn registry_get_abac_2025_11_01() {
    // The ABAC example is a PUT; its 200 body is what a later GET returns, except that the
    // published GET example of the same version also has this policy (the emulator follows GET).
    check_registry_get(
        "acr_2025-11-01_RegistryCreateAbac.json",
        RegistryMode::Abac,
        &["azureADAuthenticationAsArmPolicy"],
    )
    .await;
}

#[tokio::test]
async fn registry_get_abac_2025_05_01_preview() {
    check_registry_get(
        "acr_2025-05-01-preview_RegistryCreateAbac.json",
        RegistryMode::Abac,
        &[],
    )
    .await;
}

#[tokio::test]
async fn managed_cluster_get_2025_07_01() {
    let fx = fixture("aks_2025-07-01_ManagedClustersGet.json");
    let p = &fx["parameters"];
    let id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerService/managedClusters/{}",
        p["subscriptionId"].as_str().unwrap_or_default(),
        p["resourceGroupName"].as_str().unwrap_or_default(),
        p["resourceName"].as_str().unwrap_or_default(),
    );
    let cfg = TenantConfig {
        clusters: vec![arm_emulator::ClusterConfig {
            kubelet_identity: Some(arm_emulator::KubeletIdentity::generated(&id)),
            ..arm_emulator::ClusterConfig::new(id.clone())
        }],
        ..TenantConfig::default()
    };
    let api = start(cfg).await;
    let r = api.get(&format!("{id}?api-version=2025-07-01")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The published example is a service-principal cluster; the emulator models MSI clusters,
    // which add `identity` and `identityProfile` (shape per azure-facts.md section 5).
    assert_same_shape(
        "cluster",
        &response(&fx, "200"),
        &r.body,
        &["identity", "identityProfile"],
    );
    assert_eq!(r.body["id"], response(&fx, "200")["id"]);
}

/// State for the role-assignment examples: their principal, role and scopes exist.
fn ra_config(extra_resources: &[&str]) -> TenantConfig {
    TenantConfig {
        subscriptions: vec!["a925f2f7-5c63-4b7b-8799-25a5f97bc3b2".to_string()],
        resources: extra_resources.iter().map(|s| s.to_string()).collect(),
        role_definitions: vec!["0b5fe924-9a61-425c-96af-cfe6e287ca2d".to_string()],
        principals: vec![PrincipalConfig {
            object_id: "ce2ce14e-85d7-4629-bdbc-454d0519d987".to_string(),
            principal_type: "User".to_string(),
            ..PrincipalConfig::default()
        }],
        ..TenantConfig::default()
    }
}

fn seed(emu: &ArmEmulator, scope: &str, name: &str) {
    emu.insert_role_assignment_with(RoleAssignmentConfig {
        scope: scope.to_string(),
        name: name.to_string(),
        role_definition: "0b5fe924-9a61-425c-96af-cfe6e287ca2d".to_string(),
        principal_id: "ce2ce14e-85d7-4629-bdbc-454d0519d987".to_string(),
        principal_type: Some("User".to_string()),
        ..RoleAssignmentConfig::default()
    });
}

fn ra_path(fx: &Value) -> String {
    let p = &fx["parameters"];
    match p.get("roleAssignmentId").and_then(Value::as_str) {
        Some(id) => format!(
            "/{id}?api-version={}",
            p["api-version"].as_str().unwrap_or_default()
        ),
        None => format!(
            "/{}/providers/Microsoft.Authorization/roleAssignments/{}?api-version={}",
            p["scope"].as_str().unwrap_or_default(),
            p["roleAssignmentName"].as_str().unwrap_or_default(),
            p["api-version"].as_str().unwrap_or_default(),
        ),
    }
}

async fn check_create(file: &str, extra_resources: &[&str]) {
    let fx = fixture(file);
    let api = start(ra_config(extra_resources)).await;
    let path = ra_path(&fx);
    let body = fx["parameters"]["parameters"].clone();
    let first = api.put(&path, body.clone()).await;
    assert_eq!(first.status, 201, "{file}: {}", first.body);
    assert_same_shape(file, &response(&fx, "201"), &first.body, RA_EXTRAS);
    assert_eq!(first.body["id"], response(&fx, "201")["id"]);
    let second = api.put(&path, body).await;
    assert_eq!(second.status, 200, "{file}: {}", second.body);
    assert_same_shape(file, &response(&fx, "200"), &second.body, RA_EXTRAS);
}

#[tokio::test]
async fn role_assignment_create_for_resource() {
    check_create(
        "roleassignments_2022-04-01_CreateForResource.json",
        &["/subscriptions/a925f2f7-5c63-4b7b-8799-25a5f97bc3b2/resourceGroups/testrg/providers/Microsoft.DocumentDb/databaseAccounts/test-db-account"],
    )
    .await;
}

#[tokio::test]
async fn role_assignment_create_by_id() {
    check_create("roleassignments_2022-04-01_CreateById.json", &[]).await;
}

#[tokio::test]
async fn role_assignment_get() {
    let fx = fixture("roleassignments_2022-04-01_Get.json");
    let api = start(ra_config(&[])).await;
    let p = &fx["parameters"];
    seed(
        &api.emu,
        p["scope"].as_str().unwrap_or_default(),
        p["roleAssignmentName"].as_str().unwrap_or_default(),
    );
    let r = api.get(&ra_path(&fx)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_same_shape("get", &response(&fx, "200"), &r.body, RA_EXTRAS);
    assert_eq!(r.body["id"], response(&fx, "200")["id"]);
}

#[tokio::test]
async fn role_assignment_get_with_condition_2020_04_01_preview() {
    // Placeholder values in the example (scope "scope", conditionVersion "1.0"): only the shape
    // of a conditioned assignment is compared.
    let fx = fixture("roleassignments_2020-04-01-preview_GetByName_withCondition.json");
    let api = start(ra_config(&[])).await;
    let scope = "/subscriptions/a925f2f7-5c63-4b7b-8799-25a5f97bc3b2/resourcegroups/rgname";
    let name = guid();
    api.emu.insert_role_assignment_with(RoleAssignmentConfig {
        scope: scope.to_string(),
        name: name.clone(),
        role_definition: "0b5fe924-9a61-425c-96af-cfe6e287ca2d".to_string(),
        principal_id: "ce2ce14e-85d7-4629-bdbc-454d0519d987".to_string(),
        principal_type: Some("User".to_string()),
        description: Some("Grants UserFoo role assignment bar in scope baz".to_string()),
        condition: Some(
            fx["responses"]["200"]["body"]["properties"]["condition"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
    });
    let r = api
        .get(&format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version=2020-04-01-preview"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_same_shape("withCondition", &response(&fx, "200"), &r.body, RA_EXTRAS);
    assert_eq!(r.body["properties"]["conditionVersion"], "2.0");
}

#[tokio::test]
async fn role_assignment_delete_then_absent() {
    let fx = fixture("roleassignments_2022-04-01_Delete.json");
    let api = start(ra_config(&[])).await;
    let p = &fx["parameters"];
    seed(
        &api.emu,
        p["scope"].as_str().unwrap_or_default(),
        p["roleAssignmentName"].as_str().unwrap_or_default(),
    );
    let path = ra_path(&fx);
    let r = api.delete(&path).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_same_shape("delete", &response(&fx, "200"), &r.body, RA_EXTRAS);
    let r = api.delete(&path).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.body, Value::Null);
    assert!(
        fx["responses"]["204"]
            .as_object()
            .is_some_and(|o| o.is_empty())
    );
}

#[tokio::test]
async fn role_assignment_list_for_scope() {
    let fx = fixture("roleassignments_2022-04-01_ListForScope.json");
    let api = start(ra_config(&[])).await;
    let expected = response(&fx, "200");
    for item in expected["value"].as_array().cloned().unwrap_or_default() {
        seed(
            &api.emu,
            item["properties"]["scope"].as_str().unwrap_or_default(),
            item["name"].as_str().unwrap_or_default(),
        );
    }
    let r = api
        .get(&format!(
            "/{}/providers/Microsoft.Authorization/roleAssignments?api-version={}",
            fx["parameters"]["scope"].as_str().unwrap_or_default(),
            fx["parameters"]["api-version"].as_str().unwrap_or_default()
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_same_shape("listForScope", &expected, &r.body, RA_EXTRAS);
    assert_eq!(
        r.body["value"].as_array().map(Vec::len),
        expected["value"].as_array().map(Vec::len)
    );
}

#[tokio::test]
async fn role_assignment_list_for_resource_group_includes_inherited() {
    let fx = fixture("roleassignments_2022-04-01_ListForResourceGroup.json");
    let mut cfg = ra_config(&[]);
    cfg.resource_groups = vec![
        "/subscriptions/a925f2f7-5c63-4b7b-8799-25a5f97bc3b2/resourceGroups/testrg".to_string(),
    ];
    let api = start(cfg).await;
    let expected = response(&fx, "200");
    for item in expected["value"].as_array().cloned().unwrap_or_default() {
        seed(
            &api.emu,
            item["properties"]["scope"].as_str().unwrap_or_default(),
            item["name"].as_str().unwrap_or_default(),
        );
    }
    let p = &fx["parameters"];
    let r = api
        .get(&format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Authorization/roleAssignments?api-version={}",
            p["subscriptionId"].as_str().unwrap_or_default(),
            p["resourceGroupName"].as_str().unwrap_or_default(),
            p["api-version"].as_str().unwrap_or_default()
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_same_shape("listForResourceGroup", &expected, &r.body, RA_EXTRAS);
    let ids: Vec<&Value> = r.body["value"]
        .as_array()
        .map(|v| v.iter().map(|i| &i["id"]).collect())
        .unwrap_or_default();
    let want: Vec<&Value> = expected["value"]
        .as_array()
        .map(|v| v.iter().map(|i| &i["id"]).collect())
        .unwrap_or_default();
    assert_eq!(ids, want);
}

/// Permissions examples: the caller (the operator) holds Reader on the example's resource group;
/// the `value` entries must have the example's shape. `nextLink` appears only when there is
/// another page, and the emulator answers in one page, so it is not compared.
async fn check_permissions(file: &str, resource_scope: bool, extras: &[&str]) {
    let fx = fixture(file);
    let p = &fx["parameters"];
    let sub = p["subscriptionId"].as_str().unwrap_or_default();
    let rg = format!(
        "/subscriptions/{sub}/resourcegroups/{}",
        p["resourceGroupName"].as_str().unwrap_or_default()
    );
    // The ListForResource example's placeholder path (`rpnamespace/parentResourcePath/...`) is
    // not a valid resource id, so a registry in the same group stands in for the resource.
    let registry = format!("{rg}/providers/Microsoft.ContainerRegistry/registries/contractacr");
    let cfg = TenantConfig {
        subscriptions: vec![sub.to_string()],
        resource_groups: vec![rg.clone()],
        registries: vec![RegistryConfig::new(registry.clone(), RegistryMode::Legacy)],
        authorization: arm_emulator::AuthorizationMode::Rbac,
        role_assignments: vec![RoleAssignmentConfig {
            scope: rg.clone(),
            role_definition: arm_emulator::READER.to_string(),
            principal_id: arm_emulator::DEFAULT_OPERATOR_OBJECT_ID.to_string(),
            ..RoleAssignmentConfig::default()
        }],
        ..TenantConfig::default()
    };
    let api = start(cfg).await;
    let scope = if resource_scope { registry } else { rg };
    let r = api
        .get(&format!(
            "{scope}/providers/Microsoft.Authorization/permissions?api-version={}",
            p["api-version"].as_str().unwrap_or_default()
        ))
        .await;
    assert_eq!(r.status, 200, "{file}: {}", r.body);
    assert_same_shape(
        file,
        &response(&fx, "200")["value"],
        &r.body["value"],
        extras,
    );
    assert_eq!(r.body["value"][0]["actions"], serde_json::json!(["*/read"]));
}

#[tokio::test]
async fn permissions_for_resource_group_2015_07_01() {
    check_permissions("permissions_2015-07-01_GetPermissions.json", false, &[]).await;
}

#[tokio::test]
async fn permissions_for_resource_2015_07_01() {
    check_permissions(
        "permissions_2015-07-01_GetResourcePermissions.json",
        true,
        &[],
    )
    .await;
}

#[tokio::test]
async fn permissions_for_resource_group_2022_05_01_preview() {
    check_permissions(
        "permissions_2022-05-01-preview_GetPermissions.json",
        false,
        &[],
    )
    .await;
}

#[tokio::test]
async fn permissions_for_resource_2022_05_01_preview() {
    // This example omits the data-action arrays its sibling (GetPermissions) of the same
    // version shows; the emulator always sends them from 2018-07-01 on.
    check_permissions(
        "permissions_2022-05-01-preview_GetResourcePermissions.json",
        true,
        &["dataActions", "notDataActions"],
    )
    .await;
}

/// Registries_List examples: the example's one registry exists; the list has the example's shape,
/// its one item, and that item is exactly what GET of the registry returns.
async fn check_registry_list(file: &str, by_resource_group: bool) {
    let fx = fixture(file);
    let expected = response(&fx, "200");
    let item = &expected["value"][0];
    let id = item["id"].as_str().unwrap_or_default().to_string();
    let tags: BTreeMap<String, String> =
        serde_json::from_value(item["tags"].clone()).unwrap_or_default();
    let cfg = TenantConfig {
        registries: vec![RegistryConfig {
            location: item["location"].as_str().unwrap_or("westus").to_string(),
            tags,
            login_server: item["properties"]["loginServer"]
                .as_str()
                .map(str::to_string),
            ..RegistryConfig::new(id.clone(), RegistryMode::Legacy)
        }],
        ..TenantConfig::default()
    };
    let api = start(cfg).await;
    let p = &fx["parameters"];
    let sub = p["subscriptionId"].as_str().unwrap_or_default();
    let version = p["api-version"].as_str().unwrap_or_default();
    let path = if by_resource_group {
        format!(
            "/subscriptions/{sub}/resourceGroups/{}/providers/Microsoft.ContainerRegistry/registries?api-version={version}",
            p["resourceGroupName"].as_str().unwrap_or_default()
        )
    } else {
        format!(
            "/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/registries?api-version={version}"
        )
    };
    let r = api.get(&path).await;
    assert_eq!(r.status, 200, "{file}: {}", r.body);
    assert_same_shape(file, &expected, &r.body, &[]);
    assert_eq!(r.body["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.body["value"][0]["id"], item["id"]);
    assert_eq!(
        r.body["value"][0]["properties"]["roleAssignmentMode"],
        item["properties"]["roleAssignmentMode"]
    );
    assert_eq!(
        r.body["value"][0]["properties"]["loginServer"],
        item["properties"]["loginServer"]
    );
    let get = api.get(&format!("{id}?api-version={version}")).await;
    assert_eq!(get.status, 200, "{}", get.body);
    assert_eq!(r.body["value"][0], get.body, "list items are GET bodies");
}

#[tokio::test]
async fn registry_list_2025_11_01() {
    check_registry_list("acr_2025-11-01_RegistryList.json", false).await;
}

#[tokio::test]
async fn registry_list_by_resource_group_2025_11_01() {
    check_registry_list("acr_2025-11-01_RegistryListByResourceGroup.json", true).await;
}

#[tokio::test]
async fn user_assigned_identity_get_2023_01_31() {
    // The example's request names `resourceName` but its body describes `identityName`; the
    // identity is configured as the body describes it and requested by that name.
    let fx = fixture("msi_2023-01-31_IdentityGet.json");
    let expected = response(&fx, "200");
    let props = &expected["properties"];
    let cfg = TenantConfig {
        tenant_id: props["tenantId"].as_str().unwrap_or_default().to_string(),
        user_assigned_identities: vec![arm_emulator::UserAssignedIdentityConfig {
            id: expected["id"]
                .as_str()
                .unwrap_or_default()
                .replace("/resourcegroups/", "/resourceGroups/"),
            principal_id: props["principalId"].as_str().map(str::to_string),
            client_id: props["clientId"].as_str().map(str::to_string),
            location: expected["location"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            tags: serde_json::from_value(expected["tags"].clone()).unwrap_or_default(),
        }],
        ..TenantConfig::default()
    };
    let api = start(cfg).await;
    let p = &fx["parameters"];
    let r = api
        .get(&format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}?api-version={}",
            p["subscriptionId"].as_str().unwrap_or_default(),
            p["resourceGroupName"].as_str().unwrap_or_default(),
            expected["name"].as_str().unwrap_or_default(),
            p["api-version"].as_str().unwrap_or_default(),
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_same_shape("identityGet", &expected, &r.body, &[]);
    assert_eq!(r.body, expected, "same state, same body");
}
