//! ARM and Entra semantics the operator depends on, over real HTTPS.

mod common;

use arm_emulator::{
    ACR_PULL, ClusterConfig, FaultConfig, KubeletIdentity, Operation, REPOSITORY_READER,
    RegistryConfig, RegistryMode, TenantConfig, ThrottleConfig, UnknownPrincipal,
};
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

fn config() -> TenantConfig {
    let cid = cluster_id("rg", "aks1");
    TenantConfig {
        registries: vec![
            RegistryConfig::new(registry_id("rg", "legacyacr"), RegistryMode::Legacy),
            RegistryConfig::new(registry_id("rg", "abacacr"), RegistryMode::Abac),
        ],
        resources: vec![format!(
            "{}/scopeMaps/child",
            registry_id("rg", "legacyacr")
        )],
        clusters: vec![
            ClusterConfig {
                kubelet_identity: Some(KubeletIdentity::generated(&cid)),
                ..ClusterConfig::new(cid)
            },
            ClusterConfig::new(cluster_id("rg", "spcluster")),
        ],
        ..TenantConfig::default()
    }
}

fn kubelet_oid() -> String {
    KubeletIdentity::generated(&cluster_id("rg", "aks1")).object_id
}

#[tokio::test]
async fn token_endpoint_client_secret() {
    let api = start(config()).await;
    let id = api.emu.operator_identity();
    let scope = api.emu.arm_scope();
    let ok = token_request(
        &api.emu,
        &api.client,
        &[
            ("client_id", &id.client_id),
            (
                "client_secret",
                id.client_secret.as_deref().unwrap_or_default(),
            ),
            ("grant_type", "client_credentials"),
            ("scope", &scope),
        ],
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["token_type"], "Bearer");
    assert!(ok.body["expires_in"].is_u64());
    assert!(ok.body["ext_expires_in"].is_u64());
    assert!(ok.body["access_token"].is_string());

    let bad_secret = token_request(
        &api.emu,
        &api.client,
        &[
            ("client_id", &id.client_id),
            ("client_secret", "wrong"),
            ("grant_type", "client_credentials"),
            ("scope", &scope),
        ],
    )
    .await;
    assert_eq!(bad_secret.status, 401);
    assert_eq!(bad_secret.body["error"], "invalid_client");
    assert_eq!(bad_secret.body["error_codes"], json!([7000215]));
    assert!(
        bad_secret.body["error_description"]
            .as_str()
            .unwrap_or_default()
            .starts_with("AADSTS7000215:")
    );

    let unknown = token_request(
        &api.emu,
        &api.client,
        &[
            ("client_id", "11111111-1111-1111-1111-111111111111"),
            ("client_secret", "x"),
            ("grant_type", "client_credentials"),
            ("scope", &scope),
        ],
    )
    .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.body["error"], "unauthorized_client");
    assert_eq!(unknown.body["error_codes"], json!([700016]));

    let bad_scope = token_request(
        &api.emu,
        &api.client,
        &[
            ("client_id", &id.client_id),
            (
                "client_secret",
                id.client_secret.as_deref().unwrap_or_default(),
            ),
            ("grant_type", "client_credentials"),
            ("scope", &api.emu.endpoint()),
        ],
    )
    .await;
    assert_eq!(bad_scope.status, 400);
    assert_eq!(bad_scope.body["error"], "invalid_scope");

    let counts = api.emu.counts();
    assert_eq!(
        counts.get(Operation::Token),
        5,
        "four here plus the one in start()"
    );
    assert_eq!(counts.get_by(Operation::Token, &id.object_id), 4);
}

#[tokio::test]
async fn unauthenticated_requests_get_401() {
    let api = start(config()).await;
    let path = format!("{}?api-version=2025-11-01", registry_id("rg", "legacyacr"));

    let none = api
        .send_with_token(reqwest::Method::GET, &path, None, None)
        .await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.body,
        json!({"error": {"code": "AuthenticationFailed", "message": "Authentication failed. The 'Authorization' header is missing."}})
    );
    assert!(none.header("www-authenticate").is_some());

    let garbage = api
        .send_with_token(reqwest::Method::GET, &path, None, Some("not-a-token"))
        .await;
    assert_eq!(garbage.status, 401);
    assert_eq!(garbage.code(), "InvalidAuthenticationToken");

    // A token for another resource.
    let id = api.emu.operator_identity();
    let other = token_request(
        &api.emu,
        &api.client,
        &[
            ("client_id", &id.client_id),
            (
                "client_secret",
                id.client_secret.as_deref().unwrap_or_default(),
            ),
            ("grant_type", "client_credentials"),
            ("scope", "https://vault.azure.net/.default"),
        ],
    )
    .await;
    let vault_token = other.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let wrong_aud = api
        .send_with_token(reqwest::Method::GET, &path, None, Some(&vault_token))
        .await;
    assert_eq!(wrong_aud.status, 401);
    assert_eq!(wrong_aud.code(), "InvalidAuthenticationTokenAudience");

    api.emu.expire_tokens();
    let expired = api.get(&path).await;
    assert_eq!(expired.status, 401);
    assert_eq!(expired.code(), "ExpiredAuthenticationToken");

    let counts = api.emu.counts();
    assert_eq!(
        counts.get_by(Operation::GetRegistry, arm_emulator::ANONYMOUS),
        4
    );
}

#[tokio::test]
async fn registry_get_modes_versions_and_not_found() {
    let api = start(config()).await;
    let legacy = registry_id("rg", "legacyacr");
    let abac = registry_id("rg", "abacacr");

    let r = api.get(&format!("{legacy}?api-version=2025-11-01")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["properties"]["roleAssignmentMode"],
        "LegacyRegistryPermissions"
    );
    assert_eq!(r.body["properties"]["loginServer"], "legacyacr.azurecr.io");
    assert_eq!(r.body["id"], legacy.as_str());
    assert!(r.header("x-ms-request-id").is_some());
    assert!(r.header("x-ms-correlation-request-id").is_some());
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-reads")
            .is_some()
    );

    // Path segments are case-insensitive; the body keeps the canonical id.
    let r = api
        .get(&format!(
            "{}?api-version=2025-05-01-preview",
            abac.to_uppercase()
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["properties"]["roleAssignmentMode"],
        "AbacRepositoryPermissions"
    );
    assert_eq!(r.body["id"], abac.as_str());

    // Older api-versions predate the field.
    let r = api.get(&format!("{abac}?api-version=2025-04-01")).await;
    assert_eq!(r.status, 200);
    assert!(r.body["properties"].get("roleAssignmentMode").is_none());

    assert!(api.emu.set_registry_mode(&abac, RegistryMode::Legacy));
    let r = api.get(&format!("{abac}?api-version=2025-11-01")).await;
    assert_eq!(
        r.body["properties"]["roleAssignmentMode"],
        "LegacyRegistryPermissions"
    );

    let r = api.get(&legacy).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "MissingApiVersionParameter");

    let r = api.get(&format!("{legacy}?api-version=2099-01-01")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "NoRegisteredProviderFound");

    let r = api
        .get(&format!(
            "{}?api-version=2025-11-01",
            registry_id("rg", "nope")
        ))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "ResourceNotFound");
    assert_eq!(
        r.message(),
        "The Resource 'Microsoft.ContainerRegistry/registries/nope' under resource group 'rg' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
    );

    let r = api
        .get(&format!(
            "{}?api-version=2025-11-01",
            registry_id("otherrg", "x")
        ))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "ResourceGroupNotFound");

    let r = api
        .get("/subscriptions/99999999-9999-4999-8999-999999999999/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/x?api-version=2025-11-01")
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "SubscriptionNotFound");

    assert!(api.emu.remove_registry(&legacy));
    let r = api.get(&format!("{legacy}?api-version=2025-11-01")).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn cluster_get_kubelet_identity() {
    let api = start(config()).await;
    let cid = cluster_id("rg", "aks1");
    let r = api.get(&format!("{cid}?api-version=2025-07-01")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let k = &r.body["properties"]["identityProfile"]["kubeletidentity"];
    assert_eq!(k["objectId"], kubelet_oid().as_str());
    assert!(k["clientId"].is_string() && k["resourceId"].is_string());
    assert_eq!(r.body["identity"]["type"], "SystemAssigned");
    assert_eq!(r.body["type"], "Microsoft.ContainerService/ManagedClusters");

    let r = api
        .get(&format!(
            "{}?api-version=2025-07-01",
            cluster_id("rg", "spcluster")
        ))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["properties"].get("identityProfile").is_none());

    let new = KubeletIdentity {
        client_id: guid(),
        object_id: guid(),
        resource_id: "/subscriptions/x/resourcegroups/mc/providers/Microsoft.ManagedIdentity/userAssignedIdentities/new".into(),
    };
    assert!(api.emu.set_kubelet_identity(&cid, Some(new.clone())));
    let r = api.get(&format!("{cid}?api-version=2025-07-01")).await;
    assert_eq!(
        r.body["properties"]["identityProfile"]["kubeletidentity"]["objectId"],
        new.object_id.as_str()
    );
}

#[tokio::test]
async fn role_assignment_lifecycle() {
    let api = start(config()).await;
    let scope = registry_id("rg", "legacyacr");
    let name = guid();
    let oid = kubelet_oid();

    let created = api
        .put_ra(&scope, &name, ACR_PULL, &oid, Some("ServicePrincipal"))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["name"], name.as_str());
    assert_eq!(created.body["properties"]["scope"], scope.as_str());
    assert_eq!(
        created.body["properties"]["createdBy"],
        api.emu.operator_identity().object_id.as_str()
    );
    assert!(
        created
            .header("x-ms-ratelimit-remaining-subscription-writes")
            .is_some()
    );

    let again = api
        .put_ra(&scope, &name, ACR_PULL, &oid, Some("ServicePrincipal"))
        .await;
    assert_eq!(again.status, 200);

    let ra_path = format!(
        "{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={RA_API}"
    );
    let got = api.get(&ra_path).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["properties"]["principalId"], oid.as_str());

    // The same id works regardless of letter case (ARM ids are case-insensitive).
    let got = api
        .get(&ra_path.replace(
            "/providers/Microsoft.Authorization/",
            "/PROVIDERS/microsoft.authorization/",
        ))
        .await;
    assert_eq!(got.status, 200);

    // Description and condition may change in place.
    let updated = api
        .put(
            &ra_path,
            json!({"properties": {
                "roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL}"),
                "principalId": oid,
                "principalType": "ServicePrincipal",
                "description": "managed by acr-attach",
            }}),
        )
        .await;
    assert_eq!(updated.status, 200);
    assert_eq!(
        updated.body["properties"]["description"],
        "managed by acr-attach"
    );
    assert_eq!(
        api.emu.role_assignments()[0].description.as_deref(),
        Some("managed by acr-attach")
    );

    let deleted = api.delete(&ra_path).await;
    assert_eq!(deleted.status, 200);
    assert_eq!(deleted.body["name"], name.as_str());
    let deleted_again = api.delete(&ra_path).await;
    assert_eq!(deleted_again.status, 204);
    assert_eq!(deleted_again.body, Value::Null);
    let missing = api.get(&ra_path).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "RoleAssignmentNotFound");

    let counts = api.emu.counts();
    assert_eq!(counts.get(Operation::PutRoleAssignment), 3);
    assert_eq!(counts.get(Operation::DeleteRoleAssignment), 2);
    assert_eq!(counts.get(Operation::GetRoleAssignment), 3);
    let log = api.emu.request_log();
    assert!(log.iter().any(|l| l.method == "DELETE" && l.status == 204));
}

#[tokio::test]
async fn role_assignment_validation_errors() {
    let api = start(config()).await;
    let scope = registry_id("rg", "legacyacr");
    let oid = kubelet_oid();

    let r = api.put_ra(&scope, "not-a-guid", ACR_PULL, &oid, None).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "InvalidRoleAssignmentId");

    let r = api
        .put_ra(
            &scope,
            &guid(),
            "00000000-1111-2222-3333-444444444444",
            &oid,
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "RoleDefinitionDoesNotExist");

    let r = api
        .put_ra(&registry_id("rg", "missing"), &guid(), ACR_PULL, &oid, None)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "ResourceNotFound");

    let r = api
        .put(
            &format!(
                "{scope}/providers/Microsoft.Authorization/roleAssignments/{}?api-version={RA_API}",
                guid()
            ),
            json!({"nope": 1}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "InvalidRequestContent");

    let r = api
        .get(&format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments?api-version=1999-01-01"
        ))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "InvalidApiVersionParameter");
}

#[tokio::test]
async fn conflict_409_names_the_existing_assignment() {
    let api = start(config()).await;
    let scope = registry_id("rg", "legacyacr");
    let oid = kubelet_oid();
    let existing = api
        .emu
        .insert_role_assignment(&scope, "", ACR_PULL, &oid, Some("by hand"));
    assert_eq!(existing.created_by, arm_emulator::EXTERNAL);

    let r = api
        .put_ra(&scope, &guid(), ACR_PULL, &oid, Some("ServicePrincipal"))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "RoleAssignmentExists");
    let hex = existing.name.replace('-', "");
    assert_eq!(
        r.message(),
        format!(
            "The role assignment already exists. The ID of the existing role assignment is {hex}."
        )
    );

    // A different role at the same scope is not a duplicate.
    let r = api
        .put_ra(
            &scope,
            &guid(),
            REPOSITORY_READER,
            &oid,
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.status, 201);
}

#[tokio::test]
async fn update_not_permitted() {
    let api = start(config()).await;
    let scope = registry_id("rg", "legacyacr");
    let name = guid();
    let oid = kubelet_oid();
    assert_eq!(
        api.put_ra(&scope, &name, ACR_PULL, &oid, Some("ServicePrincipal"))
            .await
            .status,
        201
    );

    let other = guid();
    api.emu.add_principal(&other);
    let r = api
        .put_ra(&scope, &name, ACR_PULL, &other, Some("ServicePrincipal"))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "RoleAssignmentUpdateNotPermitted");
    assert_eq!(
        r.message(),
        "Tenant ID, application ID, principal ID, and scope are not allowed to be updated."
    );

    // Same name at another scope: names are unique tenant-wide.
    let r = api
        .put_ra(
            &registry_id("rg", "abacacr"),
            &name,
            ACR_PULL,
            &oid,
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.code(), "RoleAssignmentUpdateNotPermitted");

    // Role change: refused by default, allowed when configured.
    let r = api
        .put_ra(
            &scope,
            &name,
            REPOSITORY_READER,
            &oid,
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.code(), "RoleAssignmentUpdateNotPermitted");
    api.emu.set_faults(FaultConfig {
        role_definition_update_allowed: true,
        ..FaultConfig::default()
    });
    let r = api
        .put_ra(
            &scope,
            &name,
            REPOSITORY_READER,
            &oid,
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        api.emu.role_assignments()[0].role_definition_guid(),
        REPOSITORY_READER
    );
}

#[tokio::test]
async fn principal_not_found_during_replication_window() {
    let mut cfg = config();
    cfg.faults.principal_not_found_window_secs = 1;
    let api = start(cfg).await;
    let scope = registry_id("rg", "legacyacr");
    let fresh = guid();
    api.emu.add_principal(&fresh);

    let r = api.put_ra(&scope, &guid(), ACR_PULL, &fresh, None).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "PrincipalNotFound");
    let tenant = api.emu.tenant_id();
    assert!(
        r.message().starts_with(&format!(
            "Principal {} does not exist in the directory {tenant}.",
            fresh.replace('-', "")
        )),
        "{}",
        r.message()
    );

    // principalType skips the lookup (documented behaviour, the default).
    let with_type = api
        .put_ra(
            &scope,
            &guid(),
            REPOSITORY_READER,
            &fresh,
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(with_type.status, 201, "{}", with_type.body);

    api.emu.advance_clock(Duration::from_millis(1100));
    let r = api.put_ra(&scope, &guid(), ACR_PULL, &fresh, None).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["properties"]["principalType"], "ServicePrincipal");

    // The UNCONFIRMED knob: the window applies even with principalType.
    api.emu.set_faults(FaultConfig {
        principal_not_found_window_secs: 60,
        principal_not_found_ignores_principal_type: true,
        ..FaultConfig::default()
    });
    let fresh2 = guid();
    api.emu.add_principal(&fresh2);
    let r = api
        .put_ra(&scope, &guid(), ACR_PULL, &fresh2, Some("ServicePrincipal"))
        .await;
    assert_eq!(r.code(), "PrincipalNotFound");

    // Unknown principals: rejected by default, accepted when configured.
    let unknown = guid();
    let r = api
        .put_ra(
            &scope,
            &guid(),
            ACR_PULL,
            &unknown,
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.code(), "PrincipalNotFound");
    api.emu.set_faults(FaultConfig {
        unknown_principal: UnknownPrincipal::Accept,
        ..FaultConfig::default()
    });
    let r = api
        .put_ra(
            &scope,
            &guid(),
            ACR_PULL,
            &unknown,
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.status, 201);
}

#[tokio::test]
async fn authorization_failed_403() {
    let api = start(config()).await;
    let scope = registry_id("rg", "legacyacr");
    let op = api.emu.operator_identity();
    api.emu.deny(
        Some(&op.object_id),
        "Microsoft.Authorization/roleAssignments/write",
        &scope,
    );

    let name = guid();
    let r = api
        .put_ra(
            &scope,
            &name,
            ACR_PULL,
            &kubelet_oid(),
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "AuthorizationFailed");
    assert_eq!(
        r.message(),
        format!(
            "The client '{}' with object id '{}' does not have authorization or an ABAC condition not fulfilled to perform action 'Microsoft.Authorization/roleAssignments/write' over scope '{scope}/providers/Microsoft.Authorization/roleAssignments/{name}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            op.client_id, op.object_id
        )
    );
    // Reads and other scopes are unaffected.
    let r = api.get(&format!("{scope}?api-version=2025-11-01")).await;
    assert_eq!(r.status, 200);
    let r = api
        .put_ra(
            &registry_id("rg", "abacacr"),
            &guid(),
            REPOSITORY_READER,
            &kubelet_oid(),
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.status, 201);

    api.emu.deny(None, "Microsoft.ContainerRegistry/*", "");
    let r = api.get(&format!("{scope}?api-version=2025-11-01")).await;
    assert_eq!(r.status, 403);
    assert!(
        r.message()
            .contains("'Microsoft.ContainerRegistry/registries/read'")
    );
    // Only role-assignment actions get the ABAC wording.
    assert!(
        r.message()
            .contains("does not have authorization to perform action")
    );

    api.emu.allow_all();
    let r = api
        .put_ra(
            &scope,
            &name,
            ACR_PULL,
            &kubelet_oid(),
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.status, 201);
}

#[tokio::test]
async fn throttling_429_then_recovers() {
    let mut cfg = config();
    cfg.faults.throttle = ThrottleConfig {
        reads_burst: 2,
        reads_per_sec: 1,
        ..ThrottleConfig::default()
    };
    let api = start(cfg).await;
    let path = format!("{}?api-version=2025-11-01", registry_id("rg", "legacyacr"));

    let first = api.get(&path).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("x-ms-ratelimit-remaining-subscription-reads"),
        Some("1")
    );
    assert_eq!(api.get(&path).await.status, 200);
    let throttled = api.get(&path).await;
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.code(), "SubscriptionRequestsThrottled");
    assert_eq!(throttled.header("retry-after"), Some("1"));
    let oid = api.emu.operator_identity().object_id;
    assert_eq!(
        throttled.message(),
        format!(
            "Number of 'read' requests for subscription '{SUB}' actor '{oid}' exceeded. Please try again after '1' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling"
        )
    );
    // Writes have their own bucket.
    let w = api
        .put_ra(
            &registry_id("rg", "legacyacr"),
            &guid(),
            ACR_PULL,
            &kubelet_oid(),
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(w.status, 201);

    api.emu.advance_clock(Duration::from_millis(1100));
    assert_eq!(api.get(&path).await.status, 200);
    let counts = api.emu.counts();
    assert_eq!(counts.throttled(), 1);
    assert_eq!(counts.get(Operation::GetRegistry), 4);
}

#[tokio::test]
async fn injected_failures() {
    let api = start(config()).await;
    let path = format!("{}?api-version=2025-11-01", registry_id("rg", "legacyacr"));
    api.emu.fail_next(Operation::GetRegistry, 503, 1);
    api.emu.fail_next(Operation::GetRegistry, 500, 1);
    api.emu.fail_next(Operation::GetRegistry, 429, 1);

    let r = api.get(&path).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.code(), "ServiceUnavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    let r = api.get(&path).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.code(), "InternalServerError");
    let r = api.get(&path).await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert_eq!(api.get(&path).await.status, 200);
    assert_eq!(api.emu.counts().throttled(), 1);

    api.emu.set_faults(FaultConfig {
        server_error_rate: 1.0,
        ..FaultConfig::default()
    });
    let r = api.get(&path).await;
    assert!(r.status == 500 || r.status == 503);
    api.emu.set_faults(FaultConfig::default());
    assert_eq!(api.get(&path).await.status, 200);

    api.emu.fail_next(Operation::Token, 503, 1);
    let id = api.emu.operator_identity();
    let scope = api.emu.arm_scope();
    let form = [
        ("client_id", id.client_id.as_str()),
        (
            "client_secret",
            id.client_secret.as_deref().unwrap_or_default(),
        ),
        ("grant_type", "client_credentials"),
        ("scope", scope.as_str()),
    ];
    let r = token_request(&api.emu, &api.client, &form).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["error"], "temporarily_unavailable");
    assert_eq!(
        token_request(&api.emu, &api.client, &form).await.status,
        200
    );
}

#[tokio::test]
async fn list_paging_returns_every_item_once() {
    let mut cfg = config();
    cfg.faults.list_page_size = 3;
    let api = start(cfg).await;
    let scope = registry_id("rg", "legacyacr");
    let mut names = Vec::new();
    for _ in 0..10 {
        names.push(
            api.emu
                .insert_role_assignment(&scope, "", ACR_PULL, &guid(), None)
                .name,
        );
    }
    let (items, pages) = api
        .list_all(&format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments?api-version={RA_API}&$filter=atScope()"
        ))
        .await;
    assert_eq!(pages, 4);
    let mut got: Vec<String> = items
        .iter()
        .map(|i| i["name"].as_str().unwrap_or_default().to_string())
        .collect();
    got.sort();
    names.sort();
    assert_eq!(got, names);

    let first = api
        .get(&format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments?api-version={RA_API}"
        ))
        .await;
    let next = first.body["nextLink"].as_str().unwrap_or_default();
    assert!(next.starts_with(&api.emu.endpoint()), "{next}");
    assert!(next.contains("$skipToken="), "{next}");
}

#[tokio::test]
async fn list_filters() {
    let api = start(config()).await;
    let registry = registry_id("rg", "legacyacr");
    let sibling = registry_id("rg", "abacacr");
    let child = format!("{registry}/scopeMaps/child");
    let p = kubelet_oid();
    let other = guid();
    let at_sub =
        api.emu
            .insert_role_assignment(&format!("/subscriptions/{SUB}"), "", ACR_PULL, &p, None);
    let at_rg = api
        .emu
        .insert_role_assignment(&rg_id("rg"), "", ACR_PULL, &other, None);
    let at_reg = api
        .emu
        .insert_role_assignment(&registry, "", ACR_PULL, &p, None);
    let at_sibling = api
        .emu
        .insert_role_assignment(&sibling, "", ACR_PULL, &p, None);
    let at_child = api
        .emu
        .insert_role_assignment(&child, "", ACR_PULL, &p, None);

    let names = |items: &[Value]| {
        let mut v: Vec<String> = items
            .iter()
            .map(|i| i["name"].as_str().unwrap_or_default().to_string())
            .collect();
        v.sort();
        v
    };
    let sorted = |v: &[&str]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    let list = format!(
        "{registry}/providers/Microsoft.Authorization/roleAssignments?api-version={RA_API}"
    );

    let (items, _) = api.list_all(&format!("{list}&$filter=atScope()")).await;
    assert_eq!(
        names(&items),
        sorted(&[&at_sub.name, &at_rg.name, &at_reg.name])
    );

    // Spaces as %20 or +, quotes encoded.
    let (items, _) = api
        .list_all(&format!("{list}&%24filter=principalId%20eq%20%27{p}%27"))
        .await;
    assert_eq!(
        names(&items),
        sorted(&[&at_sub.name, &at_reg.name, &at_child.name])
    );
    let (items, _) = api
        .list_all(&format!("{list}&$filter=assignedTo('{p}')"))
        .await;
    assert_eq!(items.len(), 3);
    let (items, _) = api
        .list_all(&format!("{list}&$filter=atScope()+and+assignedTo('{p}')"))
        .await;
    assert_eq!(names(&items), sorted(&[&at_sub.name, &at_reg.name]));

    let (items, _) = api.list_all(&list).await;
    assert_eq!(
        names(&items),
        sorted(&[&at_sub.name, &at_rg.name, &at_reg.name, &at_child.name])
    );
    assert!(!names(&items).contains(&at_sibling.name));

    let r = api
        .get(&format!(
            "{list}&$filter=atScope() and principalId eq '{p}'"
        ))
        .await;
    assert_eq!(r.status, 400);

    let r = api
        .get(&format!(
            "{}/providers/Microsoft.Authorization/roleAssignments?api-version={RA_API}",
            registry_id("rg", "gone")
        ))
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn role_assignment_limit() {
    let mut cfg = config();
    cfg.faults.role_assignment_limit = 2;
    let api = start(cfg).await;
    let scope = registry_id("rg", "legacyacr");
    api.emu
        .insert_role_assignment(&scope, "", ACR_PULL, &guid(), None);
    api.emu
        .insert_role_assignment(&scope, "", ACR_PULL, &guid(), None);
    let r = api
        .put_ra(
            &scope,
            &guid(),
            ACR_PULL,
            &kubelet_oid(),
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "RoleAssignmentLimitExceeded");
    assert!(
        api.emu
            .remove_role_assignment(&api.emu.role_assignments()[0].id)
    );
    let r = api
        .put_ra(
            &scope,
            &guid(),
            ACR_PULL,
            &kubelet_oid(),
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.status, 201);
}

#[tokio::test]
async fn app_service_managed_identity_endpoint() {
    let api = start(config()).await;
    let id = api.emu.operator_identity();
    let url = format!(
        "{}/msi/token?api-version=2019-08-01&resource={}&client_id={}",
        api.emu.endpoint(),
        api.emu.endpoint(),
        id.client_id
    );
    let r = to_resp(
        api.client
            .get(&url)
            .header("x-identity-header", arm_emulator::DEFAULT_IDENTITY_HEADER)
            .header("metadata", "true")
            .send()
            .await
            .expect("msi"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["expires_on"].is_string());
    let token = r.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let reg = api
        .send_with_token(
            reqwest::Method::GET,
            &format!("{}?api-version=2025-11-01", registry_id("rg", "legacyacr")),
            None,
            Some(&token),
        )
        .await;
    assert_eq!(reg.status, 200);

    let r = to_resp(api.client.get(&url).send().await.expect("msi")).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn latency_and_shutdown() {
    let mut cfg = config();
    cfg.faults.latency_ms = 150;
    let api = start(cfg).await;
    let path = format!("{}?api-version=2025-11-01", registry_id("rg", "legacyacr"));
    let t = std::time::Instant::now();
    assert_eq!(api.get(&path).await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));

    let url = api.url(&path);
    api.emu.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fresh = client_for(&api.emu);
    assert!(fresh.get(url).bearer_auth(&api.token).send().await.is_err());
}

#[tokio::test]
async fn sample_config_serves_its_resources() {
    let api = start(TenantConfig::sample()).await;
    let cfg = TenantConfig::sample();
    let cluster = &cfg.clusters[0];
    let r = api
        .get(&format!("{}?api-version=2025-07-01", cluster.id))
        .await;
    assert_eq!(r.status, 200);
    let oid = cluster
        .kubelet_identity
        .as_ref()
        .map(|k| k.object_id.clone())
        .unwrap_or_default();
    for reg in &cfg.registries {
        let r = api.get(&format!("{}?api-version=2025-11-01", reg.id)).await;
        assert_eq!(
            r.body["properties"]["roleAssignmentMode"],
            reg.mode.as_str()
        );
        let role = if reg.mode == RegistryMode::Abac {
            REPOSITORY_READER
        } else {
            ACR_PULL
        };
        let put = api
            .put_ra(&reg.id, &guid(), role, &oid, Some("ServicePrincipal"))
            .await;
        assert_eq!(put.status, 201, "{}", put.body);
    }
    assert_eq!(api.emu.role_assignments().len(), 2);
}

#[tokio::test]
async fn a_held_answer_is_sent_only_after_the_request_took_effect() {
    let api = start(config()).await;
    let scope = registry_id("rg", "legacyacr");
    let name = guid();
    let oid = kubelet_oid();
    api.emu.hold_answers(Operation::PutRoleAssignment);
    let waiter = async {
        // The PUT is applied, logged and counted while its answer waits.
        for _ in 0..500 {
            if api.emu.held_answers() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(api.emu.held_answers(), 1);
        assert_eq!(api.emu.counts().get(Operation::PutRoleAssignment), 1);
        assert!(
            api.emu.role_assignments().iter().any(|a| a.name == name),
            "the assignment exists before the client hears about it"
        );
        api.emu.release_answers(Operation::PutRoleAssignment);
    };
    let (created, ()) = tokio::join!(
        api.put_ra(&scope, &name, ACR_PULL, &oid, Some("ServicePrincipal")),
        waiter
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(api.emu.held_answers(), 0);
    // Released: later answers are not held.
    let again = api
        .put_ra(&scope, &name, ACR_PULL, &oid, Some("ServicePrincipal"))
        .await;
    assert_eq!(again.status, 200);
}

/// A raw PUT of an AcrPull assignment: `Err` when the client got no answer at all.
async fn try_put(
    api: &Api,
    client: &reqwest::Client,
    name: &str,
    principal: &str,
) -> Result<Resp, reqwest::Error> {
    let scope = registry_id("rg", "legacyacr");
    let body = json!({"properties": {
        "roleDefinitionId": format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL}"),
        "principalId": principal,
        "principalType": "ServicePrincipal",
    }});
    let url = api.url(&format!(
        "{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={RA_API}"
    ));
    let sent = client
        .put(url)
        .bearer_auth(&api.token)
        .json(&body)
        .send()
        .await?;
    Ok(to_resp(sent).await)
}

#[tokio::test]
async fn a_reset_connection_answers_nothing_and_changes_nothing() {
    let api = start(config()).await;
    api.emu.set_faults(FaultConfig {
        connection_reset_rate: 1.0,
        ..FaultConfig::default()
    });
    let name = guid();
    let outcome = try_put(&api, &api.client, &name, &kubelet_oid()).await;
    assert!(
        outcome.is_err(),
        "no answer: {:?}",
        outcome.map(|r| r.status)
    );
    assert!(api.emu.role_assignments().iter().all(|a| a.name != name));
    let logged = api.emu.request_log().pop().expect("logged");
    assert_eq!(
        (logged.status, logged.injected),
        (0, Some(arm_emulator::InjectedFault::ConnectionReset))
    );
    // Entra is not ARM's front door: tokens are still issued.
    let id = api.emu.operator_identity();
    get_token(
        &api.emu,
        &api.client,
        &id.client_id,
        id.client_secret.as_deref().unwrap(),
    )
    .await;
}

#[tokio::test]
async fn after_a_write_the_answer_can_be_lost_though_the_write_happened() {
    let api = start(config()).await;
    api.emu.set_faults(FaultConfig {
        after_write_fault_rate: 1.0,
        seed: 7,
        ..FaultConfig::default()
    });
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let (name, principal) = (guid(), guid());
        api.emu.add_principal(&principal);
        match try_put(&api, &api.client, &name, &principal).await {
            Ok(answer) => {
                assert_eq!(answer.status, 500, "{}", answer.body);
                assert_eq!(answer.code(), "InternalServerError");
                seen.insert("500");
            }
            Err(_) => {
                seen.insert("dropped");
            }
        }
        assert!(
            api.emu.role_assignments().iter().any(|a| a.name == name),
            "the PUT took effect although the client heard otherwise"
        );
        let logged = api.emu.request_log().pop().expect("logged");
        assert_eq!(logged.status, 201, "the log keeps what ARM decided");
        assert!(logged.injected.is_some());
    }
    assert_eq!(seen.len(), 2, "both kinds of lost answer occur: {seen:?}");
    // Reads are never affected by the phase-after fault.
    let path = format!("{}?api-version=2025-11-01", registry_id("rg", "legacyacr"));
    assert_eq!(api.get(&path).await.status, 200);
}

#[tokio::test]
async fn a_slow_answer_outlives_the_client_timeout_after_the_write_happened() {
    let api = start(config()).await;
    api.emu.set_faults(FaultConfig {
        slow_answer_rate: 1.0,
        slow_answer_ms: 3_000,
        ..FaultConfig::default()
    });
    let impatient = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(api.emu.ca_pem().as_bytes()).unwrap()])
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let name = guid();
    let outcome = try_put(&api, &impatient, &name, &kubelet_oid()).await;
    assert!(
        outcome.as_ref().is_err_and(reqwest::Error::is_timeout),
        "timed out: {:?}",
        outcome.map(|r| r.status)
    );
    assert!(api.emu.role_assignments().iter().any(|a| a.name == name));
    assert_eq!(
        api.emu.request_log().pop().unwrap().injected,
        Some(arm_emulator::InjectedFault::SlowAnswer)
    );
}

#[tokio::test]
async fn a_manual_clock_steps_through_throttling_and_replication_windows() {
    let mut cfg = config();
    cfg.faults.principal_not_found_window_secs = 600;
    cfg.faults.principal_not_found_ignores_principal_type = true;
    cfg.faults.throttle = ThrottleConfig {
        reads_burst: 1,
        reads_per_sec: 1,
        ..ThrottleConfig::default()
    };
    let api = start(cfg).await;
    api.emu.use_manual_clock();
    let path = format!("{}?api-version=2025-11-01", registry_id("rg", "legacyacr"));
    assert_eq!(api.get(&path).await.status, 200);
    // However long the machine takes, the bucket does not refill on a stopped clock.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(api.get(&path).await.status, 429);
    api.emu.advance_clock(Duration::from_secs(2));
    assert_eq!(api.get(&path).await.status, 200);

    let fresh = guid();
    api.emu.add_principal(&fresh);
    let scope = registry_id("rg", "legacyacr");
    let early = api
        .put_ra(&scope, &guid(), ACR_PULL, &fresh, Some("ServicePrincipal"))
        .await;
    assert_eq!(early.code(), "PrincipalNotFound");
    api.emu.advance_clock(Duration::from_secs(600));
    let late = api
        .put_ra(&scope, &guid(), ACR_PULL, &fresh, Some("ServicePrincipal"))
        .await;
    assert_eq!(late.status, 201, "{}", late.body);
}
