//! Test harness: the real reconciler and the real ARM client stack (azure_identity credential,
//! azure_core pipeline, reqwest/rustls) against the ARM emulator over HTTPS, with an in-memory
//! stand-in for the Kubernetes API that plays the API server's part for finalizers, status and
//! events. Time is a manual clock so resync windows pass instantly.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acr_attach::azure::credential::{AzureSettings, Cloud, CredentialKind};
use acr_attach::controller::clock::ManualClock;
use acr_attach::controller::cluster::{ClusterApi, Notice, finalizer_patch};
use acr_attach::controller::reconcile::{Next, ReconcileError, reconcile_once};
use acr_attach::controller::{Context, KubeletIdentity, Settings};
use acr_attach::crd::{
    Condition, PrincipalReference, RegistryAttachment, RegistryAttachmentSpec, RegistryReference,
    RoleChoice,
};
use acr_attach::decide::status_patch::apply_merge_patch;
use acr_attach::metrics::Metrics;
use arm_emulator::{ArmEmulator, TenantConfig};
use async_trait::async_trait;
use serde_json::Value;

pub const SUB: &str = arm_emulator::DEFAULT_SUBSCRIPTION_ID;
pub const KUBELET: &str = "5a1e0000-1111-4222-8333-000000000001";
pub const KUBELET_2: &str = "5a1e0000-1111-4222-8333-000000000002";
pub const ACR_PULL: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";
pub const REPOSITORY_READER: &str = "b93aa761-3e63-49ed-ac28-beffa264f7ac";

pub fn rg() -> String {
    format!("/subscriptions/{SUB}/resourceGroups/images")
}
pub fn registry(name: &str) -> String {
    format!(
        "{}/providers/Microsoft.ContainerRegistry/registries/{name}",
        rg()
    )
}
pub fn cluster_id() -> String {
    format!(
        "{}/providers/Microsoft.ContainerService/managedClusters/aks1",
        rg()
    )
}

/// A tenant with a legacy registry `legacyacr`, an ABAC registry `abacacr`, and the AKS cluster
/// `aks1` whose kubelet identity is KUBELET.
pub fn tenant() -> TenantConfig {
    use arm_emulator::{
        ClusterConfig, KubeletIdentity as ArmKubelet, PrincipalConfig, RegistryConfig, RegistryMode,
    };
    let mut cluster = ClusterConfig::new(cluster_id());
    cluster.kubelet_identity = Some(ArmKubelet {
        object_id: KUBELET.to_string(),
        ..ArmKubelet::generated(&cluster_id())
    });
    TenantConfig {
        resource_groups: vec![rg()],
        registries: vec![
            RegistryConfig::new(registry("legacyacr"), RegistryMode::Legacy),
            RegistryConfig::new(registry("abacacr"), RegistryMode::Abac),
            RegistryConfig::new(registry("otheracr"), RegistryMode::Legacy),
        ],
        clusters: vec![cluster],
        principals: vec![PrincipalConfig {
            object_id: KUBELET_2.to_string(),
            ..Default::default()
        }],
        ..TenantConfig::default()
    }
}

pub fn spec(registry_id: &str) -> RegistryAttachmentSpec {
    RegistryAttachmentSpec {
        registry: RegistryReference::by_id(registry_id.to_string()),
        role: RoleChoice::Auto,
        principal: None,
        principals: Vec::new(),
        repositories: Vec::new(),
        catalog_listing: false,
        deletion_policy: Default::default(),
    }
}

pub fn spec_for(registry_id: &str, principal: &str) -> RegistryAttachmentSpec {
    RegistryAttachmentSpec {
        principal: Some(PrincipalReference {
            object_id: principal.to_string(),
        }),
        ..spec(registry_id)
    }
}

/// Plays the API server for one kind of object: resourceVersion preconditions on finalizer
/// patches, merge patches on status, finalizer-gated deletion.
#[derive(Default)]
pub struct FakeCluster {
    objects: Mutex<BTreeMap<String, RegistryAttachment>>,
    pub events: Mutex<Vec<(String, Notice)>>,
    next_version: AtomicUsize,
    pub status_writes: AtomicUsize,
    /// Status writes to fail, counting from the next one (simulates a crash or API outage).
    fail_status_write_number: Mutex<Option<usize>>,
    /// What `attachments()` returns while frozen: a watch cache that lags behind the server.
    frozen_view: Mutex<Option<Vec<RegistryAttachment>>>,
}

fn conflict() -> kube::Error {
    kube::Error::Api(Box::new(
        kube::core::Status::failure("the object has been modified", "Conflict").with_code(409),
    ))
}

impl FakeCluster {
    fn bump(&self, object: &mut RegistryAttachment) {
        let version = self.next_version.fetch_add(1, Ordering::SeqCst) + 1;
        object.metadata.resource_version = Some(version.to_string());
    }

    pub fn create(&self, name: &str, spec: RegistryAttachmentSpec) {
        let mut object = RegistryAttachment::new(name, spec);
        object.metadata.generation = Some(1);
        object.metadata.uid = Some(format!("uid-{name}"));
        self.bump(&mut object);
        self.objects
            .lock()
            .unwrap()
            .insert(name.to_string(), object);
    }

    pub fn update_spec(&self, name: &str, change: impl FnOnce(&mut RegistryAttachmentSpec)) {
        let mut objects = self.objects.lock().unwrap();
        let object = objects.get_mut(name).expect("object exists");
        change(&mut object.spec);
        object.metadata.generation = Some(object.metadata.generation.unwrap_or(0) + 1);
        self.bump(object);
    }

    pub fn annotate(&self, name: &str, key: &str, value: &str) {
        let mut objects = self.objects.lock().unwrap();
        let object = objects.get_mut(name).expect("object exists");
        object
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value.to_string());
        self.bump(object);
    }

    /// `kubectl delete`: marks for deletion, or removes when no finalizer holds it.
    pub fn delete(&self, name: &str) {
        let mut objects = self.objects.lock().unwrap();
        let Some(object) = objects.get_mut(name) else {
            return;
        };
        if object
            .metadata
            .finalizers
            .as_ref()
            .is_none_or(|f| f.is_empty())
        {
            objects.remove(name);
            return;
        }
        if object.metadata.deletion_timestamp.is_none() {
            object.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
            );
            object.metadata.generation = Some(object.metadata.generation.unwrap_or(0) + 1);
        }
        self.bump(object);
    }

    pub fn get(&self, name: &str) -> Option<RegistryAttachment> {
        self.objects.lock().unwrap().get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }

    /// From now on the operator's view of all attachments stays as it is (a lagging watch cache).
    pub fn freeze_view(&self) {
        let now: Vec<_> = self.objects.lock().unwrap().values().cloned().collect();
        *self.frozen_view.lock().unwrap() = Some(now);
    }

    pub fn fail_status_write(&self, nth_from_now: usize) {
        let done = self.status_writes.load(Ordering::SeqCst);
        *self.fail_status_write_number.lock().unwrap() = Some(done + nth_from_now);
    }

    fn with_current(
        &self,
        attachment: &RegistryAttachment,
        change: impl FnOnce(&mut RegistryAttachment),
    ) -> Result<(), kube::Error> {
        let mut objects = self.objects.lock().unwrap();
        let name = attachment.metadata.name.clone().unwrap_or_default();
        let Some(stored) = objects.get_mut(&name) else {
            return Err(kube::Error::Api(Box::new(
                kube::core::Status::failure("not found", "NotFound").with_code(404),
            )));
        };
        change(stored);
        let finished = stored.metadata.deletion_timestamp.is_some()
            && stored
                .metadata
                .finalizers
                .as_ref()
                .is_none_or(|f| f.is_empty());
        if finished {
            objects.remove(&name);
        } else if let Some(stored) = objects.get_mut(&name) {
            let version = self.next_version.fetch_add(1, Ordering::SeqCst) + 1;
            stored.metadata.resource_version = Some(version.to_string());
        }
        Ok(())
    }

    fn apply_metadata_patch(
        &self,
        attachment: &RegistryAttachment,
        patch: Value,
    ) -> Result<(), kube::Error> {
        let current_version = self
            .get(attachment.metadata.name.as_deref().unwrap_or_default())
            .and_then(|o| o.metadata.resource_version);
        if patch["metadata"]["resourceVersion"].as_str() != current_version.as_deref() {
            return Err(conflict());
        }
        self.with_current(attachment, |stored| {
            let mut json = serde_json::to_value(&*stored).unwrap();
            let mut patch = patch;
            patch["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("resourceVersion");
            apply_merge_patch(&mut json, &patch);
            *stored = serde_json::from_value(json).unwrap();
        })
    }
}

#[async_trait]
impl ClusterApi for FakeCluster {
    async fn add_finalizer(&self, attachment: &RegistryAttachment) -> Result<(), kube::Error> {
        self.apply_metadata_patch(attachment, finalizer_patch(attachment, true))
    }

    async fn remove_finalizer(&self, attachment: &RegistryAttachment) -> Result<(), kube::Error> {
        self.apply_metadata_patch(attachment, finalizer_patch(attachment, false))
    }

    /// Server-side apply by the one field manager that writes status: the status is replaced.
    async fn apply_status(
        &self,
        attachment: &RegistryAttachment,
        status: &acr_attach::crd::RegistryAttachmentStatus,
    ) -> Result<(), kube::Error> {
        let number = self.status_writes.fetch_add(1, Ordering::SeqCst) + 1;
        if *self.fail_status_write_number.lock().unwrap() == Some(number) {
            return Err(kube::Error::Api(Box::new(
                kube::core::Status::failure("injected status write failure", "InternalError")
                    .with_code(500),
            )));
        }
        self.with_current(attachment, |stored| stored.status = Some(status.clone()))
    }

    async fn publish(
        &self,
        attachment: &RegistryAttachment,
        notice: &Notice,
    ) -> Result<(), kube::Error> {
        self.events.lock().unwrap().push((
            attachment.metadata.name.clone().unwrap_or_default(),
            notice.clone(),
        ));
        Ok(())
    }

    fn attachments(&self) -> Vec<Arc<RegistryAttachment>> {
        if let Some(view) = self.frozen_view.lock().unwrap().as_ref() {
            return view.iter().cloned().map(Arc::new).collect();
        }
        self.objects
            .lock()
            .unwrap()
            .values()
            .cloned()
            .map(Arc::new)
            .collect()
    }
}

#[derive(Clone, Copy)]
pub enum Login {
    ClientSecret,
    WorkloadIdentity,
}

pub struct Harness {
    pub arm: ArmEmulator,
    pub cluster: Arc<FakeCluster>,
    pub clock: Arc<ManualClock>,
    pub ctx: Arc<Context>,
    pub settings: Settings,
    login: Login,
    ca_file: PathBuf,
    token_file: PathBuf,
}

static FILE_COUNTER: AtomicUsize = AtomicUsize::new(0);

fn scratch_file(stem: &str, contents: &str) -> PathBuf {
    let n = FILE_COUNTER.fetch_add(1, Ordering::SeqCst);
    let path =
        std::env::temp_dir().join(format!("acr-attach-test-{}-{n}-{stem}", std::process::id()));
    std::fs::write(&path, contents).expect("write scratch file");
    path
}

impl Harness {
    pub async fn start(tenant: TenantConfig, kubelet: KubeletIdentity) -> Self {
        Self::start_with(tenant, settings(kubelet), Login::ClientSecret).await
    }

    pub async fn start_with(tenant: TenantConfig, settings: Settings, login: Login) -> Self {
        acr_attach::install_crypto_provider();
        let arm = ArmEmulator::start(tenant)
            .await
            .expect("ARM emulator starts");
        let ca_file = scratch_file("ca.pem", &arm.ca_pem());
        // A JWT-shaped projected service-account token, as the workload identity webhook mounts.
        let token_file = scratch_file(
            "token",
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YWNyLWF0dGFjaDphY3ItYXR0YWNoIn0.c2lnbmF0dXJl",
        );
        let cluster = Arc::new(FakeCluster::default());
        let clock = Arc::new(ManualClock::default());
        let azure = azure_settings(&arm, &login, &ca_file, &token_file);
        let ctx = Arc::new(operator_context(&azure, &cluster, &clock, &settings));
        Harness {
            arm,
            cluster,
            clock,
            ctx,
            settings,
            login,
            ca_file,
            token_file,
        }
    }

    pub fn azure_settings(&self) -> AzureSettings {
        azure_settings(&self.arm, &self.login, &self.ca_file, &self.token_file)
    }

    /// A new operator process: fresh caches, fresh credential, same cluster and Azure.
    pub fn restart_operator(&mut self) {
        self.restart_operator_with(|_| {});
    }

    /// A restart with changed Azure settings (a wrong secret, say).
    pub fn restart_operator_with(&mut self, change: impl FnOnce(&mut AzureSettings)) {
        let mut azure = self.azure_settings();
        change(&mut azure);
        self.ctx = Arc::new(operator_context(
            &azure,
            &self.cluster,
            &self.clock,
            &self.settings,
        ));
    }

    /// The operator of another cluster (another owner id), with its own objects, against the
    /// same Azure tenant.
    pub fn another_cluster(&self, owner: &str) -> Harness {
        let cluster = Arc::new(FakeCluster::default());
        let settings = Settings {
            owner: acr_attach::model::OwnerId::new(owner),
            ..self.settings.clone()
        };
        let login = self.login;
        let azure = azure_settings(&self.arm, &login, &self.ca_file, &self.token_file);
        let ctx = Arc::new(operator_context(&azure, &cluster, &self.clock, &settings));
        Harness {
            arm: self.arm.clone(),
            cluster,
            clock: self.clock.clone(),
            ctx,
            settings,
            login,
            ca_file: self.ca_file.clone(),
            token_file: self.token_file.clone(),
        }
    }

    pub async fn reconcile(&self, name: &str) -> Result<Next, ReconcileError> {
        let object = self.cluster.get(name).expect("object exists");
        reconcile_once(&object, &self.ctx).await
    }

    /// Reconciles until the object stops changing (at most 5 rounds), returning the last decision.
    pub async fn settle(&self, name: &str) -> Next {
        let mut last = None;
        for _ in 0..5 {
            let Some(before) = self.cluster.get(name) else {
                break;
            };
            last = Some(self.reconcile(name).await.expect("reconcile"));
            let after = self
                .cluster
                .get(name)
                .map(|o| serde_json::to_value(o).unwrap());
            if after == Some(serde_json::to_value(&before).unwrap()) {
                break;
            }
        }
        last.unwrap_or(Next::AwaitChange)
    }

    pub fn condition(&self, name: &str, type_: &str) -> Condition {
        self.cluster
            .get(name)
            .and_then(|o| o.status)
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == type_))
            .unwrap_or_else(|| panic!("{name} has no {type_} condition"))
    }

    pub fn status(&self, name: &str) -> acr_attach::crd::RegistryAttachmentStatus {
        self.cluster
            .get(name)
            .and_then(|o| o.status)
            .unwrap_or_else(|| panic!("{name} has no status"))
    }

    /// The operator's /metrics text.
    pub fn metrics(&self) -> String {
        self.ctx.metrics.render()
    }

    pub fn assignments_for(&self, principal: &str) -> Vec<arm_emulator::RoleAssignmentRecord> {
        self.arm
            .role_assignments()
            .into_iter()
            .filter(|a| a.principal_id.eq_ignore_ascii_case(principal))
            .collect()
    }

    pub fn pass_resync_window(&self) {
        self.clock.advance(self.settings.resync.mul_f64(1.2));
    }
}

fn azure_settings(
    arm: &ArmEmulator,
    login: &Login,
    ca_file: &Path,
    token_file: &Path,
) -> AzureSettings {
    let operator = arm.operator_identity();
    let endpoint = azure_core::http::Url::parse(&arm.endpoint()).unwrap();
    let (credential, client_secret, federated_token_file) = match login {
        Login::ClientSecret => (
            CredentialKind::ClientSecret,
            operator
                .client_secret
                .clone()
                .map(azure_core::credentials::Secret::new),
            None,
        ),
        Login::WorkloadIdentity => (
            CredentialKind::WorkloadIdentity,
            None,
            Some(token_file.to_path_buf()),
        ),
    };
    AzureSettings {
        cloud: Cloud::AzurePublic,
        arm_endpoint: Some(endpoint.clone()),
        arm_audience: None,
        authority_host: Some(endpoint),
        extra_ca_file: Some(ca_file.to_path_buf()),
        credential,
        client_id: Some(operator.client_id.clone()),
        tenant_id: Some(arm.tenant_id()),
        client_secret,
        federated_token_file,
        instance: None,
    }
}

fn operator_context(
    azure: &AzureSettings,
    cluster: &Arc<FakeCluster>,
    clock: &Arc<ManualClock>,
    settings: &Settings,
) -> Context {
    let metrics = Arc::new(Metrics::default());
    let client = azure
        .arm_client(metrics.clone())
        .expect("ARM client builds");
    Context::new(
        Arc::new(client),
        cluster.clone(),
        settings.clone(),
        clock.clone(),
        metrics,
    )
}

/// Settings of the operator under test, owned by the installation "test-cluster".
pub fn settings(kubelet: KubeletIdentity) -> Settings {
    let mut settings = Settings::new(kubelet, acr_attach::model::OwnerId::new("test-cluster"));
    // Real time: a co-owner reads the assignment back after this (tests keep it short).
    settings.co_owner_settle = Duration::from_millis(50);
    settings
}

/// The delay a reconcile asks for before the next one, if any.
pub fn requeue_after(next: &Next) -> Option<Duration> {
    match next {
        Next::Requeue(after) => Some(*after),
        Next::AwaitChange => None,
    }
}
