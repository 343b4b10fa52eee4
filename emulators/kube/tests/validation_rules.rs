//! CRD validation rules (`x-kubernetes-validations`) through the kube-rs client: every write
//! path (create, PUT, merge/JSON patch, server-side apply, `/status`), transition rules,
//! ratcheting, `reason`/`fieldPath`/`messageExpression`, and CRDs refused because a rule does
//! not compile — with kube-apiserver's `422` bodies.

mod common;

use common::client;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_emulator::KubeEmulator;
use serde_json::{Value, json};

const CRD: &str = "registrybindings.acrattach.io";
const EXACTLY_ONE: &str = "exactly one of name or resourceId must be set";
const WILDCARD_RULE: &str = "self.all(r, r.endsWith('/*') || !r.contains('*'))";

fn crd_json(extra_spec_rules: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD},
        "spec": {
            "group": "acrattach.io",
            "scope": "Cluster",
            "names": {"kind": "RegistryBinding", "plural": "registrybindings", "singular": "registrybinding"},
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "x-kubernetes-validations": extra_spec_rules,
                            "properties": {
                                "registry": {
                                    "type": "object",
                                    "x-kubernetes-validations": [
                                        {"rule": "has(self.name) != has(self.resourceId)", "message": EXACTLY_ONE}
                                    ],
                                    "properties": {"name": {"type": "string"}, "resourceId": {"type": "string"}}
                                },
                                "repositories": {
                                    "type": "array", "items": {"type": "string"},
                                    "x-kubernetes-validations": [{"rule": WILDCARD_RULE}]
                                },
                                "role": {
                                    "type": "string",
                                    "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "role is immutable"}]
                                },
                                "legacy": {"type": "string"}
                            }
                        },
                        "status": {
                            "type": "object",
                            "x-kubernetes-validations": [{
                                "rule": "self.phase != 'Failed' || has(self.reason)",
                                "fieldPath": ".reason", "reason": "FieldValueRequired",
                                "messageExpression": "'phase ' + self.phase + ' needs a reason'"
                            }],
                            "properties": {"phase": {"type": "string"}, "reason": {"type": "string"}}
                        }
                    }
                }}
            }]
        }
    })
}

fn base_rules() -> Value {
    json!([{"rule": "!has(self.legacy)", "fieldPath": ".legacy", "reason": "FieldValueForbidden",
            "message": "legacy registries are no longer supported"}])
}

async fn setup(spec_rules: Value) -> (KubeEmulator, kube::Client, Api<DynamicObject>) {
    let emu = KubeEmulator::start().await.expect("emulator starts");
    let client = client(&emu).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(crd_json(spec_rules)).unwrap();
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("CRD with valid rules is accepted");
    let gvk = GroupVersionKind::gvk("acrattach.io", "v1alpha1", "RegistryBinding");
    let api = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "registrybindings"),
    );
    (emu, client, api)
}

fn binding(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "acrattach.io/v1alpha1", "kind": "RegistryBinding",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

fn status_of(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn causes(s: &kube::core::Status) -> Vec<(String, String, String)> {
    s.details
        .as_ref()
        .expect("details")
        .causes
        .iter()
        .map(|c| (c.reason.clone(), c.message.clone(), c.field.clone()))
        .collect()
}

#[tokio::test]
async fn rules_refuse_invalid_objects_on_create() {
    let (_emu, _client, api) = setup(base_rules()).await;
    let pp = PostParams::default();

    let err = status_of(
        api.create(
            &pp,
            &binding(
                "both",
                json!({"registry": {"name": "r", "resourceId": "/x"}}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert_eq!(err.reason, "Invalid");
    assert_eq!(
        err.message,
        format!(
            "RegistryBinding.acrattach.io \"both\" is invalid: spec.registry: Invalid value: \"object\": {EXACTLY_ONE}"
        )
    );
    let details = err.details.clone().unwrap();
    assert_eq!(
        (
            details.name.as_str(),
            details.group.as_str(),
            details.kind.as_str()
        ),
        ("both", "acrattach.io", "RegistryBinding")
    );
    assert_eq!(
        causes(&err),
        vec![(
            "FieldValueInvalid".into(),
            format!("Invalid value: \"object\": {EXACTLY_ONE}"),
            "spec.registry".into()
        )]
    );
    // Neither is as wrong as both.
    assert!(
        api.create(&pp, &binding("neither", json!({"registry": {}})))
            .await
            .is_err()
    );

    // A list rule, without a message: the default names the rule.
    let err = status_of(
        api.create(
            &pp,
            &binding(
                "wild",
                json!({"registry": {"name": "r"}, "repositories": ["team/*", "a*b"]}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.message,
        format!(
            "RegistryBinding.acrattach.io \"wild\" is invalid: spec.repositories: Invalid value: \"array\": failed rule: {WILDCARD_RULE}"
        )
    );

    // reason and fieldPath shape the error.
    let err = status_of(
        api.create(
            &pp,
            &binding(
                "legacy",
                json!({"registry": {"name": "r"}, "legacy": "yes"}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        causes(&err),
        vec![(
            "FieldValueForbidden".into(),
            "Forbidden: legacy registries are no longer supported".into(),
            "spec.legacy".into()
        )]
    );

    // Schema errors that make the object unusable block the rules (`hasBlockingErr`).
    let err = status_of(
        api.create(
            &pp,
            &binding(
                "typed",
                json!({"registry": {"name": "r", "resourceId": "/x"}, "role": 5}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "RegistryBinding.acrattach.io \"typed\" is invalid: [spec.role: Invalid value: \"integer\": spec.role in body must be of type string: \"integer\", <nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]"
    );

    // Valid objects (an absent optional field is not validated; transition rules skip create).
    let ok = api
        .create(
            &pp,
            &binding(
                "ok",
                json!({"registry": {"resourceId": "/x"}, "repositories": ["team/*", "b"], "role": "AcrPull"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(ok.data["spec"]["role"], "AcrPull");
    api.create(&pp, &binding("minimal", json!({})))
        .await
        .unwrap();
}

#[tokio::test]
async fn rules_apply_to_every_update_path() {
    let (_emu, _client, api) = setup(base_rules()).await;
    let created = api
        .create(
            &PostParams::default(),
            &binding("x", json!({"registry": {"name": "r"}, "role": "AcrPull"})),
        )
        .await
        .unwrap();
    let immutable = "RegistryBinding.acrattach.io \"x\" is invalid: spec.role: Invalid value: \"string\": role is immutable";

    // PUT.
    let mut changed = created.clone();
    changed.data["spec"]["role"] = json!("Auto");
    let err = status_of(
        api.replace("x", &PostParams::default(), &changed)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.message, immutable);

    // Merge patch, JSON patch, apply.
    let err = status_of(
        api.patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"role": "Auto"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.message, immutable);
    let err = status_of(
        api.patch(
            "x",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(
                    json!([{"op": "replace", "path": "/spec/role", "value": "Auto"}]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.message, immutable);
    let err = status_of(
        api.patch(
            "x",
            &PatchParams::apply("tester").force(),
            &Patch::Apply(
                json!({"apiVersion": "acrattach.io/v1alpha1", "kind": "RegistryBinding",
                "metadata": {"name": "x"}, "spec": {"registry": {"name": "r"}, "role": "Auto"}}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.message, immutable);

    // A patch breaking a non-transition rule.
    let err = status_of(
        api.patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"registry": {"resourceId": "/x"}}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.message,
        format!(
            "RegistryBinding.acrattach.io \"x\" is invalid: spec.registry: Invalid value: \"object\": {EXACTLY_ONE}"
        )
    );

    // Allowed changes go through, and the object is unchanged by the refusals.
    let ok = api
        .patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"repositories": ["a/*"]}})),
        )
        .await
        .unwrap();
    assert_eq!(ok.data["spec"]["role"], "AcrPull");
    assert_eq!(ok.metadata.generation, Some(2));
}

#[tokio::test]
async fn status_writes_run_status_rules_and_ratchet_the_rest() {
    let (_emu, client, api) = setup(base_rules()).await;
    api.create(
        &PostParams::default(),
        &binding(
            "x",
            json!({"registry": {"name": "r"}, "repositories": ["a", "b"]}),
        ),
    )
    .await
    .unwrap();

    let err = status_of(
        api.patch_status(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Failed"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "RegistryBinding.acrattach.io \"x\" is invalid: status.reason: Required value: phase Failed needs a reason"
    );
    assert_eq!(
        causes(&err),
        vec![(
            "FieldValueRequired".into(),
            "Required value: phase Failed needs a reason".into(),
            "status.reason".into()
        )]
    );
    api.patch_status(
        "x",
        &PatchParams::apply("acr-attach").force(),
        &Patch::Apply(
            json!({"apiVersion": "acrattach.io/v1alpha1", "kind": "RegistryBinding",
            "metadata": {"name": "x"}, "status": {"phase": "Failed", "reason": "NotFound"}}),
        ),
    )
    .await
    .unwrap();

    // A rule added later that the stored spec breaks: unchanged values only warn (ratcheting),
    // so status writes and metadata-only writes still work; changing the spec does not.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut rules = base_rules();
    rules.as_array_mut().unwrap().push(json!({
        "rule": "!has(self.repositories) || size(self.repositories) <= 1",
        "message": "at most one repository"
    }));
    crds.patch(
        CRD,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"versions": crd_json(rules)["spec"]["versions"]}})),
    )
    .await
    .unwrap();
    api.patch_status(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Ready", "reason": null}})),
    )
    .await
    .expect("the spec is unchanged: its failing rule is ratcheted");
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
    )
    .await
    .expect("metadata-only writes are ratcheted too");
    let err = status_of(
        api.patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"repositories": ["a", "b", "c"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "RegistryBinding.acrattach.io \"x\" is invalid: spec: Invalid value: \"object\": at most one repository"
    );
}

#[tokio::test]
async fn crds_whose_rules_do_not_compile_are_refused() {
    let emu = KubeEmulator::start().await.unwrap();
    let client = client(&emu).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let bad: CustomResourceDefinition = serde_json::from_value(crd_json(json!([
        {"rule": "has(self.namespace)", "message": "needs a namespace"}
    ])))
    .unwrap();
    let err = status_of(crds.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(err.code, 422);
    assert_eq!(err.reason, "Invalid");
    let cause = "spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule";
    let value = "apiextensions.ValidationRule{Rule:\"has(self.namespace)\", Message:\"needs a namespace\", MessageExpression:\"\", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:\"\", OptionalOldSelf:(*bool)(nil)}";
    let detail = "compilation failed: ERROR: <input>:1:4: undefined field 'namespace'\n | has(self.namespace)\n | ...^";
    assert_eq!(
        err.message,
        format!(
            "CustomResourceDefinition.apiextensions.k8s.io \"{CRD}\" is invalid: {cause}: Invalid value: {value}: {detail}"
        )
    );
    assert_eq!(
        causes(&err),
        vec![(
            "FieldValueInvalid".into(),
            format!("Invalid value: {value}: {detail}"),
            cause.into()
        )]
    );

    // A syntax error, and a rule that is not a boolean.
    let bad: CustomResourceDefinition = serde_json::from_value(crd_json(json!([
        {"rule": "self.legacy =="}, {"rule": "self.legacy"}
    ])))
    .unwrap();
    let err = status_of(crds.create(&PostParams::default(), &bad).await.unwrap_err());
    let msgs: Vec<String> = causes(&err).into_iter().map(|c| c.1).collect();
    assert!(
        msgs[0].contains(": compilation failed: ERROR: <input>:1:15: Syntax error: mismatched input '<EOF>' expecting"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].ends_with(": cel expression must evaluate to a bool"),
        "{msgs:?}"
    );
    // Nothing was registered.
    assert!(crds.get_opt(CRD).await.unwrap().is_none());
}

/// The CRD acr-attach ships carries a rule on `spec.principals[*]`: it must be accepted and
/// enforced (null-valued fields count as absent, as in kube-apiserver).
#[tokio::test]
async fn the_shipped_crd_rule_is_enforced() {
    let emu = KubeEmulator::start().await.unwrap();
    let client = client(&emu).await;
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../crds/registryattachments.acrattach.io.yaml");
    let text = std::fs::read_to_string(path).expect("the shipped CRD is readable");
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).expect("a CRD");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("the shipped CRD's rules compile");
    let gvk = GroupVersionKind::gvk("acrattach.io", "v1alpha1", "RegistryAttachment");
    let api: Api<DynamicObject> = Api::all_with(client, &ApiResource::from_gvk(&gvk));
    let guid = "00000000-0000-0000-0000-000000000001";
    let object = |name: &str, principals: Value| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "acrattach.io/v1alpha1", "kind": "RegistryAttachment",
            "metadata": {"name": name},
            "spec": {"registry": {"resourceId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/sample1"},
                     "principals": principals}
        }))
        .unwrap()
    };
    let err = status_of(
        api.create(
            &PostParams::default(),
            &object(
                "two",
                json!([{"kubelet": true}, {"objectId": guid, "kubelet": true}]),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "RegistryAttachment.acrattach.io \"two\" is invalid: spec.principals[1]: Invalid value: \"object\": set exactly one of objectId, identityResourceId or kubelet: true"
    );
    api.create(
        &PostParams::default(),
        &object(
            "fine",
            json!([{"kubelet": true, "objectId": null}, {"objectId": guid, "kubelet": false}]),
        ),
    )
    .await
    .expect("one identity per entry");
}
