//! Generated artefacts must match what the binary prints: a stale CRD in the repository (or in the
//! Helm chart) would install a schema the operator no longer speaks.

use std::path::Path;

fn assert_matches(relative: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{relative} is missing ({e}); run: cargo run -- crd > {relative}")
    });
    assert!(
        committed == acr_attach::crd::crd_yaml(),
        "{relative} differs from `acr-attach crd`; regenerate it: cargo run -- crd > {relative}"
    );
}

#[test]
fn committed_crd_matches_the_binary() {
    assert_matches("crds/registryattachments.acrattach.io.yaml");
}

#[test]
fn the_helm_chart_carries_the_same_crd() {
    assert_matches("charts/acr-attach/files/crd.yaml");
}
