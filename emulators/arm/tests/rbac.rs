//! `authorization: Rbac`: built-in role permissions, least-privilege delegation conditions, the
//! permissions API, and what the request log records about each caller.

mod common;

use arm_emulator::{
    ACR_PULL, AbacDenialWording, AuthorizationMode, CONTRIBUTOR, ClusterConfig,
    DEFAULT_OPERATOR_OBJECT_ID, FaultConfig, IdentityConfig, KubeletIdentity, OWNER,
    PrincipalConfig, RBAC_ADMINISTRATOR, READER, REPOSITORY_READER, RegistryConfig, RegistryMode,
    RoleAssignmentConfig, TenantConfig, USER_ACCESS_ADMINISTRATOR,
};
use common::*;
use serde_json::Value;

const USER: &str = "0000aaaa-1111-4222-8333-000000000005";

/// The delegation condition of research §9 (Microsoft's "constrain roles and principal types"
/// example), one line as `az role assignment create --condition` sends it.
fn delegation(roles: &[&str]) -> String {
    let set = roles.join(", ");
    format!(
        "((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/write'}})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{set}}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}})) AND ((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/delete'}})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{set}}} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}}))"
    )
}

fn kubelet() -> String {
    KubeletIdentity::generated(&cluster_id("aks-rg", "aks1")).object_id
}

fn assignment(
    scope: &str,
    role: &str,
    principal: &str,
    condition: Option<String>,
) -> RoleAssignmentConfig {
    RoleAssignmentConfig {
        scope: scope.to_string(),
        role_definition: role.to_string(),
        principal_id: principal.to_string(),
        principal_type: Some("ServicePrincipal".to_string()),
        condition,
        ..Default::default()
    }
}

/// Registries in `images`, the cluster in `aks-rg`; the operator holds exactly RBAC
/// Administrator (conditioned to AcrPull and Repository Reader for service principals) on the
/// registries' resource group and Reader on the cluster.
fn tenant() -> TenantConfig {
    let cid = cluster_id("aks-rg", "aks1");
    TenantConfig {
        authorization: AuthorizationMode::Rbac,
        registries: vec![
            RegistryConfig::new(registry_id("images", "legacyacr"), RegistryMode::Legacy),
            RegistryConfig::new(registry_id("images", "abacacr"), RegistryMode::Abac),
        ],
        clusters: vec![
            ClusterConfig {
                kubelet_identity: Some(KubeletIdentity::generated(&cid)),
                ..ClusterConfig::new(cid.clone())
            },
            ClusterConfig::new(cluster_id("other-rg", "aks2")),
        ],
        principals: vec![PrincipalConfig {
            object_id: USER.to_string(),
            principal_type: "User".to_string(),
            ..Default::default()
        }],
        role_assignments: vec![
            assignment(
                &rg_id("images"),
                RBAC_ADMINISTRATOR,
                DEFAULT_OPERATOR_OBJECT_ID,
                Some(delegation(&[ACR_PULL, REPOSITORY_READER])),
            ),
            assignment(&cid, READER, DEFAULT_OPERATOR_OBJECT_ID, None),
        ],
        ..TenantConfig::default()
    }
}

fn ra_path(scope: &str, name: &str) -> String {
    format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={RA_API}")
}

fn permissions_path(scope: &str, api_version: &str) -> String {
    format!("{scope}/providers/Microsoft.Authorization/permissions?api-version={api_version}")
}

fn abac_denial(api: &Api, action: &str, target: &str) -> String {
    let op = api.emu.operator_identity();
    format!(
        "The client '{}' with object id '{}' does not have authorization or an ABAC condition not fulfilled to perform action '{action}' over scope '{target}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
        op.client_id, op.object_id
    )
}

/// Another caller with its own token against the same emulator.
async fn as_identity(api: &Api, client_id: &str, object_id: &str) -> Api {
    api.emu.add_identity(IdentityConfig {
        client_id: client_id.to_string(),
        object_id: object_id.to_string(),
        client_secret: Some("s".to_string()),
        display_name: client_id.to_string(),
    });
    let token = get_token(&api.emu, &api.client, client_id, "s").await;
    Api {
        emu: api.emu.clone(),
        client: api.client.clone(),
        token,
    }
}

#[tokio::test]
async fn the_delegated_operator_can_do_everything_it_needs() {
    let api = start(tenant()).await;
    let legacy = registry_id("images", "legacyacr");
    let abac = registry_id("images", "abacacr");
    let r = api.get(&format!("{legacy}?api-version=2025-11-01")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api
        .get(&format!(
            "{}?api-version=2025-07-01",
            cluster_id("aks-rg", "aks1")
        ))
        .await;
    assert_eq!(r.status, 200, "Reader on the cluster reads it: {}", r.body);
    let r = api
        .get(&format!(
            "{legacy}/providers/Microsoft.Authorization/roleAssignments?api-version={RA_API}&$filter=atScope()"
        ))
        .await;
    assert_eq!(r.status, 200);

    let pull = guid();
    let r = api
        .put_ra(
            &legacy,
            &pull,
            ACR_PULL,
            &kubelet(),
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let reader = guid();
    let r = api
        .put_ra(
            &abac,
            &reader,
            REPOSITORY_READER,
            &kubelet(),
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Idempotent re-PUT is a write too, and still allowed.
    let r = api
        .put_ra(
            &legacy,
            &pull,
            ACR_PULL,
            &kubelet(),
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.status, 200);

    assert_eq!(api.delete(&ra_path(&legacy, &pull)).await.status, 200);
    assert_eq!(api.delete(&ra_path(&abac, &reader)).await.status, 200);
    assert_eq!(
        api.delete(&ra_path(&abac, &reader)).await.status,
        204,
        "deleting what is already gone stays a 204"
    );
}

#[tokio::test]
async fn the_delegation_refuses_other_roles_user_principals_and_other_deletes() {
    let api = start(tenant()).await;
    let legacy = registry_id("images", "legacyacr");

    let name = guid();
    let r = api
        .put_ra(&legacy, &name, OWNER, &kubelet(), Some("ServicePrincipal"))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code(), "AuthorizationFailed");
    assert_eq!(
        r.message(),
        abac_denial(
            &api,
            "Microsoft.Authorization/roleAssignments/write",
            &format!("{legacy}/providers/Microsoft.Authorization/roleAssignments/{name}")
        )
    );
    let r = api
        .put_ra(&legacy, &guid(), ACR_PULL, USER, Some("User"))
        .await;
    assert_eq!(
        r.status, 403,
        "AcrPull for a user is outside the delegation"
    );
    let r = api.put_ra(&legacy, &guid(), ACR_PULL, USER, None).await;
    assert_eq!(
        r.status, 403,
        "without principalType the directory's type (User) counts"
    );
    let r = api
        .put_ra(
            &legacy,
            &guid(),
            REPOSITORY_READER,
            &kubelet(),
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(
        r.status, 201,
        "the other allowed role still works: {}",
        r.body
    );

    // Deletes are constrained by the assignment being deleted.
    let foreign = api
        .emu
        .insert_role_assignment(&legacy, "", READER, &kubelet(), None);
    let r = api.delete(&ra_path(&legacy, &foreign.name)).await;
    assert_eq!(r.status, 403);
    assert!(
        r.message().contains("roleAssignments/delete"),
        "{}",
        r.message()
    );
    let user_pull = api.emu.insert_role_assignment_with(RoleAssignmentConfig {
        principal_type: Some("User".to_string()),
        ..assignment(&legacy, ACR_PULL, USER, None)
    });
    assert_eq!(
        api.delete(&ra_path(&legacy, &user_pull.name)).await.status,
        403
    );
    assert_eq!(api.emu.role_assignments().len(), 5, "nothing was deleted");

    // No route at all to a cluster in another resource group.
    let r = api
        .get(&format!(
            "{}?api-version=2025-07-01",
            cluster_id("other-rg", "aks2")
        ))
        .await;
    assert_eq!(r.status, 403);
    assert!(
        r.message().contains("does not have authorization to perform action 'Microsoft.ContainerService/managedClusters/read'"),
        "{}",
        r.message()
    );
}

#[tokio::test]
async fn a_condition_the_emulator_cannot_parse_grants_nothing() {
    let mut cfg = tenant();
    cfg.role_assignments[0].condition = Some(
        "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:ContainerName] StringEqualsIgnoreCase 'x'"
            .to_string(),
    );
    let api = start(cfg).await;
    let legacy = registry_id("images", "legacyacr");
    let r = api
        .put_ra(
            &legacy,
            &guid(),
            ACR_PULL,
            &kubelet(),
            Some("ServicePrincipal"),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = api.get(&format!("{legacy}?api-version=2025-11-01")).await;
    assert_eq!(r.status, 403, "not even the role's reads: never fail open");
}

async fn put_status(caller: &Api, scope: &str, role: &str) -> u16 {
    caller
        .put_ra(scope, &guid(), role, &kubelet(), Some("ServicePrincipal"))
        .await
        .status
}

#[tokio::test]
async fn built_in_roles_grant_their_published_actions() {
    let mut cfg = tenant();
    cfg.role_assignments.clear();
    let ids = [
        ("00000000-0000-4000-8000-0000000000a1", OWNER),
        ("00000000-0000-4000-8000-0000000000a2", CONTRIBUTOR),
        ("00000000-0000-4000-8000-0000000000a3", READER),
        (
            "00000000-0000-4000-8000-0000000000a4",
            USER_ACCESS_ADMINISTRATOR,
        ),
    ];
    for (oid, role) in ids {
        cfg.role_assignments
            .push(assignment(&rg_id("images"), role, oid, None));
    }
    let api = start(cfg).await;
    let legacy = registry_id("images", "legacyacr");
    let registry_get = format!("{legacy}?api-version=2025-11-01");
    let mut callers = Vec::new();
    for (i, (oid, _)) in ids.iter().enumerate() {
        callers.push(
            as_identity(
                &api,
                &format!("00000000-0000-4000-8000-00000000c00{i}"),
                oid,
            )
            .await,
        );
    }
    let [owner, contributor, reader, uaa] = &callers[..] else {
        unreachable!()
    };
    for caller in &callers {
        assert_eq!(
            caller.get(&registry_get).await.status,
            200,
            "every role here reads"
        );
    }
    assert_eq!(put_status(owner, &legacy, OWNER).await, 201, "Owner: *");
    assert_eq!(
        put_status(uaa, &legacy, arm_emulator::ACR_PUSH).await,
        201,
        "User Access Administrator: Microsoft.Authorization/*"
    );
    assert_eq!(
        put_status(contributor, &legacy, ACR_PULL).await,
        403,
        "Contributor: notActions Microsoft.Authorization/*/Write"
    );
    assert_eq!(
        put_status(reader, &legacy, ACR_PULL).await,
        403,
        "Reader: */read only"
    );
    // The operator itself holds nothing here.
    assert_eq!(api.get(&registry_get).await.status, 403);

    // With the narrower wording knob, a plain lack of permission reads like any other 403.
    api.emu.set_faults(FaultConfig {
        abac_denial_wording: AbacDenialWording::ConditionFailuresOnly,
        ..FaultConfig::default()
    });
    let r = reader
        .put_ra(
            &legacy,
            &guid(),
            ACR_PULL,
            &kubelet(),
            Some("ServicePrincipal"),
        )
        .await;
    assert!(r.message().contains("does not have authorization to perform action 'Microsoft.Authorization/roleAssignments/write'"), "{}", r.message());
}

#[tokio::test]
async fn the_permissions_api_lists_the_callers_assignments_with_their_conditions() {
    let api = start(tenant()).await;
    let legacy = registry_id("images", "legacyacr");
    let r = api.get(&permissions_path(&legacy, "2022-04-01")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let value = r.body["value"].as_array().expect("value").clone();
    assert_eq!(
        value.len(),
        1,
        "the cluster Reader is not at or above the registry: {value:?}"
    );
    let entry = &value[0];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        strings(&entry["actions"]),
        [
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete",
            "*/read",
            "Microsoft.Support/*"
        ]
    );
    assert!(strings(&entry["notActions"]).is_empty());
    assert!(strings(&entry["dataActions"]).is_empty());
    assert_eq!(
        entry["condition"],
        delegation(&[ACR_PULL, REPOSITORY_READER]).as_str()
    );
    assert_eq!(entry["conditionVersion"], "2.0");
    assert!(r.body.get("nextLink").is_none());

    let cluster = api
        .get(&permissions_path(
            &cluster_id("aks-rg", "aks1"),
            "2022-04-01",
        ))
        .await;
    assert_eq!(strings(&cluster.body["value"][0]["actions"]), ["*/read"]);
    assert!(cluster.body["value"][0].get("condition").is_none());
    let sub = api
        .get(&permissions_path(
            &format!("/subscriptions/{SUB}"),
            "2022-04-01",
        ))
        .await;
    assert_eq!(
        sub.body["value"],
        Value::Array(vec![]),
        "nothing at subscription scope"
    );

    // Before 2018-07-01 there are no data actions.
    let old = api.get(&permissions_path(&legacy, "2015-07-01")).await;
    assert!(old.body["value"][0].get("dataActions").is_none());
    assert_eq!(
        api.get(&permissions_path(&legacy, "2099-01-01"))
            .await
            .code(),
        "InvalidApiVersionParameter"
    );
    let missing = registry_id("images", "nosuchacr");
    assert_eq!(
        api.get(&permissions_path(&missing, "2022-04-01"))
            .await
            .status,
        404
    );

    api.emu.set_faults(FaultConfig {
        permissions_show_assignment_conditions: false,
        ..FaultConfig::default()
    });
    let plain = api.get(&permissions_path(&legacy, "2022-04-01")).await;
    assert!(plain.body["value"][0].get("condition").is_none());

    // Contributor's notActions come through as published.
    let contributor_oid = "00000000-0000-4000-8000-0000000000b2";
    api.emu
        .insert_role_assignment(&rg_id("images"), "", CONTRIBUTOR, contributor_oid, None);
    let contributor = as_identity(
        &api,
        "00000000-0000-4000-8000-0000000000c2",
        contributor_oid,
    )
    .await;
    let r = contributor
        .get(&permissions_path(&legacy, "2022-04-01"))
        .await;
    let not_actions = strings(&r.body["value"][0]["notActions"]);
    assert!(not_actions.contains(&"Microsoft.Authorization/*/Write".to_string()));
    assert!(not_actions.contains(&"Microsoft.Authorization/elevateAccess/Action".to_string()));
}

#[tokio::test]
async fn allow_all_mode_reports_everything_minus_deny_rules() {
    let mut cfg = tenant();
    cfg.authorization = AuthorizationMode::AllowAll;
    let api = start(cfg).await;
    let legacy = registry_id("images", "legacyacr");
    let abac = registry_id("images", "abacacr");
    api.emu.deny(
        None,
        "Microsoft.Authorization/roleAssignments/write",
        &legacy,
    );
    let r = api.get(&permissions_path(&legacy, "2022-04-01")).await;
    assert_eq!(r.body["value"][0]["actions"], serde_json::json!(["*"]));
    assert_eq!(
        r.body["value"][0]["notActions"],
        serde_json::json!(["Microsoft.Authorization/roleAssignments/write"])
    );
    let r = api.get(&permissions_path(&abac, "2022-04-01")).await;
    assert_eq!(r.body["value"][0]["notActions"], serde_json::json!([]));
    // And the conditioned assignment is not enforced in this mode.
    let r = api
        .put_ra(&abac, &guid(), OWNER, &kubelet(), Some("ServicePrincipal"))
        .await;
    assert_eq!(r.status, 201);
}

fn base64url_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => panic!("not base64url: {c}"),
    };
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        acc = (acc << 6) | u32::from(value(c));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[tokio::test]
async fn tokens_are_jwt_shaped_and_name_the_caller() {
    let api = start(tenant()).await;
    let parts: Vec<&str> = api.token.split('.').collect();
    assert_eq!(parts.len(), 3, "header.payload.signature");
    let claims: Value = serde_json::from_slice(&base64url_decode(parts[1])).expect("JSON claims");
    let op = api.emu.operator_identity();
    assert_eq!(claims["oid"], op.object_id.as_str());
    assert_eq!(claims["appid"], op.client_id.as_str());
    assert_eq!(claims["tid"], api.emu.tenant_id().as_str());
    assert_eq!(claims["aud"], api.emu.endpoint().as_str());
    assert!(claims["exp"].as_u64() > claims["iat"].as_u64());
}

#[tokio::test]
async fn the_request_log_names_each_clients_user_agent_and_address() {
    let api = start(tenant()).await;
    let path = format!(
        "{}?api-version=2025-11-01",
        registry_id("images", "legacyacr")
    );
    let mut peers = Vec::new();
    for agent in ["replica-a/1.0", "replica-b/1.0"] {
        let ca = reqwest::Certificate::from_pem(api.emu.ca_pem().as_bytes()).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .user_agent(agent)
            .build()
            .unwrap();
        let r = client
            .get(api.url(&path))
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let entry = api
            .emu
            .request_log()
            .into_iter()
            .rev()
            .find(|e| e.user_agent.as_deref() == Some(agent))
            .unwrap_or_else(|| panic!("no log entry with User-Agent {agent}"));
        assert_eq!(entry.method, "GET");
        let peer = entry.peer.expect("peer address");
        assert!(peer.ip().is_loopback());
        peers.push(peer);
    }
    assert_ne!(
        peers[0], peers[1],
        "two clients, two connections, two addresses"
    );
}
