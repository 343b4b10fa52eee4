//! RFC 7386 JSON merge patch and RFC 6902 JSON patch, with the quirks of the
//! `evanphx/json-patch` library the API server uses (a `test` for `null` passes on an absent
//! path, which kube-rs' finalizer helper relies on).

use serde_json::Value;

/// RFC 7386: objects merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            let entry = t.entry(k.clone()).or_insert(Value::Null);
            merge_patch(entry, v);
        }
    }
}

/// Why a JSON patch failed: the body was not a patch (400) or an operation failed (422).
#[derive(Debug)]
pub enum JsonPatchError {
    Decode(String),
    Apply(String),
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(ptr: &str) -> Result<Vec<String>, JsonPatchError> {
    if ptr.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = ptr.strip_prefix('/') else {
        return Err(JsonPatchError::Apply(format!("invalid pointer {ptr:?}")));
    };
    Ok(rest.split('/').map(unescape).collect())
}

fn get<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(parse_index(t, a.len())?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn get_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get_mut(t)?,
            Value::Array(a) => {
                let len = a.len();
                a.get_mut(parse_index(t, len)?)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

fn parse_index(t: &str, len: usize) -> Option<usize> {
    if t.is_empty() || (t.len() > 1 && t.starts_with('0')) || !t.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let i: usize = t.parse().ok()?;
    (i < len).then_some(i)
}

fn add(doc: &mut Value, tokens: &[String], value: Value) -> Result<(), String> {
    let Some((last, parent_tokens)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    let parent =
        get_mut(doc, parent_tokens).ok_or("add operation does not apply: doc is missing path")?;
    match parent {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let ok_digits = !last.is_empty() && last.bytes().all(|c| c.is_ascii_digit());
            let i: usize = if ok_digits {
                last.parse().map_err(|_| "invalid index")?
            } else {
                return Err("invalid index".into());
            };
            if i > a.len() {
                return Err(format!("index out of bounds: {i}"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err("add operation does not apply: parent is not a container".into()),
    }
}

fn remove(doc: &mut Value, tokens: &[String]) -> Result<Value, String> {
    let Some((last, parent_tokens)) = tokens.split_last() else {
        return Err("cannot remove the document root".into());
    };
    let parent = get_mut(doc, parent_tokens)
        .ok_or("remove operation does not apply: doc is missing path")?;
    match parent {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| "remove operation does not apply: doc is missing key".to_string()),
        Value::Array(a) => {
            let i = parse_index(last, a.len())
                .ok_or("remove operation does not apply: index out of bounds")?;
            Ok(a.remove(i))
        }
        _ => Err("remove operation does not apply".into()),
    }
}

/// Applies an RFC 6902 patch document to `doc`.
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), JsonPatchError> {
    let Some(ops) = patch.as_array() else {
        return Err(JsonPatchError::Decode(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch".into(),
        ));
    };
    for op in ops {
        let Some(o) = op.as_object() else {
            return Err(JsonPatchError::Decode("invalid operation".into()));
        };
        let kind = o.get("op").and_then(Value::as_str).unwrap_or("");
        let path = o
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| JsonPatchError::Apply("operation missing path".into()))?;
        let tokens = split_pointer(path)?;
        let value = || {
            o.get("value")
                .cloned()
                .ok_or_else(|| JsonPatchError::Apply(format!("{kind} operation missing value")))
        };
        let from = || -> Result<Vec<String>, JsonPatchError> {
            let f = o
                .get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| JsonPatchError::Apply(format!("{kind} operation missing from")))?;
            split_pointer(f)
        };
        match kind {
            "add" => add(doc, &tokens, value()?).map_err(JsonPatchError::Apply)?,
            "remove" => {
                remove(doc, &tokens).map_err(JsonPatchError::Apply)?;
            }
            "replace" => {
                let v = value()?;
                if tokens.is_empty() {
                    *doc = v;
                } else {
                    let target = get_mut(doc, &tokens).ok_or_else(|| {
                        JsonPatchError::Apply(
                            "replace operation does not apply: doc is missing key".into(),
                        )
                    })?;
                    *target = v;
                }
            }
            "move" => {
                let f = from()?;
                let v = remove(doc, &f).map_err(JsonPatchError::Apply)?;
                add(doc, &tokens, v).map_err(JsonPatchError::Apply)?;
            }
            "copy" => {
                let f = from()?;
                let v = get(doc, &f)
                    .cloned()
                    .ok_or_else(|| JsonPatchError::Apply("copy from a missing path".into()))?;
                add(doc, &tokens, v).map_err(JsonPatchError::Apply)?;
            }
            "test" => {
                let want = o.get("value").cloned().unwrap_or(Value::Null);
                let ok = match get(doc, &tokens) {
                    Some(v) => crate::schema::json_eq(v, &want),
                    // evanphx/json-patch: testing for null succeeds when the path is absent.
                    None => want.is_null(),
                };
                if !ok {
                    return Err(JsonPatchError::Apply(format!(
                        "testing value {path} failed: test failed"
                    )));
                }
            }
            other => {
                return Err(JsonPatchError::Apply(format!("Unexpected kind: {other}")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]});
        merge_patch(&mut t, &json!({"a": null, "b": {"c": 5}, "e": [3]}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}, "e": [3]}));
    }

    #[test]
    fn finalizer_patches() {
        let mut doc = json!({"metadata": {"name": "x"}});
        json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}]),
        )
        .unwrap();
        assert_eq!(doc["metadata"]["finalizers"], json!(["f"]));
        json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/metadata/finalizers", "value": ["f"]},
                    {"op": "add", "path": "/metadata/finalizers/-", "value": "g"}]),
        )
        .unwrap();
        assert_eq!(doc["metadata"]["finalizers"], json!(["f", "g"]));
        json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "f"},
                    {"op": "remove", "path": "/metadata/finalizers/0"}]),
        )
        .unwrap();
        assert_eq!(doc["metadata"]["finalizers"], json!(["g"]));
        let err = json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/metadata/finalizers", "value": null}]),
        );
        assert!(matches!(err, Err(JsonPatchError::Apply(_))));
    }
}
