//! Drives the emulator with kube-rs 5 the way an operator does: typed Api calls, the runtime's
//! watcher, finalizer helper and event Recorder, server-side apply, and raw requests where the
//! typed client has no surface (Table output, watch from a stale resourceVersion).

mod common;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    ValidationDirective, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const FINALIZER: &str = "acrattach.io/cleanup";

fn dynamic_api(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("acrattach.io", "v1alpha1", "RegistryAttachment");
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}

#[tokio::test]
async fn discovery_lists_builtins_and_established_crd() {
    let (_emu, client) = with_crd().await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for g in [
        "",
        "apiextensions.k8s.io",
        "events.k8s.io",
        "coordination.k8s.io",
        "acrattach.io",
    ] {
        assert!(
            groups.contains(&g.to_string()),
            "{g} missing from {groups:?}"
        );
    }
    let (ar, caps) = discovery
        .get("acrattach.io")
        .unwrap()
        .recommended_kind("RegistryAttachment")
        .unwrap();
    assert_eq!(ar.plural, "registryattachments");
    assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));

    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let crd = crds.get(CRD_NAME).await.unwrap();
    let status = crd.status.unwrap();
    let conds = status.conditions.unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
    assert_eq!(status.accepted_names.unwrap().kind, "RegistryAttachment");
    assert_eq!(
        status.stored_versions.unwrap(),
        vec!["v1alpha1".to_string()]
    );
}

#[tokio::test]
async fn unauthenticated_requests_get_401() {
    let emu = kube_emulator::KubeEmulator::start().await.unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut kubeconfig = kube::config::Kubeconfig::from_yaml(&emu.kubeconfig_yaml()).unwrap();
    kubeconfig.auth_infos[0].auth_info.as_mut().unwrap().token = Some("wrong".to_string().into());
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    let err = api_error(api.get("default").await.unwrap_err());
    assert_eq!(err.code, 401);
    assert_eq!(err.reason, "Unauthorized");
}

#[tokio::test]
async fn crud_generation_status_and_conflicts() {
    let (emu, client) = with_crd().await;
    let api: Api<RegistryAttachment> = Api::all(client.clone());

    let mut obj = sample("one");
    obj.status = Some(RegistryAttachmentStatus {
        observed_generation: Some(7),
        conditions: vec![],
    });
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(
        created.spec.role.as_deref(),
        Some("Auto"),
        "schema default applied"
    );
    assert!(
        created.status.is_none(),
        "create drops status with the status subresource"
    );
    let rv1 = created.resource_version().unwrap();

    let err = api_error(api.create(&PostParams::default(), &obj).await.unwrap_err());
    assert!(err.is_already_exists());
    assert_eq!(
        err.message,
        "registryattachments.acrattach.io \"one\" already exists"
    );

    // Re-creating a fetched object (resourceVersion set) is refused like etcd does.
    let mut fetched = created.clone();
    fetched.metadata.name = Some("copy".into());
    let err = api_error(
        api.create(&PostParams::default(), &fetched)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 500);
    assert_eq!(
        err.message,
        "resourceVersion should not be set on objects to be created"
    );

    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert!(list.metadata.resource_version.is_some());

    // Spec change: generation and resourceVersion move.
    let p = api
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"role": "AcrPull"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(2));
    let rv2 = p.resource_version().unwrap();
    assert_ne!(rv1, rv2);

    // Metadata-only change: resourceVersion moves, generation does not.
    let p = api
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(2));
    let rv3 = p.resource_version().unwrap();
    assert_ne!(rv2, rv3);

    // No-op write: nothing persisted.
    let p = api
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"role": "AcrPull"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.resource_version().unwrap(), rv3);

    // Status through the subresource: generation unchanged.
    let st = api
        .patch_status(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 2, "conditions": [
                {"type": "Ready", "status": "True", "reason": "Attached", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})),
        )
        .await
        .unwrap();
    assert_eq!(st.metadata.generation, Some(2));
    assert_eq!(st.status.as_ref().unwrap().observed_generation, Some(2));
    // ...and the main resource cannot change it.
    let p = api
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 99}})),
        )
        .await
        .unwrap();
    assert_eq!(p.status.as_ref().unwrap().observed_generation, Some(2));
    // Status writes cannot change the spec.
    let p = api
        .patch_status(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"role": "RepositoryReader"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.spec.role.as_deref(), Some("AcrPull"));

    // Optimistic concurrency.
    let mut stale = created.clone();
    stale.spec.role = Some("RepositoryReader".into());
    let err = api_error(
        api.replace("one", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert!(err.is_conflict());
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on registryattachments.acrattach.io \"one\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let mut fresh = api.get("one").await.unwrap();
    fresh.spec.role = Some("RepositoryReader".into());
    let replaced = api
        .replace("one", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.generation, Some(3));
    assert!(replaced.status.is_some(), "PUT keeps the stored status");
    let mut unconditional = replaced.clone();
    unconditional.metadata.resource_version = None;
    let err = api_error(
        api.replace("one", &PostParams::default(), &unconditional)
            .await
            .unwrap_err(),
    );
    assert!(err.is_invalid());
    assert!(
        err.message.contains(
            "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
        )
    );

    // replace_status: only status is taken.
    let mut with_status = api.get_status("one").await.unwrap();
    with_status.status.as_mut().unwrap().observed_generation = Some(3);
    with_status.spec.role = Some("Auto".into());
    let rs = api
        .replace_status("one", &PostParams::default(), &with_status)
        .await
        .unwrap();
    assert_eq!(rs.status.unwrap().observed_generation, Some(3));
    assert_eq!(rs.spec.role.as_deref(), Some("RepositoryReader"));

    // Strategic merge patch is not served for custom resources.
    let err = api_error(
        api.patch(
            "one",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 415);
    assert_eq!(err.reason, "UnsupportedMediaType");

    // A failing JSON patch `test`.
    let err = api_error(
        api.patch(
            "one",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(
                    json!([{"op": "test", "path": "/spec/role", "value": "Nope"}]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        "the server rejected our request due to an error in our request"
    );

    // The log shows what was sent.
    let log = emu.request_log();
    assert!(log.iter().any(|r| {
        r.method == "PATCH"
            && r.path
                .starts_with("/apis/acrattach.io/v1alpha1/registryattachments/one/status")
            && r.content_type.as_deref() == Some("application/merge-patch+json")
            && r.status == 200
    }));
    assert!(log.iter().any(|r| r.method == "PUT" && r.status == 409));
}

#[tokio::test]
async fn schema_validation_and_field_validation() {
    let (emu, client) = with_crd().await;
    let api: Api<RegistryAttachment> = Api::all(client.clone());

    let mut bad = sample("bad");
    bad.spec.role = Some("Owner".into());
    let err = api_error(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert!(err.is_invalid());
    assert_eq!(
        err.message,
        "RegistryAttachment.acrattach.io \"bad\" is invalid: spec.role: Unsupported value: \"Owner\": supported values: \"Auto\", \"AcrPull\", \"RepositoryReader\""
    );
    let details = err.details.unwrap();
    assert_eq!(details.kind, "RegistryAttachment");
    assert_eq!(details.group, "acrattach.io");
    assert_eq!(details.causes[0].reason, "FieldValueNotSupported");
    assert_eq!(details.causes[0].field, "spec.role");

    let mut bad = sample("bad");
    bad.spec.registry.resource_id = "not-an-arm-id".into();
    let err = api_error(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert!(err.message.ends_with(
        "spec.registry.resourceId: Invalid value: \"not-an-arm-id\": spec.registry.resourceId in body should match '^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\.ContainerRegistry/registries/[^/]+$'"
    ), "{}", err.message);

    let dynamic = dynamic_api(&client);
    let missing: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "acrattach.io/v1alpha1", "kind": "RegistryAttachment",
        "metadata": {"name": "empty"}, "spec": {"role": 5}
    }))
    .unwrap();
    let err = api_error(
        dynamic
            .create(&PostParams::default(), &missing)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "RegistryAttachment.acrattach.io \"empty\" is invalid: [spec.registry: Required value, spec.role: Invalid value: \"integer\": spec.role in body must be of type string: \"integer\"]"
    );

    let mut bad_name = sample("Bad_Name");
    bad_name.metadata.name = Some("Bad_Name".into());
    let err = api_error(
        api.create(&PostParams::default(), &bad_name)
            .await
            .unwrap_err(),
    );
    assert!(err.message.starts_with("RegistryAttachment.acrattach.io \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"));

    // Unknown fields: pruned by default, refused with Strict, reported with Warn.
    api.create(&PostParams::default(), &sample("good"))
        .await
        .unwrap();
    let strict = PatchParams {
        field_validation: Some(ValidationDirective::Strict),
        ..Default::default()
    };
    let err = api_error(
        api.patch("good", &strict, &Patch::Merge(json!({"spec": {"foo": 1}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .starts_with(" \"\" is invalid: patch: Invalid value: \"{"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .ends_with("strict decoding error: unknown field \"spec.foo\""),
        "{}",
        err.message
    );
    let warn = PatchParams {
        field_validation: Some(ValidationDirective::Warn),
        ..Default::default()
    };
    let p: DynamicObject = dynamic
        .patch("good", &warn, &Patch::Merge(json!({"spec": {"foo": 1}})))
        .await
        .unwrap();
    assert!(
        p.data["spec"].get("foo").is_none(),
        "unknown fields are pruned"
    );
    assert_eq!(
        emu.request_log().iter().filter(|r| r.status == 422).count(),
        5
    );
}

#[tokio::test]
async fn finalizer_helper_and_deletion() {
    let (_emu, client) = with_crd().await;
    let api: Api<RegistryAttachment> = Api::all(client.clone());
    api.create(&PostParams::default(), &sample("fin"))
        .await
        .unwrap();

    // First pass adds the finalizer (JSON patch with `test` for null).
    let obj = Arc::new(api.get("fin").await.unwrap());
    finalizer(&api, FINALIZER, obj, |_ev| async {
        Ok::<_, std::io::Error>(kube::runtime::controller::Action::await_change())
    })
    .await
    .unwrap();
    let obj = api.get("fin").await.unwrap();
    assert_eq!(obj.finalizers(), &[FINALIZER.to_string()]);
    let generation = obj.metadata.generation.unwrap();

    // Second pass reconciles.
    let mut applied = false;
    finalizer(&api, FINALIZER, Arc::new(obj), |ev| {
        applied = matches!(ev, FinalizerEvent::Apply(_));
        async { Ok::<_, std::io::Error>(kube::runtime::controller::Action::await_change()) }
    })
    .await
    .unwrap();
    assert!(applied);

    // Delete: kept, with deletionTimestamp, generation bumped once.
    let deleted = api.delete("fin", &DeleteParams::default()).await.unwrap();
    let kept = deleted
        .left()
        .expect("object returned while finalizers remain");
    assert!(kept.metadata.deletion_timestamp.is_some());
    assert_eq!(kept.metadata.generation, Some(generation + 1));
    let again = api.delete("fin", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        again.left().unwrap().metadata.generation,
        Some(generation + 1)
    );

    // No new finalizers while deleting.
    let err = api_error(
        api.patch(
            "fin",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": [FINALIZER, "example.com/other"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert!(err.is_invalid());
    assert_eq!(err.details.unwrap().causes[0].reason, "FieldValueForbidden");

    // Cleanup pass removes the finalizer: the object is gone.
    let obj = Arc::new(api.get("fin").await.unwrap());
    let mut cleaned = false;
    finalizer(&api, FINALIZER, obj, |ev| {
        cleaned = matches!(ev, FinalizerEvent::Cleanup(_));
        async { Ok::<_, std::io::Error>(kube::runtime::controller::Action::await_change()) }
    })
    .await
    .unwrap();
    assert!(cleaned);
    assert!(api_error(api.get("fin").await.unwrap_err()).is_not_found());

    // Without finalizers DELETE answers with a Success Status.
    api.create(&PostParams::default(), &sample("plain"))
        .await
        .unwrap();
    let status = api
        .delete("plain", &DeleteParams::default())
        .await
        .unwrap()
        .right()
        .unwrap();
    assert!(status.is_success());
    assert_eq!(status.details.unwrap().kind, "registryattachments");
    assert!(
        api_error(
            api.delete("plain", &DeleteParams::default())
                .await
                .unwrap_err()
        )
        .is_not_found()
    );
}

async fn next_event<F>(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<watcher::Event<RegistryAttachment>>,
    mut pred: F,
) -> watcher::Event<RegistryAttachment>
where
    F: FnMut(&watcher::Event<RegistryAttachment>) -> bool,
{
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let ev = rx.recv().await.expect("watcher alive");
            if pred(&ev) {
                return ev;
            }
        }
    })
    .await
    .expect("expected watcher event in time")
}

#[tokio::test]
async fn watcher_follows_changes_and_relists_after_compaction() {
    let (emu, client) = with_crd().await;
    let api: Api<RegistryAttachment> = Api::all(client.clone());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(api.clone(), watcher::Config::default());
    tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while let Some(ev) = s.next().await {
            if let Ok(ev) = ev
                && tx.send(ev).is_err()
            {
                return;
            }
        }
    });
    next_event(&mut rx, |e| matches!(e, watcher::Event::InitDone)).await;

    api.create(&PostParams::default(), &sample("w1"))
        .await
        .unwrap();
    next_event(
        &mut rx,
        |e| matches!(e, watcher::Event::Apply(o) if o.name_any() == "w1"),
    )
    .await;
    api.patch_status(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"observedGeneration": 1}})),
    )
    .await
    .unwrap();
    next_event(&mut rx, |e| {
        matches!(e, watcher::Event::Apply(o) if o.status.as_ref().and_then(|s| s.observed_generation) == Some(1))
    })
    .await;
    let before = api.get("w1").await.unwrap().resource_version().unwrap();
    api.delete("w1", &DeleteParams::default()).await.unwrap();
    next_event(
        &mut rx,
        |e| matches!(e, watcher::Event::Delete(o) if o.name_any() == "w1"),
    )
    .await;

    // A raw watch from an old resourceVersion: 200, then an ERROR event with code 410.
    emu.compact();
    let mut raw = api
        .watch(&WatchParams::default(), &before)
        .await
        .unwrap()
        .boxed();
    match raw.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    // The running watcher was cut off, re-watched from its old resourceVersion, got 410 and relisted.
    api.create(&PostParams::default(), &sample("w2"))
        .await
        .unwrap();
    next_event(&mut rx, |e| matches!(e, watcher::Event::Init)).await;
    next_event(&mut rx, |e| match e {
        watcher::Event::InitApply(o) | watcher::Event::Apply(o) => o.name_any() == "w2",
        _ => false,
    })
    .await;
    let log = emu.request_log();
    let lists = log
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path.contains("/registryattachments?")
                && !r.path.contains("watch=true")
        })
        .count();
    assert!(lists >= 2, "expected a relist, log: {log:#?}");
}

#[tokio::test]
async fn selectors_and_pagination() {
    let (_emu, client) = with_crd().await;
    let api: Api<RegistryAttachment> = Api::all(client.clone());
    for (name, tier) in [("a", "front"), ("b", "back"), ("c", "front"), ("d", "db")] {
        let mut o = sample(name);
        o.metadata.labels = Some([("tier".to_string(), tier.to_string())].into());
        api.create(&PostParams::default(), &o).await.unwrap();
    }
    let names = |l: kube::api::ObjectList<RegistryAttachment>| -> Vec<String> {
        l.items.iter().map(|o| o.name_any()).collect()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier=front"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier!=front"))
                .await
                .unwrap()
        ),
        ["b", "d"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier in (back,db)"))
                .await
                .unwrap()
        ),
        ["b", "d"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier notin (back,db)"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("!tier"))
                .await
                .unwrap()
        )
        .len(),
        0
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    let err = api_error(
        api.list(&ListParams::default().fields("spec.role=Auto"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    assert_eq!(err.message, "field label not supported: spec.role");

    let page1 = api.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(names(page1.clone()), ["a", "b", "c"]);
    let token = page1.metadata.continue_.clone().unwrap();
    assert_eq!(page1.metadata.remaining_item_count, Some(1));
    let page2 = api
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(page2.clone()), ["d"]);
    assert!(page2.metadata.continue_.is_none());

    // A watch with a label selector: leaving the selector is a DELETED event.
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = api
        .watch(
            &WatchParams::default().labels("tier=front").timeout(10),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "back"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})),
    )
    .await
    .unwrap();
    match w.try_next().await.unwrap() {
        Some(WatchEvent::Deleted(o)) => assert_eq!(o.name_any(), "a"),
        other => panic!("expected DELETED a, got {other:?}"),
    }
    match w.try_next().await.unwrap() {
        Some(WatchEvent::Added(o)) => assert_eq!(o.name_any(), "b"),
        other => panic!("expected ADDED b, got {other:?}"),
    }
}

#[tokio::test]
async fn server_side_apply_ownership() {
    let (emu, client) = with_crd().await;
    let api: Api<RegistryAttachment> = Api::all(client.clone());
    let config = |role: &str| {
        json!({"apiVersion": "acrattach.io/v1alpha1", "kind": "RegistryAttachment",
               "metadata": {"name": "ssa", "labels": {"owner": "op"}},
               "spec": {"registry": {"resourceId": RESOURCE_ID}, "role": role}})
    };
    let created = api
        .patch(
            "ssa",
            &PatchParams::apply("operator"),
            &Patch::Apply(config("AcrPull")),
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("operator"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    assert_eq!(emu.request_log().last().unwrap().status, 201);

    // Re-applying the same configuration is a no-op.
    let same = api
        .patch(
            "ssa",
            &PatchParams::apply("operator"),
            &Patch::Apply(config("AcrPull")),
        )
        .await
        .unwrap();
    assert_eq!(same.resource_version(), created.resource_version());

    // Another manager setting the field to another value conflicts...
    let err = api_error(
        api.patch(
            "ssa",
            &PatchParams::apply("intruder"),
            &Patch::Apply(config("RepositoryReader")),
        )
        .await
        .unwrap_err(),
    );
    assert!(err.is_conflict());
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"operator\": .spec.role"
    );
    assert_eq!(
        err.details.unwrap().causes[0].reason,
        "FieldManagerConflict"
    );
    // ...unless forced.
    let forced = api
        .patch(
            "ssa",
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(config("RepositoryReader")),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.role.as_deref(), Some("RepositoryReader"));
    assert_eq!(forced.metadata.generation, Some(2));

    // An update manager owning a field: applies with another value conflict, naming its apiVersion.
    api.patch(
        "ssa",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"role": "Auto"}})),
    )
    .await
    .unwrap();
    let err = api_error(
        api.patch(
            "ssa",
            &PatchParams::apply("intruder"),
            &Patch::Apply(config("AcrPull")),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        err.message
            .contains("using acrattach.io/v1alpha1: .spec.role"),
        "{}",
        err.message
    );

    // Status via apply on the subresource.
    let st = api
        .patch_status(
            "ssa",
            &PatchParams::apply("operator").force(),
            &Patch::Apply(
                json!({"apiVersion": "acrattach.io/v1alpha1", "kind": "RegistryAttachment",
                                 "status": {"observedGeneration": 3}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().observed_generation, Some(3));

    // Fields outside the schema cannot be applied.
    let mut bogus = config("AcrPull");
    bogus["spec"]["bogus"] = json!(true);
    let err = api_error(
        api.patch(
            "ssa",
            &PatchParams::apply("operator").force(),
            &Patch::Apply(bogus),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "failed to create typed patch object (/ssa; acrattach.io/v1alpha1, Kind=RegistryAttachment): .spec.bogus: field not declared in schema"
    );
}

#[tokio::test]
async fn table_and_metadata_representations() {
    let (_emu, client) = with_crd().await;
    let api: Api<RegistryAttachment> = Api::all(client.clone());
    api.create(&PostParams::default(), &sample("t"))
        .await
        .unwrap();
    api.patch_status(
        "t",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Attached"}]}})),
    )
    .await
    .unwrap();
    let req = axum::http::Request::get("/apis/acrattach.io/v1alpha1/registryattachments?limit=500")
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: serde_json::Value = client.request(req).await.unwrap();
    assert_eq!(table["kind"], "Table");
    let headers: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        headers,
        ["Name", "Registry", "Role", "Ready", "Reason", "Age"]
    );
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[0], "t");
    assert_eq!(cells[1], RESOURCE_ID);
    assert_eq!(cells[2], "Auto");
    assert_eq!(cells[3], "True");
    assert_eq!(cells[4], "Attached");
    assert!(cells[5].as_str().unwrap().ends_with('s'));
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");

    let metas = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(metas.items[0].metadata.name.as_deref(), Some("t"));
}

#[tokio::test]
async fn events_recorder_and_leases() {
    let (_emu, client) = with_crd().await;
    let api: Api<RegistryAttachment> = Api::all(client.clone());
    let obj = api
        .create(&PostParams::default(), &sample("ev"))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "acr-attach".into(),
            instance: Some("pod-1".into()),
        },
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "Attached".into(),
        note: Some("attached the registry".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = obj.object_ref(&());
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();
    let events: Api<K8sEvent> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let e = &list.items[0];
    assert_eq!(e.reason.as_deref(), Some("Attached"));
    assert_eq!(e.series.as_ref().unwrap().count, 2);
    assert_eq!(e.regarding.as_ref().unwrap().name.as_deref(), Some("ev"));

    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("acr-attach".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some("kube-system"));
    let renewed = leases
        .patch(
            "acr-attach",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"renewTime": "2026-11-23T23:40:00.123456Z", "leaseTransitions": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(renewed.spec.as_ref().unwrap().lease_transitions, Some(1));
    let taken = leases
        .patch(
            "acr-attach",
            &PatchParams::apply("b"),
            &Patch::Apply(
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                 "spec": {"holderIdentity": "b"}}),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        api_error(taken).is_conflict(),
        "holderIdentity is owned by the creator"
    );
    let mut current = leases.get("acr-attach").await.unwrap();
    current.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let replaced = leases
        .replace("acr-attach", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(replaced.spec.unwrap().holder_identity.as_deref(), Some("c"));
    let bad = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("bad".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            lease_duration_seconds: Some(0),
            ..Default::default()
        }),
    };
    assert!(
        api_error(
            leases
                .create(&PostParams::default(), &bad)
                .await
                .unwrap_err()
        )
        .is_invalid()
    );
    let missing_ns: Api<Lease> = Api::namespaced(client.clone(), "nope");
    let err = api_error(
        missing_ns
            .create(&PostParams::default(), &lease)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.message, "namespaces \"nope\" not found");
    leases
        .delete("acr-attach", &DeleteParams::default())
        .await
        .unwrap();
    assert!(api_error(leases.get("acr-attach").await.unwrap_err()).is_not_found());
}

#[tokio::test]
async fn deleting_the_crd_removes_its_objects() {
    let (_emu, client) = with_crd().await;
    let api: Api<RegistryAttachment> = Api::all(client.clone());
    api.create(&PostParams::default(), &sample("x"))
        .await
        .unwrap();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.delete(CRD_NAME, &DeleteParams::default())
        .await
        .unwrap();
    let err = api_error(api.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(err.code, 404);
    crds.create(&PostParams::default(), &crd()).await.unwrap();
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn watch_protocol_details() {
    let (emu, client) = with_crd().await;
    let api: Api<RegistryAttachment> = Api::all(client.clone());
    api.create(&PostParams::default(), &sample("existing"))
        .await
        .unwrap();

    // resourceVersion "0": synthetic ADDED for the current state first.
    let mut w = api
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .unwrap()
        .boxed();
    match w.try_next().await.unwrap() {
        Some(WatchEvent::Added(o)) => assert_eq!(o.name_any(), "existing"),
        other => panic!("expected ADDED, got {other:?}"),
    }

    // timeoutSeconds ends the stream.
    let rv = api
        .get("existing")
        .await
        .unwrap()
        .resource_version()
        .unwrap();
    let started = std::time::Instant::now();
    let mut w = api
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .boxed();
    let end = tokio::time::timeout(Duration::from_secs(10), w.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(end.is_none(), "stream ended without events");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // Streaming list: ADDEDs, then a BOOKMARK marking the end of the initial events.
    let mut w = api
        .watch(&WatchParams::default().initial_events().timeout(5), "0")
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        w.try_next().await.unwrap(),
        Some(WatchEvent::Added(_))
    ));
    match w.try_next().await.unwrap() {
        Some(WatchEvent::Bookmark(b)) => {
            assert_eq!(
                b.metadata
                    .annotations
                    .get("k8s.io/initial-events-end")
                    .map(String::as_str),
                Some("true")
            );
        }
        other => panic!("expected BOOKMARK, got {other:?}"),
    }

    // The runtime watcher in streaming-list mode.
    let events: Vec<watcher::Event<RegistryAttachment>> =
        watcher(api.clone(), watcher::Config::default().streaming_lists())
            .take(3)
            .try_collect()
            .await
            .unwrap();
    assert!(matches!(events[0], watcher::Event::Init));
    assert!(matches!(&events[1], watcher::Event::InitApply(o) if o.name_any() == "existing"));
    assert!(matches!(events[2], watcher::Event::InitDone));
    assert!(
        emu.request_log()
            .iter()
            .any(|r| r.path.contains("sendInitialEvents=true"))
    );
}

#[tokio::test]
async fn names_namespaces_and_builtin_patches() {
    let emu = kube_emulator::KubeEmulator::start_on("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    assert!(emu.endpoint().starts_with("https://127.0.0.1:"));
    assert!(emu.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    let client = client(&emu).await;

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert!(names.contains(&"default".to_string()) && names.contains(&"kube-system".to_string()));
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
        )
        .await
        .unwrap();

    let leases: Api<Lease> = Api::namespaced(client.clone(), "team");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"generateName": "lock-"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 10}
    }))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let name = created.name_any();
    assert!(
        name.starts_with("lock-") && name.len() == "lock-".len() + 5,
        "{name}"
    );
    let smp = leases
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"holderIdentity": "b"}})),
        )
        .await
        .unwrap();
    assert_eq!(smp.spec.unwrap().holder_identity.as_deref(), Some("b"));
    let wrong: serde_json::Value = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "wrong"}, "spec": {"leaseDurationSeconds": "ten"}});
    let dynamic: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "team", &ApiResource::erase::<Lease>(&()));
    let err = api_error(
        dynamic
            .create(
                &PostParams::default(),
                &serde_json::from_value(wrong).unwrap(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.code, 400,
        "built-ins are typed: a wrong type is a decode error"
    );

    // Deleting a namespace takes its contents with it.
    let deleted = namespaces
        .delete("team", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        deleted
            .left()
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    assert!(namespaces.get_opt("team").await.unwrap().is_none());
    assert!(leases.get_opt(&name).await.unwrap().is_none());
    let err = api_error(
        namespaces
            .delete("default", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert!(err.is_forbidden());

    // A single object as a Table.
    let req = axum::http::Request::get("/api/v1/namespaces/default")
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let table: serde_json::Value = client.request(req).await.unwrap();
    assert_eq!(table["rows"][0]["cells"][0], "default");
    assert_eq!(table["rows"][0]["cells"][1], "Active");
    emu.shutdown();
}
