//! Finding things: Registries_List (subscription and resource group, paging, RBAC trimming) and
//! `userAssignedIdentities` GET (principal lookup).

mod common;

use arm_emulator::{
    AuthorizationMode, DEFAULT_OPERATOR_OBJECT_ID, FaultConfig, Operation, READER, RegistryConfig,
    RegistryMode, RoleAssignmentConfig, TenantConfig, UserAssignedIdentityConfig,
};
use common::*;
use serde_json::Value;

const OTHER_SUB: &str = "00000000-0000-4000-8000-000000000002";

fn list_path(rg: Option<&str>, api_version: &str) -> String {
    match rg {
        Some(rg) => format!(
            "{}/providers/Microsoft.ContainerRegistry/registries?api-version={api_version}",
            rg_id(rg)
        ),
        None => format!(
            "/subscriptions/{SUB}/providers/Microsoft.ContainerRegistry/registries?api-version={api_version}"
        ),
    }
}

fn ids(body: &Value) -> Vec<String> {
    body["value"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `images`: a legacy and an ABAC registry; `other`: one more; plus one in another subscription.
fn registries() -> TenantConfig {
    TenantConfig {
        registries: vec![
            RegistryConfig::new(registry_id("images", "legacyacr"), RegistryMode::Legacy),
            RegistryConfig::new(registry_id("images", "abacacr"), RegistryMode::Abac),
            RegistryConfig::new(registry_id("other", "otheracr"), RegistryMode::Legacy),
            RegistryConfig::new(
                format!(
                    "/subscriptions/{OTHER_SUB}/resourceGroups/far/providers/Microsoft.ContainerRegistry/registries/faracr"
                ),
                RegistryMode::Legacy,
            ),
        ],
        ..TenantConfig::default()
    }
}

#[tokio::test]
async fn registry_list_by_subscription_and_resource_group() {
    let api = start(registries()).await;
    let r = api.get(&list_path(None, "2025-11-01")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        ids(&r.body),
        vec![
            registry_id("images", "legacyacr"),
            registry_id("images", "abacacr"),
            registry_id("other", "otheracr"),
        ],
        "this subscription's registries, in creation order"
    );
    assert!(r.body.get("nextLink").is_none(), "one page: no nextLink");
    for item in r.body["value"].as_array().cloned().unwrap_or_default() {
        let id = item["id"].as_str().unwrap_or_default();
        let get = api.get(&format!("{id}?api-version=2025-11-01")).await;
        assert_eq!(item, get.body, "a list item is the GET body");
    }
    assert_eq!(
        r.body["value"][1]["properties"]["roleAssignmentMode"],
        "AbacRepositoryPermissions"
    );
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-reads")
            .is_some()
    );

    // Older api-version: same registries, no roleAssignmentMode.
    let r = api.get(&list_path(None, "2025-04-01")).await;
    assert_eq!(r.status, 200);
    assert_eq!(ids(&r.body).len(), 3);
    assert!(r.body["value"].as_array().is_some_and(|items| {
        items
            .iter()
            .all(|i| i["properties"].get("roleAssignmentMode").is_none())
    }));

    let r = api.get(&list_path(Some("images"), "2025-11-01")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        ids(&r.body),
        vec![
            registry_id("images", "legacyacr"),
            registry_id("images", "abacacr")
        ]
    );
    // Case-insensitive path and an empty group.
    let r = api
        .get(&format!(
            "/SUBSCRIPTIONS/{SUB}/resourcegroups/IMAGES/providers/microsoft.containerregistry/REGISTRIES?api-version=2025-11-01"
        ))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(ids(&r.body).len(), 2);

    // Changes through the handle show up.
    api.emu.add_registry(RegistryConfig::new(
        registry_id("images", "newacr"),
        RegistryMode::Abac,
    ));
    assert!(api.emu.remove_registry(&registry_id("images", "legacyacr")));
    let r = api.get(&list_path(Some("images"), "2025-11-01")).await;
    assert_eq!(
        ids(&r.body),
        vec![
            registry_id("images", "abacacr"),
            registry_id("images", "newacr")
        ]
    );

    assert_eq!(api.emu.counts().get(Operation::ListRegistries), 5);
    assert_eq!(api.emu.counts().get(Operation::GetRegistry), 3);
}

#[tokio::test]
async fn registry_list_errors() {
    let api = start(registries()).await;
    let r = api.get(&list_path(None, "2019-01-01")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "NoRegisteredProviderFound");
    let r = api
        .get("/subscriptions/00000000-0000-4000-8000-0000000000ff/providers/Microsoft.ContainerRegistry/registries?api-version=2025-11-01")
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "SubscriptionNotFound");
    let r = api.get(&list_path(Some("nope"), "2025-11-01")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "ResourceGroupNotFound");
    assert_eq!(r.message(), "Resource group 'nope' could not be found.");
    let r = api
        .get(&format!("{}&$skipToken=abc", list_path(None, "2025-11-01")))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "InvalidSkipToken");
    api.emu.fail_next(Operation::ListRegistries, 503, 1);
    let r = api.get(&list_path(None, "2025-11-01")).await;
    assert_eq!(r.status, 503);
    assert_eq!(api.get(&list_path(None, "2025-11-01")).await.status, 200);
}

#[tokio::test]
async fn registry_list_pages_with_stable_positions() {
    let mut cfg = TenantConfig {
        registries: (1..=5)
            .map(|i| {
                RegistryConfig::new(
                    registry_id("images", &format!("acr{i}")),
                    RegistryMode::Abac,
                )
            })
            .collect(),
        ..TenantConfig::default()
    };
    cfg.faults.list_page_size = 2;
    let api = start(cfg).await;
    let first = api.get(&list_path(Some("images"), "2025-11-01")).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        ids(&first.body),
        vec![registry_id("images", "acr1"), registry_id("images", "acr2")]
    );
    let next = first.body["nextLink"]
        .as_str()
        .expect("nextLink")
        .to_string();
    assert!(next.starts_with(&api.emu.endpoint()), "absolute: {next}");
    assert!(next.contains("api-version=2025-11-01"), "{next}");
    assert!(next.contains("$skipToken="), "{next}");
    // Between pages: one already returned and one not yet returned disappear, one is added.
    assert!(api.emu.remove_registry(&registry_id("images", "acr1")));
    assert!(api.emu.remove_registry(&registry_id("images", "acr4")));
    api.emu.add_registry(RegistryConfig::new(
        registry_id("images", "acr6"),
        RegistryMode::Legacy,
    ));
    // Replacing a registry keeps its position.
    api.emu.add_registry(RegistryConfig::new(
        registry_id("images", "acr3"),
        RegistryMode::Legacy,
    ));
    let (rest, pages) = api.list_all(&next).await;
    let rest: Vec<String> = rest
        .iter()
        .map(|i| i["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        rest,
        vec![
            registry_id("images", "acr3"),
            registry_id("images", "acr5"),
            registry_id("images", "acr6"),
        ]
    );
    assert_eq!(pages, 2);
    let (all, pages) = api.list_all(&list_path(None, "2025-11-01")).await;
    assert_eq!(all.len(), 4);
    assert_eq!(pages, 2);
}

#[tokio::test]
async fn registry_list_rbac_trims_or_forbids() {
    let mut cfg = registries();
    cfg.authorization = AuthorizationMode::Rbac;
    cfg.role_assignments = vec![RoleAssignmentConfig {
        scope: rg_id("images"),
        role_definition: READER.to_string(),
        principal_id: DEFAULT_OPERATOR_OBJECT_ID.to_string(),
        ..RoleAssignmentConfig::default()
    }];
    let api = start(cfg).await;
    // Default: unreadable registries are left out, even when that is all of them.
    let r = api.get(&list_path(None, "2025-11-01")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        ids(&r.body),
        vec![
            registry_id("images", "legacyacr"),
            registry_id("images", "abacacr")
        ]
    );
    let r = api.get(&list_path(Some("other"), "2025-11-01")).await;
    assert_eq!(r.status, 200);
    assert_eq!(ids(&r.body), Vec::<String>::new());

    // The other model: read is needed at the list scope itself.
    api.emu.set_faults(FaultConfig {
        registry_list_trims_unreadable: false,
        ..FaultConfig::default()
    });
    let r = api.get(&list_path(None, "2025-11-01")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.code(), "AuthorizationFailed");
    let op = api.emu.operator_identity();
    assert_eq!(
        r.message(),
        format!(
            "The client '{}' with object id '{}' does not have authorization to perform action 'Microsoft.ContainerRegistry/registries/read' over scope '/subscriptions/{SUB}/providers/Microsoft.ContainerRegistry/registries' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            op.client_id, op.object_id
        )
    );
    let r = api.get(&list_path(Some("images"), "2025-11-01")).await;
    assert_eq!(r.status, 200);
    assert_eq!(ids(&r.body).len(), 2);
    assert_eq!(
        api.get(&list_path(Some("other"), "2025-11-01"))
            .await
            .status,
        403
    );

    // Reader on the subscription: everything, in both models.
    api.emu.insert_role_assignment(
        &format!("/subscriptions/{SUB}"),
        "",
        READER,
        DEFAULT_OPERATOR_OBJECT_ID,
        None,
    );
    assert_eq!(
        ids(&api.get(&list_path(None, "2025-11-01")).await.body).len(),
        3
    );
    api.emu.set_faults(FaultConfig::default());
    assert_eq!(
        ids(&api.get(&list_path(None, "2025-11-01")).await.body).len(),
        3
    );
}

#[tokio::test]
async fn registry_list_honours_deny_rules_in_allow_all_mode() {
    let api = start(registries()).await;
    api.emu.deny(
        None,
        "Microsoft.ContainerRegistry/registries/read",
        &registry_id("images", "abacacr"),
    );
    let r = api.get(&list_path(None, "2025-11-01")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        ids(&r.body),
        vec![
            registry_id("images", "legacyacr"),
            registry_id("other", "otheracr")
        ]
    );
}

fn uami_id(rg: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
        rg_id(rg)
    )
}

const UAMI_PRINCIPAL: &str = "0000aaaa-1111-4222-8333-0000000000a1";
const UAMI_CLIENT: &str = "0000aaaa-1111-4222-8333-0000000000c1";

fn identities() -> TenantConfig {
    TenantConfig {
        registries: vec![RegistryConfig::new(
            registry_id("images", "acr"),
            RegistryMode::Legacy,
        )],
        user_assigned_identities: vec![
            UserAssignedIdentityConfig {
                principal_id: Some(UAMI_PRINCIPAL.to_string()),
                client_id: Some(UAMI_CLIENT.to_string()),
                location: "eastus".to_string(),
                tags: [("team".to_string(), "a".to_string())].into(),
                ..UserAssignedIdentityConfig::new(uami_id("ids", "puller"))
            },
            UserAssignedIdentityConfig::new(uami_id("ids", "generated")),
        ],
        ..TenantConfig::default()
    }
}

#[tokio::test]
async fn user_assigned_identity_get() {
    let api = start(identities()).await;
    let r = api
        .get(&format!(
            "{}?api-version=2023-01-31",
            uami_id("ids", "puller")
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        serde_json::json!({
            "id": format!("/subscriptions/{SUB}/resourcegroups/ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/puller"),
            "location": "eastus",
            "name": "puller",
            "properties": {
                "clientId": UAMI_CLIENT,
                "principalId": UAMI_PRINCIPAL,
                "tenantId": api.emu.tenant_id()
            },
            "tags": {"team": "a"},
            "type": "Microsoft.ManagedIdentity/userAssignedIdentities"
        })
    );
    let r = api
        .get(&format!(
            "{}?api-version=2024-11-30",
            uami_id("IDS", "Generated")
        ))
        .await;
    assert_eq!(r.status, 200, "case-insensitive lookup: {}", r.body);
    let principal = r.body["properties"]["principalId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let client = r.body["properties"]["clientId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(uuid::Uuid::parse_str(&principal).is_ok() && uuid::Uuid::parse_str(&client).is_ok());
    assert_ne!(principal, client);
    assert_eq!(r.body["location"], "westus");
    assert_eq!(r.body["tags"], serde_json::json!({}));

    // Generated ids are a function of the resource id.
    let again = UserAssignedIdentityConfig::new(uami_id("ids", "generated")).with_generated_ids();
    assert_eq!(again.principal_id.as_deref(), Some(principal.as_str()));
    assert_eq!(again.client_id.as_deref(), Some(client.as_str()));

    let r = api
        .get(&format!(
            "{}?api-version=2018-11-30",
            uami_id("ids", "puller")
        ))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "InvalidApiVersionParameter");
    assert!(
        r.message().contains("2023-01-31,2024-11-30"),
        "{}",
        r.message()
    );
    let r = api.get(&uami_id("ids", "puller")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "MissingApiVersionParameter");

    let r = api
        .get(&format!(
            "{}?api-version=2023-01-31",
            uami_id("ids", "nope")
        ))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "ResourceNotFound");
    assert_eq!(
        r.message(),
        "The Resource 'Microsoft.ManagedIdentity/userAssignedIdentities/nope' under resource group 'ids' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
    );
    let r = api
        .get(&format!("{}?api-version=2023-01-31", uami_id("gone", "x")))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "ResourceGroupNotFound");

    assert!(
        api.emu
            .remove_user_assigned_identity(&uami_id("ids", "puller"))
    );
    let r = api
        .get(&format!(
            "{}?api-version=2023-01-31",
            uami_id("ids", "puller")
        ))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(api.emu.counts().get(Operation::GetUserAssignedIdentity), 7);
}

#[tokio::test]
async fn added_identities_are_principals_and_scopes() {
    let api = start(identities()).await;
    let added = api
        .emu
        .add_user_assigned_identity(UserAssignedIdentityConfig::new(uami_id("new-rg", "late")));
    let principal = added.principal_id.clone().expect("filled in");
    assert!(added.client_id.is_some());
    let r = api
        .get(&format!(
            "{}?api-version=2023-01-31",
            uami_id("new-rg", "late")
        ))
        .await;
    assert_eq!(r.status, 200, "its resource group appeared: {}", r.body);
    assert_eq!(r.body["properties"]["principalId"], principal.as_str());
    assert_eq!(
        r.body["properties"]["clientId"],
        added.client_id.as_deref().unwrap_or_default()
    );

    // Its principal exists long ago: no replication window even without principalType, and
    // ARM records it as a service principal.
    let acr = registry_id("images", "acr");
    for p in [principal.as_str(), UAMI_PRINCIPAL] {
        let r = api
            .put_ra(&acr, &guid(), arm_emulator::ACR_PULL, p, None)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body["properties"]["principalType"], "ServicePrincipal");
    }
    // The identity is a valid role-assignment scope (e.g. Managed Identity Operator on it).
    let r = api
        .put_ra(
            &uami_id("ids", "puller"),
            &guid(),
            READER,
            DEFAULT_OPERATOR_OBJECT_ID,
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // A bad id is refused (logged) and returned as given.
    let bad = api
        .emu
        .add_user_assigned_identity(UserAssignedIdentityConfig::new("/not/an/id"));
    assert_eq!(bad.principal_id, None);
}

#[tokio::test]
async fn user_assigned_identity_get_under_rbac() {
    let mut cfg = identities();
    cfg.authorization = AuthorizationMode::Rbac;
    cfg.role_assignments = vec![RoleAssignmentConfig {
        scope: rg_id("ids"),
        role_definition: READER.to_string(),
        principal_id: DEFAULT_OPERATOR_OBJECT_ID.to_string(),
        ..RoleAssignmentConfig::default()
    }];
    cfg.resource_groups = vec![rg_id("elsewhere")];
    cfg.user_assigned_identities
        .push(UserAssignedIdentityConfig::new(uami_id("elsewhere", "x")));
    let api = start(cfg).await;
    let r = api
        .get(&format!(
            "{}?api-version=2023-01-31",
            uami_id("ids", "puller")
        ))
        .await;
    assert_eq!(r.status, 200, "Reader's */read covers it: {}", r.body);
    let target = uami_id("elsewhere", "x");
    let r = api.get(&format!("{target}?api-version=2023-01-31")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "AuthorizationFailed");
    assert!(
        r.message().contains(&format!(
            "to perform action 'Microsoft.ManagedIdentity/userAssignedIdentities/read' over scope '{target}'"
        )),
        "{}",
        r.message()
    );
}
