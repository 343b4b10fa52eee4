//! The production credentials (azure_identity 1.0) and pipeline (azure_core 1.1) against the
//! emulator, configured only through options (no process environment).

mod common;

use arm_emulator::{ArmEmulator, Operation, RegistryConfig, RegistryMode, TenantConfig};
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, Request, StatusCode, Transport, Url,
};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use common::*;
use std::sync::Arc;

fn config() -> TenantConfig {
    TenantConfig {
        registries: vec![RegistryConfig::new(
            registry_id("rg", "acr1"),
            RegistryMode::Abac,
        )],
        ..TenantConfig::default()
    }
}

fn client_options(emu: &ArmEmulator) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = emu.endpoint();
    ClientOptions {
        transport: Some(Transport::new(Arc::new(client_for(emu)))),
        cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
        ..ClientOptions::default()
    }
}

fn secret_credential(emu: &ArmEmulator, secret: &str) -> Arc<ClientSecretCredential> {
    let id = emu.operator_identity();
    ClientSecretCredential::new(
        &emu.tenant_id(),
        id.client_id,
        Secret::from(secret.to_string()),
        Some(ClientSecretCredentialOptions {
            client_options: client_options(emu),
        }),
    )
    .expect("credential")
}

#[tokio::test]
async fn client_secret_credential_gets_a_usable_token() {
    let emu = ArmEmulator::start(config()).await.expect("start");
    let id = emu.operator_identity();
    let cred = secret_credential(&emu, id.client_secret.as_deref().unwrap_or_default());
    let token = cred
        .get_token(&[&emu.arm_scope()], None)
        .await
        .expect("token");
    assert!(!token.token.secret().is_empty());
    assert!(token.expires_on > azure_core::time::OffsetDateTime::now_utc());

    let client = client_for(&emu);
    let r = client
        .get(format!(
            "{}{}?api-version=2025-11-01",
            emu.endpoint(),
            registry_id("rg", "acr1")
        ))
        .bearer_auth(token.token.secret())
        .send()
        .await
        .expect("GET registry");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(emu.counts().get_by(Operation::Token, &id.object_id), 1);

    let bad = secret_credential(&emu, "wrong");
    let err = bad
        .get_token(&[&emu.arm_scope()], None)
        .await
        .expect_err("bad secret fails");
    assert!(err.to_string().contains("AADSTS7000215"), "{err}");
}

#[tokio::test]
async fn workload_identity_credential_with_token_file() {
    let emu = ArmEmulator::start(config()).await.expect("start");
    let id = emu.operator_identity();
    let path = std::env::temp_dir().join(format!("arm-emulator-wi-{}", uuid::Uuid::new_v4()));
    std::fs::write(
        &path,
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJhdWQiOlsiYXBpOi8vQXp1cmVBRFRva2VuRXhjaGFuZ2UiXX0.c2lnbmF0dXJl",
    )
    .expect("write token file");
    let cred = WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
        credential_options: ClientAssertionCredentialOptions {
            client_options: client_options(&emu),
        },
        client_id: Some(id.client_id.clone()),
        tenant_id: Some(emu.tenant_id()),
        token_file_path: Some(path.clone()),
    }))
    .expect("credential");
    let token = cred.get_token(&[&emu.arm_scope()], None).await;
    let _ = std::fs::remove_file(&path);
    let token = token.expect("token");
    assert!(!token.token.secret().is_empty());
    let log = emu.request_log();
    assert!(
        log.iter()
            .any(|l| l.operation == Some(Operation::Token) && l.status == 200)
    );
}

/// The operator's production path: azure_core pipeline + bearer policy + retry policy.
#[tokio::test]
async fn azure_core_pipeline_reads_arm_and_understands_its_errors() {
    let emu = ArmEmulator::start(config()).await.expect("start");
    let id = emu.operator_identity();
    let cred: Arc<dyn TokenCredential> =
        secret_credential(&emu, id.client_secret.as_deref().unwrap_or_default());
    let policy = BearerTokenAuthorizationPolicy::new(cred, [emu.arm_scope()]);
    let pipeline = Pipeline::new(
        Some("arm-emulator-test"),
        Some("0"),
        client_options(&emu),
        Vec::new(),
        vec![Arc::new(policy)],
        None,
    );
    let ctx = Context::new();
    let url = |path: &str| {
        Url::parse(&format!("{}{path}?api-version=2025-11-01", emu.endpoint())).expect("url")
    };

    // One injected 503 with Retry-After is absorbed by the default retry policy.
    emu.fail_next(Operation::GetRegistry, 503, 1);
    let mut req = Request::new(url(&registry_id("rg", "acr1")), Method::Get);
    let res = pipeline
        .send(&ctx, &mut req, None)
        .await
        .expect("GET registry");
    assert_eq!(res.status(), StatusCode::Ok);
    let body: serde_json::Value = serde_json::from_slice(res.body()).expect("json");
    assert_eq!(
        body["properties"]["roleAssignmentMode"],
        "AbacRepositoryPermissions"
    );
    assert_eq!(emu.counts().get(Operation::GetRegistry), 2);

    let mut req = Request::new(url(&registry_id("rg", "missing")), Method::Get);
    let err = pipeline
        .send(&ctx, &mut req, Some(Default::default()))
        .await
        .expect_err("404");
    match err.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => {
            assert_eq!(*status, StatusCode::NotFound);
            assert_eq!(error_code.as_deref(), Some("ResourceNotFound"));
        }
        other => panic!("unexpected error kind {other:?}"),
    }
}
