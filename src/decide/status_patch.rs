//! JSON merge patch (RFC 7386) between two documents, so a status write sends only what changed
//! and explicitly nulls fields that disappeared (a plain merge patch of the new status would leave
//! a removed field behind).

use serde_json::{Map, Value};

/// The merge patch that turns `old` into `new`; `None` when they are equal.
pub fn merge_patch(old: &Value, new: &Value) -> Option<Value> {
    if old == new {
        return None;
    }
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch = Map::new();
            for (key, new_value) in new {
                let changed = match old.get(key) {
                    Some(old_value) => merge_patch(old_value, new_value),
                    None => Some(new_value.clone()),
                };
                if let Some(changed) = changed {
                    patch.insert(key.clone(), changed);
                }
            }
            for key in old.keys().filter(|key| !new.contains_key(*key)) {
                patch.insert(key.clone(), Value::Null);
            }
            Some(Value::Object(patch))
        }
        _ => Some(new.clone()),
    }
}

/// Applies a merge patch (used by tests and fakes to play the API server's part).
pub fn apply_merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(map) = target {
                for (key, value) in fields {
                    if value.is_null() {
                        map.remove(key);
                    } else {
                        apply_merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removed_fields_are_nulled_and_unchanged_ones_left_out() {
        let old = json!({"role": "AcrPull", "assignment": {"id": "a"}, "conditions": [1]});
        let new = json!({"role": "RepositoryReader", "conditions": [1]});
        let patch = merge_patch(&old, &new).unwrap();
        assert_eq!(
            patch,
            json!({"role": "RepositoryReader", "assignment": null})
        );
        let mut applied = old.clone();
        apply_merge_patch(&mut applied, &patch);
        assert_eq!(applied, new);
    }

    #[test]
    fn equal_documents_need_no_patch() {
        assert_eq!(
            merge_patch(&json!({"a": [1, 2]}), &json!({"a": [1, 2]})),
            None
        );
    }
}
