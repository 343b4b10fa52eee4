//! OpenAPI v3 documents: the `/openapi/v3` index and one document per group/version
//! (`/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`).
//!
//! Each document carries the paths of its resources, whose operations are tagged with
//! `x-kubernetes-group-version-kind` and the `fieldValidation` parameter (kubectl reads these to
//! find a resource's kind and to decide that the server validates fields itself), and
//! `components.schemas` with every kind served there, its list kind and the transitive closure
//! of what they reference, so that the document resolves on its own — which is what
//! `kubectl explain` walks.
//!
//! Schema names are those of the real server: `io.k8s.api.core.v1.Namespace` and friends for
//! built-ins; for a custom resource the REST-friendly name `<reversed group>.<version>.<Kind>`
//! (`io.acrattach.v1alpha1.RegistryAttachment`) holding the CRD version's `openAPIV3Schema`
//! with `apiVersion`, `kind` and a `metadata` reference to
//! `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta` added (also inside
//! `x-kubernetes-embedded-resource` nodes), as `apiextensions-apiserver`'s OpenAPI builder does.
//! References use the v3 form `allOf: [{$ref}]` next to a description. The descriptions of
//! built-in types are short summaries written for the emulator, not the upstream texts.

use crate::resources::{Kind, ResourceType};
use crate::util::fnv64;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";
const CORE: &str = "io.k8s.api.core.v1";
const EVENTS: &str = "io.k8s.api.events.v1";
const COORD: &str = "io.k8s.api.coordination.v1";
const APIEXT: &str = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1";
const SCHEMA_PREFIX: &str = "#/components/schemas/";

type Defs = BTreeMap<String, Value>;

fn ref_to(name: &str) -> String {
    format!("{SCHEMA_PREFIX}{name}")
}

/// A field whose type is another definition.
fn refp(name: &str, desc: &str) -> Value {
    json!({"allOf": [{"$ref": ref_to(name)}], "description": desc})
}

/// A non-pointer struct field: Go serialises it even when empty, so it defaults to `{}`.
fn refp_struct(name: &str, desc: &str) -> Value {
    json!({"allOf": [{"$ref": ref_to(name)}], "default": {}, "description": desc})
}

fn string(desc: &str) -> Value {
    json!({"type": "string", "description": desc})
}

fn string_enum(desc: &str, values: &[&str]) -> Value {
    json!({"type": "string", "enum": values, "description": desc})
}

fn int32(desc: &str) -> Value {
    json!({"type": "integer", "format": "int32", "description": desc})
}

fn int64(desc: &str) -> Value {
    json!({"type": "integer", "format": "int64", "description": desc})
}

fn boolean(desc: &str) -> Value {
    json!({"type": "boolean", "description": desc})
}

fn strings(desc: &str, list_type: &str) -> Value {
    json!({"type": "array", "items": {"type": "string", "default": ""},
           "x-kubernetes-list-type": list_type, "description": desc})
}

fn string_map(desc: &str) -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string", "default": ""}, "description": desc})
}

fn array_of(name: &str, desc: &str) -> Value {
    json!({"type": "array", "items": {"allOf": [{"$ref": ref_to(name)}], "default": {}},
           "x-kubernetes-list-type": "atomic", "description": desc})
}

fn object(desc: &str, props: Vec<(&str, Value)>, required: &[&str]) -> Value {
    let props: Map<String, Value> = props.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let mut o = json!({"type": "object", "description": desc, "properties": props});
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!([{"group": group, "kind": kind, "version": version}])
}

const API_VERSION_DESC: &str = "The versioned schema of this representation of the object, `<group>/<version>` (or `v1` for the core group). Servers convert recognised versions to their internal form and may reject unknown ones.";
const KIND_DESC: &str = "The REST resource this object represents, in CamelCase. Servers may infer it from the endpoint the request was sent to; it cannot be updated.";
const METADATA_DESC: &str = "Standard object metadata: name, namespace, labels, annotations, owners, finalizers, and the fields the server maintains (uid, resourceVersion, generation, timestamps).";
const LIST_METADATA_DESC: &str = "Standard list metadata: the resourceVersion of the list and the continue token of paginated lists.";

fn set_prop(schema: &mut Value, key: &str, v: Value) {
    if let Some(m) = schema.as_object_mut() {
        let props = m
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
        if !props.is_object() {
            *props = Value::Object(Map::new());
        }
        if let Some(p) = props.as_object_mut() {
            p.insert(key.to_string(), v);
        }
    }
}

/// Adds `apiVersion`, `kind` and the `metadata` reference of a top-level kind.
fn add_type_meta(schema: &mut Value) {
    set_prop(schema, "apiVersion", string(API_VERSION_DESC));
    set_prop(schema, "kind", string(KIND_DESC));
    set_prop(
        schema,
        "metadata",
        refp_struct(&format!("{META}.ObjectMeta"), METADATA_DESC),
    );
}

/// A top-level kind: type meta, metadata and the GVK extension kubectl matches on.
fn kind_def(mut schema: Value, group: &str, version: &str, kind: &str) -> Value {
    add_type_meta(&mut schema);
    schema["x-kubernetes-group-version-kind"] = gvk(group, version, kind);
    schema
}

fn list_def(item: &str, group: &str, version: &str, list_kind: &str, plural: &str) -> Value {
    let mut s = object(
        &format!(
            "{list_kind} is a list of {}.",
            item.rsplit('.').next().unwrap_or(item)
        ),
        vec![
            (
                "items",
                json!({"type": "array", "items": {"allOf": [{"$ref": ref_to(item)}], "default": {}},
                       "description": format!("The {plural} of this page of the list.")}),
            ),
            (
                "metadata",
                refp_struct(&format!("{META}.ListMeta"), LIST_METADATA_DESC),
            ),
        ],
        &["items"],
    );
    set_prop(&mut s, "apiVersion", string(API_VERSION_DESC));
    set_prop(&mut s, "kind", string(KIND_DESC));
    s["x-kubernetes-group-version-kind"] = gvk(group, version, list_kind);
    s
}

/// `io.k8s.apimachinery.pkg.apis.meta.v1` types every document references.
fn meta_defs(d: &mut Defs) {
    let time = |desc: &str| json!({"type": "string", "format": "date-time", "description": desc});
    d.insert(
        format!("{META}.Time"),
        time("A timestamp, serialised as RFC 3339 in UTC with seconds precision."),
    );
    d.insert(
        format!("{META}.MicroTime"),
        time("A timestamp with microsecond precision, serialised as RFC 3339 in UTC with six fractional digits."),
    );
    d.insert(
        format!("{META}.FieldsV1"),
        json!({"type": "object", "description": "A set of fields in the FieldsV1 trie format (`f:<name>` keys)."}),
    );
    d.insert(
        format!("{META}.ManagedFieldsEntry"),
        object(
            "The fields one manager owns, and the operation that made it own them.",
            vec![
                (
                    "apiVersion",
                    string("The version of the resource the fields were set with."),
                ),
                (
                    "fieldsType",
                    string("The format of fieldsV1; always \"FieldsV1\"."),
                ),
                (
                    "fieldsV1",
                    refp(&format!("{META}.FieldsV1"), "The owned fields."),
                ),
                (
                    "manager",
                    string("The name of the workflow managing these fields."),
                ),
                (
                    "operation",
                    string("The operation that set the fields: Apply or Update."),
                ),
                (
                    "subresource",
                    string("The subresource the fields were written through, if any."),
                ),
                (
                    "time",
                    refp(
                        &format!("{META}.Time"),
                        "When the fields were last changed by this manager.",
                    ),
                ),
            ],
            &[],
        ),
    );
    let mut owner = object(
        "Identifies an owner of the object; the garbage collector deletes the object once all its owners are gone.",
        vec![
            ("apiVersion", string("API version of the owner.")),
            (
                "blockOwnerDeletion",
                boolean("Whether foreground deletion of the owner waits for this object."),
            ),
            (
                "controller",
                boolean("Whether the owner is the managing controller; at most one owner may be."),
            ),
            ("kind", string("Kind of the owner.")),
            ("name", string("Name of the owner.")),
            ("uid", string("UID of the owner.")),
        ],
        &["apiVersion", "kind", "name", "uid"],
    );
    owner["x-kubernetes-map-type"] = json!("atomic");
    d.insert(format!("{META}.OwnerReference"), owner);
    let mut finalizers = strings(
        "Conditions (named by controllers) that must be removed before the object is deleted from storage.",
        "set",
    );
    finalizers["x-kubernetes-patch-strategy"] = json!("merge");
    let mut owners = array_of(
        &format!("{META}.OwnerReference"),
        "Objects this object depends on.",
    );
    owners["x-kubernetes-list-type"] = json!("map");
    owners["x-kubernetes-list-map-keys"] = json!(["uid"]);
    owners["x-kubernetes-patch-merge-key"] = json!("uid");
    owners["x-kubernetes-patch-strategy"] = json!("merge");
    let time_ref = |desc: &str| refp(&format!("{META}.Time"), desc);
    d.insert(
        format!("{META}.ObjectMeta"),
        object(
            "Metadata every persisted object has.",
            vec![
                ("annotations", string_map("Arbitrary non-identifying key/value data for tools and controllers.")),
                ("creationTimestamp", time_ref("When the server created the object. Read-only.")),
                ("deletionGracePeriodSeconds", int64("Seconds the object is given to terminate gracefully once deletion was requested. Read-only.")),
                ("deletionTimestamp", time_ref("When deletion was requested; the object stays until its finalizers are removed. Read-only.")),
                ("finalizers", finalizers),
                ("generateName", string("Prefix the server uses to generate a unique name when name is empty.")),
                ("generation", int64("Sequence number of a specific generation of the desired state. Read-only.")),
                ("labels", string_map("Key/value pairs used to organise and select objects.")),
                ("managedFields", array_of(&format!("{META}.ManagedFieldsEntry"), "Which field manager owns which fields; maintained by the server.")),
                ("name", string("Unique name of the object within its namespace (or the cluster, for cluster-scoped kinds). Cannot be updated.")),
                ("namespace", string("The namespace the object belongs to; empty for cluster-scoped kinds. Cannot be updated.")),
                ("ownerReferences", owners),
                ("resourceVersion", string("Opaque version of the object, changed on every write; used for optimistic concurrency and watches. Read-only.")),
                ("selfLink", string("Deprecated and unset.")),
                ("uid", string("Unique identifier of this incarnation of the object, set by the server. Read-only.")),
            ],
            &[],
        ),
    );
    d.insert(
        format!("{META}.ListMeta"),
        object(
            "Metadata of a list.",
            vec![
                ("continue", string("Token to request the next page of a paginated list.")),
                ("remainingItemCount", int64("Number of items after this page, when the server can tell.")),
                ("resourceVersion", string("The resourceVersion the list was read at; watch from it to follow later changes.")),
                ("selfLink", string("Deprecated and unset.")),
            ],
            &[],
        ),
    );
}

fn namespace_defs(d: &mut Defs) {
    d.insert(
        format!("{CORE}.Namespace"),
        kind_def(
            object(
                "A scope for names: every object of a namespaced kind belongs to one namespace.",
                vec![
                    (
                        "spec",
                        refp_struct(
                            &format!("{CORE}.NamespaceSpec"),
                            "The desired behaviour of the namespace.",
                        ),
                    ),
                    (
                        "status",
                        refp_struct(
                            &format!("{CORE}.NamespaceStatus"),
                            "The observed state of the namespace. Read-only.",
                        ),
                    ),
                ],
                &[],
            ),
            "",
            "v1",
            "Namespace",
        ),
    );
    d.insert(
        format!("{CORE}.NamespaceSpec"),
        object(
            "The desired behaviour of a namespace.",
            vec![(
                "finalizers",
                strings(
                    "Finalizers that must be removed before the namespace is removed from storage.",
                    "atomic",
                ),
            )],
            &[],
        ),
    );
    let mut conditions = array_of(
        &format!("{CORE}.NamespaceCondition"),
        "The latest observations of the namespace's state.",
    );
    conditions["x-kubernetes-list-type"] = json!("map");
    conditions["x-kubernetes-list-map-keys"] = json!(["type"]);
    conditions["x-kubernetes-patch-merge-key"] = json!("type");
    conditions["x-kubernetes-patch-strategy"] = json!("merge");
    d.insert(
        format!("{CORE}.NamespaceStatus"),
        object(
            "The observed state of a namespace.",
            vec![
                ("conditions", conditions),
                (
                    "phase",
                    string_enum(
                        "The lifecycle phase: Active, or Terminating once deletion was requested.",
                        &["Active", "Terminating"],
                    ),
                ),
            ],
            &[],
        ),
    );
    d.insert(
        format!("{CORE}.NamespaceCondition"),
        object(
            "One observation of a namespace's state.",
            vec![
                (
                    "lastTransitionTime",
                    refp(
                        &format!("{META}.Time"),
                        "When the condition last changed status.",
                    ),
                ),
                ("message", string("Human-readable details.")),
                ("reason", string("Machine-readable reason, in CamelCase.")),
                ("status", string("True, False or Unknown.")),
                ("type", string("The condition type.")),
            ],
            &["type", "status"],
        ),
    );
}

/// `ObjectReference`, `EventSource` and the core `EventSeries` (the events.k8s.io document
/// references the first two as well).
fn core_event_parts(d: &mut Defs) {
    let mut r = object(
        "A reference to an object (or a field of it).",
        vec![
            ("apiVersion", string("API version of the referent.")),
            (
                "fieldPath",
                string(
                    "A field of the referent, e.g. `spec.containers{name}`, when the reference is to a part of the object.",
                ),
            ),
            ("kind", string("Kind of the referent.")),
            ("name", string("Name of the referent.")),
            ("namespace", string("Namespace of the referent.")),
            (
                "resourceVersion",
                string("The referent's resourceVersion the reference was made at."),
            ),
            ("uid", string("UID of the referent.")),
        ],
        &[],
    );
    r["x-kubernetes-map-type"] = json!("atomic");
    d.insert(format!("{CORE}.ObjectReference"), r);
    d.insert(
        format!("{CORE}.EventSource"),
        object(
            "The component (and host) that reported an event.",
            vec![
                ("component", string("The reporting component.")),
                ("host", string("The node or instance the component ran on.")),
            ],
            &[],
        ),
    );
    d.insert(
        format!("{CORE}.EventSeries"),
        object(
            "Data of a series of events that repeat.",
            vec![
                (
                    "count",
                    int32("Number of occurrences in the series up to lastObservedTime."),
                ),
                (
                    "lastObservedTime",
                    refp(
                        &format!("{META}.MicroTime"),
                        "When the last occurrence was observed.",
                    ),
                ),
            ],
            &[],
        ),
    );
}

fn core_event_defs(d: &mut Defs) {
    core_event_parts(d);
    let micro = |desc: &str| refp(&format!("{META}.MicroTime"), desc);
    let time = |desc: &str| refp(&format!("{META}.Time"), desc);
    let ev = kind_def(
        object(
            "A report of something that happened to an object (the core/v1 view of events; events.k8s.io/v1 serves the same events).",
            vec![
                (
                    "action",
                    string("What action was taken or failed regarding the involved object."),
                ),
                (
                    "count",
                    int32("How many times the event occurred (legacy series)."),
                ),
                ("eventTime", micro("When the event was first observed.")),
                (
                    "firstTimestamp",
                    time("When the event was first recorded (legacy)."),
                ),
                (
                    "involvedObject",
                    refp_struct(
                        &format!("{CORE}.ObjectReference"),
                        "The object the event is about.",
                    ),
                ),
                (
                    "lastTimestamp",
                    time("When the most recent occurrence was recorded (legacy)."),
                ),
                (
                    "message",
                    string("Human-readable description of the event."),
                ),
                (
                    "reason",
                    string("Short, machine-readable reason, in CamelCase."),
                ),
                (
                    "related",
                    refp(
                        &format!("{CORE}.ObjectReference"),
                        "A secondary object the event involves.",
                    ),
                ),
                (
                    "reportingComponent",
                    json!({"type": "string", "default": "", "description": "The controller that emitted the event, e.g. `acrattach.io/operator`."}),
                ),
                (
                    "reportingInstance",
                    json!({"type": "string", "default": "", "description": "The instance of the controller that emitted the event."}),
                ),
                (
                    "series",
                    refp(
                        &format!("{CORE}.EventSeries"),
                        "Data about the series this event belongs to, if it repeats.",
                    ),
                ),
                (
                    "source",
                    refp_struct(
                        &format!("{CORE}.EventSource"),
                        "The component reporting the event (legacy).",
                    ),
                ),
                ("type", string("Normal or Warning.")),
            ],
            &["metadata", "involvedObject"],
        ),
        "",
        "v1",
        "Event",
    );
    d.insert(format!("{CORE}.Event"), ev);
}

fn events_v1_defs(d: &mut Defs) {
    core_event_parts(d);
    let micro = |desc: &str| refp(&format!("{META}.MicroTime"), desc);
    let time = |desc: &str| refp(&format!("{META}.Time"), desc);
    d.insert(
        format!("{EVENTS}.Event"),
        kind_def(
            object(
                "A report of something that happened to an object. Events are stored once and also served as core/v1 Events.",
                vec![
                    ("action", string("What action was taken or failed regarding the regarding object.")),
                    ("deprecatedCount", int32("Legacy count, for compatibility with core/v1 Events.")),
                    ("deprecatedFirstTimestamp", time("Legacy firstTimestamp, for compatibility with core/v1 Events.")),
                    ("deprecatedLastTimestamp", time("Legacy lastTimestamp, for compatibility with core/v1 Events.")),
                    ("deprecatedSource", refp_struct(&format!("{CORE}.EventSource"), "Legacy source, for compatibility with core/v1 Events.")),
                    ("eventTime", micro("When the event was first observed. Required.")),
                    ("note", string("Human-readable description of the event, at most 1 kB.")),
                    ("reason", string("Short, machine-readable reason, in CamelCase, at most 128 characters.")),
                    ("regarding", refp_struct(&format!("{CORE}.ObjectReference"), "The object the event is about.")),
                    ("related", refp(&format!("{CORE}.ObjectReference"), "A secondary object the event involves.")),
                    ("reportingController", string("The controller that emitted the event, e.g. `acrattach.io/operator`.")),
                    ("reportingInstance", string("The instance of the controller that emitted the event, at most 128 characters.")),
                    ("series", refp(&format!("{EVENTS}.EventSeries"), "Data about the series this event belongs to, if it repeats.")),
                    ("type", string("Normal or Warning.")),
                ],
                &["eventTime"],
            ),
            "events.k8s.io",
            "v1",
            "Event",
        ),
    );
    d.insert(
        format!("{EVENTS}.EventSeries"),
        object(
            "Data of a series of events that repeat.",
            vec![
                (
                    "count",
                    int32(
                        "Number of occurrences in the series up to lastObservedTime (at least 2).",
                    ),
                ),
                (
                    "lastObservedTime",
                    refp(
                        &format!("{META}.MicroTime"),
                        "When the last occurrence was observed.",
                    ),
                ),
            ],
            &["count", "lastObservedTime"],
        ),
    );
}

fn lease_defs(d: &mut Defs) {
    let micro = |desc: &str| refp(&format!("{META}.MicroTime"), desc);
    d.insert(
        format!("{COORD}.Lease"),
        kind_def(
            object(
                "A lease on a named lock, used for leader election and heartbeats.",
                vec![(
                    "spec",
                    refp_struct(
                        &format!("{COORD}.LeaseSpec"),
                        "The lease's holder and timing.",
                    ),
                )],
                &[],
            ),
            "coordination.k8s.io",
            "v1",
            "Lease",
        ),
    );
    d.insert(
        format!("{COORD}.LeaseSpec"),
        object(
            "The holder and timing of a lease.",
            vec![
                ("acquireTime", micro("When the current holder acquired the lease.")),
                ("holderIdentity", string("Identity of the current holder; empty when the lease is free.")),
                ("leaseDurationSeconds", int32("How long, after renewTime, candidates must wait before taking the lease over. Greater than 0.")),
                ("leaseTransitions", int32("How many times the lease changed holders. Not negative.")),
                ("preferredHolder", string("The holder a coordinated leader election strategy prefers (alpha, dropped while the feature is disabled).")),
                ("renewTime", micro("When the holder last renewed the lease.")),
                ("strategy", string("The coordinated leader election strategy (alpha, dropped while the feature is disabled).")),
            ],
            &[],
        ),
    );
}

fn crd_defs(d: &mut Defs) {
    let p = |n: &str| format!("{APIEXT}.{n}");
    d.insert(
        p("CustomResourceDefinition"),
        kind_def(
            object(
                "Registers a custom resource type, served at /apis/<group>/<version>/<plural>.",
                vec![
                    (
                        "spec",
                        refp_struct(
                            &p("CustomResourceDefinitionSpec"),
                            "The type being defined.",
                        ),
                    ),
                    (
                        "status",
                        refp_struct(
                            &p("CustomResourceDefinitionStatus"),
                            "What the server made of the definition. Read-only.",
                        ),
                    ),
                ],
                &["spec"],
            ),
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        ),
    );
    d.insert(
        p("CustomResourceDefinitionSpec"),
        object(
            "How a custom resource type is named, scoped and versioned.",
            vec![
                ("conversion", refp(&p("CustomResourceConversion"), "How objects are converted between versions.")),
                ("group", string("The API group, a DNS subdomain with at least one dot. The CRD's name is `<plural>.<group>`.")),
                ("names", refp_struct(&p("CustomResourceDefinitionNames"), "The names the type is served under.")),
                ("preserveUnknownFields", boolean("Legacy: keep fields the schema does not declare. Must be false for v1 CRDs with structural schemas.")),
                ("scope", string("Cluster or Namespaced. Immutable.")),
                ("versions", array_of(&p("CustomResourceDefinitionVersion"), "The served versions; exactly one is the storage version.")),
            ],
            &["group", "names", "scope", "versions"],
        ),
    );
    d.insert(
        p("CustomResourceDefinitionNames"),
        object(
            "The names of a custom resource type.",
            vec![
                (
                    "categories",
                    strings(
                        "Groups of resources this one belongs to, as used by `kubectl get all`.",
                        "atomic",
                    ),
                ),
                ("kind", string("The CamelCase kind of the objects.")),
                (
                    "listKind",
                    string("The kind of lists; defaults to `<kind>List`."),
                ),
                ("plural", string("The plural name used in URLs, lowercase.")),
                (
                    "shortNames",
                    strings("Short aliases kubectl accepts.", "atomic"),
                ),
                (
                    "singular",
                    string("The singular name; defaults to the lowercased kind."),
                ),
            ],
            &["plural", "kind"],
        ),
    );
    d.insert(
        p("CustomResourceDefinitionVersion"),
        object(
            "One version of a custom resource type.",
            vec![
                ("additionalPrinterColumns", array_of(&p("CustomResourceColumnDefinition"), "Extra columns of `kubectl get`; an Age column when empty.")),
                ("deprecated", boolean("Whether requests to this version get a deprecation warning.")),
                ("deprecationWarning", string("Overrides the default deprecation warning.")),
                ("name", string("The version name, e.g. v1alpha1.")),
                ("schema", refp(&p("CustomResourceValidation"), "The schema objects of this version are pruned, defaulted and validated with.")),
                ("selectableFields", array_of(&p("SelectableField"), "Fields usable in field selectors besides metadata.name and metadata.namespace.")),
                ("served", boolean("Whether the version is served.")),
                ("storage", boolean("Whether objects are stored in this version; exactly one version is.")),
                ("subresources", refp(&p("CustomResourceSubresources"), "The subresources (status, scale) of this version.")),
            ],
            &["name", "served", "storage"],
        ),
    );
    d.insert(
        p("CustomResourceColumnDefinition"),
        object(
            "A printer column.",
            vec![
                (
                    "description",
                    string("Human-readable description of the column."),
                ),
                ("format", string("Optional format of the column's values.")),
                (
                    "jsonPath",
                    string("Simple JSONPath evaluated against each object to produce the cell."),
                ),
                ("name", string("Column header.")),
                (
                    "priority",
                    int32("0 for the default view; higher only with `-o wide`."),
                ),
                ("type", string("integer, number, string, boolean or date.")),
            ],
            &["name", "type", "jsonPath"],
        ),
    );
    d.insert(
        p("CustomResourceValidation"),
        object(
            "The validation schema of a version.",
            vec![(
                "openAPIV3Schema",
                refp(
                    &p("JSONSchemaProps"),
                    "The structural OpenAPI v3 schema of the objects.",
                ),
            )],
            &[],
        ),
    );
    d.insert(
        p("JSONSchemaProps"),
        object(
            "A JSON schema (the OpenAPI v3 subset structural schemas allow).",
            vec![
                ("default", json!({"description": "Default value applied when the field is absent."})),
                ("description", string("Human-readable description, shown by `kubectl explain`.")),
                ("enum", json!({"type": "array", "items": {}, "description": "The allowed values."})),
                ("format", string("Format of a string or number (date-time, int64, ...).")),
                ("items", json!({"description": "Schema of the items of an array."})),
                ("nullable", boolean("Whether null is an allowed value.")),
                ("pattern", string("Regular expression a string must match.")),
                ("properties", json!({"type": "object", "additionalProperties": {"allOf": [{"$ref": ref_to(&p("JSONSchemaProps"))}], "default": {}}, "description": "Schemas of the object's fields."})),
                ("required", strings("Fields that must be present.", "atomic")),
                ("type", string("object, array, string, integer, number or boolean.")),
                ("x-kubernetes-preserve-unknown-fields", boolean("Keep fields the schema does not declare.")),
            ],
            &[],
        ),
    );
    d.insert(
        p("SelectableField"),
        object(
            "A field usable in field selectors.",
            vec![("jsonPath", string("Simple JSONPath to the field."))],
            &["jsonPath"],
        ),
    );
    d.insert(
        p("CustomResourceSubresources"),
        object(
            "Subresources of a version.",
            vec![
                ("scale", json!({"type": "object", "description": "Enables the scale subresource."})),
                ("status", json!({"type": "object", "description": "Enables the status subresource: status is written through /status only."})),
            ],
            &[],
        ),
    );
    d.insert(
        p("CustomResourceConversion"),
        object(
            "How objects are converted between versions.",
            vec![
                ("strategy", string("None (only apiVersion changes) or Webhook.")),
                ("webhook", json!({"type": "object", "description": "The conversion webhook, with strategy Webhook."})),
            ],
            &["strategy"],
        ),
    );
    d.insert(
        p("CustomResourceDefinitionStatus"),
        object(
            "What the server made of a CustomResourceDefinition.",
            vec![
                (
                    "acceptedNames",
                    refp_struct(
                        &p("CustomResourceDefinitionNames"),
                        "The names actually being served.",
                    ),
                ),
                (
                    "conditions",
                    array_of(
                        &p("CustomResourceDefinitionCondition"),
                        "NamesAccepted, Established and Terminating.",
                    ),
                ),
                (
                    "storedVersions",
                    strings("Every version objects have ever been stored in.", "atomic"),
                ),
            ],
            &[],
        ),
    );
    d.insert(
        p("CustomResourceDefinitionCondition"),
        object(
            "One observation of a CRD's state.",
            vec![
                (
                    "lastTransitionTime",
                    refp(
                        &format!("{META}.Time"),
                        "When the condition last changed status.",
                    ),
                ),
                ("message", string("Human-readable details.")),
                ("reason", string("Machine-readable reason, in CamelCase.")),
                ("status", string("True, False or Unknown.")),
                ("type", string("The condition type.")),
            ],
            &["type", "status"],
        ),
    );
}

/// `util.ToRESTFriendlyName`: the group's labels reversed (`acrattach.io` → `io.acrattach`).
fn rest_friendly_group(group: &str) -> String {
    group.split('.').rev().collect::<Vec<_>>().join(".")
}

/// The names of a type's definition and of its list's.
fn def_names(t: &ResourceType) -> (String, String) {
    let base = match t.builtin {
        Kind::Namespace | Kind::CoreEvent => CORE.to_string(),
        Kind::Event => EVENTS.to_string(),
        Kind::Lease => COORD.to_string(),
        Kind::Crd => APIEXT.to_string(),
        Kind::Custom => format!("{}.{}", rest_friendly_group(&t.group), t.version),
    };
    (
        format!("{base}.{}", t.kind),
        format!("{base}.{}", t.list_kind),
    )
}

/// `apiVersion`, `kind` and `metadata` inside `x-kubernetes-embedded-resource` nodes, as the
/// real builder adds them (the root is handled by `kind_def`).
fn add_embedded(s: &mut Value) {
    let Some(m) = s.as_object_mut() else { return };
    if let Some(Value::Object(props)) = m.get_mut("properties") {
        for v in props.values_mut() {
            add_embedded(v);
        }
    }
    for k in ["items", "additionalProperties"] {
        if let Some(v) = m.get_mut(k) {
            add_embedded(v);
        }
    }
    for k in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(a)) = m.get_mut(k) {
            a.iter_mut().for_each(add_embedded);
        }
    }
    if m.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true)) {
        add_type_meta(s);
        if let Some(m) = s.as_object_mut() {
            let req = m.entry("required").or_insert_with(|| json!([]));
            if let Some(r) = req.as_array_mut() {
                for k in ["kind", "apiVersion"] {
                    if !r.iter().any(|x| x == k) {
                        r.push(json!(k));
                    }
                }
            }
        }
    }
}

fn custom_def(t: &ResourceType) -> Value {
    let Some(mut s) = t.openapi_schema.clone().filter(Value::is_object) else {
        // Without a schema the real builder publishes a bare object, so kubectl does not
        // validate against missing properties.
        return json!({"type": "object", "x-kubernetes-group-version-kind": gvk(&t.group, &t.version, &t.kind)});
    };
    add_embedded(&mut s);
    kind_def(s, &t.group, &t.version, &t.kind)
}

/// Every definition any served group/version needs.
fn definitions(types: &[ResourceType]) -> Defs {
    let mut d = Defs::new();
    meta_defs(&mut d);
    for t in types {
        match t.builtin {
            Kind::Namespace => namespace_defs(&mut d),
            Kind::CoreEvent => core_event_defs(&mut d),
            Kind::Event => events_v1_defs(&mut d),
            Kind::Lease => lease_defs(&mut d),
            Kind::Crd => crd_defs(&mut d),
            Kind::Custom => {
                d.insert(def_names(t).0, custom_def(t));
            }
        }
        let (item, list) = def_names(t);
        d.insert(
            list,
            list_def(&item, &t.group, &t.version, &t.list_kind, &t.plural),
        );
    }
    d
}

fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                if k == "$ref"
                    && let Some(name) = c.as_str().and_then(|r| r.strip_prefix(SCHEMA_PREFIX))
                {
                    out.insert(name.to_string());
                }
                collect_refs(c, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| collect_refs(c, out)),
        _ => {}
    }
}

/// `roots` and everything they reference, transitively.
fn closure(all: &Defs, roots: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    let mut todo: Vec<String> = roots.to_vec();
    while let Some(name) = todo.pop() {
        if out.contains_key(&name) {
            continue;
        }
        let Some(def) = all.get(&name) else { continue };
        let mut refs = BTreeSet::new();
        collect_refs(def, &mut refs);
        todo.extend(refs.into_iter().filter(|r| !out.contains_key(r)));
        out.insert(name, def.clone());
    }
    out
}

fn openapi_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn response(schema_name: &str) -> Value {
    json!({"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref_to(schema_name)}}}}})
}

/// Per group/version OpenAPI v3 documents, keyed by `api/v1` / `apis/<g>/<v>`.
pub fn openapi_docs(types: &[ResourceType]) -> BTreeMap<String, Value> {
    let all = definitions(types);
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut roots: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let fv = json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true},
        "description": "How the server handles unknown or duplicate fields in the request body: Ignore, Warn (the default) or Strict."});
    for t in types {
        let key = openapi_key(&t.group, &t.version);
        let (item, list) = def_names(t);
        roots
            .entry(key.clone())
            .or_default()
            .extend([item.clone(), list.clone()]);
        let prefix = format!("/{key}");
        let scoped = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{prefix}/{}", t.plural)
        };
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let op = |action: &str, schema: &str, write: bool| {
            let mut o = json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
                               "responses": response(schema)});
            if write {
                o["parameters"] = json!([fv]);
            }
            o
        };
        let p = paths.entry(key).or_default();
        p.insert(
            format!("{scoped}/{{name}}"),
            json!({"get": op("get", &item, false), "put": op("put", &item, true),
                   "patch": op("patch", &item, true), "delete": op("delete", &item, false)}),
        );
        p.insert(
            scoped.clone(),
            json!({"get": op("list", &list, false), "post": op("post", &item, true),
                   "delete": op("deletecollection", &list, false)}),
        );
        if t.namespaced {
            // The list across all namespaces.
            p.insert(
                format!("{prefix}/{}", t.plural),
                json!({"get": op("list", &list, false)}),
            );
        }
        if t.status_subresource {
            p.insert(
                format!("{scoped}/{{name}}/status"),
                json!({"get": op("get", &item, false), "put": op("put", &item, true),
                       "patch": op("patch", &item, true)}),
            );
        }
    }
    paths
        .into_iter()
        .map(|(k, paths)| {
            let schemas = closure(&all, roots.get(&k).map(Vec::as_slice).unwrap_or(&[]));
            (
                k,
                json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
                       "paths": paths, "components": {"schemas": schemas}}),
            )
        })
        .collect()
}

/// `/openapi/v3` root: one entry per group/version with a content hash.
pub fn openapi_root(docs: &BTreeMap<String, Value>) -> Value {
    let mut paths = Map::new();
    for (k, doc) in docs {
        let hash = fnv64(doc.to_string().as_bytes());
        paths.insert(
            k.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{k}?hash={hash:016X}")}),
        );
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{builtins, types_from_crd};

    fn all_refs_resolve(doc: &Value) {
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut refs = BTreeSet::new();
        collect_refs(doc, &mut refs);
        for r in refs {
            assert!(schemas.contains_key(&r), "unresolved $ref {r}");
        }
    }

    #[test]
    fn crd_schema_is_published_under_its_rest_friendly_name() {
        let crd = json!({"spec": {"group": "acrattach.io", "scope": "Cluster",
            "names": {"plural": "registryattachments", "kind": "RegistryAttachment"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "description": "root doc",
                    "properties": {"spec": {"type": "object", "description": "the spec",
                        "properties": {"inner": {"type": "object", "x-kubernetes-embedded-resource": true}}}}}}}]}});
        let mut types = builtins();
        types.extend(types_from_crd(&crd));
        let docs = openapi_docs(&types);
        let doc = &docs["apis/acrattach.io/v1alpha1"];
        let s = &doc["components"]["schemas"]["io.acrattach.v1alpha1.RegistryAttachment"];
        assert_eq!(s["description"], "root doc");
        assert_eq!(s["properties"]["spec"]["description"], "the spec");
        assert_eq!(
            s["x-kubernetes-group-version-kind"],
            json!([{"group": "acrattach.io", "kind": "RegistryAttachment", "version": "v1alpha1"}])
        );
        assert_eq!(
            s["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        let inner = &s["properties"]["spec"]["properties"]["inner"];
        assert!(inner["properties"]["metadata"].is_object());
        assert_eq!(inner["required"], json!(["kind", "apiVersion"]));
        assert!(
            doc["components"]["schemas"]
                .get("io.acrattach.v1alpha1.RegistryAttachmentList")
                .is_some()
        );
        // Nothing from other groups leaks in, and every reference resolves.
        assert!(
            doc["components"]["schemas"]
                .get("io.k8s.api.coordination.v1.Lease")
                .is_none()
        );
        for d in docs.values() {
            all_refs_resolve(d);
        }
    }
}
