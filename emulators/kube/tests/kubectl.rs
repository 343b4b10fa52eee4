//! Drives the emulator with the real `kubectl` binary (discovery, OpenAPI-based server-side
//! field validation, client- and server-side apply, Table output, wait, delete with
//! finalizers). Skipped, with a printed reason, when `kubectl` is not on PATH.

mod common;

use common::*;
use kube::api::{Api, Patch, PatchParams};
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

/// Splits a `kubectl get` table into cells by the header's column positions
/// (null cells print as blanks).
fn table_rows(out: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = out.lines();
    let header = lines.next().unwrap_or("");
    let mut starts = Vec::new();
    let mut prev_space = true;
    for (i, c) in header.char_indices() {
        if c != ' ' && prev_space {
            starts.push(i);
        }
        prev_space = c == ' ';
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
    if !kubectl_available() {
        println!("SKIPPED kubectl_end_to_end: `kubectl` is not on PATH");
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
