//! Hostile and malformed RegistryAttachments, sent as raw JSON the way a user's kubectl sends them
//! (`POST …?fieldValidation=Strict`, kubectl's default), to the Kubernetes API emulator with the
//! real CRD installed. Every case states where it must be stopped:
//!
//! - `AdmissionRefused`: the API server refuses it (the CRD's schema: types, patterns, enums,
//!   maxLength/maxItems, CEL rules, or strict decoding of unknown fields), naming the field; or
//! - `InvalidSpec`: the schema admits it and the real operator binary reports it Stalled with
//!   reason InvalidSpec, naming the field, without a finalizer and without one ARM request.
//!
//! A case stopped anywhere else fails the test. Cases that reveal a problem live in their own
//! `#[ignore = "BUG: …"]` tests at the end, with the outcome they should have.

#![cfg(feature = "sandbox")]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use acr_attach::crd::{FINALIZER, RegistryAttachment, RegistryAttachmentSpec, RegistryReference};
use acr_attach::sandbox::{Sandbox, install_crd, load_tenant};
use arm_emulator::Operation;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};

/// The sandbox tenant's subscription, resource group and legacy registry (the control's), and
/// its cluster's kubelet identity.
const SUB: &str = "00000000-0000-4000-8000-000000000001";
const RG: &str = "acr-attach-rg";
const CONTROL_REGISTRY: &str = "legacyacr";
const KUBELET: &str = "6b1e0000-0000-4000-8000-0000000000b1";
const NIL_GUID: &str = "00000000-0000-0000-0000-000000000000";
/// `maxLength` of metav1.Condition's message, which the CRD's Condition mirrors.
const CONDITION_MESSAGE_LIMIT: usize = 32768;

/// Replaced, in every case's JSON text, by a registry name of the case's own (`hostile007`), so
/// an ARM request made for a hostile object can be told from the control's.
const REG: &str = "{REG}";
/// kubectl's default for create and apply.
const STRICT: &str = "fieldValidation=Strict";
/// No `fieldValidation`: the server default (Warn), what kube-rs and client-go send by default.
const SERVER_DEFAULT: &str = "";

const API_PATH: &str = "/apis/acrattach.io/v1alpha1/registryattachments";

/// A valid registry id whose name is the case's own.
fn reg_id() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerRegistry/registries/{REG}"
    )
}

/// `/subscriptions/SUB/resourceGroups/RG/providers/{tail}`.
fn under_rg(tail: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/{tail}")
}

/// A user-assigned identity id in the tenant's subscription.
fn identity_id(name: &str) -> String {
    under_rg(&format!(
        "Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    ))
}

/// A spec naming the case's own registry by id, with `extra` merged in at the top level.
fn spec(extra: Value) -> Value {
    let mut spec = json!({"registry": {"resourceId": reg_id()}});
    if let (Some(base), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        base.extend(extra);
    }
    spec
}

fn by_id(resource_id: impl Into<Value>) -> Value {
    json!({"registry": {"resourceId": resource_id.into()}})
}

fn repositories(entries: &[&str]) -> Value {
    spec(json!({"repositories": entries}))
}

fn principals(entries: Value) -> Value {
    spec(json!({"principals": entries}))
}

fn guid(n: usize) -> String {
    format!("6b1e0000-0000-4000-8000-{n:012}")
}

/// Where a case must be stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    /// The API server answers `code` (422 Invalid, or 400 BadRequest for strict decoding) and
    /// its message names `field`.
    AdmissionRefused { code: u16, field: &'static str },
    /// Admitted; the operator reports Stalled/InvalidSpec with `field` in the message.
    InvalidSpec { field: &'static str },
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::AdmissionRefused { code, field } => {
                write!(f, "AdmissionRefused({code}, {field})")
            }
            Expect::InvalidSpec { field } => write!(f, "InvalidSpec({field})"),
        }
    }
}

struct Case {
    name: String,
    /// The request body, exactly as sent.
    body: String,
    query: &'static str,
    expect: Expect,
    /// The registry name only this case uses; no ARM request may ever contain it.
    marker: String,
}

#[derive(Default)]
struct Table(Vec<Case>);

impl Table {
    /// Adds a case whose body is `{apiVersion, kind, metadata: {name}, spec}`.
    fn case(&mut self, name: &str, expect: Expect, query: &'static str, spec: Value) {
        let body = json!({
            "apiVersion": "acrattach.io/v1alpha1",
            "kind": "RegistryAttachment",
            "metadata": {"name": name},
            "spec": spec,
        });
        self.raw(name, expect, query, body.to_string());
    }

    /// Adds a case with a body written by hand (`{REG}` is still replaced).
    fn raw(&mut self, name: &str, expect: Expect, query: &'static str, body: String) {
        let marker = format!("hostile{:03}", self.0.len());
        assert!(
            self.0.iter().all(|c| c.name != name),
            "case name {name} twice"
        );
        self.0.push(Case {
            name: name.to_string(),
            body: body.replace(REG, &marker),
            query,
            expect,
            marker,
        });
    }

    /// Refused by the schema or a CEL rule (422), sent as kubectl sends it.
    fn refused(&mut self, name: &str, field: &'static str, spec: Value) {
        let expect = Expect::AdmissionRefused { code: 422, field };
        self.case(name, expect, STRICT, spec);
    }

    /// Refused by strict decoding (400: unknown field), sent as kubectl sends it.
    fn unknown(&mut self, name: &str, field: &'static str, spec: Value) {
        let expect = Expect::AdmissionRefused { code: 400, field };
        self.case(name, expect, STRICT, spec);
    }

    /// Admitted, then Stalled/InvalidSpec by the operator.
    fn stalled(&mut self, name: &str, field: &'static str, spec: Value) {
        self.case(name, Expect::InvalidSpec { field }, STRICT, spec);
    }
}

/// Every case the schema or the operator stops today.
fn table() -> Table {
    let mut t = Table::default();
    let rid = "spec.registry.resourceId";

    // Registry ids: look-alikes, traversal, encodings. The schema's pattern refuses them all.
    let look_alikes: Vec<(&str, String)> = vec![
        (
            "id-wrong-provider",
            under_rg(&format!("Microsoft.Storage/storageAccounts/{REG}")),
        ),
        (
            "id-wrong-type",
            under_rg(&format!("Microsoft.ContainerService/managedClusters/{REG}")),
        ),
        (
            "id-registries-misspelt",
            under_rg(&format!("Microsoft.ContainerRegistry/registires/{REG}")),
        ),
        (
            "id-registry-singular",
            under_rg(&format!("Microsoft.ContainerRegistry/registry/{REG}")),
        ),
        // Cyrillic 'С' (U+0421) and 'о' (U+043E).
        (
            "id-cyrillic-es",
            under_rg(&format!(
                "Microsoft.\u{0421}ontainerRegistry/registries/{REG}"
            )),
        ),
        (
            "id-cyrillic-o",
            under_rg(&format!(
                "Micr\u{043e}soft.ContainerRegistry/registries/{REG}"
            )),
        ),
        // Cyrillic 'а' (U+0430) in the registry name.
        (
            "id-cyrillic-name",
            under_rg(&format!(
                "Microsoft.ContainerRegistry/registries/{REG}\u{0430}"
            )),
        ),
        (
            "id-fullwidth-slash",
            under_rg(&format!(
                "Microsoft.ContainerRegistry/registries\u{ff0f}{REG}"
            )),
        ),
        (
            "id-extra-segment",
            under_rg(&format!(
                "Microsoft.ContainerRegistry/registries/{REG}/replications/westus"
            )),
        ),
        (
            "id-dotdot-traversal",
            under_rg(&format!(
                "Microsoft.ContainerRegistry/registries/other/../{REG}"
            )),
        ),
        (
            "id-dotdot-group",
            format!(
                "/subscriptions/{SUB}/resourceGroups/../providers/Microsoft.ContainerRegistry/registries/{REG}"
            ),
        ),
        (
            "id-dot-slash",
            under_rg(&format!("Microsoft.ContainerRegistry/registries/./{REG}")),
        ),
        (
            "id-double-slash",
            format!(
                "/subscriptions/{SUB}/resourceGroups/{RG}//providers/Microsoft.ContainerRegistry/registries/{REG}"
            ),
        ),
        (
            "id-leading-double-slash",
            format!(
                "//subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerRegistry/registries/{REG}"
            ),
        ),
        ("id-trailing-slash", format!("{}/", reg_id())),
        (
            "id-percent-encoded-slash",
            under_rg(&format!("Microsoft.ContainerRegistry/registries%2F{REG}")),
        ),
        ("id-query", format!("{}?x=y", reg_id())),
        (
            "id-query-api-version",
            format!("{}?api-version=2015-01-01", reg_id()),
        ),
        ("id-fragment", format!("{}#fragment", reg_id())),
        ("id-nul", format!("{}\u{0}", reg_id())),
        ("id-control-bell", format!("{}\u{7}", reg_id())),
        ("id-zero-width-space", format!("{}\u{200b}", reg_id())),
        ("id-trailing-newline", format!("{}\n", reg_id())),
        (
            "id-subscription-braces",
            reg_id().replace(SUB, &format!("{{{SUB}}}")),
        ),
        (
            "id-subscription-no-dashes",
            reg_id().replace(SUB, &SUB.replace('-', "")),
        ),
    ];
    for (name, id) in look_alikes {
        t.refused(name, rid, by_id(id));
    }
    t.refused("id-empty", rid, by_id(""));
    // 301 characters: over maxLength (and no longer the pattern's shape).
    let marked_len = reg_id().replace(REG, "hostile000").len();
    let long = format!("{}{}", reg_id(), "a".repeat(301 - marked_len));
    assert_eq!(long.replace(REG, "hostile000").len(), 301);
    t.refused("id-301-chars", rid, by_id(long));

    // Registry names and the lookup scope.
    t.refused(
        "name-1mib",
        "spec.registry.name",
        json!({"registry": {"name": "a".repeat(1 << 20)}}),
    );
    t.refused(
        "name-nul",
        "spec.registry.name",
        json!({"registry": {"name": format!("{REG}\u{0}")}}),
    );
    t.refused(
        "name-zero-width-space",
        "spec.registry.name",
        json!({"registry": {"name": format!("{REG}\u{200b}")}}),
    );
    t.refused(
        "name-cyrillic",
        "spec.registry.name",
        json!({"registry": {"name": format!("{REG}\u{0430}")}}),
    );
    t.refused(
        "name-is-a-path",
        "spec.registry.name",
        json!({"registry": {"name": format!("../{REG}")}}),
    );
    t.refused(
        "name-trailing-space",
        "spec.registry.name",
        json!({"registry": {"name": format!("{REG} ")}}),
    );
    t.refused(
        "group-traversal",
        "spec.registry.resourceGroup",
        json!({"registry": {"name": REG, "resourceGroup": "../other"}}),
    );
    t.refused(
        "group-nul",
        "spec.registry.resourceGroup",
        json!({"registry": {"name": REG, "resourceGroup": "rg\u{0}"}}),
    );
    t.refused(
        "subscription-braces",
        "spec.registry.subscriptionId",
        json!({"registry": {"name": REG, "subscriptionId": format!("{{{SUB}}}")}}),
    );
    t.refused(
        "subscription-no-dashes",
        "spec.registry.subscriptionId",
        json!({"registry": {"name": REG, "subscriptionId": SUB.replace('-', "")}}),
    );

    // Conflicting fields: the CEL rules on spec.registry and on each principals entry.
    t.refused(
        "id-and-name",
        "spec.registry",
        json!({"registry": {"resourceId": reg_id(), "name": REG}}),
    );
    t.refused(
        "id-with-resource-group",
        "spec.registry",
        json!({"registry": {"resourceId": reg_id(), "resourceGroup": RG}}),
    );
    t.refused(
        "id-with-subscription",
        "spec.registry",
        json!({"registry": {"resourceId": reg_id(), "subscriptionId": SUB}}),
    );
    t.refused(
        "registry-empty-object",
        "spec.registry",
        json!({"registry": {}}),
    );
    t.refused(
        "principal-kubelet-and-object-id",
        "spec.principals[0]",
        principals(json!([{"kubelet": true, "objectId": guid(1)}])),
    );
    t.refused(
        "principal-kubelet-and-identity",
        "spec.principals[0]",
        principals(json!([{"kubelet": true, "identityResourceId": identity_id(REG)}])),
    );
    t.refused(
        "principal-object-id-and-identity",
        "spec.principals[0]",
        principals(json!([{"objectId": guid(1), "identityResourceId": identity_id(REG)}])),
    );
    t.refused(
        "principal-kubelet-false",
        "spec.principals[0]",
        principals(json!([{"kubelet": false}])),
    );
    t.refused(
        "principal-empty-entry",
        "spec.principals[1]",
        principals(json!([{"kubelet": true}, {}])),
    );

    // GUIDs.
    let braces = format!("{{{KUBELET}}}");
    t.refused(
        "object-id-braces",
        "spec.principal.objectId",
        spec(json!({"principal": {"objectId": braces}})),
    );
    t.refused(
        "object-id-no-dashes",
        "spec.principal.objectId",
        spec(json!({"principal": {"objectId": KUBELET.replace('-', "")}})),
    );
    t.refused(
        "object-id-urn",
        "spec.principal.objectId",
        spec(json!({"principal": {"objectId": format!("urn:uuid:{KUBELET}")}})),
    );
    t.refused(
        "object-id-trailing-newline",
        "spec.principal.objectId",
        spec(json!({"principal": {"objectId": format!("{KUBELET}\n")}})),
    );
    t.refused(
        "object-id-zero-width-space",
        "spec.principal.objectId",
        spec(json!({"principal": {"objectId": format!("\u{200b}{KUBELET}")}})),
    );
    t.refused(
        "object-id-nul",
        "spec.principal.objectId",
        spec(json!({"principal": {"objectId": format!("{KUBELET}\u{0}")}})),
    );
    t.refused(
        "principals-object-id-braces",
        "spec.principals[0].objectId",
        principals(json!([{"objectId": format!("{{{KUBELET}}}")}])),
    );
    t.refused(
        "principal-without-object-id",
        "spec.principal.objectId",
        spec(json!({"principal": {}})),
    );

    // Enums, with look-alike spellings.
    t.refused("role-owner", "spec.role", spec(json!({"role": "Owner"})));
    t.refused(
        "role-lower-case",
        "spec.role",
        spec(json!({"role": "acrpull"})),
    );
    t.refused(
        "role-nul-suffix",
        "spec.role",
        spec(json!({"role": "AcrPull\u{0}"})),
    );
    t.refused(
        "role-zero-width-space",
        "spec.role",
        spec(json!({"role": "Acr\u{200b}Pull"})),
    );
    t.refused(
        "deletion-policy-trailing-space",
        "spec.deletionPolicy",
        spec(json!({"deletionPolicy": "Orphan "})),
    );
    t.refused(
        "principal-type-application",
        "spec.principals[0].type",
        principals(json!([{"objectId": guid(1), "type": "Application"}])),
    );
    t.refused(
        "principal-type-lower-case",
        "spec.principals[0].type",
        principals(json!([{"objectId": guid(1), "type": "group"}])),
    );

    // Huge values and lists.
    let many: Vec<Value> = (1..=21).map(|n| json!({"objectId": guid(n)})).collect();
    t.refused("principals-21", "spec.principals", principals(json!(many)));
    let fifty_one: Vec<String> = (0..51).map(|n| format!("team-{n}/api")).collect();
    t.refused(
        "repositories-51",
        "spec.repositories",
        spec(json!({"repositories": fifty_one})),
    );
    let ten_thousand: Vec<String> = (0..10_000).map(|n| format!("team-{n}/api")).collect();
    t.refused(
        "repositories-10000",
        "spec.repositories",
        spec(json!({"repositories": ten_thousand})),
    );
    t.refused(
        "identity-401-chars",
        "spec.principals[0].identityResourceId",
        principals(json!([{"identityResourceId": identity_id(&"a".repeat(401))}])),
    );

    // Wrong JSON types.
    t.refused("spec-a-string", "spec", json!("legacyacr"));
    t.refused("spec-null", "spec", Value::Null);
    t.raw(
        "spec-missing",
        Expect::AdmissionRefused { code: 422, field: "spec" },
        STRICT,
        json!({"apiVersion": "acrattach.io/v1alpha1", "kind": "RegistryAttachment", "metadata": {"name": "spec-missing"}}).to_string(),
    );
    t.refused(
        "registry-a-string",
        "spec.registry",
        json!({"registry": reg_id()}),
    );
    t.refused(
        "registry-an-array",
        "spec.registry",
        json!({"registry": [reg_id()]}),
    );
    t.refused("registry-null", "spec.registry", json!({"registry": null}));
    t.refused("resource-id-a-number", rid, by_id(42));
    t.refused(
        "repositories-a-string",
        "spec.repositories",
        spec(json!({"repositories": "team-a/*"})),
    );
    t.refused(
        "repositories-null-entry",
        "spec.repositories[1]",
        spec(json!({"repositories": ["team-a/api", null]})),
    );
    t.refused(
        "repositories-number-entry",
        "spec.repositories[0]",
        spec(json!({"repositories": [7]})),
    );
    t.refused(
        "catalog-listing-yes",
        "spec.catalogListing",
        spec(json!({"catalogListing": "yes"})),
    );
    t.refused(
        "catalog-listing-one",
        "spec.catalogListing",
        spec(json!({"catalogListing": 1})),
    );
    // An object where the schema has an array: its keys are undeclared fields (pruning works
    // by the schema's shape, as kube-apiserver's does), so Strict refuses them as unknown...
    t.unknown(
        "principals-an-object",
        "spec.principals.objectId",
        spec(json!({"principals": {"objectId": KUBELET}})),
    );
    // ...and the server default prunes them and then finds an object, not an array.
    t.case(
        "principals-an-object-pruned",
        Expect::AdmissionRefused {
            code: 422,
            field: "spec.principals",
        },
        SERVER_DEFAULT,
        spec(json!({"principals": {"objectId": KUBELET}})),
    );
    t.refused(
        "principals-null-entry",
        "spec.principals[0]",
        principals(json!([null])),
    );
    t.refused(
        "object-id-a-number",
        "spec.principal.objectId",
        spec(json!({"principal": {"objectId": 12345}})),
    );
    t.refused(
        "kubelet-a-string",
        "spec.principals[0].kubelet",
        principals(json!([{"kubelet": "true"}])),
    );
    t.refused("role-a-number", "spec.role", spec(json!({"role": 1})));
    t.refused(
        "deletion-policy-a-bool",
        "spec.deletionPolicy",
        spec(json!({"deletionPolicy": true})),
    );

    // Unknown fields. kubectl's Strict refuses them (400); the server default prunes them, and
    // the pruned object is then judged as it is.
    t.unknown(
        "registry-id-strict",
        "spec.registry.id",
        json!({"registry": {"id": reg_id()}}),
    );
    t.unknown(
        "spec-extra-strict",
        "spec.extra",
        spec(json!({"extra": {"anything": true}})),
    );
    t.unknown(
        "spec-registry-capitalised-strict",
        "spec.Registry",
        json!({"Registry": {"resourceId": reg_id()}}),
    );
    t.unknown(
        "principal-object-id-miscased-strict",
        "spec.principals[0].objectID",
        principals(json!([{"objectID": KUBELET}])),
    );
    t.case(
        "registry-id-pruned",
        Expect::AdmissionRefused {
            code: 422,
            field: "spec.registry",
        },
        SERVER_DEFAULT,
        json!({"registry": {"id": reg_id()}}),
    );
    t.case(
        "principal-object-id-miscased-pruned",
        Expect::AdmissionRefused {
            code: 422,
            field: "spec.principals[0]",
        },
        SERVER_DEFAULT,
        principals(json!([{"objectID": KUBELET}])),
    );
    t.case(
        "spec-extra-pruned-then-bad-repository",
        Expect::InvalidSpec {
            field: "spec.repositories[0]",
        },
        SERVER_DEFAULT,
        spec(json!({"extra": {"anything": true}, "repositories": ["../x"]})),
    );

    // Admitted by the schema, refused by the operator: look-alike ids the pattern's (?i) lets in.
    // Unicode case folding, in Go's regexp as in the regex crate, maps 'ſ' (U+017F) to 's'.
    t.stalled(
        "id-long-s-subscriptions",
        rid,
        by_id(reg_id().replace("/subscriptions/", "/\u{17f}ubscriptions/")),
    );
    t.stalled(
        "id-long-s-provider",
        rid,
        by_id(reg_id().replace(
            "Microsoft.ContainerRegistry/registries",
            "Micro\u{17f}oft.ContainerRegi\u{17f}try/regi\u{17f}trie\u{17f}",
        )),
    );

    // Repository scopes: the schema has no pattern for them; the operator's OCI grammar refuses.
    let repository_cases: Vec<(&str, &str)> = vec![
        ("repo-dotdot", "../x"),
        ("repo-absolute", "/abs"),
        ("repo-double-slash", "a//b"),
        ("repo-upper-case", "UPPER"),
        ("repo-inner-wildcard", "a/*/b"),
        ("repo-bare-wildcard", "*"),
        ("repo-star-suffix", "a*"),
        ("repo-double-wildcard", "a/*/*"),
        ("repo-double-quote", "team\"a"),
        ("repo-single-quote", "team'a"),
        ("repo-backslash", "team\\a"),
        ("repo-condition-injection", "x') OR (true"),
        ("repo-or-true", ") OR (true"),
        ("repo-nul", "team-a\u{0}"),
        ("repo-control", "team-a\u{1b}[31m"),
        ("repo-newline", "team-a\napi"),
        ("repo-zero-width-space", "team\u{200b}a"),
        ("repo-cyrillic", "te\u{0430}m-a"),
        ("repo-empty", ""),
        ("repo-space-wildcard", "team-a/ *"),
        ("repo-trailing-slash", "team-a/"),
        ("repo-dot-component", "team-a/./api"),
    ];
    for (name, entry) in repository_cases {
        t.stalled(name, "spec.repositories[0]", repositories(&[entry]));
    }
    t.stalled(
        "repo-bad-after-good",
        "spec.repositories[2]",
        repositories(&["team-a/api", "team-b/*", "../../etc"]),
    );
    let long_name = "a".repeat(257);
    t.stalled(
        "repo-257-chars",
        "spec.repositories[0]",
        repositories(&[&long_name]),
    );
    t.stalled(
        "repositories-with-acr-pull",
        "spec.repositories",
        spec(json!({"role": "AcrPull", "repositories": ["team-a/api"]})),
    );

    // Principals the schema admits.
    t.stalled(
        "object-id-nil-guid",
        "spec.principal.objectId",
        spec(json!({"principal": {"objectId": NIL_GUID}})),
    );
    t.stalled(
        "principals-object-id-nil-guid",
        "spec.principals[0].objectId",
        principals(json!([{"objectId": NIL_GUID}])),
    );
    t.stalled(
        "principal-and-principals",
        "spec.principal",
        spec(json!({"principal": {"objectId": KUBELET}, "principals": [{"kubelet": true}]})),
    );
    t.stalled(
        "principals-duplicate-case",
        "spec.principals[1]",
        principals(json!([{"objectId": guid(1)}, {"objectId": guid(1).to_uppercase()}])),
    );
    t.stalled(
        "principals-kubelet-twice",
        "spec.principals[1]",
        principals(json!([{"kubelet": true}, {"kubelet": true}])),
    );
    t.stalled(
        "principals-kubelet-as-group",
        "spec.principals[0].type",
        principals(json!([{"kubelet": true, "type": "Group"}])),
    );
    t.stalled(
        "principals-identity-as-user",
        "spec.principals[0].type",
        principals(json!([{"identityResourceId": identity_id(REG), "type": "User"}])),
    );
    let identity = "spec.principals[0].identityResourceId";
    let identity_cases: Vec<(&str, String)> = vec![
        ("identity-is-a-registry", reg_id()),
        (
            "identity-cyrillic-provider",
            under_rg(&format!(
                "Microsoft.ManagedIdentit\u{0443}/userAssignedIdentities/{REG}"
            )),
        ),
        (
            "identity-long-s-provider",
            under_rg(&format!(
                "Micro\u{17f}oft.ManagedIdentity/userAssignedIdentities/{REG}"
            )),
        ),
        (
            "identity-dotdot-extra-segments",
            identity_id(&format!("x/../../{REG}")),
        ),
        (
            "identity-double-slash",
            format!(
                "/subscriptions/{SUB}/resourceGroups/{RG}//providers/Microsoft.ManagedIdentity/userAssignedIdentities/{REG}"
            ),
        ),
        (
            "identity-subscription-not-guid",
            identity_id(REG).replace(SUB, "prod"),
        ),
        (
            "identity-group-nul",
            identity_id(REG).replace(RG, "rg\u{0}"),
        ),
        ("identity-empty", String::new()),
    ];
    for (name, id) in identity_cases {
        let spec = principals(json!([{"identityResourceId": id}]));
        // The long s folds to "s" under the pattern's (?i:...), as in Go's regexp: admitted, and
        // refused by the operator's parser.
        if name == "identity-long-s-provider" {
            t.stalled(name, identity, spec);
        } else {
            t.refused(name, identity, spec);
        }
    }
    t
}

/// What the API server answered.
#[derive(Debug)]
enum Answer {
    Admitted {
        stored: Value,
        warnings: Vec<String>,
    },
    Refused {
        code: u16,
        reason: String,
        message: String,
        causes: Vec<String>,
    },
}

impl Answer {
    fn summary(&self) -> String {
        match self {
            Answer::Admitted { .. } => "admitted".to_string(),
            Answer::Refused {
                code,
                reason,
                message,
                ..
            } => {
                format!("{code} {reason}: {}", shorten(message))
            }
        }
    }
}

/// The first 300 characters, for messages that echo a 1 MiB value.
fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// POSTs `body` exactly as given, with `query` (e.g. `fieldValidation=Strict`).
async fn post_raw(client: &kube::Client, body: &str, query: &str) -> Answer {
    let mut request = kube::core::Request::new(API_PATH)
        .create(&PostParams::default(), body.as_bytes().to_vec())
        .expect("request");
    if !query.is_empty() {
        let uri = request.uri().to_string();
        let separator = if uri.ends_with('?') { "" } else { "&" };
        *request.uri_mut() = format!("{uri}{separator}{query}").parse().expect("uri");
    }
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .expect("the API server answers");
    let code = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|value| value.to_str().ok().map(str::to_string))
        .collect();
    let bytes = response
        .into_body()
        .collect_bytes()
        .await
        .expect("response body");
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{code}: not JSON ({e}): {}",
            shorten(&String::from_utf8_lossy(&bytes))
        )
    });
    if (200..300).contains(&code) {
        return Answer::Admitted {
            stored: answer,
            warnings,
        };
    }
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    Answer::Refused {
        code,
        reason: text(&answer["reason"]),
        message: text(&answer["message"]),
        causes: answer["details"]["causes"]
            .as_array()
            .map(|causes| causes.iter().map(|c| text(&c["field"])).collect())
            .unwrap_or_default(),
    }
}

/// Why an answer does not match a refusal naming `field`, if it does not.
fn refusal_mismatch(answer: &Answer, code: u16, field: &str) -> Option<String> {
    let Answer::Refused {
        code: got,
        reason,
        message,
        causes,
    } = answer
    else {
        return Some("admitted".to_string());
    };
    let (wanted_reason, names_field) = match code {
        // `RegistryAttachment.acrattach.io "x" is invalid: <field>: <detail>`, one cause per error.
        422 => (
            "Invalid",
            message.contains(&format!("{field}: ")) && causes.iter().any(|c| c == field),
        ),
        // `… strict decoding error: unknown field "<field>"`.
        400 => ("BadRequest", message.contains(&format!("\"{field}\""))),
        _ => unreachable!("cases expect 422 or 400"),
    };
    if *got != code || reason != wanted_reason {
        return Some(format!("got {}", answer.summary()));
    }
    if !names_field {
        return Some(format!(
            "the refusal does not name {field}: {} (causes {causes:?})",
            shorten(message)
        ));
    }
    None
}

/// The operator binary, `acr-attach run` against the sandbox's emulators (as tests/e2e.rs).
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn start(sandbox: &Sandbox, tag: &str) -> Operator {
        let identity = sandbox.arm.operator_identity();
        let endpoint = sandbox.arm.endpoint();
        let args: Vec<OsString> = [
            "run",
            "--credential",
            "client-secret",
            "--client-id",
            &identity.client_id,
            "--tenant-id",
            &sandbox.arm.tenant_id(),
            "--arm-endpoint",
            &endpoint,
            "--authority-host",
            &endpoint,
            "--cluster-resource-id",
            &sandbox.tenant.clusters[0].id,
            // No periodic resync in the test's time: every ARM request below has a cause.
            "--resync",
            "10m",
            "--metrics-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--log-filter",
            "info",
        ]
        .iter()
        .map(OsString::from)
        .chain([
            "--kubeconfig".into(),
            sandbox.kubeconfig.clone().into_os_string(),
            "--extra-ca-file".into(),
            sandbox.ca_file.clone().into_os_string(),
        ])
        .collect();
        let log = sandbox.dir.join(format!("operator-{tag}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_acr-attach"))
            .args(args)
            .env(
                "AZURE_CLIENT_SECRET",
                identity.client_secret.unwrap_or_default(),
            )
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start the operator binary");
        Operator { child, log }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Still running: it neither crashed nor exited on hostile input.
    fn assert_alive(&mut self) {
        let exited = self.child.try_wait().expect("try_wait");
        assert!(
            exited.is_none(),
            "the operator exited ({exited:?})\n{}",
            shorten_log(&self.logs())
        );
        assert!(
            !self.logs().contains("panicked"),
            "the operator panicked\n{}",
            shorten_log(&self.logs())
        );
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The log with each line cut short (one line carries a 1 MiB repository name).
fn shorten_log(log: &str) -> String {
    log.lines().map(shorten).collect::<Vec<_>>().join("\n")
}

/// Polls `check` every 200 ms (as tests/e2e.rs) until it returns Some, for up to 60 s.
async fn eventually<T>(
    what: &str,
    operator: &Operator,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n--- operator log ---\n{}",
            shorten_log(&operator.logs())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `(status, reason, message)` of one condition, once it describes the current generation.
fn condition(object: &RegistryAttachment, type_: &str) -> Option<(String, String, String)> {
    let generation = object.metadata.generation;
    object
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.observed_generation == generation)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// ARM requests, one line each, for failure messages.
fn arm_log(sandbox: &Sandbox) -> String {
    sandbox
        .arm
        .request_log()
        .iter()
        .map(|r| {
            format!(
                "{} {}?{} -> {} ({:?})",
                r.method, r.path, r.query, r.status, r.operation
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sends every case, runs the operator against what was admitted, and checks each case was
/// stopped where it says, with no ARM request for any of them. Returns the (refused, stalled)
/// counts.
async fn run(table: Table, tag: &str) -> (usize, usize) {
    let sandbox = Sandbox::start(load_tenant(None).unwrap(), None, 0, 0)
        .await
        .expect("sandbox starts");
    let client = sandbox.client().await.expect("kube client");
    install_crd(&client).await.expect("CRD installs");
    let api: Api<RegistryAttachment> = Api::all(client.clone());
    let cases = table.0;

    // Admission.
    let mut problems = Vec::new();
    let mut answers = Vec::new();
    for case in &cases {
        let answer = post_raw(&client, &case.body, case.query).await;
        let problem = match (&case.expect, &answer) {
            (Expect::AdmissionRefused { code, field }, _) => {
                refusal_mismatch(&answer, *code, field)
            }
            (Expect::InvalidSpec { .. }, Answer::Admitted { .. }) => None,
            (Expect::InvalidSpec { .. }, refused) => {
                Some(format!("refused at admission: {}", refused.summary()))
            }
        };
        if let Some(problem) = problem {
            problems.push(format!(
                "{} (expected {}): {problem}",
                case.name, case.expect
            ));
        }
        if matches!(answer, Answer::Refused { .. }) {
            assert!(
                api.get_opt(&case.name).await.unwrap().is_none(),
                "{}: refused, yet stored",
                case.name
            );
        }
        answers.push(answer);
    }
    println!("{:<40} {:<52} API SERVER", "CASE", "EXPECTED");
    for (case, answer) in cases.iter().zip(&answers) {
        let expected = case.expect.to_string();
        println!("{:<40} {expected:<52} {}", case.name, answer.summary());
    }
    assert!(
        problems.is_empty(),
        "{} case(s) not stopped where expected:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // What a real API server does with unknown fields under its default: prunes them, warns.
    for (case, answer) in cases.iter().zip(&answers) {
        if let Answer::Admitted { stored, warnings } = answer
            && case.body.contains("\"extra\"")
        {
            assert!(
                stored["spec"].get("extra").is_none(),
                "{}: pruned",
                case.name
            );
            assert!(
                warnings
                    .iter()
                    .any(|w| w.contains("unknown field \\\"spec.extra\\\"")),
                "{}: a Warning header names spec.extra: {warnings:?}",
                case.name
            );
        }
    }

    // Pruned, then valid: the server default admits a good spec with `spec.extra`, without it
    // (a dry run, so nothing is stored for the operator to attach).
    let good = json!({
        "apiVersion": "acrattach.io/v1alpha1",
        "kind": "RegistryAttachment",
        "metadata": {"name": "pruned-then-valid"},
        "spec": {"registry": {"resourceId": control_registry_id()}, "extra": {"anything": true}},
    });
    match post_raw(&client, &good.to_string(), "dryRun=All").await {
        Answer::Admitted { stored, warnings } => {
            assert_eq!(
                stored["spec"],
                json!({"registry": {"resourceId": control_registry_id()}, "role": "Auto", "deletionPolicy": "Delete"})
            );
            assert!(
                warnings
                    .iter()
                    .any(|w| w.contains("unknown field \\\"spec.extra\\\"")),
                "{warnings:?}"
            );
        }
        refused => panic!("pruned-then-valid: {}", refused.summary()),
    }
    assert!(api.get_opt("pruned-then-valid").await.unwrap().is_none());

    // The operator, against everything admitted.
    let admitted: Vec<(&Case, &'static str)> = cases
        .iter()
        .filter_map(|case| match case.expect {
            Expect::InvalidSpec { field } => Some((case, field)),
            Expect::AdmissionRefused { .. } => None,
        })
        .collect();
    let refused = cases.len() - admitted.len();
    let mut operator = Operator::start(&sandbox, tag);
    // Until each has settled (Stalled or Ready True); what has not by the deadline is reported
    // with the conditions it has.
    let deadline = Instant::now() + Duration::from_secs(60);
    let reported = loop {
        let list = api.list(&ListParams::default()).await.unwrap();
        let by_name: BTreeMap<String, RegistryAttachment> = list
            .items
            .into_iter()
            .map(|o| (o.metadata.name.clone().unwrap_or_default(), o))
            .collect();
        let settled = |name: &str| {
            by_name.get(name).is_some_and(|o| {
                ["Stalled", "Ready"]
                    .iter()
                    .any(|type_| condition(o, type_).is_some_and(|(status, _, _)| status == "True"))
            })
        };
        if admitted.iter().all(|(case, _)| settled(&case.name)) || Instant::now() > deadline {
            break by_name;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut problems = Vec::new();
    for (case, field) in &admitted {
        let object = &reported[&case.name];
        let Some((status, reason, message)) = condition(object, "Stalled") else {
            problems.push(format!("{}: no status for its generation", case.name));
            continue;
        };
        if (status.as_str(), reason.as_str()) != ("True", "InvalidSpec") {
            problems.push(format!(
                "{}: Stalled={status} {reason}: {}",
                case.name,
                shorten(&message)
            ));
        } else if !message.contains(&format!("{field}: ")) {
            problems.push(format!(
                "{}: the message does not name {field}: {}",
                case.name,
                shorten(&message)
            ));
        }
        let ready = condition(object, "Ready").map(|(status, _, _)| status);
        if ready.as_deref() != Some("False") {
            problems.push(format!("{}: Ready {ready:?}", case.name));
        }
        if object.has_finalizer() {
            problems.push(format!("{}: has the finalizer {FINALIZER}", case.name));
        }
        // metav1.Condition's bound: a message that echoes a huge value without limit would make
        // the status write exceed etcd's request limit (1.5 MiB) on a real cluster.
        for (type_, message) in object
            .status
            .iter()
            .flat_map(|s| &s.conditions)
            .map(|c| (&c.type_, &c.message))
        {
            if message.len() > CONDITION_MESSAGE_LIMIT {
                problems.push(format!(
                    "{}: the {type_} message is {} bytes, over {CONDITION_MESSAGE_LIMIT}",
                    case.name,
                    message.len()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) with admitted cases:\n{}\n--- ARM requests ---\n{}",
        problems.len(),
        problems.join("\n"),
        arm_log(&sandbox)
    );
    // Each one is told as a Warning event too (what `kubectl describe` shows).
    let events: Api<Event> = Api::all(client.clone());
    eventually(
        "an InvalidSpec event for every admitted case",
        &operator,
        async || {
            let events = events.list(&ListParams::default()).await.ok()?.items;
            let missing: Vec<&str> = admitted
                .iter()
                .map(|(case, _)| case.name.as_str())
                .filter(|name| {
                    !events.iter().any(|e| {
                        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                            && e.reason.as_deref() == Some("InvalidSpec")
                            && e.type_.as_deref() == Some("Warning")
                    })
                })
                .collect();
            missing.is_empty().then_some(())
        },
    )
    .await;

    // Not one ARM request so far, not even the token exchange: nothing needed Azure.
    assert!(
        sandbox.arm.request_log().is_empty() && sandbox.arm.counts().total() == 0,
        "ARM requests for hostile objects:\n{}",
        arm_log(&sandbox)
    );

    // A known-good control proves the operator reaches Azure: it attaches, and every ARM
    // request from here on is the control's.
    let control = RegistryAttachment::new(
        "control",
        RegistryAttachmentSpec {
            registry: RegistryReference::by_id(control_registry_id()),
            role: Default::default(),
            principal: None,
            principals: Vec::new(),
            repositories: Vec::new(),
            catalog_listing: false,
            deletion_policy: Default::default(),
        },
    );
    api.create(&PostParams::default(), &control).await.unwrap();
    eventually("the control Ready", &operator, async || {
        let object = api.get("control").await.ok()?;
        let (status, _, _) = condition(&object, "Ready")?;
        (status == "True").then_some(())
    })
    .await;
    // A few seconds more, for anything a hostile object might still set off.
    tokio::time::sleep(Duration::from_secs(3)).await;
    operator.assert_alive();

    // Exactly the control's attach, once: sign-in, the kubelet identity from the cluster, the
    // registry, its assignments, the PUT. Nothing names a hostile object's registry.
    let log = sandbox.arm.request_log();
    println!("ARM requests:\n{}", arm_log(&sandbox));
    for request in &log {
        let path = format!("{}?{}", request.path, request.query).to_ascii_lowercase();
        for case in &cases {
            assert!(
                !path.contains(&case.marker),
                "an ARM request for {}: {} {path}",
                case.name,
                request.method
            );
        }
    }
    let registry = control_registry_id();
    let cluster = &sandbox.tenant.clusters[0].id;
    let assignments = format!("{registry}/providers/Microsoft.Authorization/roleAssignments");
    let seen: Vec<(Option<Operation>, &str, bool)> = log
        .iter()
        .map(|r| {
            let target = match r.operation {
                Some(Operation::Token) => true,
                Some(Operation::GetManagedCluster) => r.path == *cluster,
                Some(Operation::GetRegistry) => r.path == registry,
                Some(Operation::ListRoleAssignments) => r.path == assignments,
                Some(Operation::PutRoleAssignment) => {
                    r.path.starts_with(&format!("{assignments}/"))
                }
                _ => false,
            };
            (r.operation, r.method.as_str(), target)
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Some(Operation::Token), "POST", true),
            (Some(Operation::GetManagedCluster), "GET", true),
            (Some(Operation::GetRegistry), "GET", true),
            (Some(Operation::ListRoleAssignments), "GET", true),
            (Some(Operation::PutRoleAssignment), "PUT", true),
        ],
        "ARM requests beyond the control's:\n{}",
        arm_log(&sandbox)
    );
    assert_eq!(sandbox.arm.counts().total(), 5);
    assert_eq!(sandbox.arm.role_assignments().len(), 1);

    // The hostile objects are as they were: Stalled, without a finalizer.
    for (case, _) in &admitted {
        let object = api.get(&case.name).await.unwrap();
        assert!(!object.has_finalizer(), "{}", case.name);
        let (status, reason, _) = condition(&object, "Stalled").unwrap();
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "InvalidSpec"),
            "{}",
            case.name
        );
    }
    println!(
        "{} cases: {refused} refused at admission, {} admitted and reported InvalidSpec",
        cases.len(),
        admitted.len()
    );
    (refused, admitted.len())
}

#[tokio::test]
async fn hostile_specs_are_refused_at_admission_or_stalled_without_azure() {
    let (refused, stalled) = run(table(), "hostile").await;
    assert!(refused + stalled >= 50, "{refused} + {stalled}");
    assert!(refused > 0 && stalled > 0);
}

// ---- Cases that reveal a problem, each with the outcome it should have. ----

/// The control's registry, which exists: so what follows the registry read is exercised too.
fn control_registry_id() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ContainerRegistry/registries/{CONTROL_REGISTRY}"
    )
}

/// An identity's name goes into an ARM URL: the schema's pattern refuses anything that could climb,
/// list, query or read differently (found by this test when the schema had only a maxLength and
/// the operator did not check the name; `IdentityId::parse` now refuses the same names, see
/// tests/invalid_specs.rs).
#[tokio::test]
async fn identity_names_are_checked_before_any_arm_request() {
    let mut t = Table::default();
    let field = "spec.principals[0].identityResourceId";
    let names: Vec<(&str, String)> = vec![
        ("identity-name-dotdot", "..".to_string()),
        ("identity-name-dot", ".".to_string()),
        ("identity-name-empty", String::new()),
        ("identity-name-percent-dotdot", "%2e%2e".to_string()),
        (
            "identity-name-encoded-traversal",
            format!("..%2F..%2F..%2Fproviders%2FMicrosoft.ContainerRegistry%2Fregistries%2F{REG}"),
        ),
        (
            "identity-name-query",
            format!("{REG}?api-version=2015-01-01"),
        ),
        ("identity-name-fragment", format!("{REG}#fragment")),
        ("identity-name-nul", format!("{REG}\u{0}")),
        ("identity-name-zero-width-space", format!("{REG}\u{200b}")),
        ("identity-name-space", format!("{REG} x")),
    ];
    for (name, identity) in names {
        let spec = json!({
            "registry": {"resourceId": control_registry_id()},
            "principals": [{"identityResourceId": identity_id(&identity)}],
        });
        t.refused(name, field, spec);
    }
    run(t, "identity-names").await;
}

/// The nil GUID is refused as an object id, but accepted as a subscription id and sent to ARM.
#[tokio::test]
async fn nil_subscription_ids_never_reach_arm() {
    let mut t = Table::default();
    t.stalled(
        "id-nil-subscription",
        "spec.registry.resourceId",
        by_id(reg_id().replace(SUB, NIL_GUID)),
    );
    t.stalled(
        "name-nil-subscription",
        "spec.registry.subscriptionId",
        json!({"registry": {"name": REG, "subscriptionId": NIL_GUID}}),
    );
    run(t, "nil-subscription").await;
}

/// A 1 MiB repository entry is refused at admission (entries are at most 258 bytes); before, it
/// was admitted and echoed whole into two 1 MiB condition messages. The operator's own bound on
/// messages is tested in tests/invalid_specs.rs.
#[tokio::test]
async fn a_huge_repository_entry_is_refused_at_admission() {
    let mut t = Table::default();
    let mib = "a".repeat(1 << 20);
    t.refused("repo-1mib", "spec.repositories[0]", repositories(&[&mib]));
    run(t, "huge-entry").await;
}

/// The Events API limits a note to 1024 bytes: a message of multi-byte characters longer than
/// that still gets its Warning event (the note is cut on a character boundary, by bytes).
#[tokio::test]
async fn a_long_multibyte_message_still_gets_its_warning_event() {
    let mut t = Table::default();
    // Eight entries of 125 Cyrillic letters (250 bytes each, within the schema's 258): the
    // InvalidSpec message quotes each, well over 1024 bytes in all.
    let cyrillic = "\u{0444}".repeat(125);
    let entries: Vec<&str> = std::iter::repeat_n(cyrillic.as_str(), 8).collect();
    t.stalled(
        "repo-cyrillic",
        "spec.repositories[0]",
        repositories(&entries),
    );
    run(t, "multibyte").await;
}

/// A JSON object with a key twice. kube-apiserver's strict decoding (kubectl's default) refuses
/// duplicate fields with 400; only Warn and Ignore keep the last value. The emulator keeps the
/// last value under Strict too, so here the valid second id hides the hostile first one.
#[tokio::test]
#[ignore = "EMULATOR GAP: emulators/kube does not refuse duplicate JSON keys under fieldValidation=Strict"]
async fn duplicate_keys_are_refused_by_strict_decoding() {
    let mut t = Table::default();
    let body = format!(
        r#"{{"apiVersion":"acrattach.io/v1alpha1","kind":"RegistryAttachment","metadata":{{"name":"duplicate-resource-id"}},"spec":{{"registry":{{"resourceId":{},"resourceId":{}}}}}}}"#,
        json!(format!("{}/../../../x", reg_id())),
        json!(reg_id())
    );
    t.raw(
        "duplicate-resource-id",
        Expect::AdmissionRefused {
            code: 400,
            field: "spec.registry.resourceId",
        },
        STRICT,
        body,
    );
    run(t, "duplicate-keys").await;
}
