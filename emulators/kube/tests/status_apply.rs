//! Server-side apply on the status subresource, as an operator does it with kube-rs
//! (`Api::patch_status` + `PatchParams::apply(..).force()`): field removal, atomic lists,
//! `x-kubernetes-list-type: map` lists merged per key, other managers' fields kept, the
//! managedFields entry, no-op applies, and Apply vs Update entries of the same manager.

mod common;

use common::client;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_emulator::KubeEmulator;
use serde_json::{Value, json};

async fn setup() -> (KubeEmulator, Api<DynamicObject>) {
    let emu = KubeEmulator::start().await.expect("emulator starts");
    let client = client(&emu).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let status_schema = json!({"type": "object", "properties": {
        "phase": {"type": "string"},
        "message": {"type": "string"},
        "note": {"type": "string"},
        "observedGeneration": {"type": "integer"},
        "registries": {"type": "array", "items": {"type": "string"}},
        "conditions": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object", "required": ["type"], "properties": {
                "type": {"type": "string"}, "status": {"type": "string"},
                "reason": {"type": "string"}}}
        }
    }});
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.acrattach.io"},
        "spec": {
            "group": "acrattach.io", "scope": "Cluster",
            "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                    "status": status_schema
                }}}
            }]
        }
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let gvk = GroupVersionKind::gvk("acrattach.io", "v1", "Widget");
    let api = Api::all_with(client, &ApiResource::from_gvk_with_plural(&gvk, "widgets"));
    (emu, api)
}

fn status_config(status: Value) -> Patch<Value> {
    Patch::Apply(json!({"apiVersion": "acrattach.io/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "status": status}))
}

fn condition<'a>(obj: &'a DynamicObject, ty: &str) -> Option<&'a Value> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

#[tokio::test]
async fn status_apply_tracks_ownership_like_kube_apiserver() {
    let (_emu, api) = setup().await;
    let created = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "acrattach.io/v1", "kind": "Widget",
                "metadata": {"name": "w"}, "spec": {"size": 1}}))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    // The operator first wrote a field with a merge patch (an Update entry)...
    let by = |m: &str| PatchParams {
        field_manager: Some(m.to_string()),
        ..Default::default()
    };
    api.patch_status(
        "w",
        &by("acr-attach"),
        &Patch::Merge(json!({"status": {"message": "from the merge patch"}})),
    )
    .await
    .unwrap();
    // ...and someone else owns a condition item and a field, also through Update.
    api.patch_status(
        "w",
        &by("kubectl-patch"),
        &Patch::Merge(json!({"status": {"note": "hands off",
            "conditions": [{"type": "Healthy", "status": "True"}]}})),
    )
    .await
    .unwrap();

    let apply = PatchParams::apply("acr-attach").force();
    let first = api
        .patch_status(
            "w",
            &apply,
            &status_config(json!({"phase": "Pending", "registries": ["a", "b"],
                "conditions": [{"type": "Ready", "status": "False", "reason": "Waiting"}]})),
        )
        .await
        .unwrap();
    // Map list: merged per key, the other manager's item stays.
    assert_eq!(
        condition(&first, "Healthy").unwrap()["status"],
        "True",
        "{:?}",
        first.data
    );
    assert_eq!(condition(&first, "Ready").unwrap()["reason"], "Waiting");
    assert_eq!(first.data["status"]["note"], "hands off");
    assert_eq!(first.metadata.generation, Some(1));
    assert_eq!(first.data["spec"]["size"], 1);

    let mf = first.metadata.managed_fields.clone().unwrap();
    let entry = mf
        .iter()
        .find(|e| {
            e.manager.as_deref() == Some("acr-attach") && e.operation.as_deref() == Some("Apply")
        })
        .expect("an Apply entry for the manager");
    assert_eq!(entry.subresource.as_deref(), Some("status"));
    assert_eq!(entry.fields_type.as_deref(), Some("FieldsV1"));
    assert_eq!(entry.api_version.as_deref(), Some("acrattach.io/v1"));
    let fields = &entry.fields_v1.as_ref().unwrap().0;
    assert_eq!(
        fields["f:status"]["f:conditions"]["k:{\"type\":\"Ready\"}"],
        json!({".": {}, "f:type": {}, "f:status": {}, "f:reason": {}})
    );
    assert!(fields["f:status"].get("f:message").is_none());
    // The same manager's Update entry is a separate entry.
    assert!(mf.iter().any(|e| e.manager.as_deref() == Some("acr-attach")
        && e.operation.as_deref() == Some("Update")
        && e.subresource.as_deref() == Some("status")));

    // A no-op apply persists nothing.
    let again = api
        .patch_status(
            "w",
            &apply,
            &status_config(json!({"phase": "Pending", "registries": ["a", "b"],
                "conditions": [{"type": "Ready", "status": "False", "reason": "Waiting"}]})),
        )
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version,
        first.metadata.resource_version
    );
    assert_eq!(again.metadata.generation, Some(1));

    // Omitted fields the manager applied before are removed; the atomic list is replaced;
    // a map-list item it no longer applies goes, the other manager's item and fields stay;
    // the field it wrote with a merge patch (its Update entry) stays.
    let second = api
        .patch_status(
            "w",
            &apply,
            &status_config(json!({"registries": ["c"],
                "conditions": [{"type": "Synced", "status": "True"}]})),
        )
        .await
        .unwrap();
    let status = &second.data["status"];
    assert!(status.get("phase").is_none(), "{status}");
    assert_eq!(status["registries"], json!(["c"]));
    assert!(condition(&second, "Ready").is_none(), "{status}");
    assert_eq!(condition(&second, "Synced").unwrap()["status"], "True");
    assert_eq!(condition(&second, "Healthy").unwrap()["status"], "True");
    assert_eq!(status["note"], "hands off");
    assert_eq!(status["message"], "from the merge patch");
    assert_eq!(second.metadata.generation, Some(1));
    assert_ne!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );

    // Without force, changing a field of the other manager's item conflicts.
    let err = api
        .patch_status(
            "w",
            &PatchParams::apply("acr-attach"),
            &status_config(json!({"conditions": [{"type": "Healthy", "status": "False"}]})),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(
                s.message,
                "Apply failed with 1 conflict: conflict with \"kubectl-patch\" with subresource \"status\" using acrattach.io/v1: .status.conditions[type=\"Healthy\"].status"
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}
