//! Events are stored once and served both as `events.k8s.io/v1` and as core `v1`, as a real
//! apiserver does: what kube's Recorder writes through events.k8s.io reads back through core
//! v1 with the fields converted (and the other way round), with each version's field
//! selectors, validation, watch and the server's event Table.

mod common;

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::api::events::v1::Event as V1Event;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::time::Duration;

fn recorder(client: &kube::Client) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: "acr-attach".into(),
            instance: Some("acr-attach-0".into()),
        },
    )
}

fn event(type_: EventType, reason: &str, note: &str) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Reconcile".into(),
        secondary: None,
    }
}

fn names(list: &[CoreEvent]) -> Vec<String> {
    let mut v: Vec<String> = list
        .iter()
        .map(|e| e.reason.clone().unwrap_or_default())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn recorder_events_read_back_as_core_v1() {
    let (_emu, client) = with_crd().await;
    let ras: Api<RegistryAttachment> = Api::all(client.clone());
    let one = ras
        .create(&PostParams::default(), &sample("one"))
        .await
        .unwrap();
    let two = ras
        .create(&PostParams::default(), &sample("two"))
        .await
        .unwrap();
    let rec = recorder(&client);
    let attached = event(EventType::Normal, "Attached", "granted AcrPull");
    rec.publish(&attached, &one.object_ref(&())).await.unwrap();
    rec.publish(&attached, &one.object_ref(&())).await.unwrap();
    rec.publish(
        &event(EventType::Warning, "RoleNotEffective", "ABAC registry"),
        &two.object_ref(&()),
    )
    .await
    .unwrap();

    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let list = core.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(&list.items), ["Attached", "RoleNotEffective"]);
    let e = list
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("Attached"))
        .unwrap();
    assert_eq!(
        e.involved_object.kind.as_deref(),
        Some("RegistryAttachment")
    );
    assert_eq!(e.involved_object.name.as_deref(), Some("one"));
    assert_eq!(e.involved_object.uid, one.metadata.uid);
    assert_eq!(e.involved_object.namespace, None);
    assert_eq!(e.message.as_deref(), Some("granted AcrPull"));
    assert_eq!(e.reporting_component.as_deref(), Some("acr-attach"));
    assert_eq!(e.reporting_instance.as_deref(), Some("acr-attach-0"));
    assert_eq!(e.type_.as_deref(), Some("Normal"));
    assert_eq!(e.action.as_deref(), Some("Reconcile"));
    assert_eq!(e.series.as_ref().and_then(|s| s.count), Some(2));
    assert!(e.event_time.is_some());
    // Not converted from anything: the legacy fields stay empty, as Go encodes them.
    assert_eq!(e.count, None);
    assert_eq!(e.first_timestamp, None);
    assert_eq!(e.source, Some(EventSource::default()));
    let raw: Value = client
        .request(
            axum::http::Request::get(format!(
                "/api/v1/namespaces/default/events/{}",
                e.name_any()
            ))
            .body(Vec::new())
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(raw["apiVersion"], "v1");
    assert!(raw["firstTimestamp"].is_null() && raw.get("firstTimestamp").is_some());
    assert!(raw.get("regarding").is_none() && raw.get("note").is_none());
    // Same object, same resourceVersion, through both APIs.
    let v1: Api<V1Event> = Api::namespaced(client.clone(), "default");
    let same = v1.get(&e.name_any()).await.unwrap();
    assert_eq!(same.metadata.uid, e.metadata.uid);
    assert_eq!(same.metadata.resource_version, e.metadata.resource_version);

    // kubectl describe's query for a cluster-scoped object: all namespaces, empty namespace.
    let all: Api<CoreEvent> = Api::all(client.clone());
    let selector = format!(
        "involvedObject.name=one,involvedObject.namespace=,involvedObject.kind=RegistryAttachment,involvedObject.uid={}",
        one.metadata.uid.clone().unwrap()
    );
    let found = all
        .list(&ListParams::default().fields(&selector))
        .await
        .unwrap();
    assert_eq!(names(&found.items), ["Attached"]);
    for (selector, want) in [
        ("involvedObject.name=two", vec!["RoleNotEffective"]),
        (
            "involvedObject.apiVersion=acrattach.io/v1alpha1",
            vec!["Attached", "RoleNotEffective"],
        ),
        ("type=Warning", vec!["RoleNotEffective"]),
        ("reason!=Attached", vec!["RoleNotEffective"]),
        (
            "reportingComponent=acr-attach",
            vec!["Attached", "RoleNotEffective"],
        ),
        // `source` falls back to the reporting controller when the legacy source is empty.
        ("source=acr-attach", vec!["Attached", "RoleNotEffective"]),
        ("involvedObject.namespace=default", vec![]),
    ] {
        let got = all
            .list(&ListParams::default().fields(selector))
            .await
            .unwrap();
        assert_eq!(names(&got.items), want, "{selector}");
    }
    let e = api_error(
        all.list(&ListParams::default().fields("regarding.name=one"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (400, "field label not supported: regarding.name")
    );

    // events.k8s.io has its own labels for the same fields.
    let v1_all: Api<V1Event> = Api::all(client.clone());
    for (selector, want) in [
        ("regarding.name=one", 1),
        ("reportingController=acr-attach,type=Normal", 1),
        ("regarding.kind=RegistryAttachment", 2),
    ] {
        let got = v1_all
            .list(&ListParams::default().fields(selector))
            .await
            .unwrap();
        assert_eq!(got.items.len(), want, "{selector}");
    }
    let e = api_error(
        v1_all
            .list(&ListParams::default().fields("involvedObject.name=one"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.message, "field label not supported: involvedObject.name");

    // The server-side Table both versions print with.
    let req = axum::http::Request::get("/api/v1/events")
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let table: Value = client.request(req).await.unwrap();
    let headers: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        headers,
        [
            "Last Seen",
            "Type",
            "Reason",
            "Object",
            "Subobject",
            "Source",
            "Message",
            "First Seen",
            "Count",
            "Name"
        ]
    );
    let row = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cells"][2] == "Attached")
        .unwrap();
    assert_eq!(row["cells"][3], "registryattachment/one");
    assert_eq!(row["cells"][5], "acr-attach, acr-attach-0");
    assert_eq!(row["cells"][6], "granted AcrPull");
    assert_eq!(row["cells"][8], 2);
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
}

fn legacy(name: &str, ns: &str, involved_ns: Option<&str>) -> CoreEvent {
    CoreEvent {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("coordination.k8s.io/v1".into()),
            kind: Some("Lease".into()),
            name: Some("acr-attach".into()),
            namespace: involved_ns.map(str::to_string),
            ..Default::default()
        },
        reason: Some("LeaderElection".into()),
        message: Some("pod-0 became leader".into()),
        type_: Some("Normal".into()),
        source: Some(EventSource {
            component: Some("acr-attach".into()),
            host: Some("node-1".into()),
        }),
        count: Some(3),
        first_timestamp: Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap()),
        last_timestamp: Some(serde_json::from_value(json!("2026-01-01T00:10:00Z")).unwrap()),
        ..Default::default()
    }
}

#[tokio::test]
async fn core_v1_writes_are_events_k8s_io_events() {
    let (_emu, client) = with_crd().await;
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "kube-system");
    let v1: Api<V1Event> = Api::namespaced(client.clone(), "kube-system");
    let created = core
        .create(
            &PostParams::default(),
            &legacy("lease.1", "kube-system", Some("kube-system")),
        )
        .await
        .unwrap();
    assert_eq!(created.count, Some(3));
    let seen = v1.get("lease.1").await.unwrap();
    assert_eq!(
        seen.regarding.as_ref().unwrap().kind.as_deref(),
        Some("Lease")
    );
    assert_eq!(seen.note.as_deref(), Some("pod-0 became leader"));
    assert_eq!(seen.deprecated_count, Some(3));
    assert_eq!(
        seen.deprecated_source.as_ref().unwrap().host.as_deref(),
        Some("node-1")
    );
    assert_eq!(
        serde_json::to_value(&seen.deprecated_last_timestamp).unwrap(),
        json!("2026-01-01T00:10:00Z")
    );
    assert_eq!(seen.event_time, None);
    assert_eq!(seen.reporting_controller, None);

    // Core v1 updates get only the legacy rules: the message may change...
    let patched = core
        .patch(
            "lease.1",
            &PatchParams::default(),
            &Patch::Merge(json!({"message": "pod-1 became leader", "count": 4})),
        )
        .await
        .unwrap();
    assert_eq!(patched.message.as_deref(), Some("pod-1 became leader"));
    assert_eq!(v1.get("lease.1").await.unwrap().deprecated_count, Some(4));
    // ...while events.k8s.io/v1 keeps everything but the series immutable.
    let e = api_error(
        v1.patch(
            "lease.1",
            &PatchParams::default(),
            &Patch::Merge(json!({"note": "rewritten"})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "Event.events.k8s.io \"lease.1\" is invalid: message: Invalid value: \"rewritten\": field is immutable"
    );
    // A PUT through core v1 keeps the object (and converts it again).
    let mut current = core.get("lease.1").await.unwrap();
    current.type_ = Some("Warning".into());
    let replaced = core
        .replace("lease.1", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(replaced.type_.as_deref(), Some("Warning"));
    assert_eq!(replaced.involved_object.name.as_deref(), Some("acr-attach"));

    // Legacy validation: a namespaced object's event lives in its namespace.
    let e = api_error(
        core.create(
            &PostParams::default(),
            &legacy("lease.2", "kube-system", Some("team")),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        e.message,
        "Event \"lease.2\" is invalid: involvedObject.namespace: Invalid value: \"team\": does not match event.namespace"
    );
    // With an eventTime the reporting fields are required, under their internal names.
    let mut timed = legacy("lease.3", "kube-system", Some("kube-system"));
    timed.event_time = Some(serde_json::from_value(json!("2026-01-01T00:00:00.000001Z")).unwrap());
    let e = api_error(
        core.create(&PostParams::default(), &timed)
            .await
            .unwrap_err(),
    );
    assert!(
        e.message.contains("reportingController: Required value"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("reportingInstance: Required value"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("action: Required value"),
        "{}",
        e.message
    );

    // events.k8s.io/v1 creates are strict: no legacy fields, Normal|Warning, an eventTime.
    let strict: V1Event = serde_json::from_value(json!({
        "metadata": {"name": "strict.1"},
        "eventTime": "2026-01-01T00:00:00.000001Z", "type": "Info", "reason": "R", "action": "A",
        "reportingController": "acr-attach", "reportingInstance": "i",
        "regarding": {"kind": "Lease", "name": "x", "namespace": "kube-system"},
        "deprecatedCount": 2,
    }))
    .unwrap();
    let e = api_error(
        v1.create(&PostParams::default(), &strict)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.message,
        "Event.events.k8s.io \"strict.1\" is invalid: [type: Invalid value: \"\": has invalid value: Info, count: Invalid value: \"\": needs to be unset]"
    );
    // eventTime is a MicroTime: six fractional digits.
    let mut bad_time = serde_json::to_value(&strict).unwrap();
    bad_time["eventTime"] = json!("2026-01-01T00:00:00Z");
    let req = axum::http::Request::post("/apis/events.k8s.io/v1/namespaces/kube-system/events")
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&bad_time).unwrap())
        .unwrap();
    let e = api_error(client.request::<Value>(req).await.unwrap_err());
    assert_eq!(e.code, 400);
    assert!(
        e.message.ends_with("cannot parse \"Z\" as \".000000\""),
        "{}",
        e.message
    );

    // Deleting through one API deletes from both.
    core.delete("lease.1", &DeleteParams::default())
        .await
        .unwrap();
    assert!(v1.get_opt("lease.1").await.unwrap().is_none());
}

#[tokio::test]
async fn core_v1_watch_sees_recorded_events() {
    let (_emu, client) = with_crd().await;
    let ras: Api<RegistryAttachment> = Api::all(client.clone());
    let obj = ras
        .create(&PostParams::default(), &sample("w"))
        .await
        .unwrap();
    let core: Api<CoreEvent> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields(&format!(
        "involvedObject.uid={}",
        obj.metadata.uid.clone().unwrap()
    ));
    let mut stream = watcher(core, cfg).applied_objects().boxed();
    let rec = recorder(&client);
    let watching = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(e) = stream.next().await {
            let e = e.expect("watch works");
            seen.push((
                e.reason.clone().unwrap_or_default(),
                e.series.as_ref().and_then(|s| s.count),
            ));
            if seen.len() == 2 {
                return seen;
            }
        }
        seen
    });
    // Let the watcher list first; then record, and repeat (the series patch is a MODIFIED).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ev = event(EventType::Normal, "Attached", "granted");
    rec.publish(&ev, &obj.object_ref(&())).await.unwrap();
    rec.publish(&ev, &obj.object_ref(&())).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), watching)
        .await
        .expect("events arrive")
        .unwrap();
    assert_eq!(
        seen,
        [
            ("Attached".to_string(), None),
            ("Attached".to_string(), Some(2))
        ]
    );
}
