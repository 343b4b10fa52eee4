//! Simplified field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Ownership is tracked per manager entry (manager, operation, subresource) as a set of leaf
//! paths: a scalar, a list (lists are atomic) or an empty map. Only `metadata.labels`,
//! `metadata.annotations`, `metadata.finalizers` and `metadata.ownerReferences` are tracked under
//! metadata. Semantics follow structured-merge-diff closely enough for operators and kubectl:
//! updates take ownership of the leaves they change; an apply conflicts when another manager
//! owns a leaf it sets to a different value (unless forced, which transfers ownership); leaves a
//! manager applied before and no longer applies are removed when nobody else owns them.

use crate::schema::json_eq;
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

fn walk(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                prefix.push(k.clone());
                walk(c, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// Tracked leaf paths of an object; `subresource == "status"` restricts to `status`.
pub fn leaves(obj: &Value, subresource: &str) -> BTreeSet<FieldPath> {
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
                        walk(mv, &mut p, &mut out);
                    }
                }
            }
            continue;
        }
        let mut p = vec![k.clone()];
        walk(c, &mut p, &mut out);
    }
    out
}

pub fn get_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        match cur.as_object_mut().and_then(|m| m.get_mut(p)) {
            Some(c) => cur = c,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

fn related(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

fn same_value(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => json_eq(x, y),
        (None, None) => true,
        _ => false,
    }
}

/// `.spec.role` — the fieldpath string form used in conflict messages.
pub fn path_string(p: &[String]) -> String {
    p.iter().map(|s| format!(".{s}")).collect()
}

fn to_fields_v1(set: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            let entry = cur
                .entry(format!("f:{seg}"))
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            cur = entry.as_object_mut().expect("object ensured above");
        }
    }
    Value::Object(root)
}

fn from_fields_v1(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    let Some(m) = v.as_object() else { return };
    let children: Vec<(&String, &Value)> = m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        return;
    }
    for (k, c) in children {
        prefix.push(k[2..].to_string());
        from_fields_v1(c, prefix, out);
        prefix.pop();
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
pub fn record_update(
    entries: &mut Vec<ManagedEntry>,
    manager: &str,
    subresource: &str,
    api_version: &str,
    now: &str,
    old: Option<&Value>,
    new: &Value,
) {
    let new_leaves = leaves(new, subresource);
    let old_leaves = old.map(|o| leaves(o, subresource)).unwrap_or_default();
    let changed: BTreeSet<FieldPath> = new_leaves
        .iter()
        .filter(|p| !same_value(old.and_then(|o| get_at(o, p)), get_at(new, p)))
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
) -> Result<(Value, Vec<ManagedEntry>), Vec<Conflict>> {
    let cfg_leaves = leaves(config, subresource);
    let mut preview = live.clone();
    crate::patch::merge_patch(&mut preview, config);

    let is_self = |e: &ManagedEntry| e.same_key(manager, "Apply", subresource);
    if !force {
        let mut conflicts = Vec::new();
        for e in entries.iter().filter(|e| !is_self(e)) {
            for q in &e.fields {
                if let Some(p) = cfg_leaves.iter().find(|p| related(p, q)) {
                    let shorter = if p.len() <= q.len() { p } else { q };
                    if !same_value(get_at(live, shorter), get_at(&preview, shorter)) {
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
        let owned_by_other = entries
            .iter()
            .filter(|e| !is_self(e))
            .any(|e| e.fields.iter().any(|q| related(p, q)));
        if !still_applied && !owned_by_other {
            remove_at(&mut merged, p);
        }
    }
    crate::patch::merge_patch(&mut merged, config);

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
        let (merged, owners) =
            apply(&entries, "kubectl", "", "g/v1", "t1", &obj, &cfg, false).unwrap();
        assert_eq!(merged["spec"]["registry"]["resourceId"], "r");
        assert_eq!(owners.len(), 2);

        // different value: conflict naming the update manager
        let cfg2 = json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"role": "AcrPull"}});
        let err = apply(&owners, "kubectl", "", "g/v1", "t2", &merged, &cfg2, false).unwrap_err();
        assert_eq!(
            conflict_message(&err),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using g/v1: .spec.role"
        );
        // forced: ownership moves
        let (merged2, owners2) =
            apply(&owners, "kubectl", "", "g/v1", "t2", &merged, &cfg2, true).unwrap();
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
            &owners2, "kubectl", "", "g/v1", "t3", &merged2, &cfg3, false,
        )
        .unwrap();
        let cfg4 = json!({"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x"}, "spec": {"role": "AcrPull"}});
        let (m4, _) = apply(&o3, "kubectl", "", "g/v1", "t4", &m3, &cfg4, false).unwrap();
        assert_eq!(m3["metadata"]["labels"]["mine"], "y");
        assert!(m4["metadata"]["labels"].get("mine").is_none());
        assert_eq!(m4["metadata"]["labels"]["a"], "1");
    }
}
