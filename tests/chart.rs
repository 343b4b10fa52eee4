//! Runs the Helm chart suite (tests/chart, Python through Helm v4's own library) as part of
//! `cargo test`, so the chart, its schema and the generated manifests in deploy/ are held to the
//! same bar as the operator. The suite needs the virtualenv that `bash .ci/chart-setup` creates;
//! without it this test explains how to create it and passes, except in CI (env CI set), where
//! a missing suite must not look like a green one.

use std::path::Path;
use std::process::Command;

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
        .unwrap_or(false)
}

#[test]
fn helm_chart_suite_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/ci-venv/bin/python");
    if !python.exists() {
        let reason = format!(
            "the chart suite needs {} (Helm's library, kubernetes-validate, pytest): create it with \
             `bash .ci/chart-setup`, then run `target/ci-venv/bin/python -m pytest tests/chart -q`",
            python.display()
        );
        assert!(!in_ci(), "CI is set and {reason}");
        eprintln!("skipped: {reason}");
        return;
    }
    let output = Command::new(&python)
        .args(["-m", "pytest", "tests/chart", "-q"])
        .current_dir(root)
        // Keep __pycache__ out of the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", python.display()));
    // Shown by the test harness on failure, or with --nocapture.
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "the chart suite failed ({}): see its output above; rerun it with \
         `target/ci-venv/bin/python -m pytest tests/chart -q`",
        output.status
    );
}
