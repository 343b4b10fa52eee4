//! Leases as leader election uses them: optimistic concurrency (exactly one of two writers with
//! the same resourceVersion wins, the other gets the real 409), the request sequence of the
//! `kube-lease-manager` 0.13.1 crate (create, server-side apply without force to take a free
//! lease, strategic-merge patches to renew, count transitions and release), and the Lease
//! strategy's rules (no unconditional PUT, create on PUT, validation, MicroTime decoding).

mod common;

use common::*;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube_emulator::KubeEmulator;
use serde_json::{Value, json};

const NS: &str = "kube-system";

async fn leases() -> (KubeEmulator, Api<Lease>) {
    let emu = KubeEmulator::start().await.expect("emulator starts");
    let api = Api::namespaced(client(&emu).await, NS);
    (emu, api)
}

fn lease(name: &str, spec: Option<LeaseSpec>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec,
    }
}

fn stale_message(name: &str) -> String {
    format!(
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
    )
}

fn assert_stale(e: kube::Error, name: &str) {
    let s = api_error(e);
    assert_eq!(s.code, 409);
    assert_eq!(s.reason, "Conflict");
    assert_eq!(s.message, stale_message(name));
    let d = s.details.expect("details");
    assert_eq!(d.name, name);
    assert_eq!(d.group, "coordination.k8s.io");
    assert_eq!(d.kind, "leases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_contenders_race_for_one_lease() {
    let (_emu, api) = leases().await;
    api.create(
        &PostParams::default(),
        &lease("leader", Some(LeaseSpec::default())),
    )
    .await
    .unwrap();
    for round in 0..25 {
        // Both read the same resourceVersion, then both try to take the lease with it.
        let seen_a = api.get("leader").await.unwrap();
        let seen_b = api.get("leader").await.unwrap();
        assert_eq!(
            seen_a.metadata.resource_version,
            seen_b.metadata.resource_version
        );
        let claim = |mut l: Lease, who: &str| {
            let now = MicroTime(Timestamp::now());
            let spec = l.spec.get_or_insert_with(Default::default);
            spec.holder_identity = Some(who.to_string());
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(15);
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            l
        };
        let (a, b) = (claim(seen_a, "a"), claim(seen_b, "b"));
        let pp = PostParams::default();
        let (ra, rb) = tokio::join!(
            api.replace("leader", &pp, &a),
            api.replace("leader", &pp, &b)
        );
        let (winner, loser_err) = match (ra, rb) {
            (Ok(w), Err(e)) | (Err(e), Ok(w)) => (w, e),
            (Ok(_), Ok(_)) => panic!("round {round}: both contenders won"),
            (Err(ea), Err(eb)) => panic!("round {round}: nobody won: {ea} / {eb}"),
        };
        assert_stale(loser_err, "leader");
        let stored = api.get("leader").await.unwrap();
        assert_eq!(stored.spec, winner.spec, "round {round}");
        assert_eq!(
            stored.spec.unwrap().lease_transitions,
            Some(round + 1),
            "exactly one transition per round"
        );
    }
}

#[tokio::test]
async fn lease_preconditions_and_create_conflicts() {
    let (emu, api) = leases().await;
    let spec = LeaseSpec {
        holder_identity: Some("a".into()),
        lease_duration_seconds: Some(15),
        ..Default::default()
    };
    let first = api
        .create(&PostParams::default(), &lease("l", Some(spec.clone())))
        .await
        .unwrap();
    let stale_rv = first.metadata.resource_version.clone().unwrap();
    let e = api_error(
        api.create(&PostParams::default(), &lease("l", Some(spec.clone())))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "leases.coordination.k8s.io \"l\" already exists");

    // Someone renews; writes carrying the old resourceVersion now fail.
    api.patch(
        "l",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"renewTime": "2026-11-23T23:40:00.123456Z"}})),
    )
    .await
    .unwrap();
    let mut stale = first.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("b".into());
    assert_stale(
        api.replace("l", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
        "l",
    );
    assert_stale(
        api.patch(
            "l",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"resourceVersion": stale_rv}, "spec": {"holderIdentity": "b"}}),
            ),
        )
        .await
        .unwrap_err(),
        "l",
    );
    let replace_rv = Patch::Json::<()>(
        serde_json::from_value(json!([
            {"op": "replace", "path": "/metadata/resourceVersion", "value": stale_rv},
            {"op": "replace", "path": "/spec/holderIdentity", "value": "b"}
        ]))
        .unwrap(),
    );
    assert_stale(
        api.patch("l", &PatchParams::default(), &replace_rv)
            .await
            .unwrap_err(),
        "l",
    );
    assert_eq!(
        api.get("l")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("a"),
        "no conditional write went through"
    );

    // The Lease strategy does not allow unconditional updates...
    let mut unconditional = api.get("l").await.unwrap();
    unconditional.metadata.resource_version = None;
    let e = api_error(
        api.replace("l", &PostParams::default(), &unconditional)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        e.message,
        "leases.coordination.k8s.io \"l\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
    );
    // ...but does create on PUT (201), whatever resourceVersion the body carries.
    let mut fresh = lease("made-by-put", Some(spec.clone()));
    fresh.metadata.resource_version = Some("12345".into());
    emu.clear_request_log();
    let made = api
        .replace("made-by-put", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(emu.request_log()[0].status, 201);
    assert_ne!(made.metadata.resource_version.as_deref(), Some("12345"));
    assert_eq!(made.spec, Some(spec));
}

async fn raw_patch(api: &Api<Lease>, name: &str, patch: Value) -> kube::Result<Lease> {
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

#[tokio::test]
async fn lease_spec_validation_and_decoding() {
    let (_emu, api) = leases().await;
    let invalid = |d: i32, t: i32| {
        lease(
            "bad",
            Some(LeaseSpec {
                lease_duration_seconds: Some(d),
                lease_transitions: Some(t),
                ..Default::default()
            }),
        )
    };
    let e = api_error(
        api.create(&PostParams::default(), &invalid(0, 0))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.message,
        "Lease.coordination.k8s.io \"bad\" is invalid: spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"
    );
    let e = api_error(
        api.create(&PostParams::default(), &invalid(-5, -1))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "Lease.coordination.k8s.io \"bad\" is invalid: [spec.leaseDurationSeconds: Invalid value: -5: must be greater than 0, spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0]"
    );
    let causes = e.details.unwrap().causes;
    assert_eq!(causes.len(), 2);
    assert_eq!(causes[0].field, "spec.leaseDurationSeconds");
    assert_eq!(causes[0].reason, "FieldValueInvalid");

    api.create(&PostParams::default(), &lease("l", None))
        .await
        .unwrap();
    // MicroTime decodes with exactly six fractional digits, as `metav1.MicroTime` does.
    for (bad, elem, layout_elem) in [
        ("2026-11-23T23:40:00Z", "Z", ".000000"),
        ("2026-11-23T23:40:00.123Z", ".123Z", ".000000"),
        ("2026-11-23T23:40:00.123456789Z", "789Z", "Z07:00"),
    ] {
        let e = api_error(
            raw_patch(&api, "l", json!({"spec": {"renewTime": bad}}))
                .await
                .unwrap_err(),
        );
        assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"), "{bad}");
        assert_eq!(
            e.message,
            format!(
                "Lease in version \"v1\" cannot be handled as a Lease: parsing time \"{bad}\" as \"2006-01-02T15:04:05.000000Z07:00\": cannot parse \"{elem}\" as \"{layout_elem}\""
            )
        );
    }
    // Offsets are accepted and stored in UTC, as Go re-encodes the time.
    let l = raw_patch(
        &api,
        "l",
        json!({"spec": {"acquireTime": "2026-11-23T23:40:00.123456+01:00", "holderIdentity": "a"}}),
    )
    .await
    .unwrap();
    let stored: Value = serde_json::to_value(&l).unwrap();
    assert_eq!(stored["spec"]["acquireTime"], "2026-11-23T22:40:00.123456Z");
    // Go's decoder: int32 ranges and JSON types.
    let e = api_error(
        raw_patch(
            &api,
            "l",
            json!({"spec": {"leaseDurationSeconds": 3_000_000_000u64}}),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        e.message,
        "Lease in version \"v1\" cannot be handled as a Lease: json: cannot unmarshal number 3000000000 into Go struct field LeaseSpec.spec.leaseDurationSeconds of type int32"
    );
    let e = api_error(
        raw_patch(&api, "l", json!({"spec": {"holderIdentity": 7}}))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
    assert!(
        e.message
            .starts_with("Lease in version \"v1\" cannot be handled as a Lease:"),
        "{}",
        e.message
    );
    // `null` is the zero value; the alpha coordinated-election fields are dropped (feature off).
    let l = raw_patch(
        &api,
        "l",
        json!({"spec": {"holderIdentity": null, "strategy": "OldestEmulationVersion", "preferredHolder": "b"}}),
    )
    .await
    .unwrap();
    let spec = l.spec.unwrap();
    assert_eq!(spec.holder_identity, None);
    assert_eq!(spec.strategy, None);
    assert_eq!(spec.preferred_holder, None);
    assert!(spec.acquire_time.is_some());
}

/// One `kube-lease-manager` contender: its field manager and the patches its `LeaseState`
/// sends (`src/state.rs` of 0.13.1).
struct Contender<'a> {
    api: &'a Api<Lease>,
    identity: &'static str,
}

impl Contender<'_> {
    fn params(&self) -> PatchParams {
        PatchParams {
            field_manager: Some(format!("kube-lease-manager-{}", self.identity)),
            ..Default::default()
        }
    }

    /// Locking a free lease: server-side apply, without force.
    async fn apply_lock(&self, duration: i32) -> kube::Result<Lease> {
        let now = MicroTime(Timestamp::now());
        let patch = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "spec": {"acquireTime": now, "renewTime": now, "holderIdentity": self.identity,
                     "leaseDurationSeconds": duration}});
        self.api
            .patch("lm", &self.params(), &Patch::Apply(patch))
            .await
    }

    async fn strategic(&self, spec: Value) -> kube::Result<Lease> {
        let patch = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": spec});
        self.api
            .patch("lm", &self.params(), &Patch::Strategic(patch))
            .await
    }
}

fn holder(l: &Lease) -> Option<&str> {
    l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
}

#[tokio::test]
async fn kube_lease_manager_request_sequence() {
    let (_emu, api) = leases().await;
    let a = Contender {
        api: &api,
        identity: "a",
    };
    let b = Contender {
        api: &api,
        identity: "b",
    };
    // `LeaseCreateMode::AutoCreate`: GET 404, then POST an empty Lease; the second creator
    // gets AlreadyExists and GETs.
    assert!(api.get_opt("lm").await.unwrap().is_none());
    api.create(&PostParams::default(), &lease("lm", None))
        .await
        .unwrap();
    let e = api_error(
        api.create(&PostParams::default(), &lease("lm", None))
            .await
            .unwrap_err(),
    );
    assert!(e.is_already_exists());

    // A takes the free lease and counts the transition.
    let l = a.apply_lock(2).await.unwrap();
    assert_eq!(holder(&l), Some("a"));
    let l = a.strategic(json!({"leaseTransitions": 1})).await.unwrap();
    assert_eq!(l.spec.as_ref().unwrap().lease_transitions, Some(1));

    // B, having seen the lease free a moment ago, races: the apply conflicts with A's
    // ownership (the crate maps 409 + reason Conflict to LockConflict) and changes nothing.
    let e = api_error(b.apply_lock(2).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message
            .starts_with("Apply failed with 3 conflicts: conflicts with \"kube-lease-manager-a\":"),
        "{}",
        e.message
    );
    for field in [
        ".spec.acquireTime",
        ".spec.holderIdentity",
        ".spec.renewTime",
    ] {
        assert!(e.message.contains(&format!("- {field}")), "{}", e.message);
    }
    assert_eq!(holder(&api.get("lm").await.unwrap()), Some("a"));
    // The crate's own conflict test: an apply that also sets leaseTransitions.
    let now = MicroTime(Timestamp::now());
    let e = api_error(
        api.patch(
            "lm",
            &b.params(),
            &Patch::Apply(
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "spec": {"acquireTime": now, "renewTime": now, "holderIdentity": "b",
                         "leaseDurationSeconds": 2, "leaseTransitions": 2}}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert!(e.is_conflict());

    // A renews.
    let before = api.get("lm").await.unwrap();
    let now = MicroTime(Timestamp::now());
    let l = a
        .strategic(json!({"renewTime": now, "leaseDurationSeconds": 2}))
        .await
        .unwrap();
    assert_ne!(
        l.metadata.resource_version, before.metadata.resource_version,
        "a renewal is a write"
    );
    // Stored as sent: MicroTime's six digits (the client's nanoseconds are not sent).
    assert_eq!(
        serde_json::to_value(&l.spec.as_ref().unwrap().renew_time).unwrap(),
        serde_json::to_value(&now).unwrap()
    );

    // A releases: nulls delete the fields, and with them A's ownership.
    let l = a
        .strategic(
            json!({"acquireTime": null, "renewTime": null, "holderIdentity": null,
                          "leaseDurationSeconds": null}),
        )
        .await
        .unwrap();
    let spec = l.spec.clone().unwrap();
    assert_eq!(
        spec,
        LeaseSpec {
            lease_transitions: Some(1),
            ..Default::default()
        }
    );
    let owners: Vec<(String, String)> = l
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| (m.manager.unwrap(), m.operation.unwrap()))
        .collect();
    assert!(
        !owners.contains(&("kube-lease-manager-a".into(), "Apply".into())),
        "{owners:?}"
    );

    // Now B's soft lock succeeds, and A's would conflict.
    let l = b.apply_lock(2).await.unwrap();
    assert_eq!(holder(&l), Some("b"));
    let l = b.strategic(json!({"leaseTransitions": 2})).await.unwrap();
    assert_eq!(l.spec.as_ref().unwrap().lease_transitions, Some(2));
    assert!(api_error(a.apply_lock(2).await.unwrap_err()).is_conflict());

    // A forced lock is a strategic-merge patch: no ownership check.
    let now = MicroTime(Timestamp::now());
    let l = a
        .strategic(
            json!({"acquireTime": now, "renewTime": now, "holderIdentity": "a",
                          "leaseDurationSeconds": 2, "leaseTransitions": 3}),
        )
        .await
        .unwrap();
    assert_eq!(holder(&l), Some("a"));
    assert_eq!(l.spec.unwrap().lease_transitions, Some(3));
}
