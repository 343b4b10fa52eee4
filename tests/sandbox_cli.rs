//! The `sandbox` command as a newcomer runs it: `--once` convergence and its failure report,
//! `--tenant`, `--no-operator`, and a real `kubectl` session against the sandbox with the real CRD.

#![cfg(feature = "sandbox")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_acr-attach"));
    command.env_remove("RUST_LOG");
    command
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "acr-attach-sandbox-cli-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn sandbox_once_converges_on_the_examples() {
    let output = binary()
        .args(["sandbox", "--once", "--timeout", "60s"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("converged: every example is Ready"),
        "{stdout}"
    );
    for name in [
        "shared-images",
        "abac-images",
        "ci-runner-pull",
        "team-images",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(name) && l.contains("Attached")),
            "{name}: {stdout}"
        );
    }
    assert!(
        stdout.contains("Container Registry Repository Reader"),
        "{stdout}"
    );
    // Its scratch directory (kubeconfig, CA) goes with it: no --kubeconfig was given.
    let kubeconfig = stdout
        .lines()
        .find_map(|l| l.strip_prefix("kubeconfig:"))
        .map(|path| PathBuf::from(path.trim()))
        .expect("the kubeconfig path is printed");
    let dir = kubeconfig.parent().unwrap();
    assert!(dir.starts_with(std::env::temp_dir()), "{}", dir.display());
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn sandbox_once_reports_why_it_did_not_converge() {
    let dir = scratch("tenant");
    // The default tenant, but its cluster has no kubelet identity: the examples that rely on it
    // cannot attach.
    let mut yaml: serde_json::Value =
        serde_saphyr::from_str(acr_attach::sandbox::DEFAULT_TENANT).unwrap();
    yaml["clusters"][0]
        .as_object_mut()
        .unwrap()
        .remove("kubeletIdentity");
    let path = dir.join("tenant.json");
    std::fs::write(&path, serde_json::to_string(&yaml).unwrap()).unwrap();
    let output = binary()
        .args(["sandbox", "--once", "--timeout", "5s", "--tenant"])
        .arg(&path)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "{stdout}");
    assert!(stderr.contains("not converged"), "{stderr}");
    assert!(
        stderr.contains("shared-images: Ready=False KubeletIdentityMissing"),
        "{stderr}"
    );
    // The example with an explicit principal does not need the kubelet identity.
    assert!(!stderr.contains("ci-runner-pull"), "{stderr}");
}

/// The default tenant with `change` applied, written for `--tenant`.
fn tenant_file(name: &str, change: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let mut yaml: serde_json::Value =
        serde_saphyr::from_str(acr_attach::sandbox::DEFAULT_TENANT).unwrap();
    change(&mut yaml);
    let path = scratch(name).join("tenant.json");
    std::fs::write(&path, serde_json::to_string(&yaml).unwrap()).unwrap();
    path
}

fn sandbox_once(tenant: &Path, timeout: &str) -> (bool, String, String) {
    let output = binary()
        .args(["sandbox", "--once", "--timeout", timeout, "--tenant"])
        .arg(tenant)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    (output.status.success(), stdout, stderr)
}

#[test]
fn a_pre_seeded_assignment_in_the_tenant_is_adopted_not_created() {
    const ACR_PULL: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";
    const KUBELET: &str = "6b1e0000-0000-4000-8000-0000000000b1";
    let tenant = tenant_file("seeded", |yaml| {
        let legacy = yaml["registries"][0]["id"].clone();
        yaml["roleAssignments"] = serde_json::json!([{
            "scope": legacy,
            "roleDefinition": ACR_PULL,
            "principalId": KUBELET,
            "principalType": "ServicePrincipal",
        }]);
    });
    let (converged, stdout, stderr) = sandbox_once(&tenant, "60s");
    assert!(converged, "{stdout}\n{stderr}");
    let shared = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("shared-images"))
        .expect("a shared-images row");
    assert!(shared.ends_with("Adopted"), "{shared}");
    let legacy_kubelet: Vec<&str> = stdout
        .rsplit("ROLE ASSIGNMENTS IN EMULATED AZURE")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("legacyacr") && l.contains(KUBELET))
        .collect();
    assert_eq!(legacy_kubelet.len(), 1, "adopted, not duplicated: {stdout}");
    assert!(
        !legacy_kubelet[0].ends_with("acr-attach"),
        "someone else made it: {}",
        legacy_kubelet[0]
    );
}

#[test]
fn a_tenant_whose_arm_always_fails_reports_azure_unavailable() {
    let tenant = tenant_file("errors", |yaml| {
        yaml["faults"]["serverErrorRate"] = serde_json::json!(1.0);
    });
    let (converged, stdout, stderr) = sandbox_once(&tenant, "5s");
    assert!(!converged, "{stdout}");
    assert!(
        stderr.contains("shared-images: Ready=False AzureUnavailable"),
        "{stderr}"
    );
}

#[test]
fn a_tenant_with_a_tiny_read_budget_is_throttled_by_arm() {
    let tenant = tenant_file("throttle", |yaml| {
        yaml["faults"]["throttle"]["readsBurst"] = serde_json::json!(1);
        yaml["faults"]["throttle"]["readsPerSec"] = serde_json::json!(0);
    });
    let (converged, stdout, stderr) = sandbox_once(&tenant, "5s");
    assert!(!converged, "{stdout}");
    assert!(stderr.contains("AzureThrottled"), "{stderr}");
}

#[test]
fn sandbox_without_operator_prints_the_run_command_and_changes_nothing() {
    let output = binary()
        .args(["sandbox", "--no-operator", "--once", "--timeout", "2s"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(
        !output.status.success(),
        "nothing converges without an operator"
    );
    assert!(stdout.contains("The operator is not running"), "{stdout}");
    assert!(stdout.contains("cargo run --release -- run"), "{stdout}");
    assert!(stdout.contains("--credential client-secret"), "{stdout}");
    assert!(stdout.contains("--extra-ca-file"), "{stdout}");
    assert!(
        !stdout.contains(" acr-attach\n"),
        "no assignment was created: {stdout}"
    );
    assert!(stderr.contains("shared-images: Ready=Unknown"), "{stderr}");
}

struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kubectl(kubeconfig: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .output()
        .expect("run kubectl")
}

#[test]
fn kubectl_drives_the_sandbox_with_the_real_crd() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "kubectl is required in CI (CI is set) but is not installed"
        );
        println!("SKIPPED: kubectl is not installed on this machine");
        return;
    }
    let dir = scratch("kubectl");
    // A directory that does not exist yet: the sandbox creates it.
    let kubeconfig = dir.join("new").join("kubeconfig");
    let mut child = binary()
        .args(["sandbox", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _sandbox = Background(child);
    // The sandbox prints the kubeconfig path once the CRD is installed and the examples applied.
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = lines.next().expect("sandbox output").unwrap();
        if line.starts_with("try:") {
            break;
        }
        assert!(Instant::now() < deadline, "sandbox did not start");
    }
    std::thread::spawn(move || for _ in lines {});
    let run = |args: &[&str]| kubectl(&kubeconfig, &dir, args);

    let waited = run(&[
        "wait",
        "--for=condition=Ready",
        "ra/shared-images",
        "--timeout=30s",
    ]);
    assert!(waited.status.success(), "{:?}", text(&waited));
    assert!(text(&waited).0.contains("condition met"));

    let table = text(&run(&["get", "registryattachments"])).0;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "REGISTRY", "ROLE", "READY", "REASON", "AGE"],
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("abac-images") && l.contains("RepositoryReader")),
        "{table}"
    );

    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: acrattach.io/v1alpha1\nkind: RegistryAttachment\nmetadata: {name: bad}\nspec:\n  registry: {resourceId: /subscriptions/prod/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr1}\n  role: Owner\n",
    )
    .unwrap();
    let refused = run(&["apply", "-f", bad.to_str().unwrap()]);
    assert!(!refused.status.success());
    let (_, error) = text(&refused);
    assert!(error.contains("spec.registry.resourceId"), "{error}");
    assert!(
        error.contains("spec.role: Unsupported value: \"Owner\""),
        "{error}"
    );

    let patched = run(&[
        "patch",
        "ra",
        "abac-images",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"role":"AcrPull"}}"#,
    ]);
    assert!(patched.status.success(), "{:?}", text(&patched));
    let stalled = run(&[
        "wait",
        "--for=condition=Stalled",
        "ra/abac-images",
        "--timeout=30s",
    ]);
    assert!(stalled.status.success(), "{:?}", text(&stalled));
    let reason = text(&run(&[
        "get",
        "ra",
        "abac-images",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}",
    ]))
    .0;
    assert_eq!(reason, "RoleNotEffective");

    // As on a real cluster: the schema explains itself, and describe shows the object's events
    // (served as core/v1 events from the operator's events.k8s.io/v1 ones).
    let explained = run(&["explain", "registryattachment.spec"]);
    assert!(explained.status.success(), "{:?}", text(&explained));
    let (explanation, _) = text(&explained);
    for field in ["registry", "role", "principal", "deletionPolicy"] {
        assert!(explanation.contains(field), "{field}: {explanation}");
    }
    let described = text(&run(&["describe", "ra", "abac-images"])).0;
    let events = described
        .split("Events:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Events section: {described}"));
    assert!(events.contains("RoleNotEffective"), "{described}");
    assert!(events.contains("Warning"), "{described}");

    let deleted = run(&["delete", "ra", "shared-images", "--timeout=30s"]);
    assert!(deleted.status.success(), "{:?}", text(&deleted));
    let gone = run(&["get", "ra", "shared-images"]);
    assert!(!gone.status.success());
    assert!(text(&gone).1.contains("NotFound"), "{:?}", text(&gone));
}

#[test]
fn the_printed_check_command_runs_against_the_sandbox() {
    let dir = scratch("check");
    let mut child = binary()
        .args(["sandbox", "--kubeconfig"])
        .arg(dir.join("kubeconfig"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _sandbox = Background(child);
    // The command follows the "preflight" line, up to a blank line.
    let mut lines = BufReader::new(stdout).lines().map(|line| line.unwrap());
    lines
        .by_ref()
        .find(|line| line.starts_with("preflight"))
        .expect("a preflight line");
    let command: String = lines
        .by_ref()
        .skip_while(|line| line.trim().is_empty())
        .take_while(|line| !line.trim().is_empty())
        .map(|line| line.trim_end_matches('\\').to_string())
        .collect::<Vec<_>>()
        .join(" ");
    std::thread::spawn(move || for _ in lines {});
    assert!(
        command.contains("cargo run --release -- check"),
        "{command}"
    );
    // Run it as printed, with the built binary in place of `cargo run --release --`.
    let command = command.replace(
        "cargo run --release --",
        &format!("'{}'", env!("CARGO_BIN_EXE_acr-attach")),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let output = loop {
        let output = Command::new("sh").arg("-c").arg(&command).output().unwrap();
        // Exit 1 while the examples are still being attached; 0 once all would work.
        if output.status.success() || Instant::now() > deadline {
            break output;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let (table, stderr) = text(&output);
    assert!(output.status.success(), "{table}\n{stderr}");
    for registry in ["legacyacr", "abacacr"] {
        assert!(table.contains(registry), "{registry}: {table}");
    }
}
