//! Events, stored once and served both as `events.k8s.io/v1` and as core `v1` Events, the way
//! the real registry (`pkg/registry/core/event`) serves one internal type through two APIs.
//!
//! This module owns what is specific to them: the field conversion between the two versions
//! (`pkg/apis/events/v1/conversion.go`: regarding ↔ involvedObject, note ↔ message,
//! reportingController ↔ reportingComponent, deprecatedSource/FirstTimestamp/LastTimestamp/Count
//! ↔ source/firstTimestamp/lastTimestamp/count; the rest shares names), the shape Go's encoder
//! gives each version (non-pointer structs always present, zero times as `null`), validation
//! (`pkg/apis/core/validation/events.go`: the legacy rules for every request, the strict ones for
//! events.k8s.io), the field selectors of both versions, and the server-side Table printer that
//! both use (`pkg/printers/internalversion`: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE, …).
//!
//! Objects are stored in the events.k8s.io/v1 field names, without nulls and empty values.

use crate::resources::Kind;
use crate::status::FieldError;
use crate::table::IncludeObject;
use crate::util::{
    dns1123_subdomain_errors, human_duration, now, parse_rfc3339, qualified_name_errors,
};
use serde_json::{Map, Value, json};

/// (core v1 name, events.k8s.io/v1 name) of the fields whose names differ.
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

const REPORTING_INSTANCE_LIMIT: usize = 128;
const ACTION_LIMIT: usize = 128;
const REASON_LIMIT: usize = 128;
const NOTE_LIMIT: usize = 1024;

/// Field selector labels besides `metadata.name`/`metadata.namespace`
/// (`AddFieldLabelConversionsForEvent` of each version).
pub fn field_labels(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::CoreEvent => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        _ => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
    }
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        match cur.get(*p) {
            Some(c) => cur = c,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

/// The value a field selector label has for a stored event (`ToSelectableFields`: `source` is
/// the legacy source component, or the reporting controller when that is empty).
pub fn field_value(label: &str, stored: &Value) -> String {
    if let Some(f) = label
        .strip_prefix("involvedObject.")
        .or_else(|| label.strip_prefix("regarding."))
    {
        return text(stored, &["regarding", f]).to_string();
    }
    match label {
        "metadata.name" => text(stored, &["metadata", "name"]),
        "metadata.namespace" => text(stored, &["metadata", "namespace"]),
        "reason" => text(stored, &["reason"]),
        "type" => text(stored, &["type"]),
        "reportingComponent" | "reportingController" => text(stored, &["reportingController"]),
        "source" => {
            let c = text(stored, &["deprecatedSource", "component"]);
            if c.is_empty() {
                text(stored, &["reportingController"])
            } else {
                c
            }
        }
        _ => "",
    }
    .to_string()
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// A request body (of `kind`'s version) in the stored form: events.k8s.io names, and without
/// what Go would decode to zero values (nulls, empty strings and structs, a zero count).
/// Idempotent, so an already stored form passes through unchanged.
pub fn to_storage(kind: Kind, obj: Value) -> Value {
    let Value::Object(mut m) = obj else {
        return obj;
    };
    if kind == Kind::CoreEvent {
        for (core, events) in RENAMED {
            if let Some(v) = m.remove(*core) {
                m.insert((*events).to_string(), v);
            }
        }
    }
    for k in ["regarding", "related", "deprecatedSource"] {
        if let Some(Value::Object(r)) = m.get_mut(k) {
            r.retain(|_, v| !is_empty_value(v));
        }
    }
    if let Some(Value::Object(s)) = m.get_mut("series") {
        s.retain(|_, v| !v.is_null());
    }
    m.retain(|k, v| match k.as_str() {
        // Pointers: present (even empty) unless null.
        "related" | "series" => !v.is_null(),
        "metadata" | "apiVersion" | "kind" => true,
        _ => !is_empty_value(v),
    });
    Value::Object(m)
}

/// A stored event as `kind`'s version serves it: renamed for core v1, and shaped like Go's
/// encoder writes the struct (struct fields always present, zero times `null`, core v1's
/// reportingComponent/reportingInstance always present).
pub fn output(kind: Kind, stored: &Value) -> Value {
    let Value::Object(mut m) = stored.clone() else {
        return stored.clone();
    };
    let (always_struct, null_times, strings): (&[&str], &[&str], &[&str]) = match kind {
        Kind::CoreEvent => {
            for (core, events) in RENAMED {
                if let Some(v) = m.remove(*events) {
                    m.insert((*core).to_string(), v);
                }
            }
            (
                &["involvedObject", "source"],
                &["firstTimestamp", "lastTimestamp", "eventTime"],
                &["reportingComponent", "reportingInstance"],
            )
        }
        _ => (
            &["regarding", "deprecatedSource"],
            &[
                "eventTime",
                "deprecatedFirstTimestamp",
                "deprecatedLastTimestamp",
            ],
            &[],
        ),
    };
    for k in always_struct {
        m.entry(*k).or_insert_with(|| json!({}));
    }
    for k in null_times {
        m.entry(*k).or_insert(Value::Null);
    }
    for k in strings {
        m.entry(*k).or_insert_with(|| json!(""));
    }
    Value::Object(m)
}

fn invalid_limit(field: &str, limit: usize) -> FieldError {
    FieldError::invalid(
        field,
        &json!(""),
        format!("can have at most {limit} characters"),
    )
}

/// `ValidateEventCreate` / `ValidateEventUpdate` on the stored form. `request` is the version
/// the request came through: core v1 gets only the legacy rules, events.k8s.io/v1 the strict
/// ones too. Field paths are those of the internal type, as in the real messages.
pub fn validate(
    request: Kind,
    stored: &Value,
    old: Option<&Value>,
    namespace: &str,
    errs: &mut Vec<FieldError>,
) {
    let s = |f: &str| text(stored, &[f]);
    let has = |f: &str| stored.get(f).is_some_and(|v| !v.is_null());
    let regarding_ns = text(stored, &["regarding", "namespace"]);
    if !has("eventTime") {
        let ok = if regarding_ns.is_empty() {
            namespace.is_empty() || namespace == "default"
        } else {
            namespace == regarding_ns
        };
        if !ok {
            errs.push(FieldError::invalid(
                "involvedObject.namespace",
                &json!(regarding_ns),
                "does not match event.namespace",
            ));
        }
    } else {
        if regarding_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.push(FieldError::invalid(
                "involvedObject.namespace",
                &json!(regarding_ns),
                "does not match event.namespace",
            ));
        }
        let controller = s("reportingController");
        if controller.is_empty() {
            errs.push(FieldError::required("reportingController", ""));
        }
        for e in qualified_name_errors(controller) {
            errs.push(FieldError::invalid(
                "reportingController",
                &json!(controller),
                e,
            ));
        }
        for (field, limit) in [
            ("reportingInstance", REPORTING_INSTANCE_LIMIT),
            ("action", ACTION_LIMIT),
            ("reason", REASON_LIMIT),
        ] {
            if s(field).is_empty() {
                errs.push(FieldError::required(field, ""));
            }
            if s(field).len() > limit {
                errs.push(invalid_limit(field, limit));
            }
        }
        if s("note").len() > NOTE_LIMIT {
            errs.push(invalid_limit("message", NOTE_LIMIT));
        }
    }
    for e in dns1123_subdomain_errors(namespace) {
        errs.push(FieldError::invalid("namespace", &json!(namespace), e));
    }
    if request == Kind::CoreEvent {
        return;
    }
    let series_changed = old.is_none_or(|o| o.get("series") != stored.get("series"));
    if series_changed && let Some(series) = stored.get("series") {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            errs.push(FieldError::invalid(
                "series.count",
                &json!(""),
                "should be at least 2",
            ));
        }
        if series.get("lastObservedTime").is_none_or(Value::is_null) {
            errs.push(FieldError::required("series.lastObservedTime", ""));
        }
    }
    match old {
        None => {
            if !has("eventTime") {
                errs.push(FieldError::required("eventTime", ""));
            }
            let ty = s("type");
            if ty != "Normal" && ty != "Warning" {
                errs.push(FieldError::invalid(
                    "type",
                    &json!(""),
                    format!("has invalid value: {ty}"),
                ));
            }
            for (stored_name, internal) in [
                ("deprecatedFirstTimestamp", "firstTimestamp"),
                ("deprecatedLastTimestamp", "lastTimestamp"),
                ("deprecatedCount", "count"),
                ("deprecatedSource", "source"),
            ] {
                if has(stored_name) {
                    errs.push(FieldError::invalid(
                        internal,
                        &json!(""),
                        "needs to be unset",
                    ));
                }
            }
        }
        Some(old) => {
            // The real list checks `reason` twice; the causes keep both, the message once.
            for (stored_name, internal) in [
                ("regarding", "involvedObject"),
                ("reason", "reason"),
                ("note", "message"),
                ("deprecatedSource", "source"),
                ("deprecatedFirstTimestamp", "firstTimestamp"),
                ("deprecatedLastTimestamp", "lastTimestamp"),
                ("deprecatedCount", "count"),
                ("reason", "reason"),
                ("type", "type"),
                ("eventTime", "eventTime"),
                ("action", "action"),
                ("related", "related"),
                ("reportingController", "reportingController"),
                ("reportingInstance", "reportingInstance"),
            ] {
                let new_v = stored.get(stored_name).unwrap_or(&Value::Null);
                if old.get(stored_name).unwrap_or(&Value::Null) != new_v {
                    errs.push(FieldError::invalid(internal, new_v, "field is immutable"));
                }
            }
        }
    }
}

fn since(t: Option<&str>) -> String {
    match t.and_then(parse_rfc3339) {
        Some((secs, nanos)) => {
            let (ns, nn) = now();
            human_duration((ns - secs) * 1000 + (i64::from(nn) - i64::from(nanos)) / 1_000_000)
        }
        None => "<unknown>".to_string(),
    }
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

/// The cells of `printEvent` (the server always prints the wide form; kubectl hides the
/// priority-1 columns without `-o wide`).
fn cells(s: &Value) -> Vec<Value> {
    let t = |f: &str| s.get(f).and_then(Value::as_str);
    let first = match t("deprecatedFirstTimestamp") {
        Some(f) => since(Some(f)),
        None => since(t("eventTime")),
    };
    let mut last = match t("deprecatedLastTimestamp") {
        Some(l) => since(Some(l)),
        None => first.clone(),
    };
    let mut count = s
        .get("deprecatedCount")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if let Some(series) = s.get("series") {
        last = since(series.get("lastObservedTime").and_then(Value::as_str));
        count = series.get("count").and_then(Value::as_i64).unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let kind = text(s, &["regarding", "kind"]).to_lowercase();
    let name = text(s, &["regarding", "name"]);
    let target = if name.is_empty() {
        kind
    } else {
        format!("{kind}/{name}")
    };
    let component = first_non_empty(
        text(s, &["deprecatedSource", "component"]),
        text(s, &["reportingController"]),
    );
    let instance = first_non_empty(
        text(s, &["deprecatedSource", "host"]),
        text(s, &["reportingInstance"]),
    );
    let source = match (component.is_empty(), instance.is_empty()) {
        (true, _) => "<unknown>".to_string(),
        (false, true) => component.to_string(),
        (false, false) => format!("{component}, {instance}"),
    };
    vec![
        json!(last),
        json!(text(s, &["type"])),
        json!(text(s, &["reason"])),
        json!(target),
        json!(text(s, &["regarding", "fieldPath"])),
        json!(source),
        json!(text(s, &["note"]).trim()),
        json!(first),
        json!(count),
        json!(text(s, &["metadata", "name"])),
    ]
}

fn column(name: &str, priority: i64, format: &str, description: &str) -> Value {
    json!({"name": name, "type": "string", "format": format, "description": description, "priority": priority})
}

/// The Table of events (`kind` is the version `objs` are in).
pub fn table(kind: Kind, objs: &[Value], list_meta: Value, include: IncludeObject) -> Value {
    let columns = vec![
        column("Last Seen", 0, "", "When the event was last observed."),
        column("Type", 0, "", "Normal or Warning."),
        column("Reason", 0, "", "Machine-readable reason of the event."),
        column("Object", 0, "", "The object the event is about."),
        column(
            "Subobject",
            1,
            "",
            "The field of the object the event is about.",
        ),
        column(
            "Source",
            1,
            "",
            "The component (and instance) that reported the event.",
        ),
        column("Message", 0, "", "Human-readable description of the event."),
        column("First Seen", 1, "", "When the event was first observed."),
        column("Count", 1, "", "How many times the event occurred."),
        column("Name", 1, "name", "Name of the Event object."),
    ];
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let stored = to_storage(kind, o.clone());
            let mut r = json!({"cells": cells(&stored)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => r["object"] = crate::table::partial_object_metadata(o),
                IncludeObject::Object => r["object"] = o.clone(),
            }
            r
        })
        .collect();
    let mut t = Map::new();
    t.insert("kind".into(), json!("Table"));
    t.insert("apiVersion".into(), json!("meta.k8s.io/v1"));
    t.insert("metadata".into(), list_meta);
    t.insert("columnDefinitions".into(), Value::Array(columns));
    t.insert("rows".into(), Value::Array(rows));
    Value::Object(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Value {
        json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
               "metadata": {"name": "ra.1", "namespace": "default"},
               "eventTime": "2026-11-23T23:40:00.123456Z", "type": "Normal", "reason": "Attached",
               "action": "Reconcile", "note": "attached", "reportingController": "acr-attach",
               "reportingInstance": "pod-1",
               "regarding": {"apiVersion": "acrattach.io/v1alpha1", "kind": "RegistryAttachment",
                             "name": "ra", "uid": "u1"},
               "series": {"count": 2, "lastObservedTime": "2026-11-23T23:41:00.000000Z"}})
    }

    #[test]
    fn core_view_round_trips() {
        let core = output(Kind::CoreEvent, &stored());
        assert_eq!(core["involvedObject"]["name"], "ra");
        assert_eq!(core["message"], "attached");
        assert_eq!(core["reportingComponent"], "acr-attach");
        assert_eq!(core["source"], json!({}));
        assert!(core["firstTimestamp"].is_null() && core.get("firstTimestamp").is_some());
        assert_eq!(core["series"]["count"], 2);
        assert!(core.get("regarding").is_none() && core.get("note").is_none());
        assert_eq!(to_storage(Kind::CoreEvent, core), stored());
        let v1 = output(Kind::Event, &stored());
        assert_eq!(v1["deprecatedSource"], json!({}));
        assert_eq!(to_storage(Kind::Event, v1), stored());
    }

    #[test]
    fn selectors_and_validation() {
        let s = stored();
        assert_eq!(field_value("involvedObject.namespace", &s), "");
        assert_eq!(field_value("involvedObject.uid", &s), "u1");
        assert_eq!(field_value("source", &s), "acr-attach");
        let mut errs = Vec::new();
        validate(Kind::Event, &s, None, "default", &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        validate(Kind::Event, &s, None, "team", &mut errs);
        assert_eq!(
            errs[0].message(),
            "involvedObject.namespace: Invalid value: \"\": does not match event.namespace"
        );
        let mut changed = s.clone();
        changed["note"] = json!("other");
        let mut errs = Vec::new();
        validate(Kind::Event, &changed, Some(&s), "default", &mut errs);
        assert_eq!(
            errs[0].message(),
            "message: Invalid value: \"other\": field is immutable"
        );
        let mut errs = Vec::new();
        validate(Kind::CoreEvent, &changed, Some(&s), "default", &mut errs);
        assert!(errs.is_empty(), "core v1 updates only get the legacy rules");
    }
}
