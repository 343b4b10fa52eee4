//! Drives the emulator with the real `kubectl` binary (discovery, OpenAPI-based server-side
//! field validation, client- and server-side apply, Table output, wait, delete with
//! finalizers, `explain` from the OpenAPI v3 schemas, `describe` with the object's events).
//! Without `kubectl` on PATH the tests are skipped with a printed reason, except in CI (`CI`
//! set), where that is a failure.

mod common;

use common::*;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube_emulator::KubeEmulator;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Whether `test` can run: without kubectl it is skipped locally (printed) and fails in CI.
fn require_kubectl(test: &str) -> bool {
    if kubectl_available() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: `kubectl` (1.32) is not on PATH and CI is set; install it, or unset CI to skip"
    );
    println!("SKIPPED {test}: `kubectl` is not on PATH");
    false
}

/// The CRD the operator ships (not the test fixture): what users `kubectl explain`.
fn shipped_crd() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../crds/registryattachments.acrattach.io.yaml")
}

/// Whitespace-insensitive text, since kubectl re-wraps descriptions at 80 columns.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An isolated kubectl environment: its own kubeconfig, HOME and discovery cache.
struct Kubectl {
    dir: PathBuf,
}

impl Kubectl {
    fn new(emu: &KubeEmulator) -> Kubectl {
        let dir =
            std::env::temp_dir().join(format!("kube-emulator-kubectl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("home")).unwrap();
        emu.write_kubeconfig(&dir.join("kubeconfig")).unwrap();
        Kubectl { dir }
    }

    async fn run(&self, args: &[&str]) -> Output {
        let dir = self.dir.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            Command::new("kubectl")
                .args(&args)
                .arg(format!("--cache-dir={}", dir.join("cache").display()))
                .arg("--request-timeout=30s")
                .env("KUBECONFIG", dir.join("kubeconfig"))
                .env("HOME", dir.join("home"))
                .env_remove("KUBERNETES_SERVICE_HOST")
                .output()
                .expect("kubectl runs")
        })
        .await
        .unwrap()
    }

    /// Runs and requires success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    /// Runs and requires failure; returns stderr.
    async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded\nstdout: {stdout}\nstderr: {stderr}"
        );
        stderr
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Splits a `kubectl get` table into cells by the header's column positions (null cells
/// print as blanks). Headers may contain single spaces (`LAST SEEN`): columns are at least
/// two spaces apart.
fn table_rows(out: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = out.lines();
    let header = lines.next().unwrap_or("");
    let mut starts = Vec::new();
    let mut spaces = 2;
    for (i, c) in header.char_indices() {
        if c != ' ' && spaces >= 2 {
            starts.push(i);
        }
        spaces = if c == ' ' { spaces + 1 } else { 0 };
    }
    let cut = |line: &str| -> Vec<String> {
        starts
            .iter()
            .enumerate()
            .map(|(n, s)| {
                let end = starts
                    .get(n + 1)
                    .copied()
                    .unwrap_or(line.len())
                    .min(line.len());
                line.get((*s).min(end)..end)
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .collect()
    };
    (cut(header), lines.map(cut).collect())
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_end_to_end() {
    if !require_kubectl("kubectl_end_to_end") {
        return;
    }
    let emu = KubeEmulator::start().await.unwrap();
    let k = Kubectl::new(&emu);
    let client = client(&emu).await;
    let api: Api<RegistryAttachment> = Api::all(client.clone());
    let crd = path_str(&fixture("crd.yaml"));
    let obj = path_str(&fixture("object.yaml"));

    let out = k.ok(&["apply", "-f", &crd]).await;
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/registryattachments.acrattach.io created"
        ),
        "{out}"
    );
    let out = k
        .ok(&[
            "wait",
            "--for=condition=Established",
            "crd/registryattachments.acrattach.io",
            "--timeout=20s",
        ])
        .await;
    assert!(out.contains("condition met"), "{out}");

    let out = k.ok(&["apply", "-f", &obj]).await;
    assert_eq!(out.trim(), "registryattachment.acrattach.io/sample created");
    let out = k.ok(&["apply", "-f", &obj]).await;
    assert_eq!(
        out.trim(),
        "registryattachment.acrattach.io/sample unchanged"
    );
    let out = k.ok(&["apply", "--server-side", "-f", &obj]).await;
    assert_eq!(
        out.trim(),
        "registryattachment.acrattach.io/sample serverside-applied"
    );
    let log = emu.request_log();
    assert!(log.iter().any(|r| r.method == "POST"
        && r.path.contains("fieldManager=kubectl-client-side-apply")
        && r.path.contains("fieldValidation=Strict")
        && r.status == 201));
    assert!(log.iter().any(|r| r.method == "PATCH"
        && r.content_type.as_deref() == Some("application/apply-patch+yaml")
        && r.path.contains("fieldManager=kubectl")
        && r.status == 200));

    let out = k.ok(&["get", "registryattachments"]).await;
    let (header, rows) = table_rows(&out);
    assert_eq!(
        header,
        ["NAME", "REGISTRY", "ROLE", "READY", "REASON", "AGE"],
        "{out}"
    );
    // READY/REASON are null cells until the status has conditions: kubectl leaves them blank.
    assert_eq!(
        &rows[0][..5],
        ["sample", RESOURCE_ID, "Auto", "", ""],
        "{out}"
    );
    assert!(rows[0][5].ends_with('s'), "{out}");

    let out = k.ok(&["get", "ra", "sample", "-o", "yaml"]).await;
    assert!(out.contains("kind: RegistryAttachment"), "{out}");
    assert!(out.contains("role: Auto"), "{out}");
    assert!(out.contains("generation: 1"), "{out}");
    assert!(
        out.contains("kubectl.kubernetes.io/last-applied-configuration"),
        "{out}"
    );

    let out = k
        .ok(&[
            "patch",
            "ra",
            "sample",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"role":"AcrPull"}}"#,
        ])
        .await;
    assert_eq!(out.trim(), "registryattachment.acrattach.io/sample patched");
    let out = k
        .ok(&[
            "patch",
            "ra",
            "sample",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"role":"AcrPull"}}"#,
        ])
        .await;
    assert_eq!(
        out.trim(),
        "registryattachment.acrattach.io/sample patched (no change)"
    );
    let out = k
        .ok(&[
            "get",
            "ra",
            "sample",
            "-o",
            "jsonpath={.metadata.generation}",
        ])
        .await;
    assert_eq!(out.trim(), "2");

    let status = r#"{"status":{"observedGeneration":2,"conditions":[{"type":"Ready","status":"True","reason":"Attached","message":"ok","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#;
    let out = k
        .ok(&[
            "patch",
            "ra",
            "sample",
            "--subresource=status",
            "--type",
            "merge",
            "-p",
            status,
        ])
        .await;
    assert_eq!(out.trim(), "registryattachment.acrattach.io/sample patched");
    let out = k
        .ok(&[
            "wait",
            "--for=condition=Ready",
            "ra/sample",
            "--timeout=20s",
        ])
        .await;
    assert_eq!(
        out.trim(),
        "registryattachment.acrattach.io/sample condition met"
    );
    let out = k.ok(&["get", "ra"]).await;
    let (_, rows) = table_rows(&out);
    assert_eq!(
        &rows[0][..5],
        ["sample", RESOURCE_ID, "AcrPull", "True", "Attached"],
        "{out}"
    );

    // Server-side validation as kubectl renders it.
    let err = k
        .fails(&["apply", "-f", &path_str(&fixture("object-invalid.yaml"))])
        .await;
    assert!(err.contains(
        "The RegistryAttachment \"broken\" is invalid: spec.role: Unsupported value: \"Owner\": supported values: \"Auto\", \"AcrPull\", \"RepositoryReader\""
    ), "{err}");
    let unknown_text = std::fs::read_to_string(fixture("object.yaml"))
        .unwrap()
        .replace("name: sample", "name: extra")
        + "  foo: bar\n";
    let unknown = k.write("unknown.yaml", &unknown_text);
    let err = k.fails(&["apply", "-f", &unknown]).await;
    assert!(
        err.contains("strict decoding error: unknown field \"spec.foo\""),
        "{err}"
    );
    let out = k.run(&["apply", "--validate=warn", "-f", &unknown]).await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Warning: unknown field \"spec.foo\""));
    k.ok(&["delete", "ra", "extra"]).await;

    // Delete with a finalizer, not waiting: the object stays until the finalizer goes.
    k.ok(&[
        "patch",
        "ra",
        "sample",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":["acrattach.io/cleanup"]}}"#,
    ])
    .await;
    let out = k.ok(&["delete", "ra", "sample", "--wait=false"]).await;
    assert_eq!(
        out.trim(),
        "registryattachment.acrattach.io \"sample\" deleted"
    );
    let out = k
        .ok(&[
            "get",
            "ra",
            "sample",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ])
        .await;
    assert!(!out.trim().is_empty(), "deletionTimestamp set");
    k.ok(&[
        "patch",
        "ra",
        "sample",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])
    .await;
    let err = k.fails(&["get", "ra", "sample"]).await;
    assert!(
        err.contains(
            "Error from server (NotFound): registryattachments.acrattach.io \"sample\" not found"
        ),
        "{err}"
    );

    // Delete that waits while the test (as the operator would) removes the finalizer.
    k.ok(&["apply", "-f", &obj]).await;
    k.ok(&[
        "patch",
        "ra",
        "sample",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"finalizers":["acrattach.io/cleanup"]}}"#,
    ])
    .await;
    let waiting = {
        let dir = k.dir.clone();
        tokio::task::spawn_blocking(move || {
            Command::new("kubectl")
                .args(["delete", "ra", "sample", "--timeout=30s"])
                .arg(format!("--cache-dir={}", dir.join("cache").display()))
                .env("KUBECONFIG", dir.join("kubeconfig"))
                .env("HOME", dir.join("home"))
                .output()
                .expect("kubectl runs")
        })
    };
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if api
                .get("sample")
                .await
                .unwrap()
                .metadata
                .deletion_timestamp
                .is_some()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("kubectl marked the object deleting");
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.patch(
        "sample",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": "acrattach.io/cleanup"},
                {"op": "remove", "path": "/metadata/finalizers/0"}
            ]))
            .unwrap(),
        ),
    )
    .await
    .unwrap();
    let out = waiting.await.unwrap();
    assert!(
        out.status.success(),
        "waiting delete failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "registryattachment.acrattach.io \"sample\" deleted"
    );
    assert!(api.get_opt("sample").await.unwrap().is_none());

    if std::env::var_os("KUBE_EMULATOR_DUMP_LOG").is_some() {
        for r in emu.request_log() {
            eprintln!("{} {} {} {:?}", r.status, r.method, r.path, r.content_type);
        }
    }

    // Built-ins render too; `create namespace` arrives as protobuf.
    let out = k.ok(&["create", "namespace", "demo"]).await;
    assert_eq!(out.trim(), "namespace/demo created");
    let out = k.ok(&["get", "namespaces"]).await;
    assert!(
        out.lines()
            .any(|l| words(l).starts_with(&["demo", "Active"])),
        "{out}"
    );
    let out = k.ok(&["delete", "namespace", "demo"]).await;
    assert_eq!(out.trim(), "namespace \"demo\" deleted");
    let out = k.ok(&["get", "namespaces"]).await;
    assert!(
        out.lines()
            .any(|l| words(l).starts_with(&["default", "Active"])),
        "{out}"
    );
    let out = k.ok(&["api-resources", "--api-group=acrattach.io"]).await;
    assert!(
        out.contains("registryattachments") && out.contains("ra"),
        "{out}"
    );
}

/// Applies the shipped CRD with kubectl and waits until it is Established.
async fn install_shipped_crd(k: &Kubectl) -> serde_json::Value {
    let path = shipped_crd();
    k.ok(&["apply", "-f", &path_str(&path)]).await;
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/registryattachments.acrattach.io",
        "--timeout=20s",
    ])
    .await;
    let text = std::fs::read_to_string(&path).expect("shipped CRD readable");
    serde_saphyr::from_str(&text).expect("shipped CRD is YAML")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explain_renders_the_crd_schema() {
    if !require_kubectl("kubectl_explain_renders_the_crd_schema") {
        return;
    }
    let emu = KubeEmulator::start().await.unwrap();
    let k = Kubectl::new(&emu);
    let crd = install_shipped_crd(&k).await;
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let spec = &schema["properties"]["spec"];
    let desc = |v: &serde_json::Value| squash(v["description"].as_str().expect("described"));

    emu.clear_request_log();
    let out = k.ok(&["explain", "registryattachment.spec"]).await;
    assert!(out.contains("GROUP:      acrattach.io"), "{out}");
    assert!(out.contains("KIND:       RegistryAttachment"), "{out}");
    assert!(out.contains("VERSION:    v1alpha1"), "{out}");
    assert!(out.contains("FIELD: spec <Object>"), "{out}");
    let flat = squash(&out);
    assert!(
        flat.contains(&desc(spec)),
        "spec description missing:\n{out}"
    );
    for (field, line) in [
        ("registry", "registry <Object> -required-"),
        (
            "deletionPolicy",
            "deletionPolicy <string> enum: Delete, Orphan",
        ),
        (
            "role",
            "role <string> enum: Auto, AcrPull, RepositoryReader",
        ),
        ("principal", "principal <Object>"),
    ] {
        assert!(flat.contains(line), "{line:?} missing:\n{out}");
        let d = desc(&spec["properties"][field]);
        assert!(
            flat.contains(&d),
            "description of {field} ({d:?}) missing:\n{out}"
        );
    }
    // kubectl read the OpenAPI v3 document of the group/version (no v2 fallback).
    let log = emu.request_log();
    assert!(
        log.iter().any(|r| r
            .path
            .starts_with("/openapi/v3/apis/acrattach.io/v1alpha1?hash=")
            && r.status == 200),
        "{:?}",
        log.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert!(!log.iter().any(|r| r.path.starts_with("/openapi/v2")));

    let out = k
        .ok(&[
            "explain",
            "registryattachments.spec.registry",
            "--recursive",
        ])
        .await;
    assert!(out.contains("FIELD: registry <Object>"), "{out}");
    // resourceId or name: neither is required on its own (a CEL rule asks for exactly one).
    for field in [
        "resourceId <string>",
        "name <string>",
        "subscriptionId <string>",
    ] {
        assert!(squash(&out).contains(field), "{field}: {out}");
    }
    assert!(
        !squash(&out).contains("resourceId <string> -required-"),
        "{out}"
    );
    let out = k.ok(&["explain", "ra.spec.registry.resourceId"]).await;
    let resource_id = &spec["properties"]["registry"]["properties"]["resourceId"];
    assert!(squash(&out).contains(&desc(resource_id)), "{out}");

    // The root lists the standard fields; metadata resolves to ObjectMeta.
    let out = k.ok(&["explain", "ra"]).await;
    assert!(squash(&out).contains(&desc(schema)), "{out}");
    for line in [
        "apiVersion <string>",
        "kind <string>",
        "metadata <ObjectMeta>",
        "spec <Object> -required-",
        "status <Object>",
    ] {
        assert!(squash(&out).contains(line), "{line:?} missing:\n{out}");
    }
    let out = k.ok(&["explain", "ra.metadata", "--recursive"]).await;
    for line in [
        "finalizers <[]string>",
        "labels <map[string]string>",
        "ownerReferences <[]OwnerReference>",
        "uid <string>",
    ] {
        assert!(squash(&out).contains(line), "{line:?} missing:\n{out}");
    }
    let out = k.run(&["explain", "ra.spec.nope"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("field \"nope\" does not exist"));

    // Built-ins explain too.
    let out = k.ok(&["explain", "leases.spec"]).await;
    assert!(squash(&out).contains("holderIdentity <string>"), "{out}");
    assert!(squash(&out).contains("renewTime <string>"), "{out}");
    let out = k
        .ok(&["explain", "events", "--api-version=events.k8s.io/v1"])
        .await;
    assert!(
        squash(&out).contains("regarding <ObjectReference>"),
        "{out}"
    );
    let out = k.ok(&["explain", "events.involvedObject"]).await;
    assert!(
        squash(&out).contains("FIELD: involvedObject <ObjectReference>"),
        "{out}"
    );
    let out = k.ok(&["explain", "namespaces.status"]).await;
    assert!(
        squash(&out).contains("phase <string> enum: Active, Terminating"),
        "{out}"
    );
    k.ok(&["explain", "crd.spec.versions", "--recursive"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_describe_shows_the_objects_events() {
    if !require_kubectl("kubectl_describe_shows_the_objects_events") {
        return;
    }
    let emu = KubeEmulator::start().await.unwrap();
    let k = Kubectl::new(&emu);
    install_shipped_crd(&k).await;
    k.ok(&["apply", "-f", &path_str(&fixture("object.yaml"))])
        .await;
    let client = client(&emu).await;
    let api: Api<RegistryAttachment> = Api::all(client.clone());
    let obj = api.get("sample").await.unwrap();
    let other = api
        .create(&Default::default(), &sample("other"))
        .await
        .unwrap();

    // What the operator does: events.k8s.io/v1 through kube's Recorder; a cluster-scoped
    // object's events go to `default`.
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "acr-attach".into(),
            instance: Some("acr-attach-7d9f-x2b".into()),
        },
    );
    let attached = Event {
        type_: EventType::Normal,
        reason: "Attached".into(),
        note: Some("granted AcrPull on the registry to the kubelet identity".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder
        .publish(&attached, &obj.object_ref(&()))
        .await
        .unwrap();
    recorder
        .publish(&attached, &obj.object_ref(&()))
        .await
        .unwrap();
    let warning = Event {
        type_: EventType::Warning,
        reason: "RoleNotEffective".into(),
        note: Some("the registry ignores AcrPull".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder
        .publish(&warning, &other.object_ref(&()))
        .await
        .unwrap();

    emu.clear_request_log();
    let out = k.ok(&["describe", "registryattachment", "sample"]).await;
    let events_section = out
        .split("\nEvents:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Events section:\n{out}"));
    let lines: Vec<Vec<&str>> = events_section.lines().map(words).collect();
    assert_eq!(
        lines[1],
        ["Type", "Reason", "Age", "From", "Message"],
        "{out}"
    );
    let row = lines
        .iter()
        .find(|l| l.first() == Some(&"Normal"))
        .unwrap_or_else(|| panic!("no event row:\n{out}"));
    assert_eq!(row[1], "Attached", "{out}");
    let row_text = row.join(" ");
    assert!(
        row_text.contains("(x2 over"),
        "the series count shows: {out}"
    );
    assert!(
        row_text.contains("acr-attach granted AcrPull on the registry to the kubelet identity"),
        "{out}"
    );
    assert!(
        !out.contains("RoleNotEffective"),
        "another object's event leaked in:\n{out}"
    );
    // kubectl asked the core v1 API, across namespaces (the object has none), for exactly
    // this object.
    let uid = obj.metadata.uid.clone().unwrap();
    let log = emu.request_log();
    let query = log
        .iter()
        .find(|r| r.path.starts_with("/api/v1/events?"))
        .unwrap_or_else(|| {
            panic!(
                "no core events list: {:?}",
                log.iter().map(|r| &r.path).collect::<Vec<_>>()
            )
        });
    assert_eq!(query.status, 200);
    // kubectl builds the selector from a Go map: the terms come in any order.
    let (params, _) = query.path["/api/v1/events?".len()..]
        .split_once("&limit=500")
        .unwrap_or_else(|| panic!("{}", query.path));
    let selector = params
        .strip_prefix("fieldSelector=")
        .unwrap_or_else(|| panic!("{}", query.path))
        .replace("%3D", "=")
        .replace("%2C", ",");
    let mut terms: Vec<&str> = selector.split(',').collect();
    terms.sort();
    let uid_term = format!("involvedObject.uid={uid}");
    assert_eq!(
        terms,
        [
            "involvedObject.kind=RegistryAttachment",
            "involvedObject.name=sample",
            "involvedObject.namespace=",
            uid_term.as_str(),
        ]
    );

    let out = k.ok(&["describe", "ra", "other"]).await;
    assert!(squash(&out).contains("Warning RoleNotEffective"), "{out}");

    // `kubectl get events` resolves to core v1 and prints the server's event Table.
    let out = k.ok(&["get", "events", "-A"]).await;
    let (header, rows) = table_rows(&out);
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "LAST SEEN",
            "TYPE",
            "REASON",
            "OBJECT",
            "MESSAGE"
        ],
        "{out}"
    );
    let attached_row = rows
        .iter()
        .find(|r| r[3] == "Attached")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(attached_row[0], "default");
    assert_eq!(attached_row[2], "Normal");
    assert_eq!(attached_row[4], "registryattachment/sample");
    assert_eq!(
        attached_row[5],
        "granted AcrPull on the registry to the kubelet identity"
    );
    assert!(
        rows.iter()
            .any(|r| r[3] == "RoleNotEffective" && r[4] == "registryattachment/other"),
        "{out}"
    );
    let out = k
        .ok(&["get", "events.events.k8s.io", "-n", "default", "-o", "wide"])
        .await;
    let (header, rows) = table_rows(&out);
    assert_eq!(
        header,
        [
            "LAST SEEN",
            "TYPE",
            "REASON",
            "OBJECT",
            "SUBOBJECT",
            "SOURCE",
            "MESSAGE",
            "FIRST SEEN",
            "COUNT",
            "NAME"
        ],
        "{out}"
    );
    let attached_row = rows
        .iter()
        .find(|r| r[2] == "Attached")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(attached_row[5], "acr-attach, acr-attach-7d9f-x2b");
    assert_eq!(attached_row[8], "2");
    let out = k
        .ok(&[
            "get",
            "events",
            "-A",
            "--field-selector",
            "involvedObject.name=other",
            "-o",
            "jsonpath={.items[*].reason}",
        ])
        .await;
    assert_eq!(out.trim(), "RoleNotEffective");
}

/// A CRD carrying validation rules, as JSON (which kubectl reads as YAML).
fn rules_crd(spec_rules: serde_json::Value) -> String {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "registrybindings.acrattach.io"},
        "spec": {
            "group": "acrattach.io", "scope": "Cluster",
            "names": {"kind": "RegistryBinding", "plural": "registrybindings", "singular": "registrybinding"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-validations": spec_rules, "properties": {
                        "registry": {"type": "object",
                            "x-kubernetes-validations": [{"rule": "has(self.name) != has(self.resourceId)",
                                "message": "exactly one of name or resourceId must be set"}],
                            "properties": {"name": {"type": "string"}, "resourceId": {"type": "string"}}},
                        "repositories": {"type": "array", "items": {"type": "string"},
                            "x-kubernetes-validations": [{"rule": "self.all(r, r.endsWith('/*') || !r.contains('*'))"}]},
                        "role": {"type": "string",
                            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "role is immutable"}]}
                    }}
                }}}}]
        }
    });
    serde_json::to_string_pretty(&crd).unwrap()
}

#[tokio::test]
async fn kubectl_reports_validation_rule_failures() {
    if !require_kubectl("kubectl_reports_validation_rule_failures") {
        return;
    }
    let emu = KubeEmulator::start().await.unwrap();
    let k = Kubectl::new(&emu);

    // A rule that does not compile refuses the CRD.
    let bad = k.write(
        "bad-crd.json",
        &rules_crd(json!([{"rule": "has(self.namespace)"}])),
    );
    let err = k.fails(&["apply", "-f", &bad]).await;
    assert!(
        err.contains(
            "The CustomResourceDefinition \"registrybindings.acrattach.io\" is invalid: spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{Rule:\"has(self.namespace)\", Message:\"\", MessageExpression:\"\", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:\"\", OptionalOldSelf:(*bool)(nil)}: compilation failed: ERROR: <input>:1:4: undefined field 'namespace'"
        ),
        "{err}"
    );

    let crd = k.write("crd.json", &rules_crd(json!([])));
    k.ok(&["apply", "-f", &crd]).await;
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/registrybindings.acrattach.io",
        "--timeout=20s",
    ])
    .await;

    let both = k.write(
        "both.yaml",
        "apiVersion: acrattach.io/v1alpha1\nkind: RegistryBinding\nmetadata:\n  name: both\nspec:\n  registry:\n    name: r\n    resourceId: /x\n",
    );
    let expected = "The RegistryBinding \"both\" is invalid: spec.registry: Invalid value: \"object\": exactly one of name or resourceId must be set";
    let err = k.fails(&["apply", "-f", &both]).await;
    assert!(err.contains(expected), "{err}");
    let err = k.fails(&["apply", "--server-side", "-f", &both]).await;
    assert!(err.contains(expected), "{err}");

    let ok = k.write(
        "ok.yaml",
        "apiVersion: acrattach.io/v1alpha1\nkind: RegistryBinding\nmetadata:\n  name: ok\nspec:\n  registry:\n    name: r\n  role: AcrPull\n  repositories: [\"a/*\", b, c]\n",
    );
    k.ok(&["apply", "-f", &ok]).await;
    let err = k
        .fails(&[
            "patch",
            "registrybinding",
            "ok",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"role":"Auto"}}"#,
        ])
        .await;
    assert!(
        err.contains(
            "The RegistryBinding \"ok\" is invalid: spec.role: Invalid value: \"string\": role is immutable"
        ),
        "{err}"
    );
    let err = k
        .fails(&[
            "patch",
            "registrybinding",
            "ok",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"repositories":["x*y"]}}"#,
        ])
        .await;
    assert!(
        err.contains(
            "spec.repositories: Invalid value: \"array\": failed rule: self.all(r, r.endsWith('/*') || !r.contains('*'))"
        ),
        "{err}"
    );

    // A rule added later that the stored object breaks: writes leaving the value unchanged
    // succeed with the failure as a warning (validation ratcheting).
    let stricter = k.write(
        "crd-stricter.json",
        &rules_crd(
            json!([{"rule": "size(self.repositories) <= 1", "message": "at most one repository"}]),
        ),
    );
    k.ok(&["apply", "-f", &stricter]).await;
    let out = k.run(&["label", "registrybinding", "ok", "team=a"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: spec: Invalid value: \"object\": at most one repository"),
        "{stderr}"
    );
}
