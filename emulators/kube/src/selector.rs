//! `labelSelector` and `fieldSelector` query parameters
//! (`k8s.io/apimachinery/pkg/labels/selector.go`, `.../fields/selector.go`).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum LabelOp {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, Default)]
pub struct LabelSelector {
    reqs: Vec<(String, LabelOp)>,
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn parse_set(rest: &str, whole: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            format!("unable to parse requirement: found '{rest}', expected: '(' in {whole:?}")
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self { reqs });
        }
        for part in split_top_level(s) {
            let p = part.trim();
            if p.is_empty() {
                return Err(format!(
                    "unable to parse requirement: found '', expected: identifier in {s:?}"
                ));
            }
            if let Some(k) = p.strip_prefix('!') {
                reqs.push((k.trim().to_string(), LabelOp::DoesNotExist));
                continue;
            }
            if let Some((k, v)) = p.split_once("!=") {
                reqs.push((k.trim().to_string(), LabelOp::NotEq(v.trim().to_string())));
                continue;
            }
            if let Some((k, v)) = p.split_once("==") {
                reqs.push((k.trim().to_string(), LabelOp::Eq(v.trim().to_string())));
                continue;
            }
            if let Some((k, v)) = p.split_once('=') {
                reqs.push((k.trim().to_string(), LabelOp::Eq(v.trim().to_string())));
                continue;
            }
            if let Some((k, v)) = p.split_once('>') {
                let n = v.trim().parse().map_err(|_| format!("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer in {s:?}"))?;
                reqs.push((k.trim().to_string(), LabelOp::Gt(n)));
                continue;
            }
            if let Some((k, v)) = p.split_once('<') {
                let n = v.trim().parse().map_err(|_| format!("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer in {s:?}"))?;
                reqs.push((k.trim().to_string(), LabelOp::Lt(n)));
                continue;
            }
            let mut words = p.splitn(2, char::is_whitespace);
            let key = words.next().unwrap_or("").trim().to_string();
            let rest = words.next().unwrap_or("").trim();
            if rest.is_empty() {
                reqs.push((key, LabelOp::Exists));
            } else if let Some(r) = rest.strip_prefix("notin") {
                reqs.push((key, LabelOp::NotIn(parse_set(r, s)?)));
            } else if let Some(r) = rest.strip_prefix("in") {
                reqs.push((key, LabelOp::In(parse_set(r, s)?)));
            } else {
                return Err(format!(
                    "unable to parse requirement: found '{rest}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        }
        for (k, _) in &reqs {
            let errs = crate::util::qualified_name_errors(k);
            if let Some(e) = errs.first() {
                return Err(format!(
                    "unable to parse requirement: key: Invalid value: {}: {e}",
                    crate::util::go_quote(k)
                ));
            }
        }
        Ok(Self { reqs })
    }

    pub fn matches(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|(k, op)| match op {
            LabelOp::Eq(v) => get(k) == Some(v.as_str()),
            LabelOp::NotEq(v) => get(k) != Some(v.as_str()),
            LabelOp::In(vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelOp::NotIn(vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelOp::Exists => get(k).is_some(),
            LabelOp::DoesNotExist => get(k).is_none(),
            LabelOp::Gt(n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x > *n),
            LabelOp::Lt(n) => get(k)
                .and_then(|x| x.parse::<i64>().ok())
                .is_some_and(|x| x < *n),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses `a=b,c!=d`; `supported` lists the field labels the resource accepts.
    pub fn parse(s: &str, supported: &[String]) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                ));
            };
            let k = k.trim();
            if !supported.iter().any(|f| f == k) {
                return Err(format!("field label not supported: {k}"));
            }
            reqs.push((k.to_string(), eq, v.trim().to_string()));
        }
        Ok(Self { reqs })
    }

    /// Matches with the field at each label's path (an absent field is the empty string).
    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_with(|k| {
            let mut cur = Some(obj);
            for part in k.split('.') {
                cur = cur.and_then(|c| c.get(part));
            }
            match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            }
        })
    }

    /// Matches with the values `value(label)` gives: for types whose labels are not plain
    /// paths of the stored object (events).
    pub fn matches_with(&self, value: impl Fn(&str) -> String) -> bool {
        self.reqs.iter().all(|(k, eq, v)| (value(k) == *v) == *eq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let l = json!({"app": "web", "tier": "front"});
        let labels = l.as_object();
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(labels);
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("app in (web, db)"));
        assert!(!m("app notin (web)"));
        assert!(m("!missing"));
        assert!(!m("missing"));
        assert!(m("tier in (front),app"));
        assert!(LabelSelector::parse("bad key!=x").is_err());
    }

    #[test]
    fn field_selectors() {
        let supported = vec![
            "metadata.name".to_string(),
            "metadata.namespace".to_string(),
        ];
        let obj = json!({"metadata": {"name": "x"}});
        assert!(
            FieldSelector::parse("metadata.name=x", &supported)
                .unwrap()
                .matches(&obj)
        );
        assert!(
            !FieldSelector::parse("metadata.name!=x", &supported)
                .unwrap()
                .matches(&obj)
        );
        assert!(
            FieldSelector::parse("metadata.namespace=", &supported)
                .unwrap()
                .matches(&obj)
        );
        assert_eq!(
            FieldSelector::parse("spec.x=1", &supported).unwrap_err(),
            "field label not supported: spec.x"
        );
    }
}
