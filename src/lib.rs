//! acr-attach: a Kubernetes operator that keeps "this cluster may pull from that Azure Container
//! Registry" true, by reconciling `RegistryAttachment` objects into AcrPull or Container Registry
//! Repository Reader role assignments for the cluster's kubelet identity.
//!
//! Layout: `crd` (the resource), `model` (ids, roles and Azure's answers as plain data), `decide`
//! (pure decisions, including failure classification), `azure` (the ARM boundary), `controller`
//! (glue and the Kubernetes boundary), `check` (the preflight command's I/O), `cli` (the binary's
//! commands), with `metrics`, `http` and `telemetry` at the edges. Dependencies point one way:
//! `controller → azure/decide → model` (tests/architecture.rs keeps it so).

pub mod azure;
pub mod check;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod decide;
pub mod http;
pub mod metrics;
pub mod model;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod telemetry;

/// Installs the one rustls crypto provider the binary carries (ring). Must run before any TLS
/// client is built; calling it twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
