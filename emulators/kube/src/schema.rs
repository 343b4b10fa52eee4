//! Structural OpenAPI v3 schemas of CRDs: pruning, defaulting and validation.
//!
//! The real pipeline (`apiextensions-apiserver/.../customresource_handler.go`) is:
//! prune unknown fields (reporting them for `fieldValidation`) → drop `null`s of non-nullable
//! fields and apply `default`s → validate. Messages are those of `kube-openapi/pkg/validation`
//! mapped to `field.Error` the way `apiextensions-apiserver/pkg/apiserver/validation` does.
//! `x-kubernetes-validations` (CEL) rules are parsed here and compiled and evaluated by
//! `xvalidation.rs`.

use crate::status::FieldError;
use crate::util::{go_float, go_quote, json_type_name, parse_rfc3339};
use regex::Regex;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub ty: Option<String>,
    pub format: Option<String>,
    pub properties: BTreeMap<String, Schema>,
    pub additional: Option<Box<Schema>>,
    /// `additionalProperties: true` (only legal next to preserve-unknown, kept for leniency).
    pub additional_allowed: bool,
    pub items: Option<Box<Schema>>,
    pub required: Vec<String>,
    pub enum_values: Option<Vec<Value>>,
    pub pattern: Option<(String, Regex)>,
    pub min_length: Option<i64>,
    pub max_length: Option<i64>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: bool,
    pub exclusive_maximum: bool,
    pub multiple_of: Option<f64>,
    pub min_items: Option<i64>,
    pub max_items: Option<i64>,
    pub min_properties: Option<i64>,
    pub max_properties: Option<i64>,
    pub nullable: bool,
    pub default: Option<Value>,
    pub preserve_unknown: bool,
    pub int_or_string: bool,
    pub embedded_resource: bool,
    pub all_of: Vec<Schema>,
    pub any_of: Vec<Schema>,
    pub one_of: Vec<Schema>,
    pub not: Option<Box<Schema>>,
    /// `x-kubernetes-validations`, compiled by `xvalidation::compile` for a CRD's schema.
    pub validations: Vec<crate::xvalidation::Rule>,
    /// `x-kubernetes-list-type` (`atomic`, `set`, `map`) and `x-kubernetes-list-map-keys`.
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
    /// Whether this node or one below it carries validation rules (set by the compiler).
    pub has_rules: bool,
}

/// `ObjectMeta` fields; anything else under `metadata` is an unknown field.
pub const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn int_of(v: Option<&Value>) -> Option<i64> {
    v.and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

impl Schema {
    /// Parses a `JSONSchemaProps`. `path` names the node in CRD validation errors.
    pub fn parse(v: &Value, path: &str) -> Result<Schema, FieldError> {
        let Some(m) = v.as_object() else {
            return Err(FieldError::invalid(path, v, "must be an object"));
        };
        let mut s = Schema {
            ty: m.get("type").and_then(Value::as_str).map(str::to_string),
            format: m.get("format").and_then(Value::as_str).map(str::to_string),
            required: m
                .get("required")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            enum_values: m.get("enum").and_then(Value::as_array).cloned(),
            min_length: int_of(m.get("minLength")),
            max_length: int_of(m.get("maxLength")),
            minimum: m.get("minimum").and_then(Value::as_f64),
            maximum: m.get("maximum").and_then(Value::as_f64),
            exclusive_minimum: m
                .get("exclusiveMinimum")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            exclusive_maximum: m
                .get("exclusiveMaximum")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            multiple_of: m.get("multipleOf").and_then(Value::as_f64),
            min_items: int_of(m.get("minItems")),
            max_items: int_of(m.get("maxItems")),
            min_properties: int_of(m.get("minProperties")),
            max_properties: int_of(m.get("maxProperties")),
            nullable: m.get("nullable").and_then(Value::as_bool).unwrap_or(false),
            default: m.get("default").cloned(),
            preserve_unknown: m
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            int_or_string: m
                .get("x-kubernetes-int-or-string")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            embedded_resource: m
                .get("x-kubernetes-embedded-resource")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            list_type: m
                .get("x-kubernetes-list-type")
                .and_then(Value::as_str)
                .map(str::to_string),
            list_map_keys: m
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            validations: m
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .enumerate()
                        .map(|(i, r)| {
                            crate::xvalidation::Rule::from_json(
                                r,
                                &format!("{path}.x-kubernetes-validations[{i}]"),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            ..Schema::default()
        };
        if let Some(p) = m.get("pattern").and_then(Value::as_str) {
            match Regex::new(&go_regex_to_rust(p)) {
                Ok(re) => s.pattern = Some((p.to_string(), re)),
                Err(e) => {
                    return Err(FieldError::invalid(
                        format!("{path}.pattern"),
                        &Value::String(p.to_string()),
                        format!("must be a valid regular expression, but isn't: {e}"),
                    ));
                }
            }
        }
        if let Some(props) = m.get("properties").and_then(Value::as_object) {
            for (k, pv) in props {
                s.properties.insert(
                    k.clone(),
                    Schema::parse(pv, &format!("{path}.properties[{k}]"))?,
                );
            }
        }
        match m.get("additionalProperties") {
            Some(Value::Bool(b)) => s.additional_allowed = *b,
            Some(v @ Value::Object(_)) => {
                s.additional = Some(Box::new(Schema::parse(
                    v,
                    &format!("{path}.additionalProperties"),
                )?));
            }
            _ => {}
        }
        if let Some(items) = m.get("items")
            && items.is_object()
        {
            s.items = Some(Box::new(Schema::parse(items, &format!("{path}.items"))?));
        }
        for (key, target) in [
            ("allOf", &mut s.all_of),
            ("anyOf", &mut s.any_of),
            ("oneOf", &mut s.one_of),
        ] {
            if let Some(a) = m.get(key).and_then(Value::as_array) {
                for (i, sub) in a.iter().enumerate() {
                    target.push(Schema::parse(sub, &format!("{path}.{key}[{i}]"))?);
                }
            }
        }
        if let Some(n) = m.get("not") {
            s.not = Some(Box::new(Schema::parse(n, &format!("{path}.not"))?));
        }
        Ok(s)
    }

    /// Removes fields the schema does not declare, collecting their paths
    /// (`spec.foo`, `spec.items[0].bar`, `metadata.baz`) for `fieldValidation`.
    pub fn prune(&self, v: &mut Value, path: &str, root: bool, unknown: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    let child_path = join(path, &k);
                    let object_root = root || self.embedded_resource;
                    if object_root && (k == "apiVersion" || k == "kind") {
                        continue;
                    }
                    if object_root && k == "metadata" {
                        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
                            prune_metadata(meta, &child_path, unknown);
                        }
                        continue;
                    }
                    if let Some(s) = self.properties.get(&k) {
                        if let Some(child) = map.get_mut(&k) {
                            s.prune(child, &child_path, false, unknown);
                        }
                    } else if let Some(s) = &self.additional {
                        if let Some(child) = map.get_mut(&k) {
                            s.prune(child, &child_path, false, unknown);
                        }
                    } else if !(self.preserve_unknown || self.additional_allowed) {
                        map.remove(&k);
                        unknown.push(child_path);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(s) = &self.items {
                    for (i, item) in items.iter_mut().enumerate() {
                        s.prune(item, &format!("{path}[{i}]"), false, unknown);
                    }
                }
            }
            _ => {}
        }
    }

    /// Drops `null`s of non-nullable fields and fills in `default`s (parents must exist).
    pub fn apply_defaults(&self, v: &mut Value, root: bool) {
        match v {
            Value::Object(map) => {
                for (k, s) in &self.properties {
                    if root && k == "metadata" {
                        continue;
                    }
                    if matches!(map.get(k), Some(Value::Null)) && !s.nullable {
                        map.remove(k);
                    }
                    if !map.contains_key(k)
                        && let Some(d) = &s.default
                    {
                        map.insert(k.clone(), d.clone());
                    }
                    if let Some(child) = map.get_mut(k) {
                        s.apply_defaults(child, false);
                    }
                }
                if let Some(s) = &self.additional {
                    for (_, child) in map.iter_mut() {
                        s.apply_defaults(child, false);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(s) = &self.items {
                    for item in items.iter_mut() {
                        s.apply_defaults(item, false);
                    }
                }
            }
            _ => {}
        }
    }

    /// Validates `v` (at `path`, empty for the object root), appending errors.
    pub fn validate(&self, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
        if v.is_null() {
            if !self.nullable
                && let Some(t) = &self.ty
            {
                errs.push(FieldError::type_invalid(
                    path,
                    &Value::String("null".into()),
                    format!("{path} in body must be of type {t}: \"null\""),
                ));
            }
            return;
        }
        let actual = json_type_name(v);
        if self.int_or_string && self.ty.is_none() {
            if !matches!(actual, "integer" | "string") && !is_integral(v) {
                errs.push(FieldError::type_invalid(
                    path,
                    &Value::String(actual.into()),
                    format!(
                        "{path} in body must be of type integer,string: {}",
                        go_quote(actual)
                    ),
                ));
                return;
            }
        } else if let Some(t) = &self.ty {
            let ok = match t.as_str() {
                "integer" => actual == "integer" || is_integral(v),
                "number" => actual == "integer" || actual == "number",
                other => other == actual,
            };
            if !ok {
                errs.push(FieldError::type_invalid(
                    path,
                    &Value::String(actual.into()),
                    format!("{path} in body must be of type {t}: {}", go_quote(actual)),
                ));
                return;
            }
        }

        for sub in &self.all_of {
            sub.validate(v, path, errs);
        }
        if !self.any_of.is_empty()
            && !self.any_of.iter().any(|s| {
                let mut e = Vec::new();
                s.validate(v, path, &mut e);
                e.is_empty()
            })
        {
            errs.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body must validate at least one schema (anyOf)"),
            ));
        }
        if !self.one_of.is_empty() {
            let passing = self
                .one_of
                .iter()
                .filter(|s| {
                    let mut e = Vec::new();
                    s.validate(v, path, &mut e);
                    e.is_empty()
                })
                .count();
            if passing != 1 {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    format!("{path} in body must validate one and only one schema (oneOf)"),
                ));
            }
        }
        if let Some(n) = &self.not {
            let mut e = Vec::new();
            n.validate(v, path, &mut e);
            if e.is_empty() {
                errs.push(FieldError::invalid(
                    path,
                    v,
                    format!("{path} in body must not validate the schema (not)"),
                ));
            }
        }

        match v {
            Value::String(s) => self.validate_string(s, v, path, errs),
            Value::Number(n) => self.validate_number(n.as_f64().unwrap_or(0.0), v, path, errs),
            Value::Array(items) => {
                if let Some(s) = &self.items {
                    for (i, item) in items.iter().enumerate() {
                        s.validate(item, &format!("{path}[{i}]"), errs);
                    }
                }
                let len = items.len() as i64;
                if let Some(min) = self.min_items
                    && len < min
                {
                    errs.push(FieldError::invalid(
                        path,
                        &Value::from(len),
                        format!("{path} in body should have at least {min} items"),
                    ));
                }
                if let Some(max) = self.max_items
                    && len > max
                {
                    errs.push(FieldError::too_many(path, len, max));
                }
            }
            Value::Object(map) => {
                let len = map.len() as i64;
                if let Some(max) = self.max_properties
                    && len > max
                {
                    errs.push(FieldError::too_many(path, len, max));
                }
                if let Some(min) = self.min_properties
                    && len < min
                {
                    errs.push(FieldError::invalid(
                        path,
                        &Value::from(len),
                        format!("{path} in body should have at least {min} properties"),
                    ));
                }
                for r in &self.required {
                    if !map.contains_key(r) {
                        errs.push(FieldError::required(join(path, r), ""));
                    }
                }
                for (k, child) in map {
                    if let Some(s) = self.properties.get(k) {
                        s.validate(child, &join(path, k), errs);
                    } else if let Some(s) = &self.additional {
                        s.validate(child, &join(path, k), errs);
                    }
                }
            }
            _ => {}
        }

        if let Some(allowed) = &self.enum_values
            && !allowed.iter().any(|a| json_eq(a, v))
        {
            let supported: Vec<String> = allowed
                .iter()
                .map(|a| match a {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            errs.push(FieldError::not_supported(path, v, &supported));
        }
    }

    fn validate_string(&self, s: &str, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
        let chars = s.chars().count() as i64;
        if let Some(max) = self.max_length
            && chars > max
        {
            errs.push(FieldError::too_long(path, max));
        }
        if let Some(min) = self.min_length
            && chars < min
        {
            errs.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body should be at least {min} chars long"),
            ));
        }
        if let Some((src, re)) = &self.pattern
            && !re.is_match(s)
        {
            errs.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body should match '{src}'"),
            ));
        }
        if let Some(f) = &self.format
            && !format_ok(f, s)
        {
            errs.push(FieldError::type_invalid(
                path,
                v,
                format!("{path} in body must be of type {f}: {}", go_quote(s)),
            ));
        }
    }

    fn validate_number(&self, n: f64, v: &Value, path: &str, errs: &mut Vec<FieldError>) {
        if let Some(max) = self.maximum
            && ((self.exclusive_maximum && n >= max) || n > max)
        {
            let rel = if self.exclusive_maximum {
                "less than"
            } else {
                "less than or equal to"
            };
            errs.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body should be {rel} {}", go_float(max)),
            ));
        }
        if let Some(min) = self.minimum
            && ((self.exclusive_minimum && n <= min) || n < min)
        {
            let rel = if self.exclusive_minimum {
                "greater than"
            } else {
                "greater than or equal to"
            };
            errs.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body should be {rel} {}", go_float(min)),
            ));
        }
        if let Some(m) = self.multiple_of
            && m > 0.0
            && ((n / m).round() * m - n).abs() > 1e-9 * n.abs().max(1.0)
        {
            errs.push(FieldError::invalid(
                path,
                v,
                format!("{path} in body should be a multiple of {}", go_float(m)),
            ));
        }
    }
}

/// Go's RE2 and the regex crate agree on syntax, but in Go `\w`, `\d` and `\s` are ASCII-only
/// while here they are Unicode-aware: spell them out as ASCII classes (also inside `[...]`,
/// where the regex crate accepts nested classes).
fn go_regex_to_rust(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 16);
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('w') => out.push_str("[0-9A-Za-z_]"),
            Some('W') => out.push_str("[^0-9A-Za-z_]"),
            Some('d') => out.push_str("[0-9]"),
            Some('D') => out.push_str("[^0-9]"),
            Some('s') => out.push_str("[\\t\\n\\f\\r ]"),
            Some('S') => out.push_str("[^\\t\\n\\f\\r ]"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn is_integral(v: &Value) -> bool {
    v.as_f64().is_some_and(|f| f.fract() == 0.0) && v.is_number()
}

/// JSON equality with 1 == 1.0, as Go's decoded interface{} comparison after normalisation.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| json_eq(p, q)))
        }
        _ => a == b,
    }
}

/// The string formats Kubernetes checks; unknown formats pass, as they do there.
fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" | "datetime" => {
            parse_rfc3339(s).is_some()
                || parse_rfc3339(&format!("{s}Z")).is_some()
                || parse_rfc3339(&format!("{s}:00Z")).is_some()
        }
        "date" => parse_rfc3339(&format!("{s}T00:00:00Z")).is_some() && s.len() == 10,
        "uuid" => is_uuid(s),
        "byte" => is_base64(s),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    }
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

fn is_base64(s: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).is_ok()
}

/// Metadata is decoded into `ObjectMeta`: unknown keys are dropped (and reported).
pub fn prune_metadata(meta: &mut Map<String, Value>, path: &str, unknown: &mut Vec<String>) {
    let keys: Vec<String> = meta.keys().cloned().collect();
    for k in keys {
        if !OBJECT_META_FIELDS.contains(&k.as_str()) {
            meta.remove(&k);
            unknown.push(join(path, &k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::parse(
            &json!({
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["registry"],
                        "properties": {
                            "registry": {"type": "object", "required": ["resourceId"], "properties": {
                                "resourceId": {"type": "string", "pattern": "^/subscriptions/[^/]+$"}}},
                            "role": {"type": "string", "enum": ["Auto", "AcrPull"], "default": "Auto"},
                            "replicas": {"type": "integer", "minimum": 1},
                            "name": {"type": "string", "maxLength": 3},
                            "when": {"type": "string", "format": "date-time", "nullable": true},
                            "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}}
                        }
                    },
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }
            }),
            "",
        )
        .unwrap()
    }

    #[test]
    fn prune_default_validate() {
        let s = schema();
        let mut obj = json!({
            "apiVersion": "acrattach.io/v1alpha1", "kind": "RegistryAttachment",
            "metadata": {"name": "x", "bogus": 1},
            "spec": {"registry": {"resourceId": "/subscriptions/a"}, "foo": 1, "items": [{"a": "b", "c": 1}]},
            "status": {"anything": true}
        });
        let mut unknown = Vec::new();
        s.prune(&mut obj, "", true, &mut unknown);
        assert_eq!(
            unknown,
            vec!["metadata.bogus", "spec.foo", "spec.items[0].c"]
        );
        s.apply_defaults(&mut obj, true);
        assert_eq!(obj["spec"]["role"], "Auto");
        assert_eq!(obj["status"]["anything"], true);
        let mut errs = Vec::new();
        s.validate(&obj, "", &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
    }

    #[test]
    fn go_regex_classes_are_ascii() {
        let p = r"^/(?i:subscriptions)/[-\w.()]{0,89}[-\w()]/\d+$";
        let re = Regex::new(&go_regex_to_rust(p)).unwrap();
        assert!(re.is_match("/SUBSCRIPTIONS/my-rg.(x)/42"));
        assert!(!re.is_match("/subscriptions/grüppe/42"));
        assert!(!re.is_match("/subscriptions/rg/٤٢"));
        assert!(
            Regex::new(&go_regex_to_rust(r"a\\w"))
                .unwrap()
                .is_match(r"a\w")
        );
    }

    #[test]
    fn error_messages() {
        let s = schema();
        let obj = json!({"spec": {"registry": {"resourceId": "bad"}, "role": "Owner", "replicas": "x", "name": "abcd", "when": "nope"}});
        let mut errs = Vec::new();
        s.validate(&obj, "", &mut errs);
        let msgs: Vec<String> = errs.iter().map(FieldError::message).collect();
        assert!(msgs.contains(&"spec.registry.resourceId: Invalid value: \"bad\": spec.registry.resourceId in body should match '^/subscriptions/[^/]+$'".to_string()), "{msgs:?}");
        assert!(
            msgs.contains(
                &"spec.role: Unsupported value: \"Owner\": supported values: \"Auto\", \"AcrPull\""
                    .to_string()
            )
        );
        assert!(msgs.contains(&"spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"".to_string()));
        assert!(msgs.contains(&"spec.name: Too long: may not be more than 3 bytes".to_string()));
        assert!(msgs.contains(&"spec.when: Invalid value: \"nope\": spec.when in body must be of type date-time: \"nope\"".to_string()));
        let mut errs = Vec::new();
        s.validate(&json!({"spec": {}}), "", &mut errs);
        assert_eq!(errs[0].message(), "spec.registry: Required value");
    }
}
