//! Simplified field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Ownership is tracked per manager entry (manager, operation, subresource) as a set of leaf
//! paths: a scalar, an atomic list, an empty map, or an item of a `x-kubernetes-list-type:
//! map` list (by its keys, with the fields inside it) or of a `set` (by value), which are
//! merged item by item as structured-merge-diff does. Only `metadata.labels`,
//! `metadata.annotations`, `metadata.finalizers` and `metadata.ownerReferences` are tracked under
//! metadata. Semantics follow structured-merge-diff closely enough for operators and kubectl:
//! updates take ownership of the leaves they change; an apply conflicts when another manager
//! owns a leaf it sets to a different value (unless forced, which transfers ownership); leaves a
//! manager applied before and no longer applies are removed when nobody else owns them.

use crate::schema::{Schema, json_eq};
use crate::util::go_quote;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

pub type FieldPath = Vec<String>;

#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: BTreeSet<FieldPath>,
}

impl ManagedEntry {
    fn same_key(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    /// How conflicts name a manager (`conflict.go` `printManager`).
    pub fn display(&self) -> String {
        let mut s = go_quote(&self.manager);
        if !self.subresource.is_empty() {
            s = format!("{s} with subresource {}", go_quote(&self.subresource));
        }
        if self.operation == "Update" {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

const TRACKED_META: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

/// Segments naming an item of a `x-kubernetes-list-type: map` list (`k:{"type":"Ready"}`) or
/// of a `set` (`v:"a"`) start with this byte, which no JSON object key written by a client
/// realistically starts with; the path ending at such a segment means "the item exists".
const ITEM: char = '\u{1}';

fn is_item(seg: &str) -> bool {
    seg.starts_with(ITEM)
}

/// Compact JSON with object keys sorted, as structured-merge-diff writes key values.
fn sorted_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), sorted_json(&m[*k])))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(sorted_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// The segment of a map-list item (`k:{…}` over its key fields) or set item (`v:…`).
fn item_segment(schema: &Schema, item: &Value) -> Option<String> {
    match schema.list_type.as_deref() {
        Some("map") if !schema.list_map_keys.is_empty() => {
            let obj = item.as_object()?;
            let mut keys = Map::new();
            for k in &schema.list_map_keys {
                if let Some(v) = obj.get(k) {
                    keys.insert(k.clone(), v.clone());
                }
            }
            Some(format!("{ITEM}k:{}", sorted_json(&Value::Object(keys))))
        }
        Some("set") if !item.is_object() && !item.is_array() => {
            Some(format!("{ITEM}v:{}", sorted_json(item)))
        }
        _ => None,
    }
}

/// The item of `list` a segment names.
fn find_item(list: &[Value], seg: &str) -> Option<usize> {
    let body = seg.strip_prefix(ITEM)?;
    if let Some(keys) = body.strip_prefix("k:") {
        let keys: Map<String, Value> = serde_json::from_str(keys).ok()?;
        list.iter().position(|item| {
            keys.iter()
                .all(|(k, v)| item.get(k).is_some_and(|x| json_eq(x, v)))
        })
    } else if let Some(val) = body.strip_prefix("v:") {
        let val: Value = serde_json::from_str(val).ok()?;
        list.iter().position(|item| json_eq(item, &val))
    } else {
        None
    }
}

fn child_schema<'a>(schema: Option<&'a Schema>, key: &str) -> Option<&'a Schema> {
    let s = schema?;
    s.properties.get(key).or(s.additional.as_deref())
}

fn walk(v: &Value, schema: Option<&Schema>, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                prefix.push(k.clone());
                walk(c, child_schema(schema, k), prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let segs: Option<Vec<String>> = match schema {
                Some(s) => a.iter().map(|item| item_segment(s, item)).collect(),
                None => None,
            };
            let Some(segs) = segs else {
                out.insert(prefix.clone());
                return;
            };
            let items = schema.and_then(|s| s.items.as_deref());
            for (seg, item) in segs.into_iter().zip(a) {
                prefix.push(seg);
                out.insert(prefix.clone());
                if let Value::Object(m) = item {
                    for (k, c) in m {
                        prefix.push(k.clone());
                        walk(c, child_schema(items, k), prefix, out);
                        prefix.pop();
                    }
                }
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// Tracked field paths of an object (leaves, and the items of map and set lists, which are
/// merged per item); `subresource == "status"` restricts to `status`.
pub fn leaves(obj: &Value, subresource: &str, schema: Option<&Schema>) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let Some(m) = obj.as_object() else { return out };
    for (k, c) in m {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        if subresource == "status" && k != "status" {
            continue;
        }
        if k == "metadata" {
            if let Some(meta) = c.as_object() {
                for mk in TRACKED_META {
                    if let Some(mv) = meta.get(*mk) {
                        let mut p = vec!["metadata".to_string(), mk.to_string()];
                        walk(mv, None, &mut p, &mut out);
                    }
                }
            }
            continue;
        }
        let mut p = vec![k.clone()];
        walk(c, child_schema(schema, k), &mut p, &mut out);
    }
    out
}

pub fn get_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = if is_item(p) {
            let list = cur.as_array()?;
            &list[find_item(list, p)?]
        } else {
            cur.as_object()?.get(p)?
        };
    }
    Some(cur)
}

/// What ownership compares at a path: the value, or for an item only that it exists.
fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    static PRESENT: Value = Value::Bool(true);
    let found = get_at(v, path)?;
    if path.last().is_some_and(|s| is_item(s)) {
        Some(&PRESENT)
    } else {
        Some(found)
    }
}

fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        let next = if is_item(p) {
            cur.as_array_mut()
                .and_then(|list| find_item(list, p).map(|i| &mut list[i]))
        } else {
            cur.as_object_mut().and_then(|m| m.get_mut(p))
        };
        match next {
            Some(c) => cur = c,
            None => return,
        }
    }
    if is_item(last) {
        if let Some(list) = cur.as_array_mut()
            && let Some(i) = find_item(list, last)
        {
            list.remove(i);
        }
    } else if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// Whether two owned paths overlap: one is a prefix of the other, except that owning an
/// item (its existence) does not overlap with owning fields inside it.
fn related(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    if a[..n] != b[..n] {
        return false;
    }
    let shorter = if a.len() <= b.len() { a } else { b };
    a.len() == b.len() || !shorter.last().is_some_and(|s| is_item(s))
}

fn same_value(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => json_eq(x, y),
        (None, None) => true,
        _ => false,
    }
}

/// `.spec.role`, `.status.conditions[type="Ready"].status` — the fieldpath string form used
/// in conflict messages.
pub fn path_string(p: &[String]) -> String {
    p.iter()
        .map(|s| match s.strip_prefix(ITEM) {
            Some(body) => {
                if let Some(keys) = body.strip_prefix("k:") {
                    let keys: Map<String, Value> = serde_json::from_str(keys).unwrap_or_default();
                    let parts: Vec<String> = keys
                        .iter()
                        .map(|(k, v)| format!("{k}={}", sorted_json(v)))
                        .collect();
                    format!("[{}]", parts.join(","))
                } else {
                    format!("[={}]", body.trim_start_matches("v:"))
                }
            }
            None => format!(".{s}"),
        })
        .collect()
}

fn to_fields_v1(set: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            let key = match seg.strip_prefix(ITEM) {
                Some(body) => body.to_string(),
                None => format!("f:{seg}"),
            };
            let entry = cur.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            cur = entry.as_object_mut().expect("object ensured above");
        }
        if path.last().is_some_and(|s| is_item(s)) {
            cur.insert(".".into(), json!({}));
        }
    }
    Value::Object(root)
}

fn from_fields_v1(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    let Some(m) = v.as_object() else { return };
    let children: Vec<(&String, &Value)> = m
        .iter()
        .filter(|(k, _)| k.starts_with("f:") || k.starts_with("k:") || k.starts_with("v:"))
        .collect();
    if children.is_empty() || m.contains_key(".") {
        if !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        if children.is_empty() {
            return;
        }
    }
    for (k, c) in children {
        prefix.push(match k.strip_prefix("f:") {
            Some(name) => name.to_string(),
            None => format!("{ITEM}{k}"),
        });
        from_fields_v1(c, prefix, out);
        prefix.pop();
    }
}

/// Server-side apply's merge: objects field by field (`null` removes), map lists item by
/// item (by their keys), sets by value, anything else replaced.
pub fn merge(live: &mut Value, config: &Value, schema: Option<&Schema>) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, cv) in c {
                if cv.is_null() {
                    l.remove(k);
                    continue;
                }
                let cs = child_schema(schema, k);
                match l.get_mut(k) {
                    Some(lv) => merge(lv, cv, cs),
                    None => {
                        let mut fresh = Value::Null;
                        merge(&mut fresh, cv, cs);
                        l.insert(k.clone(), fresh);
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(c))
            if schema.is_some_and(|s| matches!(s.list_type.as_deref(), Some("map" | "set"))) =>
        {
            let s = schema.expect("checked above");
            let items = s.items.as_deref();
            for citem in c {
                let seg = item_segment(s, citem);
                match seg.and_then(|seg| find_item(l, &seg)) {
                    Some(i) => merge(&mut l[i], citem, items),
                    None => l.push(citem.clone()),
                }
            }
        }
        (live, config) => {
            let mut c = config.clone();
            strip_nulls(&mut c);
            *live = c;
        }
    }
}

fn strip_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, c| !c.is_null());
        m.values_mut().for_each(strip_nulls);
    }
}

/// Reads `metadata.managedFields` back into entries.
pub fn parse(obj: &Value) -> Vec<ManagedEntry> {
    let Some(arr) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    arr.iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let mut fields = BTreeSet::new();
            if let Some(f) = e.get("fieldsV1") {
                from_fields_v1(f, &mut Vec::new(), &mut fields);
            }
            ManagedEntry {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                subresource: s("subresource"),
                fields,
            }
        })
        .collect()
}

pub fn render(entries: &[ManagedEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                let mut m = json!({
                    "manager": e.manager,
                    "operation": e.operation,
                    "apiVersion": e.api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": to_fields_v1(&e.fields),
                });
                if !e.subresource.is_empty() {
                    m["subresource"] = json!(e.subresource);
                }
                m
            })
            .collect(),
    )
}

fn entry_mut<'a>(
    entries: &'a mut Vec<ManagedEntry>,
    manager: &str,
    operation: &str,
    subresource: &str,
    api_version: &str,
    now: &str,
) -> &'a mut ManagedEntry {
    let idx = match entries
        .iter()
        .position(|e| e.same_key(manager, operation, subresource))
    {
        Some(i) => i,
        None => {
            entries.push(ManagedEntry {
                manager: manager.to_string(),
                operation: operation.to_string(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: subresource.to_string(),
                fields: BTreeSet::new(),
            });
            entries.len() - 1
        }
    };
    &mut entries[idx]
}

/// Records a non-apply write: `manager` takes the leaves whose value it changed.
#[allow(clippy::too_many_arguments)]
pub fn record_update(
    entries: &mut Vec<ManagedEntry>,
    manager: &str,
    subresource: &str,
    api_version: &str,
    now: &str,
    old: Option<&Value>,
    new: &Value,
    schema: Option<&Schema>,
) {
    let new_leaves = leaves(new, subresource, schema);
    let old_leaves = old
        .map(|o| leaves(o, subresource, schema))
        .unwrap_or_default();
    let changed: BTreeSet<FieldPath> = new_leaves
        .iter()
        .filter(|p| !same_value(old.and_then(|o| value_at(o, p)), value_at(new, p)))
        .cloned()
        .collect();
    let removed: Vec<FieldPath> = old_leaves.difference(&new_leaves).cloned().collect();
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    for e in entries.iter_mut() {
        e.fields
            .retain(|q| !changed.iter().chain(removed.iter()).any(|p| related(p, q)));
    }
    if !changed.is_empty() {
        let e = entry_mut(entries, manager, "Update", subresource, api_version, now);
        e.fields.extend(changed);
        e.time = now.to_string();
        e.api_version = api_version.to_string();
    }
    entries.retain(|e| !e.fields.is_empty());
}

/// One ownership conflict of an apply.
#[derive(Debug, Clone)]
pub struct Conflict {
    pub manager: String,
    pub path: String,
}

/// Server-side apply of `config` by `manager` onto `live`. Returns the merged object and the
/// new ownership, or the conflicts.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    entries: &[ManagedEntry],
    manager: &str,
    subresource: &str,
    api_version: &str,
    now: &str,
    live: &Value,
    config: &Value,
    force: bool,
    schema: Option<&Schema>,
) -> Result<(Value, Vec<ManagedEntry>), Vec<Conflict>> {
    let cfg_leaves = leaves(config, subresource, schema);
    let mut preview = live.clone();
    merge(&mut preview, config, schema);

    let is_self = |e: &ManagedEntry| e.same_key(manager, "Apply", subresource);
    if !force {
        let mut conflicts = Vec::new();
        for e in entries.iter().filter(|e| !is_self(e)) {
            for q in &e.fields {
                if let Some(p) = cfg_leaves.iter().find(|p| related(p, q)) {
                    let shorter = if p.len() <= q.len() { p } else { q };
                    if !same_value(value_at(live, shorter), value_at(&preview, shorter)) {
                        conflicts.push(Conflict {
                            manager: e.display(),
                            path: path_string(q),
                        });
                    }
                }
            }
        }
        if !conflicts.is_empty() {
            conflicts.sort_by(|a, b| (&a.manager, &a.path).cmp(&(&b.manager, &b.path)));
            return Err(conflicts);
        }
    }

    let mut merged = live.clone();
    let previous: BTreeSet<FieldPath> = entries
        .iter()
        .find(|e| is_self(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for p in previous.iter() {
        let still_applied = cfg_leaves.iter().any(|c| related(c, p));
        // An item stays while another manager owns it or anything inside it.
        let item = p.last().is_some_and(|s| is_item(s));
        let owned_by_other = entries.iter().filter(|e| !is_self(e)).any(|e| {
            e.fields
                .iter()
                .any(|q| related(p, q) || (item && q.len() > p.len() && q[..p.len()] == p[..]))
        });
        if !still_applied && !owned_by_other {
            remove_at(&mut merged, p);
        }
    }
    merge(&mut merged, config, schema);

    let mut out: Vec<ManagedEntry> = entries.to_vec();
    if force {
        for e in out.iter_mut().filter(|e| !is_self(e)) {
            e.fields
                .retain(|q| !cfg_leaves.iter().any(|p| related(p, q)));
        }
    }
    let e = entry_mut(&mut out, manager, "Apply", subresource, api_version, now);
    if e.fields != cfg_leaves {
        e.fields = cfg_leaves;
        e.time = now.to_string();
    }
    e.api_version = api_version.to_string();
    out.retain(|e| !e.fields.is_empty() || e.same_key(manager, "Apply", subresource));
    Ok((merged, out))
}

/// `Apply failed with N conflict(s): ...` (`managedfields/internal/conflict.go`).
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if conflicts.len() == 1 {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflicts[0].manager, conflicts[0].path
        );
    }
    let mut managers: Vec<&String> = conflicts.iter().map(|c| &c.manager).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| &c.manager == m) {
            lines.push(format!("- {}", c.path));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_then_conflicting_apply() {
        let obj = json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x", "labels": {"a": "1"}},
                         "spec": {"role": "Auto", "registry": {"resourceId": "r"}}});
        let mut entries = Vec::new();
        record_update(
            &mut entries,
            "kubectl-client-side-apply",
            "",
            "g/v1",
            "t0",
            None,
            &obj,
            None,
        );
        assert_eq!(entries.len(), 1);
        assert!(
            entries[0]
                .fields
                .contains(&vec!["spec".to_string(), "role".to_string()])
        );
        let rendered = render(&entries);
        let mut reparsed_obj = obj.clone();
        reparsed_obj["metadata"]["managedFields"] = rendered;
        assert_eq!(parse(&reparsed_obj), entries);

        // same values: no conflict, shared ownership
        let cfg = json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"role": "Auto"}});
        let (merged, owners) = apply(
            &entries, "kubectl", "", "g/v1", "t1", &obj, &cfg, false, None,
        )
        .unwrap();
        assert_eq!(merged["spec"]["registry"]["resourceId"], "r");
        assert_eq!(owners.len(), 2);

        // different value: conflict naming the update manager
        let cfg2 = json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"role": "AcrPull"}});
        let err = apply(
            &owners, "kubectl", "", "g/v1", "t2", &merged, &cfg2, false, None,
        )
        .unwrap_err();
        assert_eq!(
            conflict_message(&err),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using g/v1: .spec.role"
        );
        // forced: ownership moves
        let (merged2, owners2) = apply(
            &owners, "kubectl", "", "g/v1", "t2", &merged, &cfg2, true, None,
        )
        .unwrap();
        assert_eq!(merged2["spec"]["role"], "AcrPull");
        let csa = owners2
            .iter()
            .find(|e| e.manager == "kubectl-client-side-apply")
            .unwrap();
        assert!(
            !csa.fields
                .contains(&vec!["spec".to_string(), "role".to_string()])
        );

        // dropping a field from the applied config removes it when nobody else owns it
        let cfg3 = json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x", "labels": {"mine": "y"}}, "spec": {"role": "AcrPull"}});
        let (m3, o3) = apply(
            &owners2, "kubectl", "", "g/v1", "t3", &merged2, &cfg3, false, None,
        )
        .unwrap();
        let cfg4 = json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"role": "AcrPull"}});
        let (m4, _) = apply(&o3, "kubectl", "", "g/v1", "t4", &m3, &cfg4, false, None).unwrap();
        assert_eq!(m3["metadata"]["labels"]["mine"], "y");
        assert!(m4["metadata"]["labels"].get("mine").is_none());
        assert_eq!(m4["metadata"]["labels"]["a"], "1");
    }

    fn conditions_schema() -> Schema {
        Schema::parse(
            &json!({"type": "object", "properties": {"status": {"type": "object", "properties": {
                "conditions": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                    "items": {"type": "object", "properties": {
                        "type": {"type": "string"}, "status": {"type": "string"},
                        "reason": {"type": "string"}}}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}
            }}}}),
            "",
        )
        .unwrap()
    }

    #[test]
    fn map_lists_are_owned_and_merged_per_item() {
        let schema = conditions_schema();
        let s = Some(&schema);
        let live = json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x"},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Pending"}],
                       "tags": ["a"]}});
        // Another manager's update owns `reason` of the Ready item.
        let mut entries = Vec::new();
        record_update(&mut entries, "op", "status", "g/v1", "t0", None, &live, s);
        let fields = render(&entries);
        assert_eq!(
            fields[0]["fieldsV1"]["f:status"]["f:conditions"]["k:{\"type\":\"Ready\"}"],
            json!({".": {}, "f:type": {}, "f:status": {}, "f:reason": {}})
        );
        let mut reparsed = live.clone();
        reparsed["metadata"]["managedFields"] = fields;
        assert_eq!(parse(&reparsed), entries);

        let cfg = json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x"},
            "status": {"conditions": [{"type": "Synced", "status": "True"}], "tags": ["b"]}});
        let (merged, owners) = apply(
            &entries, "ctl", "status", "g/v1", "t1", &live, &cfg, false, s,
        )
        .unwrap();
        assert_eq!(
            merged["status"]["conditions"],
            json!([{"type": "Ready", "status": "False", "reason": "Pending"}, {"type": "Synced", "status": "True"}])
        );
        assert_eq!(merged["status"]["tags"], json!(["a", "b"]));
        // Changing a field of an item someone else owns conflicts, naming the item by key.
        let cfg2 = json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let err = apply(
            &owners, "ctl", "status", "g/v1", "t2", &merged, &cfg2, false, s,
        )
        .unwrap_err();
        assert_eq!(
            conflict_message(&err),
            "Apply failed with 1 conflict: conflict with \"op\" with subresource \"status\" using g/v1: .status.conditions[type=\"Ready\"].status"
        );
        // Forced: ctl takes status over, op keeps reason; ctl's Synced item is gone (no longer applied).
        let (m3, o3) = apply(
            &owners, "ctl", "status", "g/v1", "t3", &merged, &cfg2, true, s,
        )
        .unwrap();
        assert_eq!(
            m3["status"]["conditions"],
            json!([{"type": "Ready", "status": "True", "reason": "Pending"}])
        );
        assert_eq!(m3["status"]["tags"], json!(["a"]));
        let op = o3.iter().find(|e| e.manager == "op").unwrap();
        assert!(
            op.fields
                .iter()
                .any(|f| f.last().map(String::as_str) == Some("reason"))
        );
        assert!(
            !op.fields
                .iter()
                .any(|f| f.last().map(String::as_str) == Some("status"))
        );
    }
}
