//! `meta.k8s.io/v1` Table rendering (what `kubectl get` asks for) and the JSONPath subset
//! `additionalPrinterColumns` use (`apiextensions-apiserver/.../tableconvertor`).

use crate::util::{human_duration, now, parse_rfc3339};
use serde_json::{Value, json};

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// One printer column (`additionalPrinterColumns` entry).
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

impl Column {
    pub fn from_crd(v: &Value) -> Option<Column> {
        let json_path = v.get("jsonPath")?.as_str()?.to_string();
        Some(Column {
            name: v.get("name")?.as_str()?.to_string(),
            ty: v
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("string")
                .to_string(),
            format: v
                .get("format")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            description: v
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| {
                    format!("Custom resource definition column (in JSONPath format): {json_path}")
                }),
            priority: v.get("priority").and_then(Value::as_i64).unwrap_or(0),
            json_path,
        })
    }

    pub fn age() -> Column {
        Column {
            name: "Age".into(),
            ty: "date".into(),
            format: String::new(),
            description: AGE_DESCRIPTION.into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        }
    }

    pub fn simple(name: &str, ty: &str, json_path: &str) -> Column {
        Column {
            name: name.into(),
            ty: ty.into(),
            format: String::new(),
            description: format!(
                "Custom resource definition column (in JSONPath format): {json_path}"
            ),
            priority: 0,
            json_path: json_path.into(),
        }
    }
}

/// What rows carry in `object` (`includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> IncludeObject {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

pub fn partial_object_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

pub fn column_definitions(columns: &[Column]) -> Vec<Value> {
    let mut defs = vec![json!({
        "name": "Name", "type": "string", "format": "name",
        "description": NAME_DESCRIPTION, "priority": 0,
    })];
    for c in columns {
        defs.push(json!({
            "name": c.name, "type": c.ty, "format": c.format,
            "description": c.description, "priority": c.priority,
        }));
    }
    defs
}

pub fn row(columns: &[Column], obj: &Value, include: IncludeObject) -> Value {
    let mut cells = vec![
        obj.pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::String(String::new())),
    ];
    for c in columns {
        cells.push(cell(c, obj));
    }
    let mut r = json!({ "cells": cells });
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => r["object"] = partial_object_metadata(obj),
        IncludeObject::Object => r["object"] = obj.clone(),
    }
    r
}

/// A whole Table; `list_meta` is the list's `metadata` (resourceVersion, continue).
pub fn table(
    columns: &[Column],
    objs: &[Value],
    list_meta: Value,
    include: IncludeObject,
) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": column_definitions(columns),
        "rows": objs.iter().map(|o| row(columns, o, include)).collect::<Vec<_>>(),
    })
}

fn cell(c: &Column, obj: &Value) -> Value {
    let Some(value) = eval_first(&c.json_path, obj) else {
        return Value::Null;
    };
    match c.ty.as_str() {
        "string" => match value {
            Value::String(s) => Value::String(s.clone()),
            Value::Null => Value::Null,
            other => Value::String(other.to_string()),
        },
        "integer" => match value {
            Value::Number(n) => n
                .as_i64()
                .map(Value::from)
                .or_else(|| n.as_f64().map(|f| Value::from(f as i64)))
                .unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "number" => match value {
            Value::Number(n) => n.as_f64().map(Value::from).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "boolean" => match value {
            Value::Bool(b) => Value::Bool(*b),
            _ => Value::Null,
        },
        "date" => match value {
            Value::String(s) => match parse_rfc3339(s) {
                Some((secs, nanos)) => {
                    let (ns, nn) = now();
                    let millis =
                        (ns - secs) * 1000 + (i64::from(nn) - i64::from(nanos)) / 1_000_000;
                    Value::String(human_duration(millis))
                }
                None => Value::String("<invalid>".into()),
            },
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

#[derive(Debug, Clone)]
enum Step {
    Field(String),
    Wildcard,
    Index(i64),
    Filter {
        path: Vec<String>,
        op: String,
        rhs: Option<Value>,
    },
}

fn parse_literal(s: &str) -> Value {
    let s = s.trim();
    if let Some(inner) = unquote(s) {
        return Value::String(inner.to_string());
    }
    match s {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        _ => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string())),
    }
}

/// `'x'` or `"x"` → `x`.
fn unquote(s: &str) -> Option<&str> {
    s.strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
}

fn parse_filter(expr: &str) -> Option<Step> {
    // expr: `@.type=="Ready"` or `@.ready`
    let ops = ["==", "!=", "<=", ">=", "<", ">"];
    let (lhs, op, rhs) = match ops.iter().find_map(|op| expr.find(op).map(|i| (i, *op))) {
        Some((i, op)) => (
            &expr[..i],
            op.to_string(),
            Some(parse_literal(&expr[i + op.len()..])),
        ),
        None => (expr, String::new(), None),
    };
    let lhs = lhs.trim().strip_prefix('@')?;
    let path = lhs
        .split('.')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    Some(Step::Filter { path, op, rhs })
}

fn parse_path(expr: &str) -> Option<Vec<Step>> {
    let mut e = expr.trim();
    if let Some(inner) = e.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
        e = inner.trim();
    }
    let e = e.strip_prefix('$').unwrap_or(e);
    let b: Vec<char> = e.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < b.len() && b[i] != '.' && b[i] != '[' {
                    // `\.` escapes a dot inside a key (e.g. label keys).
                    if b[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                let name: String = b[start..i.min(b.len())]
                    .iter()
                    .collect::<String>()
                    .replace("\\.", ".");
                if name == "*" {
                    steps.push(Step::Wildcard);
                } else if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
            }
            '[' => {
                let mut depth = 0;
                let start = i + 1;
                let mut j = i;
                while j < b.len() {
                    match b[j] {
                        '[' => depth += 1,
                        ']' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= b.len() {
                    return None;
                }
                let inner: String = b[start..j].iter().collect();
                let inner = inner.trim();
                if inner == "*" {
                    steps.push(Step::Wildcard);
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|x| x.strip_suffix(')')) {
                    steps.push(parse_filter(f)?);
                } else if let Some(key) = unquote(inner) {
                    steps.push(Step::Field(key.to_string()));
                } else if let Ok(n) = inner.parse::<i64>() {
                    steps.push(Step::Index(n));
                } else {
                    return None;
                }
                i = j + 1;
            }
            _ => {
                // a leading bare name (`metadata.name`)
                let start = i;
                while i < b.len() && b[i] != '.' && b[i] != '[' {
                    i += 1;
                }
                steps.push(Step::Field(b[start..i].iter().collect()));
            }
        }
    }
    Some(steps)
}

fn compare(lhs: &Value, op: &str, rhs: &Value) -> bool {
    match op {
        "==" => crate::schema::json_eq(lhs, rhs),
        "!=" => !crate::schema::json_eq(lhs, rhs),
        _ => match (lhs.as_f64(), rhs.as_f64()) {
            (Some(a), Some(b)) => match op {
                "<" => a < b,
                ">" => a > b,
                "<=" => a <= b,
                ">=" => a >= b,
                _ => false,
            },
            _ => false,
        },
    }
}

/// All JSONPath matches, in document order.
pub fn eval<'a>(expr: &str, obj: &'a Value) -> Vec<&'a Value> {
    let Some(steps) = parse_path(expr) else {
        return Vec::new();
    };
    let mut cur: Vec<&Value> = vec![obj];
    for step in &steps {
        let mut next = Vec::new();
        for v in cur {
            match step {
                Step::Field(name) => {
                    if let Some(c) = v.get(name.as_str()) {
                        next.push(c);
                    }
                }
                Step::Wildcard => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Index(n) => {
                    if let Value::Array(a) = v {
                        let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                        if idx >= 0
                            && let Some(c) = a.get(idx as usize)
                        {
                            next.push(c);
                        }
                    }
                }
                Step::Filter { path, op, rhs } => {
                    let items: Vec<&Value> = match v {
                        Value::Array(a) => a.iter().collect(),
                        other => vec![other],
                    };
                    for item in items {
                        let mut l = Some(item);
                        for p in path {
                            l = l.and_then(|x| x.get(p.as_str()));
                        }
                        let keep = match (l, rhs) {
                            (Some(lv), Some(r)) => compare(lv, op, r),
                            (None, Some(_)) => false,
                            (Some(lv), None) => !lv.is_null() && lv != &Value::Bool(false),
                            (None, None) => false,
                        };
                        if keep {
                            next.push(item);
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

pub fn eval_first<'a>(expr: &str, obj: &'a Value) -> Option<&'a Value> {
    eval(expr, obj).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_subset() {
        let obj = json!({
            "metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "n"}},
            "status": {"conditions": [
                {"type": "Synced", "status": "False"},
                {"type": "Ready", "status": "True", "reason": "Attached"}
            ]}
        });
        assert_eq!(
            eval_first(".status.conditions[?(@.type==\"Ready\")].status", &obj),
            Some(&json!("True"))
        );
        assert_eq!(
            eval_first("{.status.conditions[?(@.type=='Ready')].reason}", &obj),
            Some(&json!("Attached"))
        );
        assert_eq!(
            eval_first(".status.conditions[0].type", &obj),
            Some(&json!("Synced"))
        );
        assert_eq!(
            eval_first(".status.conditions[-1].type", &obj),
            Some(&json!("Ready"))
        );
        assert_eq!(
            eval_first(".metadata.labels.app\\.kubernetes\\.io/name", &obj),
            Some(&json!("n"))
        );
        assert_eq!(
            eval_first(".metadata.labels['app.kubernetes.io/name']", &obj),
            Some(&json!("n"))
        );
        assert_eq!(eval_first(".spec.missing", &obj), None);
    }

    #[test]
    fn cells() {
        let cols = vec![
            Column::simple(
                "Ready",
                "string",
                ".status.conditions[?(@.type==\"Ready\")].status",
            ),
            Column::age(),
        ];
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": crate::util::rfc3339(now().0 - 312)},
                         "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let t = table(
            &cols,
            &[obj],
            json!({"resourceVersion": "5"}),
            IncludeObject::Metadata,
        );
        assert_eq!(t["rows"][0]["cells"], json!(["x", "True", "5m12s"]));
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
    }
}
