//! HTTP layer: authentication, URL routing, content negotiation (plain / Table /
//! PartialObjectMetadata), response bodies and streaming watches.

use crate::LoggedRequest;
use crate::openapi;
use crate::ops::{self, Query, Selectors};
use crate::resources::{self, ResourceType};
use crate::status::ApiError;
use crate::store::{Change, EventType, Store};
use crate::table::{self, IncludeObject};
use crate::util::{go_quote, parse_query, path_decode};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);
/// Without `timeoutSeconds` the real server picks 30–60 minutes.
const DEFAULT_WATCH_TIMEOUT: u64 = 1800;
const MAX_BODY: usize = 16 * 1024 * 1024;
const MAX_LOG: usize = 100_000;

pub struct Shared {
    pub store: Mutex<Store>,
    pub token: String,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Shared {
    /// Locks the store; a panic elsewhere must not wedge the emulator, so poisoning is ignored.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn json_response(code: u16, v: &Value, warnings: &[String]) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json");
    for w in warnings {
        if let Ok(h) = HeaderValue::from_bytes(format!("299 - {}", go_quote(w)).as_bytes()) {
            b = b.header("Warning", h);
        }
    }
    let body = serde_json::to_vec(v).unwrap_or_default();
    b.body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status(), &[])
}

/// The representation the client asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repr {
    Plain,
    Table,
    Partial,
}

fn negotiate(accept: &str) -> Repr {
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        if !(media == "application/json" || media == "*/*" || media == "application/*") {
            continue;
        }
        let mut as_ = "";
        let mut g = "";
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                match k.trim() {
                    "as" => as_ = v.trim(),
                    "g" => g = v.trim(),
                    _ => {}
                }
            }
        }
        match (as_, g) {
            ("", _) => return Repr::Plain,
            ("Table", "meta.k8s.io") => return Repr::Table,
            ("PartialObjectMetadata" | "PartialObjectMetadataList", "meta.k8s.io") => {
                return Repr::Partial;
            }
            _ => continue,
        }
    }
    Repr::Plain
}

fn version_info() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "kube-emulator",
        "gitTreeState": "clean", "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.3",
        "compiler": "gc", "platform": "linux/amd64",
    })
}

struct Req {
    method: Method,
    segs: Vec<String>,
    query: Query,
    content_type: String,
    accept: String,
    user_agent: String,
    body: Bytes,
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Entry point for every request.
pub async fn handle(
    shared: Arc<Shared>,
    req: axum::http::Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let content_type = header_str(&parts.headers, header::CONTENT_TYPE);
    let bytes = match axum::body::to_bytes(Body::new(body), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let e = ApiError::new(
                413,
                "RequestEntityTooLarge",
                "the request body is too large",
            );
            return Ok(error_response(&e));
        }
    };
    let authorized = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", shared.token));
    let has_credentials = parts.headers.contains_key(header::AUTHORIZATION);
    let path = parts.uri.path().to_string();
    let user_agent = header_str(&parts.headers, header::USER_AGENT);
    let public = matches!(
        path.as_str(),
        "/version" | "/healthz" | "/livez" | "/readyz"
    );
    let response = if authorized || (public && !has_credentials) {
        let r = Req {
            method: parts.method.clone(),
            segs: path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(path_decode)
                .collect(),
            query: Query(parse_query(parts.uri.query().unwrap_or(""))),
            content_type: content_type.clone(),
            accept: header_str(&parts.headers, header::ACCEPT),
            user_agent: user_agent.clone(),
            body: bytes.clone(),
        };
        route(&shared, r)
    } else {
        error_response(&ApiError::unauthorized())
    };
    tracing::debug!(method = %parts.method, path = %path_and_query, status = response.status().as_u16(), "kube-emulator request");
    let mut st = shared.lock();
    // Bounded so that a long-running sandbox does not grow without limit.
    if st.log.len() >= MAX_LOG {
        st.log.drain(..MAX_LOG / 10);
    }
    st.log.push(LoggedRequest {
        method: parts.method.to_string(),
        path: path_and_query,
        content_type: (!content_type.is_empty()).then_some(content_type),
        status: response.status().as_u16(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
        user_agent: (!user_agent.is_empty()).then_some(user_agent),
    });
    Ok(response)
}

fn route(shared: &Arc<Shared>, r: Req) -> Response<Body> {
    let segs: Vec<&str> = r.segs.iter().map(String::as_str).collect();
    let get_only = |v: Option<Value>| -> Response<Body> {
        if r.method != Method::GET {
            return error_response(&ApiError::method_not_allowed());
        }
        match v {
            Some(v) => json_response(200, &v, &[]),
            None => error_response(&ApiError::path_not_found()),
        }
    };
    match segs.as_slice() {
        ["version"] => get_only(Some(version_info())),
        ["healthz"] | ["livez"] | ["readyz"] => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from("ok"))
            .unwrap_or_else(|_| Response::new(Body::empty())),
        ["api"] => get_only(Some(resources::api_versions())),
        ["apis"] => get_only(Some(resources::api_group_list(&shared.lock().types))),
        ["apis", g] => get_only(resources::api_group(&shared.lock().types, g)),
        ["api", "v1"] => get_only(resources::resource_list(&shared.lock().types, "", "v1")),
        ["apis", g, v] => get_only(resources::resource_list(&shared.lock().types, g, v)),
        ["openapi", "v3"] => {
            let docs = openapi::openapi_docs(&shared.lock().types);
            get_only(Some(openapi::openapi_root(&docs)))
        }
        ["openapi", "v3", rest @ ..] => {
            let docs = openapi::openapi_docs(&shared.lock().types);
            get_only(docs.get(&rest.join("/")).cloned())
        }
        ["api", "v1", rest @ ..] => resource_request(shared, &r, "", "v1", rest),
        ["apis", g, v, rest @ ..] => resource_request(shared, &r, g, v, rest),
        _ => error_response(&ApiError::path_not_found()),
    }
}

/// A parsed resource URL.
struct Target<'a> {
    res: ResourceType,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    subresource: &'a str,
}

fn parse_target<'a>(
    st: &Store,
    group: &str,
    version: &str,
    rest: &[&'a str],
) -> Option<Target<'a>> {
    // `/api/v1/namespaces/x[/status]` is the Namespace itself, not a namespaced collection.
    let (namespace, tail): (Option<&str>, &[&str]) = match rest {
        ["namespaces", ns, tail @ ..]
            if !(group.is_empty()
                && (tail.is_empty() || tail == ["status"] || tail == ["finalize"])) =>
        {
            (Some(*ns), tail)
        }
        _ => (None, rest),
    };
    let (plural, name, sub) = match tail {
        [p] => (*p, None, ""),
        [p, n] => (*p, Some(*n), ""),
        [p, n, s] => (*p, Some(*n), *s),
        _ => return None,
    };
    let res = st.resolve(group, version, plural)?;
    if namespace.is_some() && !res.namespaced {
        return None;
    }
    if namespace.is_none() && res.namespaced && name.is_some() {
        return None;
    }
    let served_subresource = sub.is_empty() || (sub == "status" && res.status_subresource);
    if !served_subresource {
        return None;
    }
    Some(Target {
        res,
        namespace,
        name,
        subresource: sub,
    })
}

fn resource_request(
    shared: &Arc<Shared>,
    r: &Req,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Response<Body> {
    let target = {
        let st = shared.lock();
        parse_target(&st, group, version, rest)
    };
    let Some(t) = target else {
        return error_response(&ApiError::path_not_found());
    };
    let res = &t.res;
    let ns = t.namespace.unwrap_or("");
    let mut warnings = Vec::new();
    let result: Result<(u16, Value), ApiError> = match (&r.method, t.name) {
        (&Method::GET, None) => {
            if r.query.flag("watch") {
                return watch(
                    shared,
                    res.clone(),
                    t.namespace.map(str::to_string),
                    &r.query,
                    negotiate(&r.accept),
                );
            }
            let st = shared.lock();
            ops::list(&st, res, t.namespace, &r.query)
                .map(|page| (200, render_list(res, page, negotiate(&r.accept), &r.query)))
        }
        (&Method::GET, Some(name)) => {
            let st = shared.lock();
            match st.get(res, ns, name) {
                Some(o) => Ok((
                    200,
                    render_one(res, &ops::output(res, o), negotiate(&r.accept), &r.query),
                )),
                None => Err(ApiError::not_found(&res.plural, &res.group, name)),
            }
        }
        (&Method::POST, None) => {
            if res.namespaced && t.namespace.is_none() {
                Err(ApiError::method_not_allowed())
            } else {
                let mut st = shared.lock();
                ops::create_from_body(
                    &mut st,
                    res,
                    ns,
                    &r.content_type,
                    &r.body,
                    &r.query,
                    &r.user_agent,
                    &mut warnings,
                )
                .map(|o| (201, o))
            }
        }
        (&Method::PUT, Some(name)) => {
            let mut st = shared.lock();
            ops::update_from_body(
                &mut st,
                res,
                ns,
                name,
                t.subresource,
                &r.content_type,
                &r.body,
                &r.query,
                &r.user_agent,
                &mut warnings,
            )
        }
        (&Method::PATCH, Some(name)) => {
            let mut st = shared.lock();
            ops::patch(
                &mut st,
                res,
                ns,
                name,
                t.subresource,
                &r.content_type,
                &r.body,
                &r.query,
                &r.user_agent,
                &mut warnings,
            )
        }
        (&Method::DELETE, Some(name)) if t.subresource.is_empty() => {
            let mut st = shared.lock();
            ops::delete_options(&r.query, &r.body)
                .and_then(|opts| ops::delete(&mut st, res, ns, name, &opts))
                .map(|o| (200, o))
        }
        (&Method::DELETE, None) => {
            let mut st = shared.lock();
            delete_collection(&mut st, res, t.namespace, &r.query, &r.body)
        }
        _ => Err(ApiError::method_not_allowed()),
    };
    match result {
        Ok((code, body)) => json_response(code, &body, &warnings),
        Err(e) => error_response(&e),
    }
}

fn delete_collection(
    st: &mut Store,
    res: &ResourceType,
    ns: Option<&str>,
    q: &Query,
    body: &[u8],
) -> Result<(u16, Value), ApiError> {
    let opts = ops::delete_options(q, body)?;
    let page = ops::list(
        st,
        res,
        ns,
        &Query(
            q.0.iter()
                .filter(|(k, _)| k != "limit" && k != "continue")
                .cloned()
                .collect(),
        ),
    )?;
    let mut items = Vec::new();
    for o in page.items {
        let n = o
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let o_ns = o
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Ok(v) = ops::delete(st, res, &o_ns, &n, &opts) {
            items.push(if v["kind"] == "Status" { o } else { v });
        }
    }
    Ok((
        200,
        json!({"apiVersion": res.api_version(), "kind": res.list_kind,
               "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
    ))
}

fn list_meta(page: &ops::ListPage) -> Value {
    let mut m = json!({"resourceVersion": page.resource_version});
    if let Some(c) = &page.continue_token {
        m["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        m["remainingItemCount"] = json!(r);
    }
    m
}

/// The Table of `objs` (already in `res`'s version): events have their own printer, every
/// other type prints its columns.
fn to_table(res: &ResourceType, objs: &[Value], meta: Value, include: IncludeObject) -> Value {
    if res.is_event() {
        crate::events::table(res.builtin, objs, meta, include)
    } else {
        table::table(&res.columns, objs, meta, include)
    }
}

fn render_list(res: &ResourceType, page: ops::ListPage, repr: Repr, q: &Query) -> Value {
    let meta = list_meta(&page);
    match repr {
        Repr::Table => to_table(
            res,
            &page.items,
            meta,
            IncludeObject::parse(q.get("includeObject")),
        ),
        Repr::Partial => json!({
            "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "items": page.items.iter().map(table::partial_object_metadata).collect::<Vec<_>>(),
        }),
        Repr::Plain => json!({
            "apiVersion": res.api_version(), "kind": res.list_kind, "metadata": meta, "items": page.items,
        }),
    }
}

fn render_one(res: &ResourceType, obj: &Value, repr: Repr, q: &Query) -> Value {
    match repr {
        Repr::Table => to_table(
            res,
            std::slice::from_ref(obj),
            json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))}),
            IncludeObject::parse(q.get("includeObject")),
        ),
        Repr::Partial => table::partial_object_metadata(obj),
        Repr::Plain => obj.clone(),
    }
}

/// Where a watch starts.
enum Start {
    /// Synthetic ADDED events for the current state first (RV unset or "0").
    Current,
    After(u64),
}

struct WatchSpec {
    res: ResourceType,
    namespace: Option<String>,
    selectors: Selectors,
    start: Start,
    timeout: Duration,
    bookmarks: bool,
    send_initial_end: bool,
    repr: Repr,
    include: IncludeObject,
}

fn watch(
    shared: &Arc<Shared>,
    res: ResourceType,
    namespace: Option<String>,
    q: &Query,
    repr: Repr,
) -> Response<Body> {
    let selectors = match Selectors::parse(&res, q) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let send_initial = q.flag("sendInitialEvents");
    let start = match q.get("resourceVersion") {
        None | Some("") | Some("0") => Start::Current,
        Some(_) if send_initial => Start::Current,
        Some(v) => match v.parse::<u64>() {
            Ok(n) => Start::After(n),
            Err(_) => {
                return error_response(&ApiError::bad_request(format!(
                    "resourceVersion: Invalid value: {}: must be an integer",
                    go_quote(v)
                )));
            }
        },
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .unwrap_or(DEFAULT_WATCH_TIMEOUT);
    let spec = WatchSpec {
        res,
        namespace,
        selectors,
        start,
        timeout: Duration::from_secs(timeout),
        bookmarks: q.flag("allowWatchBookmarks"),
        send_initial_end: send_initial,
        repr,
        include: IncludeObject::parse(q.get("includeObject")),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    tokio::spawn(run_watch(shared.clone(), spec, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn event_line(ty: &str, object: Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

fn render_event_object(spec: &WatchSpec, obj: &Value) -> Value {
    let out = ops::output(&spec.res, obj);
    match spec.repr {
        Repr::Plain => out,
        Repr::Partial => table::partial_object_metadata(&out),
        Repr::Table => to_table(
            &spec.res,
            std::slice::from_ref(&out),
            json!({"resourceVersion": out.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))}),
            spec.include,
        ),
    }
}

fn bookmark(spec: &WatchSpec, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        json!({"kind": spec.res.kind, "apiVersion": spec.res.api_version(), "metadata": meta}),
    )
}

fn too_old(requested: u64, oldest: u64) -> Bytes {
    let e = ApiError::expired(format!("too old resource version: {requested} ({oldest})"));
    event_line("ERROR", e.to_status())
}

/// The event a watcher with these selectors sees for a change, if any
/// (leaving the selector is a DELETED, entering it an ADDED).
fn translate(spec: &WatchSpec, c: &Change) -> Option<(&'static str, Value)> {
    if spec
        .namespace
        .as_deref()
        .is_some_and(|ns| ns != c.namespace)
    {
        return None;
    }
    let m = |o: &Value| spec.selectors.matches(o);
    match c.kind {
        EventType::Added => m(&c.obj).then(|| ("ADDED", c.obj.clone())),
        EventType::Modified => {
            let was = c.old.as_ref().is_some_and(m);
            match (was, m(&c.obj)) {
                (true, true) => Some(("MODIFIED", c.obj.clone())),
                (false, true) => Some(("ADDED", c.obj.clone())),
                (true, false) => Some(("DELETED", c.obj.clone())),
                (false, false) => None,
            }
        }
        EventType::Deleted => c
            .old
            .as_ref()
            .is_some_and(m)
            .then(|| ("DELETED", c.obj.clone())),
    }
}

async fn run_watch(shared: Arc<Shared>, spec: WatchSpec, tx: tokio::sync::mpsc::Sender<Bytes>) {
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let mut shutdown = shared.shutdown.clone();
    let key = spec.res.key();
    let opened = {
        let st = shared.lock();
        let notify = st.notify.subscribe();
        match spec.start {
            Start::After(n) if n < st.floor => Err(too_old(n, st.floor)),
            Start::After(n) => Ok((n, st.epoch, notify, Vec::new())),
            Start::Current => {
                let initial: Vec<Bytes> = st
                    .list(&spec.res, spec.namespace.as_deref())
                    .into_iter()
                    .filter(|o| spec.selectors.matches(o))
                    .map(|o| event_line("ADDED", render_event_object(&spec, o)))
                    .collect();
                Ok((st.rv, st.epoch, notify, initial))
            }
        }
    };
    let (mut cursor, epoch, mut notify, initial) = match opened {
        Ok(o) => o,
        Err(line) => {
            // 200 and then the ERROR event: kube-rs relists on it (an HTTP 410 it would retry).
            let _ = tx.send(line).await;
            return;
        }
    };
    for line in initial {
        if tx.send(line).await.is_err() {
            return;
        }
    }
    if spec.send_initial_end && tx.send(bookmark(&spec, cursor, true)).await.is_err() {
        return;
    }
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + BOOKMARK_INTERVAL,
        BOOKMARK_INTERVAL,
    );
    loop {
        let (lines, next, expired, ended) = {
            let st = shared.lock();
            if st.epoch != epoch {
                (Vec::new(), cursor, false, true)
            } else if cursor < st.floor {
                (vec![too_old(cursor, st.floor)], cursor, true, false)
            } else {
                let lines: Vec<Bytes> = st
                    .changes_since(&key, cursor)
                    .iter()
                    .filter_map(|c| translate(&spec, c))
                    .map(|(ty, obj)| event_line(ty, render_event_object(&spec, &obj)))
                    .collect();
                (lines, st.rv.max(cursor), false, false)
            }
        };
        if ended {
            return;
        }
        for line in lines {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if expired {
            return;
        }
        cursor = next;
        tokio::select! {
            changed = notify.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = ticker.tick(), if spec.bookmarks => {
                if tx.send(bookmark(&spec, cursor, false)).await.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tx.closed() => return,
            _ = shutdown.changed() => return,
        }
    }
}
