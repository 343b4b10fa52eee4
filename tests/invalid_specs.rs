//! Bad input never reaches Azure: every spec here is refused with a condition naming the field and
//! the fix, without a finalizer and without a single ARM request. Where the CRD schema can refuse
//! the same input at admission, the test checks that its pattern does.

mod common;

use acr_attach::controller::KubeletIdentity;
use acr_attach::crd::{
    DeletionPolicy, GUID_PATTERN, PrincipalReference, PrincipalSpec, REGISTRY_ID_PATTERN,
    RegistryAttachmentSpec, RegistryReference, RoleChoice,
};
use acr_attach::decide::reasons;
use acr_attach::model::PrincipalId;
use common::*;

const SUBSCRIPTION: &str = "00000000-0000-4000-8000-000000000001";

fn registry_with(path: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/images/providers/{path}")
}

/// (name, spec, field named in the message, refused by the CRD schema too)
fn table() -> Vec<(&'static str, RegistryAttachmentSpec, &'static str, bool)> {
    let id = |text: String| spec(&text);
    let mut rows = vec![
        ("empty-id", id(String::new()), "spec.registry.resourceId", true),
        ("name-only", id("sharedimages".into()), "spec.registry.resourceId", true),
        ("no-leading-slash", id(registry_with("Microsoft.ContainerRegistry/registries/sharedimages")[1..].to_string()), "spec.registry.resourceId", true),
        ("subscription-not-guid", id("/subscriptions/prod/resourceGroups/images/providers/Microsoft.ContainerRegistry/registries/sharedimages".into()), "spec.registry.resourceId", true),
        ("wrong-provider", id(registry_with("Microsoft.Storage/storageAccounts/sharedimages")), "spec.registry.resourceId", true),
        ("cluster-not-registry", id(registry_with("Microsoft.ContainerService/managedClusters/aks1")), "spec.registry.resourceId", true),
        ("extra-segment", id(registry_with("Microsoft.ContainerRegistry/registries/sharedimages/replications/westus")), "spec.registry.resourceId", true),
        ("trailing-slash", id(registry_with("Microsoft.ContainerRegistry/registries/sharedimages/")), "spec.registry.resourceId", true),
        ("registry-name-too-short", id(registry_with("Microsoft.ContainerRegistry/registries/acr")), "spec.registry.resourceId", true),
        ("registry-name-with-dash", id(registry_with("Microsoft.ContainerRegistry/registries/shared-images")), "spec.registry.resourceId", true),
        ("registry-name-too-long", id(registry_with(&format!("Microsoft.ContainerRegistry/registries/{}", "a".repeat(51)))), "spec.registry.resourceId", true),
        ("group-ends-with-dot", id(format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/images./providers/Microsoft.ContainerRegistry/registries/sharedimages")), "spec.registry.resourceId", true),
        ("group-too-long", id(format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{}/providers/Microsoft.ContainerRegistry/registries/sharedimages", "g".repeat(91))), "spec.registry.resourceId", true),
        ("whitespace", id(format!(" {}", registry("legacyacr"))), "spec.registry.resourceId", true),
    ];
    let reference = |reference: RegistryReference| RegistryAttachmentSpec {
        registry: reference,
        ..spec(&registry("legacyacr"))
    };
    rows.extend([
        (
            "id-and-name",
            reference(RegistryReference {
                name: Some("legacyacr".into()),
                ..RegistryReference::by_id(registry("legacyacr"))
            }),
            "spec.registry",
            true,
        ),
        (
            "neither-id-nor-name",
            reference(RegistryReference::default()),
            "spec.registry",
            true,
        ),
        (
            "id-with-resource-group",
            reference(RegistryReference {
                resource_group: Some("images".into()),
                ..RegistryReference::by_id(registry("legacyacr"))
            }),
            "spec.registry",
            true,
        ),
        (
            "id-with-subscription",
            reference(RegistryReference {
                subscription_id: Some(SUBSCRIPTION.into()),
                ..RegistryReference::by_id(registry("legacyacr"))
            }),
            "spec.registry",
            true,
        ),
        (
            "name-with-dash",
            reference(RegistryReference::by_name("legacy-acr")),
            "spec.registry.name",
            true,
        ),
        (
            "name-too-short",
            reference(RegistryReference::by_name("acr")),
            "spec.registry.name",
            true,
        ),
        (
            "name-with-path",
            reference(RegistryReference::by_name(registry("legacyacr"))),
            "spec.registry.name",
            true,
        ),
        (
            "name-subscription-not-guid",
            reference(RegistryReference {
                subscription_id: Some("prod".into()),
                ..RegistryReference::by_name("legacyacr")
            }),
            "spec.registry.subscriptionId",
            true,
        ),
        (
            "name-group-ends-with-dot",
            reference(RegistryReference {
                resource_group: Some("images.".into()),
                ..RegistryReference::by_name("legacyacr")
            }),
            "spec.registry.resourceGroup",
            true,
        ),
        (
            "name-with-whitespace",
            reference(RegistryReference::by_name("legacyacr ")),
            "spec.registry.name",
            true,
        ),
    ]);
    // The nil GUID passes the schema's GUID pattern; no subscription has it.
    const NIL: &str = "00000000-0000-0000-0000-000000000000";
    rows.push((
        "nil-subscription-in-id",
        id(registry("legacyacr").replace(SUBSCRIPTION, NIL)),
        "spec.registry.resourceId",
        false,
    ));
    rows.push((
        "name-nil-subscription",
        reference(RegistryReference {
            subscription_id: Some(NIL.into()),
            ..RegistryReference::by_name("legacyacr")
        }),
        "spec.registry.subscriptionId",
        false,
    ));
    // An identity's name goes into an ARM URL: the operator refuses what could climb, list, query
    // or be read differently, as the CRD's pattern does.
    let identity = |name: &str| RegistryAttachmentSpec {
        principals: vec![PrincipalSpec {
            identity_resource_id: Some(format!(
                "/subscriptions/{SUBSCRIPTION}/resourceGroups/images/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
            )),
            ..Default::default()
        }],
        ..spec(&registry("legacyacr"))
    };
    for (case, name) in [
        ("identity-name-dotdot", ".."),
        ("identity-name-empty", ""),
        ("identity-name-query", "pool?api-version=2015-01-01"),
        ("identity-name-fragment", "pool#x"),
        ("identity-name-percent", "%2e%2e"),
        ("identity-name-nul", "pool\u{0}"),
    ] {
        rows.push((
            case,
            identity(name),
            "spec.principals[0].identityResourceId",
            true,
        ));
    }
    let good = registry("legacyacr");
    let with_principal = |object_id: &str| RegistryAttachmentSpec {
        principal: Some(PrincipalReference {
            object_id: object_id.to_string(),
        }),
        ..spec(&good)
    };
    rows.push((
        "principal-not-guid",
        with_principal("kubelet-identity"),
        "spec.principal.objectId",
        true,
    ));
    rows.push((
        "principal-guid-without-dashes",
        with_principal("5a1e0000111142228333000000000001"),
        "spec.principal.objectId",
        true,
    ));
    rows.push((
        "principal-empty",
        with_principal(""),
        "spec.principal.objectId",
        true,
    ));
    // The nil GUID passes the schema's pattern; only the operator can refuse it.
    rows.push((
        "principal-nil-guid",
        with_principal("00000000-0000-0000-0000-000000000000"),
        "spec.principal.objectId",
        false,
    ));
    // Enum values the schema refuses; the operator still refuses them if an old CRD let them in.
    rows.push((
        "unknown-role",
        RegistryAttachmentSpec {
            role: RoleChoice::Unrecognized,
            ..spec(&good)
        },
        "spec.role",
        true,
    ));
    rows.push((
        "unknown-deletion-policy",
        RegistryAttachmentSpec {
            principals: Vec::new(),
            repositories: Vec::new(),
            catalog_listing: false,
            deletion_policy: DeletionPolicy::Unrecognized,
            ..spec(&good)
        },
        "spec.deletionPolicy",
        true,
    ));
    rows
}

#[tokio::test]
async fn invalid_specs_are_stalled_without_any_azure_request() {
    let h = Harness::start(
        tenant(),
        KubeletIdentity::ObjectId(PrincipalId::parse(KUBELET).unwrap()),
    )
    .await;
    let rows = table();
    assert!(rows.len() >= 15);
    for (name, spec, field, _) in &rows {
        h.cluster.create(name, spec.clone());
        let action = h.reconcile(name).await.expect("reconcile");
        assert_eq!(
            requeue_after(&action),
            None,
            "{name}: waits for a change, no retry loop"
        );
        let stalled = h.condition(name, "Stalled");
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", reasons::INVALID_SPEC),
            "{name}"
        );
        assert!(
            stalled.message.contains(field),
            "{name}: message must name {field}: {}",
            stalled.message
        );
        assert_eq!(h.condition(name, "Ready").status, "False", "{name}");
        assert!(
            !h.cluster.get(name).unwrap().has_finalizer(),
            "{name}: no finalizer without an Azure write"
        );
    }
    assert_eq!(
        h.arm.counts().total(),
        0,
        "not one ARM request: {:?}",
        h.arm.counts()
    );
    // Deleting an invalid attachment needs no cleanup.
    h.cluster.delete("empty-id");
    assert!(h.cluster.get("empty-id").is_none());
}

#[test]
fn the_crd_schema_refuses_the_same_ids_at_admission() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(acr_attach::crd::RegistryAttachment::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let pattern =
        |node: &serde_json::Value| regex::Regex::new(node["pattern"].as_str().unwrap()).unwrap();
    let registry_pattern = pattern(&spec["registry"]["properties"]["resourceId"]);
    let identity_pattern =
        pattern(&spec["principals"]["items"]["properties"]["identityResourceId"]);
    let guid_pattern = pattern(&spec["principal"]["properties"]["objectId"]);
    let enum_of = |field: &str| -> Vec<String> {
        serde_json::from_value(spec[field]["enum"].clone()).unwrap()
    };
    assert_eq!(registry_pattern.as_str(), REGISTRY_ID_PATTERN);
    assert_eq!(guid_pattern.as_str(), GUID_PATTERN);
    assert!(registry_pattern.is_match(&registry("legacyacr")));
    assert!(
        registry_pattern
            .is_match(&registry("legacyacr").replace("resourceGroups", "resourcegroups"))
    );
    let registry_rules: Vec<cel::Program> = spec["registry"]["x-kubernetes-validations"]
        .as_array()
        .expect("spec.registry carries CEL rules")
        .iter()
        .map(|rule| cel::Program::compile(rule["rule"].as_str().unwrap()).unwrap())
        .collect();
    let cel_refuses = |reference: &RegistryReference| {
        let mut context = cel::Context::default();
        context
            .add_variable("self", cel::to_value(reference).unwrap())
            .unwrap();
        registry_rules
            .iter()
            .any(|rule| rule.execute(&context).unwrap() != cel::Value::Bool(true))
    };
    let pattern_refuses = |property: &str, value: &Option<String>| {
        value
            .as_deref()
            .is_some_and(|text| !pattern(&spec["registry"]["properties"][property]).is_match(text))
    };
    for (name, spec_row, field, schema_refuses) in table() {
        let resource_id = spec_row.registry.resource_id.clone().unwrap_or_default();
        let refused = match field {
            "spec.registry.resourceId" => {
                !registry_pattern.is_match(&resource_id) || resource_id.len() > 300
            }
            "spec.registry" => cel_refuses(&spec_row.registry),
            "spec.principals[0].identityResourceId" => {
                let id = spec_row.principals[0]
                    .identity_resource_id
                    .as_deref()
                    .unwrap();
                !identity_pattern.is_match(id)
            }
            "spec.registry.name" => pattern_refuses("name", &spec_row.registry.name),
            "spec.registry.resourceGroup" => {
                pattern_refuses("resourceGroup", &spec_row.registry.resource_group)
            }
            "spec.registry.subscriptionId" => {
                pattern_refuses("subscriptionId", &spec_row.registry.subscription_id)
            }
            "spec.principal.objectId" => {
                !guid_pattern.is_match(&spec_row.principal.unwrap().object_id)
            }
            "spec.role" => {
                let value = serde_json::to_value(spec_row.role).unwrap();
                !enum_of("role").contains(&value.as_str().unwrap().to_string())
            }
            "spec.deletionPolicy" => {
                let value = serde_json::to_value(spec_row.deletion_policy).unwrap();
                !enum_of("deletionPolicy").contains(&value.as_str().unwrap().to_string())
            }
            other => panic!("no schema check for {other}"),
        };
        assert_eq!(refused, schema_refuses, "{name}");
    }
}

#[tokio::test]
async fn a_huge_invalid_value_gives_a_bounded_condition_message() {
    // An object stored under an older CRD (no maxLength on entries) reaches the operator.
    let h = Harness::start(
        tenant(),
        KubeletIdentity::ObjectId(PrincipalId::parse(KUBELET).unwrap()),
    )
    .await;
    let huge = "A".repeat(1 << 20);
    h.cluster.create(
        "huge",
        RegistryAttachmentSpec {
            repositories: vec![huge.clone(), huge],
            ..spec(&registry("abacacr"))
        },
    );
    h.reconcile("huge").await.expect("reconcile");
    let stalled = h.condition("huge", "Stalled");
    assert_eq!(stalled.reason, reasons::INVALID_SPEC);
    assert!(stalled.message.contains("spec.repositories[0]"));
    assert!(stalled.message.contains("spec.repositories[1]"));
    assert!(
        stalled.message.len() < 2048,
        "the value is quoted in part, not whole: {} bytes",
        stalled.message.len()
    );
    assert_eq!(h.arm.counts().total(), 0);
}
