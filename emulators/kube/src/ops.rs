//! The verbs: get, list, create, update, patch (merge / JSON / apply), delete, with the
//! registry-store semantics of `k8s.io/apiserver/pkg/registry/generic/registry/store.go` and
//! the custom-resource strategy (generation, status subresource, validation, finalizers).

use crate::patch::{JsonPatchError, json_patch, merge_patch};
use crate::resources::{Kind, ResourceType, types_from_crd};
use crate::selector::{FieldSelector, LabelSelector};
use crate::ssa::{self, ManagedEntry};
use crate::status::{ApiError, FieldError};
use crate::store::Store;
use crate::util::{
    dns1123_label_errors, dns1123_subdomain_errors, get_str, go_quote, label_value_errors,
    meta_mut, now, now_rfc3339, parse_go_time, qualified_name_errors, rfc3339, rfc3339_micro,
};
use base64::Engine;
use serde_json::{Map, Value, json};

/// Decoded query string.
#[derive(Debug, Clone, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// Per-request write options.
#[derive(Debug, Clone)]
pub struct WriteCtx {
    pub manager: String,
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// Warnings the write produced below the HTTP layer (ratcheted validation rules).
    pub warnings: std::cell::RefCell<Vec<String>>,
}

impl WriteCtx {
    pub fn from_query(q: &Query, user_agent: &str) -> Result<WriteCtx, ApiError> {
        let field_validation = match q.get("fieldValidation") {
            None | Some("") | Some("Warn") => FieldValidation::Warn,
            Some("Ignore") => FieldValidation::Ignore,
            Some("Strict") => FieldValidation::Strict,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation: Unsupported value: {}: supported values: \"Ignore\", \"Strict\", \"Warn\"",
                    go_quote(other)
                )));
            }
        };
        let dry_run = match q.get("dryRun") {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "dryRun: Unsupported value: {}: supported values: \"All\"",
                    go_quote(other)
                )));
            }
        };
        // Without fieldManager the server names the manager after the user agent's product.
        let manager = match q.get("fieldManager") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => user_agent
                .split('/')
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .to_string(),
        };
        Ok(WriteCtx {
            manager,
            dry_run,
            field_validation,
            warnings: Default::default(),
        })
    }
}

/// Stored objects carry the storage version; answers carry the requested one (events are
/// converted to the version's field names).
pub fn output(res: &ResourceType, obj: &Value) -> Value {
    let mut o = if res.is_event() {
        crate::events::output(res.builtin, obj)
    } else {
        obj.clone()
    };
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), json!(res.api_version()));
        m.insert("kind".into(), json!(res.kind));
    }
    o
}

pub fn decode_body(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the body of the request was empty"));
    }
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media == "application/vnd.kubernetes.protobuf" {
        return crate::protobuf::decode(body).map_err(|why| {
            ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({why})"
            ))
        });
    }
    if !(media.is_empty() || media.contains("json") || media.contains("yaml")) {
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (received {media})"
        )));
    }
    if media.contains("yaml") {
        let text = std::str::from_utf8(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
    }
}

fn cannot_handle(res: &ResourceType, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{} in version {} cannot be handled as a {}: {why}",
        res.kind,
        go_quote(&res.version),
        res.kind
    ))
}

/// Checks (and fills in) apiVersion/kind of a request body.
fn check_gvk(res: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    let Some(m) = obj.as_object_mut() else {
        return Err(cannot_handle(res, "json: cannot unmarshal into an object"));
    };
    if let Some(v) = m.get("apiVersion").and_then(Value::as_str)
        && !v.is_empty()
        && v != res.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    if let Some(k) = m.get("kind").and_then(Value::as_str)
        && !k.is_empty()
        && k != res.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            res.kind
        )));
    }
    m.insert("apiVersion".into(), json!(res.api_version()));
    m.insert("kind".into(), json!(res.kind));
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    Update,
    Patch,
}

fn prune_unknown(res: &ResourceType, obj: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    match &res.schema {
        Some(s) => s.prune(obj, "", true, &mut unknown),
        None => {
            if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
                crate::schema::prune_metadata(meta, "metadata", &mut unknown);
            }
        }
    }
    unknown
}

/// Drops undeclared fields and applies `fieldValidation` (Strict refuses, Warn warns).
fn handle_unknown(
    res: &ResourceType,
    obj: &mut Value,
    fv: FieldValidation,
    mode: Mode,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    let before = if mode == Mode::Patch && fv == FieldValidation::Strict {
        serde_json::to_string(obj).unwrap_or_default()
    } else {
        String::new()
    };
    let unknown = prune_unknown(res, obj);
    if unknown.is_empty() {
        return Ok(());
    }
    let msgs: Vec<String> = unknown
        .iter()
        .map(|u| format!("unknown field {}", go_quote(u)))
        .collect();
    match fv {
        FieldValidation::Ignore => Ok(()),
        FieldValidation::Warn => {
            warnings.extend(msgs);
            Ok(())
        }
        FieldValidation::Strict => match mode {
            Mode::Create | Mode::Update => Err(cannot_handle(
                res,
                &format!("strict decoding error: {}", msgs.join(", ")),
            )),
            Mode::Patch => Err(ApiError::invalid(
                "",
                "",
                "",
                &[FieldError::invalid(
                    "patch",
                    &Value::String(before),
                    format!("strict decoding error: {}", msgs.join(", ")),
                )],
            )),
        },
    }
}

fn string_map_ok(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.values().all(Value::is_string),
        _ => false,
    }
}

/// `ValidateObjectMeta` essentials; decoding-level type errors are a 400 like the real decoder.
fn validate_metadata(
    res: &ResourceType,
    obj: &Value,
    errs: &mut Vec<FieldError>,
) -> Result<(), ApiError> {
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    if !meta.is_object() {
        return Err(cannot_handle(
            res,
            "json: cannot unmarshal metadata into Go struct field of type v1.ObjectMeta",
        ));
    }
    for f in ["labels", "annotations"] {
        if !string_map_ok(meta.get(f)) {
            return Err(cannot_handle(
                res,
                &format!(
                    "json: cannot unmarshal into Go struct field ObjectMeta.metadata.{f} of type map[string]string"
                ),
            ));
        }
    }
    match meta.get("finalizers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {}
        _ => {
            return Err(cannot_handle(
                res,
                "json: cannot unmarshal into Go struct field ObjectMeta.metadata.finalizers of type []string",
            ));
        }
    }
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
    let name_errs = match res.builtin {
        Kind::Namespace => dns1123_label_errors(name),
        // Core v1 Events skip `ValidateObjectMeta`; only the path-segment rule applies.
        Kind::CoreEvent => path_segment_errors(name),
        _ => dns1123_subdomain_errors(name),
    };
    for e in name_errs {
        errs.push(FieldError::invalid("metadata.name", &json!(name), e));
    }
    if let Some(Value::Object(labels)) = meta.get("labels") {
        for (k, v) in labels {
            for e in qualified_name_errors(k) {
                errs.push(FieldError::invalid("metadata.labels", &json!(k), e));
            }
            let v = v.as_str().unwrap_or("");
            for e in label_value_errors(v) {
                errs.push(FieldError::invalid("metadata.labels", &json!(v), e));
            }
        }
    }
    if let Some(Value::Object(ann)) = meta.get("annotations") {
        let mut total = 0usize;
        for (k, v) in ann {
            for e in qualified_name_errors(&k.to_lowercase()) {
                errs.push(FieldError::invalid("metadata.annotations", &json!(k), e));
            }
            total += k.len() + v.as_str().map(str::len).unwrap_or(0);
        }
        if total > 256 * 1024 {
            errs.push(FieldError::too_long("metadata.annotations", 256 * 1024));
        }
    }
    if let Some(Value::Array(fins)) = meta.get("finalizers") {
        for (i, f) in fins.iter().enumerate() {
            let f = f.as_str().unwrap_or("");
            let path = format!("metadata.finalizers[{i}]");
            if f.contains('/') {
                for e in qualified_name_errors(f) {
                    errs.push(FieldError::invalid(&path, &json!(f), e));
                }
            } else if !["kubernetes", "orphan", "foregroundDeletion"].contains(&f) {
                errs.push(FieldError::invalid(
                    &path,
                    &json!(f),
                    "name is neither a standard finalizer name nor is it fully qualified",
                ));
            }
        }
    }
    Ok(())
}

/// `path.ValidatePathSegmentName`: what any name must satisfy to be used in a URL.
fn path_segment_errors(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if name == "." || name == ".." {
        out.push(format!("may not be '{name}'"));
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            out.push(format!("may not contain '{bad}'"));
        }
    }
    out
}

fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, c| !c.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// What the Go decoder of a Lease or Event does beyond JSON types: `null` is the zero value
/// (dropped), `metav1.MicroTime` needs exactly six fractional digits (`RFC3339Micro`),
/// `metav1.Time` any RFC 3339 timestamp, int32 fields must fit. Times are re-encoded the way
/// Go writes them (UTC, `Z`; MicroTime with six digits, Time in whole seconds). Failures are the
/// decoder's `400`s. Works on the request's version (and, idempotently, on the stored form).
fn decode_builtin(res: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    type Int32Field<'a> = (&'a str, &'a str);
    let (micro, time, int32): (&[&str], &[&str], &[Int32Field]) = match res.builtin {
        Kind::Lease => (
            &["/spec/acquireTime", "/spec/renewTime"],
            &[],
            &[
                (
                    "/spec/leaseDurationSeconds",
                    "LeaseSpec.spec.leaseDurationSeconds",
                ),
                ("/spec/leaseTransitions", "LeaseSpec.spec.leaseTransitions"),
            ],
        ),
        Kind::Event => (
            &["/eventTime", "/series/lastObservedTime"],
            &["/deprecatedFirstTimestamp", "/deprecatedLastTimestamp"],
            &[
                ("/deprecatedCount", "Event.deprecatedCount"),
                ("/series/count", "EventSeries.series.count"),
            ],
        ),
        Kind::CoreEvent => (
            &["/eventTime", "/series/lastObservedTime"],
            &["/firstTimestamp", "/lastTimestamp"],
            &[
                ("/count", "Event.count"),
                ("/series/count", "EventSeries.series.count"),
            ],
        ),
        _ => return Ok(()),
    };
    strip_nulls(obj);
    for (paths, is_micro) in [(micro, true), (time, false)] {
        for p in paths {
            if let Some(v) = obj.pointer_mut(p)
                && let Some(text) = v.as_str()
            {
                let (secs, nanos) =
                    parse_go_time(text, is_micro).map_err(|e| cannot_handle(res, &e))?;
                *v = json!(if is_micro {
                    rfc3339_micro(secs, nanos)
                } else {
                    rfc3339(secs)
                });
            }
        }
    }
    for (p, go_field) in int32 {
        if let Some(Value::Number(n)) = obj.pointer(p)
            && n.as_i64().is_none_or(|i| i32::try_from(i).is_err())
        {
            return Err(cannot_handle(
                res,
                &format!(
                    "json: cannot unmarshal number {n} into Go struct field {go_field} of type int32"
                ),
            ));
        }
    }
    Ok(())
}

/// Decoding of a built-in type's body: Go's decoder rules, then its JSON types (a wrongly
/// typed field is a `400`, other schema errors go to `errs`), then, for events, the stored
/// form. Custom resources pass through (their schema applies after defaulting).
fn decode_for_storage(
    res: &ResourceType,
    obj: Value,
    errs: &mut Vec<FieldError>,
) -> Result<Value, ApiError> {
    if res.is_custom() {
        return Ok(obj);
    }
    let mut obj = obj;
    decode_builtin(res, &mut obj)?;
    validate_schema(res, &obj, errs)?;
    if res.is_event() {
        obj = crate::events::to_storage(res.builtin, obj);
    }
    Ok(obj)
}

fn validate_schema(
    res: &ResourceType,
    obj: &Value,
    errs: &mut Vec<FieldError>,
) -> Result<(), ApiError> {
    let Some(s) = &res.schema else { return Ok(()) };
    let mut schema_errs = Vec::new();
    s.validate(obj, "", &mut schema_errs);
    if !res.is_custom() {
        // Built-in types are decoded into Go structs: a wrongly typed field is a 400.
        if let Some(e) = schema_errs
            .iter()
            .find(|e| e.kind == crate::status::FieldErrorKind::TypeInvalid)
        {
            return Err(cannot_handle(res, &e.message()));
        }
    }
    errs.extend(schema_errs);
    Ok(())
}

/// `x-kubernetes-validations` of a custom resource, after the schema (`strategy.go`): skipped
/// when the schema already found a type, required, enum or limit error (`hasBlockingErr`);
/// ratcheted failures become warnings.
fn validate_rules(
    res: &ResourceType,
    new: &Value,
    old: Option<&Value>,
    errs: &mut Vec<FieldError>,
    ctx: &WriteCtx,
) {
    use crate::status::FieldErrorKind as K;
    let Some(s) = res.schema.as_ref().filter(|s| s.has_rules) else {
        return;
    };
    if errs.iter().any(|e| {
        matches!(
            e.kind,
            K::NotSupported | K::Required | K::TooLong | K::TooMany | K::TypeInvalid
        )
    }) {
        errs.push(FieldError::invalid(
            "<nil>",
            &Value::Null,
            "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ));
        return;
    }
    let out = crate::xvalidation::validate(s, new, old);
    errs.extend(out.errors);
    ctx.warnings.borrow_mut().extend(out.warnings);
}

fn validate_builtin(
    res: &ResourceType,
    obj: &Value,
    old: Option<&Value>,
    errs: &mut Vec<FieldError>,
) {
    match res.builtin {
        Kind::Event | Kind::CoreEvent => {
            let ns = get_str(obj, &["metadata", "namespace"]).unwrap_or("");
            crate::events::validate(res.builtin, obj, old, ns, errs);
        }
        Kind::Lease => {
            if let Some(d) = obj
                .pointer("/spec/leaseDurationSeconds")
                .and_then(Value::as_i64)
                && d <= 0
            {
                errs.push(FieldError::invalid(
                    "spec.leaseDurationSeconds",
                    &json!(d),
                    "must be greater than 0",
                ));
            }
            if let Some(t) = obj
                .pointer("/spec/leaseTransitions")
                .and_then(Value::as_i64)
                && t < 0
            {
                errs.push(FieldError::invalid(
                    "spec.leaseTransitions",
                    &json!(t),
                    "must be greater than or equal to 0",
                ));
            }
        }
        Kind::Crd => validate_crd(obj, old, errs),
        Kind::Namespace | Kind::Custom => {}
    }
}

/// The `apiextensions` validation that matters for registering a type.
fn validate_crd(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let group = spec["group"].as_str().unwrap_or("");
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else {
        for e in dns1123_subdomain_errors(group) {
            errs.push(FieldError::invalid("spec.group", &json!(group), e));
        }
        if !group.contains('.') {
            errs.push(FieldError::invalid(
                "spec.group",
                &json!(group),
                "should be a domain with at least one dot",
            ));
        }
    }
    let plural = spec
        .pointer("/names/plural")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = spec
        .pointer("/names/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    } else {
        for e in dns1123_label_errors(plural) {
            errs.push(FieldError::invalid("spec.names.plural", &json!(plural), e));
        }
    }
    if kind.is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    let name = get_str(obj, &["metadata", "name"]).unwrap_or("");
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match spec["scope"].as_str() {
        Some("Cluster") | Some("Namespaced") => {}
        None | Some("") => errs.push(FieldError::required("spec.scope", "")),
        Some(other) => errs.push(FieldError::not_supported(
            "spec.scope",
            &json!(other),
            &["Cluster".to_string(), "Namespaced".to_string()],
        )),
    }
    if let Some(old_scope) = old
        .and_then(|o| o.pointer("/spec/scope"))
        .and_then(Value::as_str)
        && let Some(new_scope) = spec["scope"].as_str()
        && old_scope != new_scope
    {
        errs.push(FieldError::invalid(
            "spec.scope",
            &json!(new_scope),
            "field is immutable",
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
        return;
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count();
    if storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            &Value::Array(versions.clone()),
            "must have exactly one version marked as storage version",
        ));
    }
    // The v1 → internal conversion moves schemas that are identical in every version to
    // `spec.validation`, so their errors are reported once under that path.
    let schemas: Vec<Option<&Value>> = versions
        .iter()
        .map(|v| {
            v.pointer("/schema/openAPIV3Schema")
                .filter(|s| !s.is_null())
        })
        .collect();
    let shared = schemas.iter().all(Option::is_some)
        && schemas.windows(2).all(|w| {
            crate::schema::json_eq(w[0].unwrap_or(&Value::Null), w[1].unwrap_or(&Value::Null))
        });
    for (i, v) in versions.iter().enumerate() {
        let base = format!("spec.versions[{i}]");
        if v["name"].as_str().is_none_or(str::is_empty) {
            errs.push(FieldError::required(format!("{base}.name"), ""));
        }
        if v["served"].as_bool().is_none() {
            errs.push(FieldError::required(format!("{base}.served"), ""));
        }
        match schemas[i] {
            None => errs.push(FieldError::required(
                format!("{base}.schema.openAPIV3Schema"),
                "schemas are required",
            )),
            Some(_) if shared && i > 0 => {}
            Some(s) => {
                let path = if shared {
                    "spec.validation.openAPIV3Schema".to_string()
                } else {
                    format!("{base}.schema.openAPIV3Schema")
                };
                match crate::schema::Schema::parse(s, &path) {
                    Err(e) => errs.push(e),
                    Ok(mut parsed) => {
                        if parsed.ty.as_deref() != Some("object") {
                            errs.push(FieldError::invalid(
                                format!("{path}.type"),
                                &json!(parsed.ty.clone().unwrap_or_default()),
                                "must be object at the root",
                            ));
                        }
                        crate::xvalidation::compile(&mut parsed, true);
                        crate::xvalidation::crd_errors(&parsed, &path, None, errs);
                    }
                }
            }
        }
    }
}

/// What the naming and establishing controllers write into a CRD's status.
fn crd_status(obj: &Value, old: Option<&Value>) -> Value {
    let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let mut accepted = Map::new();
    for k in [
        "plural",
        "singular",
        "kind",
        "listKind",
        "shortNames",
        "categories",
    ] {
        if let Some(v) = names.get(k) {
            accepted.insert(k.into(), v.clone());
        }
    }
    let now = now_rfc3339();
    let old_conds = old
        .and_then(|o| o.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let cond = |ty: &str, reason: &str, msg: &str| {
        let time = old_conds
            .iter()
            .find(|c| c["type"] == ty && c["status"] == "True")
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or(json!(now));
        json!({"type": ty, "status": "True", "lastTransitionTime": time, "reason": reason, "message": msg})
    };
    let mut stored: Vec<Value> = old
        .and_then(|o| o.pointer("/status/storedVersions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for v in obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if v["storage"].as_bool() == Some(true)
            && let Some(n) = v.get("name")
            && !stored.contains(n)
        {
            stored.push(n.clone());
        }
    }
    json!({
        "acceptedNames": accepted,
        "conditions": [
            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    })
}

/// Server-side defaults of built-in types.
fn builtin_defaults(res: &ResourceType, obj: &mut Value) {
    match res.builtin {
        Kind::Crd => {
            if let Some(names) = obj
                .pointer_mut("/spec/names")
                .and_then(Value::as_object_mut)
            {
                let kind = names
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if !names.contains_key("singular") && !kind.is_empty() {
                    names.insert("singular".into(), json!(kind.to_lowercase()));
                }
                if !names.contains_key("listKind") && !kind.is_empty() {
                    names.insert("listKind".into(), json!(format!("{kind}List")));
                }
            }
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.entry("conversion")
                    .or_insert(json!({"strategy": "None"}));
            }
        }
        Kind::Lease => {
            // `strategy` and `preferredHolder` belong to the CoordinatedLeaderElection feature,
            // off by default in 1.32: the strategy drops them.
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("strategy");
                spec.remove("preferredHolder");
            }
        }
        Kind::Namespace => {
            let name = get_str(obj, &["metadata", "name"])
                .unwrap_or("")
                .to_string();
            let meta = meta_mut(obj);
            let labels = meta.entry("labels").or_insert(json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            if let Some(o) = obj.as_object_mut() {
                let spec = o.entry("spec").or_insert(json!({}));
                if let Some(s) = spec.as_object_mut() {
                    s.entry("finalizers").or_insert(json!(["kubernetes"]));
                }
            }
        }
        _ => {}
    }
}

/// Empty finalizers/labels/annotations are omitted, as Go's `omitempty` does.
fn normalize_meta(obj: &mut Value) {
    let meta = meta_mut(obj);
    for k in [
        "finalizers",
        "labels",
        "annotations",
        "ownerReferences",
        "managedFields",
    ] {
        let empty = match meta.get(k) {
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Null) => true,
            _ => false,
        };
        if empty {
            meta.remove(k);
        }
    }
}

fn set_managed(obj: &mut Value, entries: &[ManagedEntry]) {
    let meta = meta_mut(obj);
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), ssa::render(entries));
    }
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn has_deletion_timestamp(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

const GEN_NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn random_suffix() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| GEN_NAME_CHARS[(*b as usize) % GEN_NAME_CHARS.len()] as char)
        .collect()
}

/// NamespaceLifecycle admission: the namespace must exist and not be terminating.
fn check_namespace(st: &Store, res: &ResourceType, ns: &str, name: &str) -> Result<(), ApiError> {
    let ns_type = st
        .resolve("", "v1", "namespaces")
        .expect("namespaces is built in");
    match st.get(&ns_type, "", ns) {
        None => Err(ApiError::not_found("namespaces", "", ns)),
        Some(n) if has_deletion_timestamp(n) => Err(ApiError::forbidden(
            &res.plural,
            &res.group,
            name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn rv_on_create() -> ApiError {
    ApiError::unknown(
        500,
        "resourceVersion should not be set on objects to be created",
    )
}

/// POST: creates `obj` in namespace `ns` ("" for cluster-scoped types).
pub fn create(
    st: &mut Store,
    res: &ResourceType,
    ns: &str,
    mut obj: Value,
    ctx: &WriteCtx,
    managed: Option<Vec<ManagedEntry>>,
) -> Result<Value, ApiError> {
    // etcd refuses (after validation) a create that carries a resourceVersion.
    let rv_set = get_str(&obj, &["metadata", "resourceVersion"])
        .and_then(|rv| rv.parse::<u64>().ok())
        .is_some_and(|rv| rv != 0);
    {
        let meta = meta_mut(&mut obj);
        if res.namespaced {
            if let Some(n) = meta.get("namespace").and_then(Value::as_str)
                && !n.is_empty()
                && n != ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(k);
        }
    }
    let mut name = get_str(&obj, &["metadata", "name"])
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        let generate = get_str(&obj, &["metadata", "generateName"])
            .unwrap_or("")
            .to_string();
        if generate.is_empty() {
            return Err(ApiError::invalid(
                &res.kind,
                &res.group,
                "",
                &[FieldError::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
        loop {
            name = format!("{generate}{}", random_suffix());
            if st.get(res, ns, &name).is_none() {
                break;
            }
        }
        meta_mut(&mut obj).insert("name".into(), json!(name));
    }
    if res.namespaced {
        check_namespace(st, res, ns, &name)?;
    }
    if res.status_subresource
        && let Some(m) = obj.as_object_mut()
    {
        m.remove("status");
    }
    let mut errs = Vec::new();
    let mut obj = decode_for_storage(res, obj, &mut errs)?;
    if let (Kind::Custom, Some(s)) = (res.builtin, &res.schema) {
        s.apply_defaults(&mut obj, true);
    }
    builtin_defaults(res, &mut obj);
    validate_metadata(res, &obj, &mut errs)?;
    if res.is_custom() {
        validate_schema(res, &obj, &mut errs)?;
        validate_rules(res, &obj, None, &mut errs, ctx);
    }
    validate_builtin(res, &obj, None, &mut errs);
    if !errs.is_empty() {
        return Err(ApiError::invalid(&res.kind, &res.group, &name, &errs));
    }
    if rv_set {
        return Err(rv_on_create());
    }
    if st.get(res, ns, &name).is_some() {
        return Err(ApiError::already_exists(&res.plural, &res.group, &name));
    }
    let (secs, _) = now();
    {
        let meta = meta_mut(&mut obj);
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(rfc3339(secs)));
        if res.tracks_generation() {
            meta.insert("generation".into(), json!(1));
        }
    }
    match res.builtin {
        Kind::Crd => obj["status"] = crd_status(&obj, None),
        Kind::Namespace => obj["status"] = json!({"phase": "Active"}),
        _ => {}
    }
    normalize_meta(&mut obj);
    let entries = managed.unwrap_or_else(|| {
        let mut e = Vec::new();
        ssa::record_update(
            &mut e,
            &ctx.manager,
            "",
            &res.api_version(),
            &rfc3339(secs),
            None,
            &obj,
            res.schema.as_ref(),
        );
        e
    });
    set_managed(&mut obj, &entries);
    if ctx.dry_run {
        return Ok(output(res, &obj));
    }
    let stored = st.write(res, obj, None);
    if res.builtin == Kind::Crd {
        st.rebuild_types();
    }
    Ok(output(res, &stored))
}

fn without_rv(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    c
}

/// What is compared to decide whether `metadata.generation` moves.
fn generation_view(res: &ResourceType, v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(m) = c.as_object_mut() {
        if res.builtin == Kind::Crd {
            return m.get("spec").cloned().unwrap_or(Value::Null);
        }
        m.remove("metadata");
        if res.status_subresource {
            m.remove("status");
        }
    }
    c
}

/// How the write attributes ownership.
pub enum Ownership {
    /// A non-apply write by `ctx.manager`.
    Update,
    /// Entries computed by server-side apply.
    Precomputed(Vec<ManagedEntry>),
}

/// PUT / PATCH / apply of an existing object. `candidate` is the desired object; server-owned
/// metadata and (with the status subresource) status or spec are taken from `old`.
/// Returns the resulting object and whether anything was persisted.
#[allow(clippy::too_many_arguments)]
pub fn update(
    st: &mut Store,
    res: &ResourceType,
    ns: &str,
    name: &str,
    subresource: &str,
    old: Value,
    candidate: Value,
    ctx: &WriteCtx,
    ownership: Ownership,
) -> Result<(Value, bool), ApiError> {
    let old_rv = get_str(&old, &["metadata", "resourceVersion"])
        .unwrap_or("")
        .to_string();
    let mut errs = Vec::new();
    let candidate = decode_for_storage(res, candidate, &mut errs)?;
    if let Some(rv) = get_str(&candidate, &["metadata", "resourceVersion"])
        && !rv.is_empty()
        && rv != old_rv
    {
        return Err(ApiError::stale(&res.plural, &res.group, name));
    }
    let mut new = if subresource == "status" {
        let mut n = old.clone();
        match candidate.get("status") {
            Some(s) => n["status"] = s.clone(),
            None => {
                if let Some(m) = n.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        n
    } else {
        let mut n = candidate;
        let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
        let meta = meta_mut(&mut n);
        for k in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
        ] {
            match old_meta.get(k) {
                Some(v) => {
                    meta.insert(k.into(), v.clone());
                }
                None => {
                    meta.remove(k);
                }
            }
        }
        if res.status_subresource
            && let Some(m) = n.as_object_mut()
        {
            match old.get("status") {
                Some(s) => {
                    m.insert("status".into(), s.clone());
                }
                None => {
                    m.remove("status");
                }
            }
        }
        n
    };
    {
        let meta = meta_mut(&mut new);
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    if let (Kind::Custom, Some(s)) = (res.builtin, &res.schema) {
        s.apply_defaults(&mut new, true);
    }
    if subresource.is_empty() {
        builtin_defaults(res, &mut new);
    }

    validate_metadata(res, &new, &mut errs)?;
    if res.is_custom() {
        validate_schema(res, &new, &mut errs)?;
        validate_rules(res, &new, Some(&old), &mut errs, ctx);
    }
    validate_builtin(res, &new, Some(&old), &mut errs);
    if has_deletion_timestamp(&old) {
        let before = finalizers(&old);
        let added: Vec<String> = finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            let quoted: Vec<String> = added.iter().map(|f| go_quote(f)).collect();
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    quoted.join(", ")
                ),
            ));
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(&res.kind, &res.group, name, &errs));
    }

    if res.tracks_generation()
        && subresource.is_empty()
        && generation_view(res, &new) != generation_view(res, &old)
    {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut new).insert("generation".into(), json!(g + 1));
    }
    if res.builtin == Kind::Crd {
        new["status"] = crd_status(&new, Some(&old));
    }
    normalize_meta(&mut new);

    let now = now_rfc3339();
    let entries = match ownership {
        Ownership::Precomputed(e) => e,
        Ownership::Update => {
            let mut e = ssa::parse(&old);
            ssa::record_update(
                &mut e,
                &ctx.manager,
                subresource,
                &res.api_version(),
                &now,
                Some(&old),
                &new,
                res.schema.as_ref(),
            );
            e
        }
    };
    set_managed(&mut new, &entries);
    meta_mut(&mut new).insert("resourceVersion".into(), json!(old_rv));

    if without_rv(&new) == without_rv(&old) {
        return Ok((output(res, &old), false));
    }
    if ctx.dry_run {
        return Ok((output(res, &new), true));
    }
    if has_deletion_timestamp(&new) && finalizers(&new).is_empty() {
        // The last finalizer is gone: the update completes the deletion.
        let gone = remove_object(st, res, ns, name, Some(new.clone())).unwrap_or(new);
        return Ok((output(res, &gone), true));
    }
    let stored = st.write(res, new, Some(old));
    if res.builtin == Kind::Crd {
        st.rebuild_types();
    }
    Ok((output(res, &stored), true))
}

/// Removes an object for good, with the cascades of CRDs (their objects) and namespaces.
fn remove_object(
    st: &mut Store,
    res: &ResourceType,
    ns: &str,
    name: &str,
    last: Option<Value>,
) -> Option<Value> {
    let gone = st.remove(res, ns, name, last)?;
    if res.builtin == Kind::Crd {
        if let Some(t) = types_from_crd(&gone).into_iter().next() {
            let keys: Vec<(String, String)> = st
                .objects
                .get(&t.key())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            for (n, nm) in keys {
                st.remove(&t, &n, &nm, None);
            }
        }
        st.rebuild_types();
    }
    if res.namespaced {
        finalize_namespace_if_empty(st, ns);
    }
    Some(gone)
}

fn namespace_is_empty(st: &Store, ns: &str) -> bool {
    st.objects.iter().all(|((g, p), objs)| {
        let namespaced = st
            .types
            .iter()
            .any(|t| &t.group == g && &t.plural == p && t.namespaced);
        !namespaced || objs.keys().all(|(n, _)| n != ns)
    })
}

/// The namespace controller's last step: a terminating, empty namespace disappears.
fn finalize_namespace_if_empty(st: &mut Store, ns: &str) {
    let ns_type = st
        .resolve("", "v1", "namespaces")
        .expect("namespaces is built in");
    let terminating = st.get(&ns_type, "", ns).is_some_and(has_deletion_timestamp);
    if terminating && namespace_is_empty(st, ns) {
        st.remove(&ns_type, "", ns, None);
    }
}

/// `DeleteOptions` from the body and/or query.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

pub fn delete_options(q: &Query, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let mut o = DeleteOptions {
        dry_run: q.get("dryRun") == Some("All"),
        ..Default::default()
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(o);
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?;
    if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str)
        && !["Orphan", "Background", "Foreground"].contains(&p)
    {
        return Err(ApiError::invalid(
            "DeleteOptions",
            "meta.k8s.io",
            "",
            &[FieldError::not_supported(
                "propagationPolicy",
                &json!(p),
                &["Foreground".into(), "Background".into(), "Orphan".into()],
            )],
        ));
    }
    o.precondition_uid = v
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    o.precondition_rv = v
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(d) = v.get("dryRun").and_then(Value::as_array) {
        o.dry_run |= d.iter().any(|x| x == "All");
    }
    Ok(o)
}

fn success_status(res: &ResourceType, name: &str, uid: &str) -> Value {
    let mut details = json!({"name": name, "kind": res.plural, "uid": uid});
    if !res.group.is_empty() {
        details["group"] = json!(res.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

/// DELETE: finalizers keep the object (deletionTimestamp set), otherwise it is removed.
pub fn delete(
    st: &mut Store,
    res: &ResourceType,
    ns: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    let Some(old) = st.get(res, ns, name).cloned() else {
        return Err(ApiError::not_found(&res.plural, &res.group, name));
    };
    let uid = get_str(&old, &["metadata", "uid"])
        .unwrap_or("")
        .to_string();
    let rv = get_str(&old, &["metadata", "resourceVersion"])
        .unwrap_or("")
        .to_string();
    if let Some(p) = &opts.precondition_uid
        && *p != uid
    {
        return Err(ApiError::conflict(
            &res.plural,
            &res.group,
            name,
            &format!("Precondition failed: UID in precondition: {p}, UID in object meta: {uid}"),
        ));
    }
    if let Some(p) = &opts.precondition_rv
        && *p != rv
    {
        return Err(ApiError::conflict(
            &res.plural,
            &res.group,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {p}, ResourceVersion in object meta: {rv}"
            ),
        ));
    }
    if res.builtin == Kind::Namespace {
        return delete_namespace(st, res, name, old, opts);
    }
    if !finalizers(&old).is_empty() {
        if has_deletion_timestamp(&old) {
            return Ok(output(res, &old));
        }
        let mut new = old.clone();
        {
            let meta = meta_mut(&mut new);
            meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            if res.tracks_generation() {
                let g = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
                meta.insert("generation".into(), json!(g + 1));
            }
        }
        if opts.dry_run {
            return Ok(output(res, &new));
        }
        let stored = st.write(res, new, Some(old));
        return Ok(output(res, &stored));
    }
    if !opts.dry_run {
        remove_object(st, res, ns, name, None);
    }
    Ok(success_status(res, name, &uid))
}

fn delete_namespace(
    st: &mut Store,
    res: &ResourceType,
    name: &str,
    old: Value,
    opts: &DeleteOptions,
) -> Result<Value, ApiError> {
    if ["default", "kube-system", "kube-public"].contains(&name) {
        return Err(ApiError::forbidden(
            "namespaces",
            "",
            name,
            "this namespace may not be deleted",
        ));
    }
    if opts.dry_run {
        return Ok(output(res, &old));
    }
    let mut current = old.clone();
    if !has_deletion_timestamp(&old) {
        let mut new = old.clone();
        meta_mut(&mut new).insert("deletionTimestamp".into(), json!(now_rfc3339()));
        new["status"] = json!({"phase": "Terminating"});
        current = st.write(res, new, Some(old));
    }
    let contents: Vec<(ResourceType, String)> = st
        .types
        .iter()
        .filter(|t| t.namespaced && t.storage)
        .flat_map(|t| {
            st.list(t, Some(name))
                .into_iter()
                .filter_map(|o| get_str(o, &["metadata", "name"]).map(str::to_string))
                .map(|n| (t.clone(), n))
                .collect::<Vec<_>>()
        })
        .collect();
    for (t, n) in contents {
        let _ = delete(st, &t, name, &n, &DeleteOptions::default());
    }
    finalize_namespace_if_empty(st, name);
    Ok(output(res, &current))
}

/// A page of a list.
pub struct ListPage {
    pub items: Vec<Value>,
    pub resource_version: String,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    kind: Kind,
}

impl Selectors {
    pub fn parse(res: &ResourceType, q: &Query) -> Result<Selectors, ApiError> {
        let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        let fields =
            FieldSelector::parse(q.get("fieldSelector").unwrap_or(""), &res.field_labels())
                .map_err(ApiError::bad_request)?;
        Ok(Selectors {
            labels,
            fields,
            kind: res.builtin,
        })
    }

    /// Whether a stored object matches.
    pub fn matches(&self, obj: &Value) -> bool {
        let fields = match self.kind {
            Kind::Event | Kind::CoreEvent => self
                .fields
                .matches_with(|label| crate::events::field_value(label, obj)),
            _ => self.fields.matches(obj),
        };
        fields
            && self
                .labels
                .matches(obj.pointer("/metadata/labels").and_then(Value::as_object))
    }
}

fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "ns": ns, "name": name}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Option<(u64, String, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    Some((
        v["rv"].as_u64()?,
        v["ns"].as_str()?.to_string(),
        v["name"].as_str()?.to_string(),
    ))
}

/// LIST with selectors and `limit`/`continue` pagination.
pub fn list(
    st: &Store,
    res: &ResourceType,
    ns: Option<&str>,
    q: &Query,
) -> Result<ListPage, ApiError> {
    let sel = Selectors::parse(res, q)?;
    let limit: Option<usize> = match q.get("limit") {
        None | Some("") => None,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n > 0 => Some(n as usize),
            Ok(_) => None,
            Err(_) => return Err(ApiError::bad_request(format!("invalid limit: {l}"))),
        },
    };
    let mut list_rv = st.rv;
    let mut start: Option<(String, String)> = None;
    if let Some(token) = q.get("continue").filter(|t| !t.is_empty()) {
        let Some((rv, ns_, name)) = decode_continue(token) else {
            return Err(ApiError::bad_request(
                "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
            ));
        };
        if rv < st.floor {
            return Err(ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue value from the response.",
            ));
        }
        list_rv = rv;
        start = Some((ns_, name));
    }
    let matching: Vec<&Value> = st
        .list(res, ns)
        .into_iter()
        .filter(|o| {
            start.as_ref().is_none_or(|(sn, sname)| {
                let key = (
                    get_str(o, &["metadata", "namespace"]).unwrap_or(""),
                    get_str(o, &["metadata", "name"]).unwrap_or(""),
                );
                key > (sn.as_str(), sname.as_str())
            })
        })
        .filter(|o| sel.matches(o))
        .collect();
    let total = matching.len();
    let take = limit.unwrap_or(total).min(total);
    let items: Vec<Value> = matching[..take].iter().map(|o| output(res, o)).collect();
    let (continue_token, remaining) = if take < total {
        let last = &matching[take - 1];
        (
            Some(encode_continue(
                list_rv,
                get_str(last, &["metadata", "namespace"]).unwrap_or(""),
                get_str(last, &["metadata", "name"]).unwrap_or(""),
            )),
            Some(total - take),
        )
    } else {
        (None, None)
    };
    Ok(ListPage {
        items,
        resource_version: list_rv.to_string(),
        continue_token,
        remaining,
    })
}

/// The media types a PATCH may use.
pub enum PatchType {
    Merge,
    Json,
    StrategicMerge,
    Apply,
}

pub fn patch_type(content_type: &str) -> Option<PatchType> {
    match content_type.split(';').next().unwrap_or("").trim() {
        "application/merge-patch+json" => Some(PatchType::Merge),
        "application/json-patch+json" => Some(PatchType::Json),
        "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
        "application/apply-patch+yaml" => Some(PatchType::Apply),
        _ => None,
    }
}

fn unsupported_patch(res: &ResourceType) -> ApiError {
    let accepted = if res.is_custom() {
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    } else {
        "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
    };
    ApiError::unsupported_media_type(format!(
        "the body of the request was in an unknown format - accepted media types include: {accepted}"
    ))
}

/// PATCH of `name` (or its status) with any supported patch type.
#[allow(clippy::too_many_arguments)]
pub fn patch(
    st: &mut Store,
    res: &ResourceType,
    ns: &str,
    name: &str,
    subresource: &str,
    content_type: &str,
    body: &[u8],
    q: &Query,
    user_agent: &str,
    warnings: &mut Vec<String>,
) -> Result<(u16, Value), ApiError> {
    let Some(pt) = patch_type(content_type) else {
        return Err(unsupported_patch(res));
    };
    if matches!(pt, PatchType::StrategicMerge) && res.is_custom() {
        return Err(unsupported_patch(res));
    }
    if !matches!(pt, PatchType::Apply) && q.get("force").is_some() {
        return Err(ApiError::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            &[FieldError::forbidden(
                "force",
                "may not be specified for non-apply patch",
            )],
        ));
    }
    let ctx = WriteCtx::from_query(q, user_agent)?;
    if matches!(pt, PatchType::Apply) {
        let applied = apply(st, res, ns, name, subresource, body, q, &ctx, warnings);
        warnings.extend(ctx.warnings.take());
        return applied;
    }
    let Some(old) = st.get(res, ns, name).cloned() else {
        return Err(ApiError::not_found(&res.plural, &res.group, name));
    };
    let mut patched = output(res, &old);
    match pt {
        PatchType::Merge | PatchType::StrategicMerge => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "json: cannot unmarshal non-object into Go value of type map[string]interface {}",
                ));
            }
            let mut p = p;
            if matches!(pt, PatchType::StrategicMerge) {
                strip_smp_directives(&mut p);
            }
            merge_patch(&mut patched, &p);
        }
        PatchType::Json => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            match json_patch(&mut patched, &p) {
                Ok(()) => {}
                Err(JsonPatchError::Decode(e)) => return Err(ApiError::bad_request(e)),
                Err(JsonPatchError::Apply(why)) => {
                    tracing::debug!(%why, "json patch rejected");
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        "the server rejected our request due to an error in our request",
                    )
                    .with_details(json!({})));
                }
            }
        }
        PatchType::Apply => unreachable!("handled above"),
    }
    if get_str(&patched, &["metadata", "name"]) != Some(name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            get_str(&patched, &["metadata", "name"]).unwrap_or("")
        )));
    }
    check_gvk(res, &mut patched)?;
    handle_unknown(
        res,
        &mut patched,
        ctx.field_validation,
        Mode::Patch,
        warnings,
    )?;
    let updated = update(
        st,
        res,
        ns,
        name,
        subresource,
        old,
        patched,
        &ctx,
        Ownership::Update,
    );
    warnings.extend(ctx.warnings.take());
    let (obj, _) = updated?;
    Ok((200, obj))
}

/// Strategic-merge directives have no meaning for the (list-free) built-ins served here.
fn strip_smp_directives(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|k, _| !k.starts_with("$"));
        for c in m.values_mut() {
            strip_smp_directives(c);
        }
    }
}

/// Server-side apply (`application/apply-patch+yaml`).
#[allow(clippy::too_many_arguments)]
fn apply(
    st: &mut Store,
    res: &ResourceType,
    ns: &str,
    name: &str,
    subresource: &str,
    body: &[u8],
    q: &Query,
    ctx: &WriteCtx,
    warnings: &mut Vec<String>,
) -> Result<(u16, Value), ApiError> {
    if q.get("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            &[FieldError::required(
                "fieldManager",
                "is required for apply patch",
            )],
        ));
    }
    let force = q.flag("force");
    let mut config = decode_body("application/yaml", body)?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the patch must be an object",
        ));
    }
    let api_version = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = config.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version != res.api_version() || kind != res.kind {
        let (g, v) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        return Err(ApiError::bad_request(format!(
            "invalid object type: {g}/{v}, Kind={kind}"
        )));
    }
    if let Some(n) = get_str(&config, &["metadata", "name"])
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    // Fields outside the schema cannot be typed: structured-merge-diff refuses the patch.
    let mut probe = config.clone();
    let unknown: Vec<String> = prune_unknown(res, &mut probe)
        .into_iter()
        .filter(|u| !u.starts_with("metadata."))
        .collect();
    if !unknown.is_empty() {
        let errs: Vec<String> = unknown
            .iter()
            .map(|u| format!(".{u}: field not declared in schema"))
            .collect();
        let detail = if errs.len() == 1 {
            errs[0].clone()
        } else {
            format!("errors:\n  {}", errs.join("\n  "))
        };
        return Err(ApiError::unknown(
            500,
            format!(
                "failed to create typed patch object ({}/{name}; {}): {detail}",
                if res.namespaced { ns } else { "" },
                res.gvk_string()
            ),
        ));
    }
    handle_unknown(
        res,
        &mut config,
        ctx.field_validation,
        Mode::Patch,
        warnings,
    )?;
    let precondition_rv = get_str(&config, &["metadata", "resourceVersion"]).map(str::to_string);
    if let Some(meta) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(k);
        }
        if res.namespaced {
            meta.insert("namespace".into(), json!(ns));
        }
    }
    if res.status_subresource
        && subresource.is_empty()
        && let Some(m) = config.as_object_mut()
    {
        m.remove("status");
    }
    // Ownership is computed on the stored form (for events: events.k8s.io field names).
    let config = decode_for_storage(res, config, &mut Vec::new())?;
    let now = now_rfc3339();
    let api = res.api_version();
    match st.get(res, ns, name).cloned() {
        None => {
            if !subresource.is_empty() {
                return Err(ApiError::not_found(&res.plural, &res.group, name));
            }
            if precondition_rv
                .as_deref()
                .and_then(|rv| rv.parse::<u64>().ok())
                .is_some_and(|rv| rv != 0)
            {
                return Err(rv_on_create());
            }
            let (obj, entries) = ssa::apply(
                &[],
                &ctx.manager,
                "",
                &api,
                &now,
                &json!({}),
                &config,
                force,
                res.schema.as_ref(),
            )
            .map_err(|c| conflict_error(&c))?;
            let mut obj = obj;
            meta_mut(&mut obj).insert("name".into(), json!(name));
            let created = create(st, res, ns, obj, ctx, Some(entries))?;
            Ok((201, created))
        }
        Some(old) => {
            if let Some(rv) = precondition_rv
                && rv != get_str(&old, &["metadata", "resourceVersion"]).unwrap_or("")
            {
                return Err(ApiError::stale(&res.plural, &res.group, name));
            }
            let entries = ssa::parse(&old);
            let (merged, new_entries) = ssa::apply(
                &entries,
                &ctx.manager,
                subresource,
                &api,
                &now,
                &old,
                &config,
                force,
                res.schema.as_ref(),
            )
            .map_err(|c| conflict_error(&c))?;
            let (obj, _) = update(
                st,
                res,
                ns,
                name,
                subresource,
                old,
                merged,
                ctx,
                Ownership::Precomputed(new_entries),
            )?;
            Ok((200, obj))
        }
    }
}

fn conflict_error(conflicts: &[ssa::Conflict]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", c.manager), "field": c.path})
        })
        .collect();
    ApiError::new(409, "Conflict", ssa::conflict_message(conflicts))
        .with_details(json!({"causes": causes}))
}

/// POST body handling shared by the HTTP layer.
#[allow(clippy::too_many_arguments)]
pub fn create_from_body(
    st: &mut Store,
    res: &ResourceType,
    ns: &str,
    content_type: &str,
    body: &[u8],
    q: &Query,
    user_agent: &str,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let ctx = WriteCtx::from_query(q, user_agent)?;
    let mut obj = decode_body(content_type, body)?;
    check_gvk(res, &mut obj)?;
    handle_unknown(res, &mut obj, ctx.field_validation, Mode::Create, warnings)?;
    let created = create(st, res, ns, obj, &ctx, None);
    warnings.extend(ctx.warnings.take());
    created
}

/// PUT body handling shared by the HTTP layer: `200` with the updated object, or `201` when a
/// type that allows it was created by the PUT.
#[allow(clippy::too_many_arguments)]
pub fn update_from_body(
    st: &mut Store,
    res: &ResourceType,
    ns: &str,
    name: &str,
    subresource: &str,
    content_type: &str,
    body: &[u8],
    q: &Query,
    user_agent: &str,
    warnings: &mut Vec<String>,
) -> Result<(u16, Value), ApiError> {
    let ctx = WriteCtx::from_query(q, user_agent)?;
    let mut obj = decode_body(content_type, body)?;
    check_gvk(res, &mut obj)?;
    let body_name = get_str(&obj, &["metadata", "name"])
        .unwrap_or("")
        .to_string();
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if res.namespaced
        && let Some(n) = get_str(&obj, &["metadata", "namespace"])
        && !n.is_empty()
        && n != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    handle_unknown(res, &mut obj, ctx.field_validation, Mode::Update, warnings)?;
    let Some(old) = st.get(res, ns, name).cloned() else {
        if res.allow_create_on_update() && subresource.is_empty() {
            // The store creates the object; the resourceVersion the client sent is not checked.
            meta_mut(&mut obj).remove("resourceVersion");
            return create(st, res, ns, obj, &ctx, None).map(|o| (201, o));
        }
        return Err(ApiError::not_found(&res.plural, &res.group, name));
    };
    if !res.allow_unconditional_update()
        && get_str(&obj, &["metadata", "resourceVersion"]).is_none_or(str::is_empty)
    {
        // The store names the resource, not the kind, in this error.
        return Err(ApiError::invalid(
            &res.plural,
            &res.group,
            name,
            &[FieldError {
                kind: crate::status::FieldErrorKind::Invalid,
                field: "metadata.resourceVersion".into(),
                value: Some("0x0".into()),
                detail: "must be specified for an update".into(),
            }],
        ));
    }
    let updated = update(
        st,
        res,
        ns,
        name,
        subresource,
        old,
        obj,
        &ctx,
        Ownership::Update,
    );
    warnings.extend(ctx.warnings.take());
    let (out, _) = updated?;
    Ok((200, out))
}
