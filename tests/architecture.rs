//! The dependency direction the layout promises: `controller → azure/decide → model`. The pure
//! layers (`decide`, `model`) never reach the Azure boundary or the controller glue, and the
//! Azure boundary never reaches the decision logic, so a decision can always be tested over plain
//! data and the client can always be swapped. A `use` that breaks this fails here, naming the line.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}

/// Every line under `layer` that names one of `forbidden` (as `crate::<module>`).
fn violations(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let paths = if layer.ends_with(".rs") {
        vec![root.join(layer)]
    } else {
        rust_files(&root.join(layer))
    };
    let mut found = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("readable source");
        for (number, line) in text.lines().enumerate() {
            for module in forbidden {
                let needle = format!("crate::{module}");
                let names_it = line.match_indices(&needle).any(|(at, _)| {
                    let next = line[at + needle.len()..].chars().next();
                    !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if names_it {
                    found.push(format!(
                        "{}:{}: {}",
                        path.display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    found
}

const OUTER: [&str; 5] = ["azure", "controller", "check", "cli", "sandbox"];

#[test]
fn decide_never_imports_the_azure_client_or_the_controller() {
    let found = violations("decide", &OUTER);
    assert!(
        found.is_empty(),
        "decide/ must stay pure:\n{}",
        found.join("\n")
    );
}

#[test]
fn model_imports_nothing_but_itself() {
    let mut outer = OUTER.to_vec();
    outer.extend(["decide", "crd", "metrics", "http"]);
    let found = violations("model", &outer);
    assert!(
        found.is_empty(),
        "model/ is the bottom layer:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_azure_boundary_never_imports_decisions_or_the_controller() {
    let found = violations(
        "azure",
        &["decide", "controller", "check", "cli", "sandbox"],
    );
    assert!(
        found.is_empty(),
        "azure/ maps Azure's answers, it does not decide:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_finds_a_violation_when_there_is_one() {
    // The scanner itself must be able to fail: controller/ does import azure/.
    assert!(!violations("controller", &["azure"]).is_empty());
}
