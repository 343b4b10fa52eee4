//! HTTPS plumbing: certificate generation, the accept loop, and the request/response types the
//! ARM and Entra handlers share.

use crate::state::{ANONYMOUS, InjectedFault, LoggedRequest, Operation, State};
use crate::util::parse_pairs;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::Value;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types};

/// Request bodies larger than this are refused (ARM's own limit is far larger, but nothing the
/// emulator serves needs more than a few KB).
const MAX_BODY: usize = 1 << 20;

pub(crate) struct Shared {
    state: Mutex<State>,
    /// `https://127.0.0.1:PORT`, no trailing slash.
    pub endpoint: String,
    /// Operations whose answers are held back after the request has taken effect (see
    /// [`crate::ArmEmulator::hold_answers`]).
    pub held: watch::Sender<HashSet<Operation>>,
    /// Requests that took effect and whose answer is being held right now.
    pub waiting: AtomicUsize,
}

impl Shared {
    pub fn new(state: State, endpoint: String) -> Shared {
        Shared {
            state: Mutex::new(state),
            endpoint,
            held: watch::Sender::new(HashSet::new()),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Waits while answers to `op` are held. The request has already been applied and logged:
    /// this is the window in which a client can die after ARM acted but before it heard so.
    async fn hold_answer(&self, op: Option<Operation>) {
        let Some(op) = op else { return };
        let mut held = self.held.subscribe();
        if !held.borrow().contains(&op) {
            return;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // Err: the sender is gone with the emulator; answer at once.
        let _ = held.wait_for(|held| !held.contains(&op)).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// A panic in one handler must not wedge every later request, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An incoming request, fully read.
pub(crate) struct Req {
    pub method: String,
    pub raw_path: String,
    pub raw_query: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Req {
    /// Query parameter names are case-insensitive in ARM.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Authority the client used, for absolute links (`nextLink`).
    pub fn host(&self, fallback_endpoint: &str) -> String {
        match self.header("host") {
            Some(h) if !h.is_empty() => format!("https://{h}"),
            _ => fallback_endpoint.to_string(),
        }
    }
}

/// A response plus what the request log needs to know about it.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    /// A body sent as is (content type, bytes) instead of `body`: malformed answers for tests.
    pub raw: Option<Box<(String, Vec<u8>)>>,
    pub headers: Vec<(String, String)>,
    pub caller: String,
    pub op: Option<Operation>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            raw: None,
            headers: Vec::new(),
            caller: ANONYMOUS.to_string(),
            op: None,
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: None,
            raw: None,
            headers: Vec::new(),
            caller: ANONYMOUS.to_string(),
            op: None,
        }
    }

    pub fn raw(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            raw: Some(Box::new((content_type.to_string(), body))),
            ..Reply::empty(status)
        }
    }

    pub fn header(mut self, name: &str, value: impl ToString) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn caller(mut self, caller: &str) -> Reply {
        self.caller = caller.to_string();
        self
    }

    pub fn op(mut self, op: Option<Operation>) -> Reply {
        self.op = op;
        self
    }
}

fn dispatch(st: &mut State, endpoint: &str, r: &Req) -> Reply {
    let segs: Vec<&str> = r.raw_path.split('/').filter(|s| !s.is_empty()).collect();
    let is_token_path = segs.len() == 4
        && segs[1].eq_ignore_ascii_case("oauth2")
        && segs[2].eq_ignore_ascii_case("v2.0")
        && segs[3].eq_ignore_ascii_case("token");
    if is_token_path {
        return crate::entra::token(st, r, segs[0]);
    }
    let path = r.raw_path.trim_end_matches('/').to_ascii_lowercase();
    if path == "/msi/token" {
        return crate::entra::managed_identity(st, r, crate::entra::MsiFlavor::AppService);
    }
    if path == "/metadata/identity/oauth2/token" {
        return crate::entra::managed_identity(st, r, crate::entra::MsiFlavor::Imds);
    }
    crate::arm::handle(st, endpoint, r)
}

async fn handle(shared: Arc<Shared>, peer: SocketAddr, req: Request) -> Response {
    let latency = shared.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b.to_vec(),
        Err(_) => {
            return build_response(
                Reply::json(
                    413,
                    serde_json::json!({"error": {"code": "RequestEntityTooLarge", "message": "The request body is too large."}}),
                ),
                &parts.headers,
            );
        }
    };
    let raw_query = parts.uri.query().unwrap_or_default().to_string();
    let r = Req {
        method: parts.method.as_str().to_ascii_uppercase(),
        raw_path: parts.uri.path().to_string(),
        query: parse_pairs(&raw_query),
        raw_query,
        headers: parts.headers,
        body,
    };
    let (reply, fault, slow) = {
        let mut st = shared.lock();
        let (reply, mut fault) = dispatch_with_faults(&mut st, &shared.endpoint, &r);
        let slow = (st.faults.slow_answer_ms > 0 && fault.is_none() && reply.op.is_some())
            .then(|| {
                let rate = st.faults.slow_answer_rate;
                st.roll(rate).then_some(st.faults.slow_answer_ms)
            })
            .flatten();
        if slow.is_some() {
            fault = Some(InjectedFault::SlowAnswer);
        }
        st.log_request(LoggedRequest {
            method: r.method.clone(),
            path: r.raw_path.clone(),
            query: r.raw_query.clone(),
            status: reply.status,
            caller: reply.caller.clone(),
            operation: reply.op,
            user_agent: r.header("user-agent").map(str::to_string),
            peer: Some(peer),
            injected: fault,
        });
        (reply, fault, slow)
    };
    tracing::debug!(method = %r.method, path = %r.raw_path, status = reply.status, caller = %reply.caller, "arm-emulator request");
    shared.hold_answer(reply.op).await;
    if let Some(ms) = slow {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    match fault {
        Some(InjectedFault::ConnectionReset | InjectedFault::AnswerDropped) => {
            let mut dropped = Response::new(Body::empty());
            dropped.extensions_mut().insert(DropConnection);
            dropped
        }
        Some(InjectedFault::AnswerReplacedBy500) => {
            let sub = subscription_in_path(&r.raw_path);
            let op = reply.op.unwrap_or(Operation::PutRoleAssignment);
            let st = shared.lock();
            build_response(
                crate::arm::injected_reply(&st, 500, op, &sub, &reply.caller),
                &r.headers,
            )
        }
        _ => build_response(reply, &r.headers),
    }
}

/// Marks a response the connection task must not send: it closes the connection instead.
#[derive(Debug, Clone, Copy)]
struct DropConnection;

/// Routes the request, rolling the random transport faults of [`crate::FaultConfig`] around it:
/// a reset before anything happens, or a lost answer after a role-assignment write took effect.
/// Token requests are never reset: those faults model ARM's front door, not Entra's.
fn dispatch_with_faults(st: &mut State, endpoint: &str, r: &Req) -> (Reply, Option<InjectedFault>) {
    let is_arm = !is_identity_path(&r.raw_path);
    let reset_rate = st.faults.connection_reset_rate;
    if is_arm && st.roll(reset_rate) {
        return (Reply::empty(0), Some(InjectedFault::ConnectionReset));
    }
    let reply = dispatch(st, endpoint, r);
    let is_write = matches!(
        reply.op,
        Some(Operation::PutRoleAssignment | Operation::DeleteRoleAssignment)
    );
    let after_rate = st.faults.after_write_fault_rate;
    if is_write && (200..300).contains(&reply.status) && st.roll(after_rate) {
        let fault = if st.rng.next_u64().is_multiple_of(2) {
            InjectedFault::AnswerReplacedBy500
        } else {
            InjectedFault::AnswerDropped
        };
        return (reply, Some(fault));
    }
    (reply, None)
}

fn is_identity_path(raw_path: &str) -> bool {
    let path = raw_path.to_ascii_lowercase();
    path.ends_with("/oauth2/v2.0/token")
        || path.ends_with("/oauth2/v2.0/token/")
        || path.starts_with("/msi/token")
        || path.starts_with("/metadata/identity/")
}

/// The subscription id a path names, for error messages.
fn subscription_in_path(raw_path: &str) -> String {
    let segments: Vec<&str> = raw_path.split('/').filter(|s| !s.is_empty()).collect();
    segments
        .iter()
        .position(|s| s.eq_ignore_ascii_case("subscriptions"))
        .and_then(|i| segments.get(i + 1))
        .map(|s| s.to_string())
        .unwrap_or_default()
}

fn build_response(reply: Reply, req_headers: &HeaderMap) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = Response::builder().status(status);
    let request_id = uuid::Uuid::new_v4().to_string();
    let correlation = req_headers
        .get("x-ms-correlation-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| request_id.clone());
    builder = builder
        .header("x-ms-request-id", &request_id)
        .header("x-ms-correlation-request-id", correlation)
        .header(
            "x-ms-routing-request-id",
            format!("WESTUS:{}", request_id.replace('-', "")),
        )
        .header("cache-control", "no-cache")
        .header("pragma", "no-cache")
        .header("expires", "-1");
    if let Some(client_request_id) = req_headers.get("x-ms-client-request-id") {
        builder = builder.header("x-ms-client-request-id", client_request_id);
    }
    for (k, v) in &reply.headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            builder = builder.header(k.as_str(), v);
        }
    }
    let body = match (&reply.raw, &reply.body) {
        (Some(raw), _) => {
            let (content_type, bytes) = raw.as_ref();
            builder = builder.header("content-type", content_type.as_str());
            Body::from(bytes.clone())
        }
        (None, Some(v)) => {
            builder = builder.header("content-type", "application/json; charset=utf-8");
            Body::from(serde_json::to_vec(v).unwrap_or_default())
        }
        (None, None) => Body::empty(),
    };
    builder.body(body).unwrap_or_else(|_| {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// A CA generated per emulator instance and a server certificate it signed.
pub(crate) struct Tls {
    pub ca_pem: String,
    /// Every name the server certificate is valid for.
    pub sans: Vec<String>,
    pub server_config: Arc<rustls::ServerConfig>,
}

pub(crate) fn make_tls(bound_ip: IpAddr, extra_sans: &[String]) -> Result<Tls, String> {
    let err = |e: rcgen::Error| format!("certificate generation failed: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "acr-attach arm-emulator CA");
    ca_params.distinguished_name = dn;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut sans = vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ];
    if !bound_ip.is_unspecified() && !bound_ip.is_loopback() {
        sans.push(bound_ip.to_string());
    }
    sans.extend(extra_sans.iter().cloned());
    sans.dedup();
    let server_key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(sans.clone()).map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "arm-emulator");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let server_cert = params.signed_by(&server_key, &issuer).map_err(err)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key_der = pki_types::PrivateKeyDer::Pkcs8(pki_types::PrivatePkcs8KeyDer::from(
        server_key.serialize_der(),
    ));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(
            vec![server_cert.der().clone(), ca_cert.der().clone()],
            key_der,
        )
        .map_err(|e| format!("TLS configuration failed: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        ca_pem: ca_cert.pem(),
        sans,
        server_config: Arc::new(config),
    })
}

/// Accepts connections until `shutdown` flips or its sender is dropped; dropping the JoinSet
/// then aborts connections still open.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "arm-emulator accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                // One router per connection, so every request knows which client sent it.
                let shared = shared.clone();
                let router = axum::Router::new()
                    .fallback(move |req: Request| handle(shared.clone(), peer, req));
                conns.spawn(async move {
                    let tls = match acceptor.accept(stream).await {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::debug!(error = %e, "arm-emulator TLS handshake failed");
                            return;
                        }
                    };
                    let router = hyper_util::service::TowerToHyperService::new(router);
                    // A response marked DropConnection becomes an error, on which hyper closes
                    // the connection without writing anything: the client sees a reset.
                    let service = hyper::service::service_fn(move |req| {
                        let answer = hyper::service::Service::call(&router, req);
                        async move {
                            let response = answer.await.unwrap_or_else(|never| match never {});
                            if response.extensions().get::<DropConnection>().is_some() {
                                return Err(std::io::Error::other("connection reset by the emulator"));
                            }
                            Ok(response)
                        }
                    });
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await
                    {
                        tracing::debug!(error = %e, "arm-emulator connection ended with an error");
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}
