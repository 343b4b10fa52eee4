//! `kube-emulator`: a test double of the Kubernetes API server.
//!
//! This crate owns an HTTPS server on 127.0.0.1 that emulates the part of the API server that
//! the acr-attach operator (kube-rs 5 client and runtime: Controller, watcher, reflector,
//! finalizer helper, events Recorder, merge/JSON/apply patches) and `kubectl` 1.32 use, with
//! the real semantics rather than canned answers: discovery and OpenAPI v3 documents,
//! CustomResourceDefinitions that register types, structural-schema pruning, defaulting and
//! validation, CEL validation rules (`x-kubernetes-validations`), resourceVersion/generation/
//! finalizer/deletion rules, the status subresource, the patch types including a simplified
//! server-side apply (map and set lists merged per item), list/watch with selectors,
//! bookmarks and "too old resource version" errors, Table output, Events (one store served as
//! events.k8s.io/v1 and core v1) and Leases, and OpenAPI v3 schemas for `kubectl explain`.
//! `README.md` lists what is deliberately not implemented.
//!
//! Everything is in memory and lives as long as the [`KubeEmulator`] handle.

mod events;
mod openapi;
mod ops;
mod patch;
mod protobuf;
mod resources;
mod schema;
mod selector;
mod server;
mod ssa;
mod status;
mod store;
mod table;
mod util;
mod xvalidation;

use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use server::Shared;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// The kubeconfig context (and cluster and user) name written by [`KubeEmulator::kubeconfig_yaml`].
pub const CONTEXT_NAME: &str = "acr-attach-sandbox";

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("generating the TLS certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("configuring TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// One request as the emulator saw it, so tests can assert what a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    /// Path and query exactly as sent (`/apis/g/v/x?&limit=500`).
    pub path: String,
    pub content_type: Option<String>,
    /// Response status (200 for watches, whose events follow in the body).
    pub status: u16,
    /// Request body, lossily decoded as UTF-8.
    pub body: String,
    /// The `User-Agent` header, when sent: tells the clients of one emulator apart.
    pub user_agent: Option<String>,
}

/// Handle of a running emulator; the server stops when it is dropped or shut down.
pub struct KubeEmulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: String,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

struct Certs {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// A fresh CA and a server certificate for 127.0.0.1/localhost signed by it (Go's TLS stack
/// rejects CN-only certificates, so the names are SANs).
fn make_certs() -> Result<Certs, rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-emulator-ca");
    ca_params.distinguished_name = dn;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kube-apiserver");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params.signed_by(&server_key, &issuer)?;
    Ok(Certs {
        ca_pem: ca_cert.pem(),
        chain: vec![server_cert.der().clone(), ca_cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
    })
}

impl KubeEmulator {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub async fn start() -> Result<KubeEmulator, EmulatorError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(addr: SocketAddr) -> Result<KubeEmulator, EmulatorError> {
        let certs = make_certs()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs.chain, certs.key)?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let local = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::new()),
            token: format!("kube-emulator-{}", uuid::Uuid::new_v4().simple()),
            shutdown: shutdown_rx.clone(),
        });
        let task = tokio::spawn(accept_loop(listener, acceptor, shared.clone(), shutdown_rx));
        Ok(KubeEmulator {
            shared,
            addr: local,
            ca_pem: certs.ca_pem,
            shutdown_tx,
            task: Some(task),
        })
    }

    /// `https://127.0.0.1:PORT` (the certificate's SANs are 127.0.0.1 and localhost).
    pub fn endpoint(&self) -> String {
        let host = if self.addr.ip().is_unspecified() || self.addr.ip().is_loopback() {
            "127.0.0.1".to_string()
        } else {
            self.addr.ip().to_string()
        };
        format!("https://{host}:{}", self.addr.port())
    }

    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// The bearer token every request must carry.
    pub fn token(&self) -> String {
        self.shared.token.clone()
    }

    pub fn kubeconfig_yaml(&self) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {n}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {n}\n  user:\n    token: {token}\ncontexts:\n- name: {n}\n  context:\n    cluster: {n}\n    user: {n}\n    namespace: default\ncurrent-context: {n}\npreferences: {{}}\n",
            n = CONTEXT_NAME,
            server = self.endpoint(),
            token = self.shared.token,
        )
    }

    pub fn write_kubeconfig(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// Forgets the requests logged so far (to assert on what follows).
    pub fn clear_request_log(&self) {
        self.shared.lock().log.clear();
    }

    /// Test hook: drops the watch history so that every resourceVersion handed out so far is
    /// too old, and ends open watches. Clients re-watching from their last resourceVersion get
    /// `200` and an `ERROR` event with code 410 (Expired), then relist.
    pub fn compact(&self) {
        self.shared.lock().compact();
    }

    /// Stops accepting connections and ends open watches.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for KubeEmulator {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |req| server::handle(shared.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            tokio::select! {
                _ = conn => {}
                _ = conn_shutdown.changed() => {}
            }
        });
    }
}
