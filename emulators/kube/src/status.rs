//! Kubernetes `Status` failure bodies and `field.Error` lists.
//!
//! kube-rs decides `is_not_found`/`is_conflict`/`is_invalid`/`is_already_exists` on the `reason`
//! string and kubectl prints `message` (plus the kind from `details` for Invalid), so both are
//! produced exactly as `k8s.io/apimachinery/pkg/api/errors` and `.../validation/field` do.

use crate::util::{go_bad_value, go_quote};
use serde_json::{Map, Value, json};

/// One `field.Error`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    pub field: String,
    /// Already rendered the Go way (`"x"`, `5`); `None` when the type omits the value.
    pub value: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    NotSupported,
    Invalid,
    TypeInvalid,
    TooLong,
    TooMany,
    Forbidden,
    Duplicate,
}

impl FieldErrorKind {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Invalid => "FieldValueInvalid",
            Self::TypeInvalid => "FieldValueTypeInvalid",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Forbidden => "FieldValueForbidden",
            Self::Duplicate => "FieldValueDuplicate",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::NotSupported => "Unsupported value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Forbidden => "Forbidden",
            Self::Duplicate => "Duplicate value",
        }
    }
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorKind::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, value: &Value, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorKind::Invalid,
            field: field.into(),
            value: Some(go_bad_value(value)),
            detail: detail.into(),
        }
    }

    pub fn type_invalid(
        field: impl Into<String>,
        value: &Value,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind: FieldErrorKind::TypeInvalid,
            field: field.into(),
            value: Some(go_bad_value(value)),
            detail: detail.into(),
        }
    }

    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[String]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self {
            kind: FieldErrorKind::NotSupported,
            field: field.into(),
            value: Some(go_bad_value(value)),
            detail,
        }
    }

    /// `field.TooLong` as of Kubernetes 1.32 (value omitted, limit in bytes).
    pub fn too_long(field: impl Into<String>, max: i64) -> Self {
        let detail = if max >= 0 {
            format!(
                "may not be more than {max} {}",
                if max == 1 { "byte" } else { "bytes" }
            )
        } else {
            "value is too long".to_string()
        };
        Self {
            kind: FieldErrorKind::TooLong,
            field: field.into(),
            value: None,
            detail,
        }
    }

    pub fn too_many(field: impl Into<String>, actual: i64, max: i64) -> Self {
        Self {
            kind: FieldErrorKind::TooMany,
            field: field.into(),
            value: (actual >= 0).then(|| actual.to_string()),
            detail: if max >= 0 {
                format!("must have at most {max} items")
            } else {
                "has too many items".to_string()
            },
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: FieldErrorKind::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    /// `field.Duplicate`: the value, no detail.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Self {
            kind: FieldErrorKind::Duplicate,
            field: field.into(),
            value: Some(go_bad_value(value)),
            detail: String::new(),
        }
    }

    /// `ErrorBody()`: the message without the field prefix (the cause `message`).
    pub fn body(&self) -> String {
        let mut s = match (&self.kind, &self.value) {
            (FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong, _)
            | (_, None) => self.kind.text().to_string(),
            (_, Some(v)) => format!("{}: {v}", self.kind.text()),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }

    pub fn cause(&self) -> Value {
        json!({"reason": self.kind.reason(), "message": self.body(), "field": self.field})
    }
}

/// `utilerrors.NewAggregate(...).Error()` over a deduplicated field error list.
pub fn aggregate(errs: &[FieldError]) -> String {
    let mut msgs: Vec<String> = Vec::new();
    for e in errs {
        let m = e.message();
        if !msgs.contains(&m) {
            msgs.push(m);
        }
    }
    if msgs.len() == 1 {
        msgs.remove(0)
    } else {
        format!("[{}]", msgs.join(", "))
    }
}

/// An API error rendered as a `Status` body with the matching HTTP code.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
}

fn details(name: &str, group: &str, kind: &str) -> Value {
    let mut m = Map::new();
    if !name.is_empty() {
        m.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        m.insert("group".into(), json!(group));
    }
    if !kind.is_empty() {
        m.insert("kind".into(), json!(kind));
    }
    Value::Object(m)
}

/// `schema.GroupResource.String()`: `plural.group`, or `plural` for the core group.
pub fn group_resource(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, d: Value) -> Self {
        self.details = Some(d);
        self
    }

    pub fn not_found(plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!(
                "{} {} not found",
                group_resource(plural, group),
                go_quote(name)
            ),
        )
        .with_details(details(name, group, plural))
    }

    /// What the server says for a path it does not serve.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn already_exists(plural: &str, group: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!(
                "{} {} already exists",
                group_resource(plural, group),
                go_quote(name)
            ),
        )
        .with_details(details(name, group, plural))
    }

    pub fn conflict(plural: &str, group: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {}: {why}",
                group_resource(plural, group),
                go_quote(name)
            ),
        )
        .with_details(details(name, group, plural))
    }

    pub fn stale(plural: &str, group: &str, name: &str) -> Self {
        Self::conflict(
            plural,
            group,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// `errors.NewInvalid(GroupKind{group, kind}, name, errs)`.
    pub fn invalid(kind: &str, group: &str, name: &str, errs: &[FieldError]) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let mut d = details(name, group, kind);
        let causes: Vec<Value> = errs.iter().map(FieldError::cause).collect();
        if let Some(m) = d.as_object_mut() {
            m.insert("causes".into(), Value::Array(causes));
        }
        Self::new(
            422,
            "Invalid",
            format!(
                "{qualified} {} is invalid: {}",
                go_quote(name),
                aggregate(errs)
            ),
        )
        .with_details(d)
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", msg)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(plural: &str, group: &str, name: &str, why: &str) -> Self {
        let gr = group_resource(plural, group);
        let msg = if name.is_empty() {
            format!("{gr} is forbidden: {why}")
        } else {
            format!("{gr} {} is forbidden: {why}", go_quote(name))
        };
        Self::new(403, "Forbidden", msg).with_details(details(name, group, plural))
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn expired(msg: impl Into<String>) -> Self {
        Self::new(410, "Expired", msg)
    }

    pub fn unsupported_media_type(msg: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", msg)
    }

    /// A plain error the server did not classify (`StatusReasonUnknown`, reason omitted).
    pub fn unknown(code: u16, msg: impl Into<String>) -> Self {
        Self::new(code, "", msg)
    }

    pub fn to_status(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), json!("Failure"));
        m.insert("message".into(), json!(self.message));
        if !self.reason.is_empty() {
            m.insert("reason".into(), json!(self.reason));
        }
        if let Some(d) = &self.details {
            m.insert("details".into(), d.clone());
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_body_matches_apiserver() {
        let e = FieldError::not_supported(
            "spec.role",
            &json!("Owner"),
            &["Auto".to_string(), "AcrPull".to_string()],
        );
        let err = ApiError::invalid("RegistryAttachment", "acrattach.io", "x", &[e]);
        assert_eq!(
            err.message,
            "RegistryAttachment.acrattach.io \"x\" is invalid: spec.role: Unsupported value: \"Owner\": supported values: \"Auto\", \"AcrPull\""
        );
        let st = err.to_status();
        assert_eq!(
            st["details"]["causes"][0]["reason"],
            "FieldValueNotSupported"
        );
        assert_eq!(
            st["details"]["causes"][0]["message"],
            "Unsupported value: \"Owner\": supported values: \"Auto\", \"AcrPull\""
        );
        assert_eq!(st["code"], 422);
    }

    #[test]
    fn several_errors_are_bracketed() {
        let errs = vec![
            FieldError::required("spec.role", ""),
            FieldError::too_long("spec.name", 10),
        ];
        assert_eq!(
            aggregate(&errs),
            "[spec.role: Required value, spec.name: Too long: may not be more than 10 bytes]"
        );
    }
}
