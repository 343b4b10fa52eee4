//! Helpers shared by the integration tests: an emulator with the fixture CRD registered and a
//! kube client configured from the emulator's kubeconfig.

#![allow(dead_code)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResource;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube_emulator::KubeEmulator;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

pub const CRD_NAME: &str = "registryattachments.acrattach.io";
pub const RESOURCE_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/sample";

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "acrattach.io",
    version = "v1alpha1",
    kind = "RegistryAttachment",
    status = "RegistryAttachmentStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct RegistryAttachmentSpec {
    pub registry: RegistryRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegistryRef {
    pub resource_id: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegistryAttachmentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<serde_json::Value>,
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

pub fn crd() -> CustomResourceDefinition {
    let text = std::fs::read_to_string(fixture("crd.yaml")).expect("fixture readable");
    serde_saphyr::from_str(&text).expect("fixture is a CRD")
}

pub async fn client(emu: &KubeEmulator) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::from_yaml(&emu.kubeconfig_yaml()).expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig usable");
    kube::Client::try_from(config).expect("client builds")
}

/// An emulator with the fixture CRD created and Established.
pub async fn with_crd() -> (KubeEmulator, kube::Client) {
    let emu = KubeEmulator::start().await.expect("emulator starts");
    let client = client(&emu).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd())
        .await
        .expect("CRD created");
    let established = kube::runtime::wait::await_condition(
        crds,
        CRD_NAME,
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(10), established)
        .await
        .expect("CRD established in time")
        .expect("await_condition works");
    (emu, client)
}

pub fn sample(name: &str) -> RegistryAttachment {
    RegistryAttachment::new(
        name,
        RegistryAttachmentSpec {
            registry: RegistryRef {
                resource_id: RESOURCE_ID.to_string(),
            },
            role: None,
        },
    )
}

pub fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}
