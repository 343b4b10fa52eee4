//! Just enough of the Kubernetes protobuf encoding to accept the one body kubectl sends that
//! way in practice here: `kubectl create namespace` (typed client-go clients send
//! `application/vnd.kubernetes.protobuf` for built-in types). Other protobuf bodies are `415`.

use serde_json::{Map, Value, json};

/// `k8s\0` then a `runtime.Unknown{typeMeta, raw}` envelope.
const MAGIC: &[u8] = b"k8s\x00";

/// A field value; scalars are skipped (no decoded field needs them).
enum Field<'a> {
    Scalar,
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut out: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

/// All (field number, value) pairs of one message.
fn fields(buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let field = match key & 7 {
            0 => {
                varint(buf, &mut pos)?;
                Field::Scalar
            }
            1 => {
                pos = pos.checked_add(8)?;
                Field::Scalar
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len)?;
                let bytes = buf.get(pos..end)?;
                pos = end;
                Field::Bytes(bytes)
            }
            5 => {
                pos = pos.checked_add(4)?;
                Field::Scalar
            }
            _ => return None,
        };
        out.push((key >> 3, field));
    }
    (pos == buf.len()).then_some(out)
}

fn string(f: &Field<'_>) -> Option<String> {
    match f {
        Field::Bytes(b) => String::from_utf8(b.to_vec()).ok(),
        _ => None,
    }
}

fn map_entry(f: &Field<'_>) -> Option<(String, String)> {
    let Field::Bytes(b) = f else { return None };
    let mut k = String::new();
    let mut v = String::new();
    for (n, f) in fields(b)? {
        match n {
            1 => k = string(&f)?,
            2 => v = string(&f)?,
            _ => {}
        }
    }
    Some((k, v))
}

fn object_meta(buf: &[u8]) -> Option<Value> {
    let mut meta = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut finalizers = Vec::new();
    for (n, f) in fields(buf)? {
        match n {
            1 => {
                meta.insert("name".into(), json!(string(&f)?));
            }
            2 => {
                meta.insert("generateName".into(), json!(string(&f)?));
            }
            3 => {
                meta.insert("namespace".into(), json!(string(&f)?));
            }
            6 => {
                meta.insert("resourceVersion".into(), json!(string(&f)?));
            }
            11 => {
                let (k, v) = map_entry(&f)?;
                labels.insert(k, json!(v));
            }
            12 => {
                let (k, v) = map_entry(&f)?;
                annotations.insert(k, json!(v));
            }
            14 => finalizers.push(json!(string(&f)?)),
            _ => {}
        }
    }
    meta.retain(|_, v| v.as_str().is_none_or(|s| !s.is_empty()));
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), Value::Array(finalizers));
    }
    Some(Value::Object(meta))
}

fn namespace(raw: &[u8]) -> Option<Value> {
    let mut obj = json!({"apiVersion": "v1", "kind": "Namespace"});
    for (n, f) in fields(raw)? {
        match (n, &f) {
            (1, Field::Bytes(b)) => obj["metadata"] = object_meta(b)?,
            (2, Field::Bytes(b)) => {
                let finalizers: Vec<Value> = fields(b)?
                    .iter()
                    .filter(|(n, _)| *n == 1)
                    .filter_map(|(_, f)| string(f))
                    .map(Value::String)
                    .collect();
                if !finalizers.is_empty() {
                    obj["spec"] = json!({"finalizers": finalizers});
                }
            }
            _ => {}
        }
    }
    Some(obj)
}

/// Decodes a protobuf request body into JSON, for the kinds supported here.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("the protobuf body lacks the k8s envelope")?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(rest).ok_or("malformed protobuf envelope")? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (m, g) in fields(tm).ok_or("malformed protobuf TypeMeta")? {
                    match m {
                        1 => api_version = string(&g).unwrap_or_default(),
                        2 => kind = string(&g).unwrap_or_default(),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => namespace(raw).ok_or_else(|| "malformed protobuf Namespace".into()),
        _ => Err(format!(
            "protobuf bodies of {api_version}/{kind} are not supported"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_create_namespace_body() {
        // Captured from `kubectl create namespace demo` (v1.32).
        let body = b"k8s\x00\n\x0f\n\x02v1\x12\tNamespace\x12\x1c\n\x14\n\x04demo\x12\x00\x1a\x00\"\x00*\x002\x008\x00B\x00\x12\x00\x1a\x02\n\x00\x1a\x00\"\x00";
        let v = decode(body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}})
        );
        assert!(decode(b"k8s\x00\xff").is_err());
        assert!(decode(b"nope").is_err());
    }
}
