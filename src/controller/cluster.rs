//! The Kubernetes boundary: the few writes the reconciler makes to its own objects (finalizer,
//! status, events) and a read of all attachments, as a trait with the kube-rs implementation
//! behind it. Finalizer writes carry the object's resourceVersion, so they fail rather than
//! clobber a concurrent change. Status is written whole with server-side apply under one field
//! manager, so a field acr-attach stops writing disappears.

use std::sync::Arc;

use async_trait::async_trait;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::crd::{FINALIZER, RegistryAttachment, RegistryAttachmentStatus};
use crate::decide::status_patch::merge_patch;

pub const MANAGER: &str = "acr-attach";

/// Something worth telling a human through a Kubernetes Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub reason: String,
    pub note: String,
    /// What acr-attach was doing: Attach, Detach.
    pub action: &'static str,
}

#[async_trait]
pub trait ClusterApi: Send + Sync + 'static {
    async fn add_finalizer(&self, attachment: &RegistryAttachment) -> Result<(), kube::Error>;
    async fn remove_finalizer(&self, attachment: &RegistryAttachment) -> Result<(), kube::Error>;
    /// Writes `status` as the whole status (server-side apply, forced, field manager acr-attach).
    async fn apply_status(
        &self,
        attachment: &RegistryAttachment,
        status: &RegistryAttachmentStatus,
    ) -> Result<(), kube::Error>;
    async fn publish(
        &self,
        attachment: &RegistryAttachment,
        notice: &Notice,
    ) -> Result<(), kube::Error>;
    /// Every attachment the operator knows of (from the watch cache).
    fn attachments(&self) -> Vec<Arc<RegistryAttachment>>;
}

/// The finalizer list after adding ours, as a merge patch guarded by resourceVersion.
pub fn finalizer_patch(attachment: &RegistryAttachment, add: bool) -> Value {
    let mut finalizers: Vec<String> = attachment.finalizers().to_vec();
    finalizers.retain(|f| f != FINALIZER);
    if add {
        finalizers.push(FINALIZER.to_string());
    }
    let finalizers = if finalizers.is_empty() {
        Value::Null
    } else {
        json!(finalizers)
    };
    json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": attachment.resource_version(),
        }
    })
}

/// The apply configuration of a status write: the whole status, identified by name.
pub fn status_apply(attachment: &RegistryAttachment, status: &RegistryAttachmentStatus) -> Value {
    json!({
        "apiVersion": RegistryAttachment::api_version(&()),
        "kind": RegistryAttachment::kind(&()),
        "metadata": { "name": attachment.name_any() },
        "status": status,
    })
}

/// Status fields an apply could not remove because another field manager entry owns them (an
/// earlier release wrote status with merge patches, as operation Update): the merge patch that
/// nulls them, or `None` when the applied status stands as sent.
pub fn leftover_patch(
    applied: &RegistryAttachment,
    status: &RegistryAttachmentStatus,
) -> Option<Value> {
    let stored = serde_json::to_value(applied.status.clone().unwrap_or_default()).ok()?;
    let wanted = serde_json::to_value(status).ok()?;
    merge_patch(&stored, &wanted).map(|diff| json!({ "status": diff }))
}

pub struct KubeCluster {
    api: Api<RegistryAttachment>,
    recorder: Recorder,
    store: Store<RegistryAttachment>,
}

impl KubeCluster {
    pub fn new(client: Client, store: Store<RegistryAttachment>, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: MANAGER.to_string(),
            instance,
        };
        Self {
            api: Api::all(client.clone()),
            recorder: Recorder::new(client, reporter),
            store,
        }
    }
}

#[async_trait]
impl ClusterApi for KubeCluster {
    async fn add_finalizer(&self, attachment: &RegistryAttachment) -> Result<(), kube::Error> {
        let patch = finalizer_patch(attachment, true);
        self.api
            .patch(
                &attachment.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .map(drop)
    }

    async fn remove_finalizer(&self, attachment: &RegistryAttachment) -> Result<(), kube::Error> {
        let patch = finalizer_patch(attachment, false);
        match self
            .api
            .patch(
                &attachment.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Already gone: the release happened.
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn apply_status(
        &self,
        attachment: &RegistryAttachment,
        status: &RegistryAttachmentStatus,
    ) -> Result<(), kube::Error> {
        let name = attachment.name_any();
        let applied = self
            .api
            .patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(status_apply(attachment, status)),
            )
            .await?;
        if let Some(patch) = leftover_patch(&applied, status) {
            self.api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
        Ok(())
    }

    async fn publish(
        &self,
        attachment: &RegistryAttachment,
        notice: &Notice,
    ) -> Result<(), kube::Error> {
        let event = Event {
            type_: if notice.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: notice.reason.clone(),
            // events.k8s.io refuses a note over 1 KiB (bytes, not characters).
            note: Some(crate::decide::conditions::truncate_bytes(
                &notice.note,
                1024,
            )),
            action: notice.action.to_string(),
            secondary: None,
        };
        self.recorder
            .publish(&event, &attachment.object_ref(&()))
            .await
    }

    fn attachments(&self) -> Vec<Arc<RegistryAttachment>> {
        self.store.state()
    }
}
