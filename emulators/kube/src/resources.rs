//! The resource registry: built-in types, types registered by CRDs, and the discovery
//! documents derived from them (what kubectl and kube-rs need to map kinds to URLs). The
//! OpenAPI documents are built from the same registry in `openapi.rs`.

use crate::schema::Schema;
use crate::table::Column;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Which built-in behaviour a type has; CRD-defined types are `Custom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Custom,
    Namespace,
    Crd,
    /// `events.k8s.io/v1` Event (the storage form of events).
    Event,
    /// Core `v1` Event: the same objects as `Event`, converted on the way in and out.
    CoreEvent,
    Lease,
}

#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    pub schema: Option<Schema>,
    pub columns: Vec<Column>,
    pub builtin: Kind,
    /// Field labels accepted by `fieldSelector` besides metadata.name/namespace.
    pub selectable_fields: Vec<String>,
    /// Whether objects are stored in this version: the CRD's storage version; false for the
    /// core v1 view of events (so namespace cleanup visits each object once).
    pub storage: bool,
    /// The CRD version's `openAPIV3Schema` as written (descriptions included), for OpenAPI.
    pub openapi_schema: Option<Value>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key: objects are shared by all versions of a type, and core v1 Events are the
    /// events.k8s.io Events (a real apiserver stores both through one registry).
    pub fn key(&self) -> (String, String) {
        if self.builtin == Kind::CoreEvent {
            return ("events.k8s.io".to_string(), "events".to_string());
        }
        (self.group.clone(), self.plural.clone())
    }

    pub fn is_event(&self) -> bool {
        matches!(self.builtin, Kind::Event | Kind::CoreEvent)
    }

    pub fn is_custom(&self) -> bool {
        self.builtin == Kind::Custom
    }

    /// Custom resources and CRDs track `metadata.generation`.
    pub fn tracks_generation(&self) -> bool {
        matches!(self.builtin, Kind::Custom | Kind::Crd)
    }

    /// CRs and Leases refuse PUT without `metadata.resourceVersion`
    /// (their strategies' `AllowUnconditionalUpdate() == false`).
    pub fn allow_unconditional_update(&self) -> bool {
        !matches!(self.builtin, Kind::Custom | Kind::Lease)
    }

    /// A PUT of a missing object creates it (`AllowCreateOnUpdate() == true`): Leases, Events.
    pub fn allow_create_on_update(&self) -> bool {
        matches!(self.builtin, Kind::Lease | Kind::Event | Kind::CoreEvent)
    }

    pub fn field_labels(&self) -> Vec<String> {
        let mut v = vec![
            "metadata.name".to_string(),
            "metadata.namespace".to_string(),
        ];
        match self.builtin {
            Kind::Event | Kind::CoreEvent => v.extend(
                crate::events::field_labels(self.builtin)
                    .iter()
                    .map(|s| s.to_string()),
            ),
            _ => v.extend(self.selectable_fields.iter().cloned()),
        }
        v
    }

    /// `gvk.String()` as in Go: `acrattach.io/v1alpha1, Kind=RegistryAttachment`.
    pub fn gvk_string(&self) -> String {
        format!("{}/{}, Kind={}", self.group, self.version, self.kind)
    }

    fn discovery_entries(&self) -> Vec<Value> {
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        let mut out = vec![main];
        if self.status_subresource {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
    schema: Value,
    columns: Vec<Column>,
    b: Kind,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: "v1".into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: if b == Kind::Crd {
            vec!["api-extensions".into()]
        } else {
            vec![]
        },
        status_subresource: status,
        schema: Schema::parse(&schema, "").ok(),
        columns,
        builtin: b,
        selectable_fields: vec![],
        storage: b != Kind::CoreEvent,
        openapi_schema: None,
    }
}

/// `metav1.Time`/`MicroTime` fields: their syntax is checked (and normalised) when decoding,
/// see `ops::decode_builtin`, with the Go decoder's messages.
fn time_field() -> Value {
    json!({"type": "string"})
}

fn object_ref() -> Value {
    json!({"type": "object", "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"},
        "namespace": {"type": "string"}, "uid": {"type": "string"},
        "resourceVersion": {"type": "string"}, "fieldPath": {"type": "string"}}})
}

/// Types served before any CRD exists (core ones in the alphabetical order of `/api/v1`).
pub fn builtins() -> Vec<ResourceType> {
    vec![
        builtin(
            "",
            "events",
            "Event",
            true,
            &["ev"],
            false,
            json!({"type": "object", "properties": {
                "involvedObject": object_ref(), "reason": {"type": "string"},
                "message": {"type": "string"},
                "source": {"type": "object", "properties": {"component": {"type": "string"}, "host": {"type": "string"}}},
                "firstTimestamp": time_field(), "lastTimestamp": time_field(),
                "count": {"type": "integer"}, "type": {"type": "string"}, "eventTime": time_field(),
                "series": {"type": "object", "properties": {"count": {"type": "integer"}, "lastObservedTime": time_field()}},
                "action": {"type": "string"}, "related": object_ref(),
                "reportingComponent": {"type": "string"}, "reportingInstance": {"type": "string"}}}),
            vec![],
            Kind::CoreEvent,
        ),
        builtin(
            "",
            "namespaces",
            "Namespace",
            false,
            &["ns"],
            true,
            json!({"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"finalizers": {"type": "array", "items": {"type": "string"}}}},
                "status": {"type": "object", "properties": {"phase": {"type": "string"},
                    "conditions": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}}),
            vec![
                Column::simple("Status", "string", ".status.phase"),
                Column::age(),
            ],
            Kind::Namespace,
        ),
        builtin(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
            json!({"type": "object", "properties": {
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}),
            vec![Column {
                name: "Created At".into(),
                ty: "string".into(),
                format: "date".into(),
                description: crate::table::AGE_DESCRIPTION.into(),
                priority: 0,
                json_path: ".metadata.creationTimestamp".into(),
            }],
            Kind::Crd,
        ),
        builtin(
            "events.k8s.io",
            "events",
            "Event",
            true,
            &["ev"],
            false,
            json!({"type": "object", "properties": {
                "eventTime": time_field(),
                "series": {"type": "object", "properties": {"count": {"type": "integer"}, "lastObservedTime": time_field()}},
                "reportingController": {"type": "string"}, "reportingInstance": {"type": "string"},
                "action": {"type": "string"}, "reason": {"type": "string"}, "note": {"type": "string"},
                "type": {"type": "string"}, "regarding": object_ref(), "related": object_ref(),
                "deprecatedSource": {"type": "object", "properties": {"component": {"type": "string"}, "host": {"type": "string"}}},
                "deprecatedFirstTimestamp": time_field(), "deprecatedLastTimestamp": time_field(),
                "deprecatedCount": {"type": "integer"}}}),
            // Both event views print with the core printer (`events::table`).
            vec![],
            Kind::Event,
        ),
        builtin(
            "coordination.k8s.io",
            "leases",
            "Lease",
            true,
            &[],
            false,
            json!({"type": "object", "properties": {
                "spec": {"type": "object", "properties": {
                    "holderIdentity": {"type": "string"}, "leaseDurationSeconds": {"type": "integer"},
                    "acquireTime": time_field(), "renewTime": time_field(),
                    "leaseTransitions": {"type": "integer"}, "strategy": {"type": "string"},
                    "preferredHolder": {"type": "string"}}}}}),
            vec![
                Column::simple("Holder", "string", ".spec.holderIdentity"),
                Column::age(),
            ],
            Kind::Lease,
        ),
    ]
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The served versions of an (accepted) CRD, one `ResourceType` each.
pub fn types_from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let list_kind = names["listKind"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{kind}List"));
    let namespaced = spec["scope"].as_str() == Some("Namespaced");
    let mut out = Vec::new();
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"].as_bool() != Some(true) {
            continue;
        }
        let Some(version) = v["name"].as_str() else {
            continue;
        };
        let schema = v
            .pointer("/schema/openAPIV3Schema")
            .and_then(|s| Schema::parse(s, "").ok())
            .map(|mut s| {
                crate::xvalidation::compile(&mut s, true);
                s
            });
        let mut columns: Vec<Column> = v["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Column::from_crd)
            .collect();
        if columns.is_empty() {
            columns.push(Column::age());
        }
        let selectable_fields = v["selectableFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["jsonPath"].as_str())
            .map(|p| p.trim_start_matches('.').to_string())
            .collect();
        out.push(ResourceType {
            group: group.clone(),
            version: version.to_string(),
            plural: plural.clone(),
            singular: singular.clone(),
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            namespaced,
            short_names: strings(names.get("shortNames")),
            categories: strings(names.get("categories")),
            status_subresource: v.pointer("/subresources/status").is_some(),
            schema,
            columns,
            builtin: Kind::Custom,
            selectable_fields,
            storage: v["storage"].as_bool() == Some(true),
            openapi_schema: v.pointer("/schema/openAPIV3Schema").cloned(),
        });
    }
    out
}

/// `k8s.io/apimachinery/pkg/version.CompareKubeAwareVersionStrings` ordering key
/// (GA > beta > alpha > anything else; higher numbers first).
fn version_priority(v: &str) -> (u8, i64, i64, String) {
    let parse = || -> Option<(u8, i64, i64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let rest = &rest[digits.len()..];
        if rest.is_empty() {
            return Some((3, major, 0));
        }
        let (level, rest) = if let Some(r) = rest.strip_prefix("beta") {
            (2, r)
        } else if let Some(r) = rest.strip_prefix("alpha") {
            (1, r)
        } else {
            return None;
        };
        let minor: i64 = rest.parse().ok()?;
        Some((level, major, minor))
    };
    match parse() {
        Some((l, ma, mi)) => (l, ma, mi, String::new()),
        None => (0, 0, 0, v.to_string()),
    }
}

pub fn sort_versions(versions: &mut [String]) {
    versions.sort_by(|a, b| {
        let (pa, pb) = (version_priority(a), version_priority(b));
        (pb.0, pb.1, pb.2)
            .cmp(&(pa.0, pa.1, pa.2))
            .then_with(|| pa.3.cmp(&pb.3))
    });
}

/// group → versions (sorted by priority), in first-seen group order.
pub fn groups(types: &[ResourceType]) -> Vec<(String, Vec<String>)> {
    let mut order: Vec<String> = Vec::new();
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        if !map.contains_key(&t.group) {
            order.push(t.group.clone());
        }
        let vs = map.entry(t.group.clone()).or_default();
        if !vs.contains(&t.version) {
            vs.push(t.version.clone());
        }
    }
    order
        .into_iter()
        .map(|g| {
            let mut vs = map.remove(&g).unwrap_or_default();
            sort_versions(&mut vs);
            (g, vs)
        })
        .collect()
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or_else(|| json!({}));
    json!({"name": name, "versions": vs, "preferredVersion": preferred})
}

pub fn api_group_list(types: &[ResourceType]) -> Value {
    let gs: Vec<Value> = groups(types)
        .iter()
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs})
}

pub fn api_group(types: &[ResourceType], group: &str) -> Option<Value> {
    groups(types)
        .into_iter()
        .find(|(g, _)| g == group)
        .map(|(g, vs)| {
            let mut v = group_json(&g, &vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        })
}

pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    })
}

/// `APIResourceList` of one group/version; `None` when nothing is served there.
pub fn resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let matching: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if matching.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = matching
        .iter()
        .flat_map(|t| t.discovery_entries())
        .collect();
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order() {
        let mut v = vec![
            "v1alpha1".to_string(),
            "v2".to_string(),
            "v1beta1".to_string(),
            "v1".to_string(),
            "foo".to_string(),
        ];
        sort_versions(&mut v);
        assert_eq!(v, vec!["v2", "v1", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn discovery_of_builtins() {
        let t = builtins();
        let core = resource_list(&t, "", "v1").unwrap();
        let groups = api_group_list(&t);
        assert_eq!(groups["groups"].as_array().unwrap().len(), 3);
        let docs = crate::openapi::openapi_docs(&t);
        assert!(docs.contains_key("api/v1"));
        assert!(docs.contains_key("apis/apiextensions.k8s.io/v1"));
        let core: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(core, ["events", "namespaces", "namespaces/status"]);
    }
}
