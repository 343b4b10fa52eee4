//! The chart's admission-time allow-list (charts/acr-attach/files/admission-policy.yaml, emitted
//! by templates/admissionpolicy.yaml as a ValidatingAdmissionPolicy): its CEL evaluated with the
//! `cel` crate against sample requests, checked to decide exactly as the operator's own allow-list
//! (`decide::allowlist::AllowList`) does, to use only what Kubernetes 1.30's CEL environment
//! offers, and to be wired into the template as the template's comments say.
//!
//! The evaluation follows the API server: matchConditions (all true, or the policy does not
//! apply), then `variables` in order (each sees the earlier ones as `variables.<name>`), then each
//! validation; a false one refuses with its messageExpression. The server evaluates variables
//! lazily; here they are evaluated eagerly and any error fails the test, which is stricter: the
//! policy must never error (failurePolicy Fail would refuse with an unhelpful message).
//!
//! No Kubernetes CEL function had to be emulated: cel 0.15's strings extension provides
//! lowerAscii (ASCII only, as cel-go's), split (Go strings.Split semantics) and join, and its
//! regex feature provides matches (unanchored find, as RE2's; the pattern is anchored).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use acr_attach::crd::{REGISTRY_ID_PATTERN, RegistryAttachment};
use acr_attach::decide::allowlist::{
    ALLOWED_REGISTRIES_FLAG, ALLOWED_RESOURCE_GROUPS_FLAG, ALLOWED_SUBSCRIPTIONS_FLAG, AllowList,
    RegistryNotAllowed,
};
use acr_attach::decide::registry_lookup::ListScope;
use acr_attach::model::RegistryId;
use kube::Resource;
use serde_json::{Value, json};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

const POLICY: &str = "charts/acr-attach/files/admission-policy.yaml";
const TEMPLATE: &str = "charts/acr-attach/templates/admissionpolicy.yaml";

// ---------------------------------------------------------------------------------------------
// The policy as the template renders it

/// The chart values the policy reads.
#[derive(Clone, Debug, Default)]
struct Lists {
    subscriptions: Vec<String>,
    resource_groups: Vec<String>,
    registries: Vec<String>,
}

impl Lists {
    fn value(&self, key: &str) -> &[String] {
        match key {
            "subscriptions" => &self.subscriptions,
            "resourceGroups" => &self.resource_groups,
            "registries" => &self.registries,
            other => panic!(
                "the template reads allowList.{other}, which is not a list the chart defines"
            ),
        }
    }

    fn operator(&self) -> AllowList {
        AllowList::new(&self.subscriptions, &self.resource_groups, &self.registries)
            .expect("the sample lists are valid operator flags")
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

/// The variables the template puts in front of the file's, as (variable, allowList key), read from
/// the template itself: `- name: X` followed by `expression: {{ .Values.allowList.Y | ... }}`.
fn template_list_variables() -> Vec<(String, String)> {
    let pattern = regex::Regex::new(
        r#"- name: (\w+)\n\s+expression: \{\{ \.Values\.allowList\.(\w+) \| default list \| toJson \| quote \}\}"#,
    )
    .unwrap();
    pattern
        .captures_iter(&read(TEMPLATE))
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect()
}

struct Named {
    name: String,
    expression: String,
}

struct Validation {
    expression: String,
    message_expression: String,
    reason: String,
}

struct Policy {
    match_conditions: Vec<Named>,
    variables: Vec<Named>,
    validations: Vec<Validation>,
}

fn policy_file() -> Value {
    serde_saphyr::from_str(&read(POLICY)).unwrap_or_else(|e| panic!("{POLICY} is not YAML: {e}"))
}

fn named(list: &Value, field: &str) -> Vec<Named> {
    list.as_array()
        .unwrap_or_else(|| panic!("{POLICY} has no {field} list"))
        .iter()
        .map(|item| Named {
            name: item["name"].as_str().expect("name").to_string(),
            expression: item["expression"].as_str().expect("expression").to_string(),
        })
        .collect()
}

/// The spec the template renders for `lists`: the list variables (`toJson` of each value, a CEL
/// list literal once YAML has unquoted it) and then the file's.
fn rendered(lists: &Lists) -> Policy {
    let file = policy_file();
    let mut variables: Vec<Named> = template_list_variables()
        .into_iter()
        .map(|(name, key)| Named {
            name,
            expression: serde_json::to_string(lists.value(&key)).unwrap(),
        })
        .collect();
    variables.extend(named(&file["variables"], "variables"));
    let validations = file["validations"]
        .as_array()
        .expect("validations")
        .iter()
        .map(|v| Validation {
            expression: v["expression"].as_str().expect("expression").to_string(),
            message_expression: v["messageExpression"]
                .as_str()
                .expect("every validation has a messageExpression")
                .to_string(),
            reason: v["reason"].as_str().expect("reason").to_string(),
        })
        .collect();
    Policy {
        match_conditions: named(&file["matchConditions"], "matchConditions"),
        variables,
        validations,
    }
}

// ---------------------------------------------------------------------------------------------
// Admission

#[derive(Clone, Debug, PartialEq, Eq)]
enum Decision {
    /// A matchCondition was false: the policy does not apply.
    Skipped,
    Admitted,
    /// Every failed validation, as (reason, message).
    Refused(Vec<(String, String)>),
}

impl Decision {
    fn refusals(&self) -> &[(String, String)] {
        match self {
            Decision::Refused(refusals) => refusals,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

fn env() -> Arc<cel::Env> {
    let mut env = cel::Env::stdlib();
    env.add_extension(cel::extensions::strings).unwrap();
    Arc::new(env)
}

fn eval(
    env: &Arc<cel::Env>,
    request: &Request,
    variables: &BTreeMap<String, cel::Value>,
    what: &str,
    expression: &str,
) -> cel::Value {
    let program = env
        .compile(expression)
        .unwrap_or_else(|e| panic!("{what} does not parse: {e:?}\n{expression}"));
    let mut context = cel::Context::with_env(Arc::clone(env));
    context
        .add_variable("object", cel::to_value(&request.object).unwrap())
        .unwrap();
    let old = request.old_object.clone().unwrap_or(Value::Null);
    context
        .add_variable("oldObject", cel::to_value(&old).unwrap())
        .unwrap();
    context
        .add_variable(
            "request",
            cel::to_value(json!({"operation": request.operation})).unwrap(),
        )
        .unwrap();
    let variables: HashMap<String, cel::Value> = variables.clone().into_iter().collect();
    context.add_variable_from_value("variables", variables);
    program
        .execute(&context)
        .unwrap_or_else(|e| panic!("{what} failed on {}: {e:?}", request.object))
}

fn boolean(value: cel::Value, what: &str) -> bool {
    match value {
        cel::Value::Bool(b) => b,
        other => panic!("{what} returned {other:?}, not a bool"),
    }
}

struct Request {
    operation: &'static str,
    object: Value,
    old_object: Option<Value>,
}

fn admit(lists: &Lists, request: &Request) -> Decision {
    let policy = rendered(lists);
    let env = env();
    let mut variables = BTreeMap::new();
    for condition in &policy.match_conditions {
        let what = format!("matchConditions[{}]", condition.name);
        if !boolean(
            eval(&env, request, &variables, &what, &condition.expression),
            &what,
        ) {
            return Decision::Skipped;
        }
    }
    for variable in &policy.variables {
        let what = format!("variables.{}", variable.name);
        let value = eval(&env, request, &variables, &what, &variable.expression);
        variables.insert(variable.name.clone(), value);
    }
    let mut refusals = Vec::new();
    for (index, validation) in policy.validations.iter().enumerate() {
        let what = format!("validations[{index}]");
        if boolean(
            eval(&env, request, &variables, &what, &validation.expression),
            &what,
        ) {
            continue;
        }
        let message = match eval(
            &env,
            request,
            &variables,
            &what,
            &validation.message_expression,
        ) {
            cel::Value::String(message) => message.to_string(),
            other => panic!("{what}.messageExpression returned {other:?}"),
        };
        refusals.push((validation.reason.clone(), message));
    }
    if refusals.is_empty() {
        Decision::Admitted
    } else {
        Decision::Refused(refusals)
    }
}

// ---------------------------------------------------------------------------------------------
// Samples

const SUB: &str = "3f2a9c1e-7b4d-4e8a-9c6f-0a1b2c3d4e5f";
const OTHER_SUB: &str = "8d4e2b7a-5c1f-4a9e-b3d2-6e7f8a9b0c1d";

fn registry_id(sub: &str, group: &str, name: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/{name}"
    )
}

/// `spec.registry` naming the registry by resource id.
fn by_id(resource_id: &str) -> Value {
    json!({"resourceId": resource_id})
}

/// `spec.registry` naming the registry by name, with the optional fields only when given.
fn by_name(name: &str, resource_group: Option<&str>, subscription: Option<&str>) -> Value {
    let mut registry = json!({"name": name});
    if let Some(group) = resource_group {
        registry["resourceGroup"] = json!(group);
    }
    if let Some(subscription) = subscription {
        registry["subscriptionId"] = json!(subscription);
    }
    registry
}

fn attachment(registry: Value) -> Value {
    json!({
        "apiVersion": "acrattach.io/v1alpha1",
        "kind": "RegistryAttachment",
        "metadata": {"name": "shared-images", "generation": 1},
        "spec": {"registry": registry, "role": "Auto", "deletionPolicy": "Delete"},
    })
}

fn create_of(registry: Value) -> Request {
    Request {
        operation: "CREATE",
        object: attachment(registry),
        old_object: None,
    }
}

fn create(resource_id: &str) -> Request {
    create_of(by_id(resource_id))
}

fn update_of(old: Value, new: Value) -> Request {
    Request {
        operation: "UPDATE",
        object: new,
        old_object: Some(old),
    }
}

fn update(old_id: &str, new_id: &str) -> Request {
    update_of(attachment(by_id(old_id)), attachment(by_id(new_id)))
}

/// The operator's registry-list scope for a by-name spec with `subscriptionId` set, as
/// `registry_lookup::list_scope` builds it.
fn scope(subscription: &str, resource_group: Option<&str>) -> ListScope {
    ListScope {
        subscription: subscription.to_ascii_lowercase(),
        resource_group: resource_group.map(ToString::to_string),
    }
}

fn only_refusal(decision: &Decision) -> (&str, &str) {
    let refusals = decision.refusals();
    assert_eq!(refusals.len(), 1, "one validation refuses: {refusals:?}");
    (refusals[0].0.as_str(), refusals[0].1.as_str())
}

// ---------------------------------------------------------------------------------------------
// Behaviour

#[test]
fn empty_lists_admit_everything_even_a_malformed_id() {
    let lists = Lists::default();
    for id in [
        registry_id(SUB, "images", "sharedimages"),
        registry_id(OTHER_SUB, "Team-RG", "Other01"),
        "not-a-resource-id".to_string(),
        "/subscriptions/x/resourceGroups/rg".to_string(),
    ] {
        assert_eq!(admit(&lists, &create(&id)), Decision::Admitted, "{id}");
    }
}

#[test]
fn subscriptions_list_admits_its_subscriptions_and_refuses_others() {
    let lists = Lists {
        subscriptions: strings(&[SUB]),
        ..Lists::default()
    };
    assert_eq!(
        admit(&lists, &create(&registry_id(SUB, "images", "sharedimages"))),
        Decision::Admitted
    );
    let decision = admit(
        &lists,
        &create(&registry_id(OTHER_SUB, "images", "sharedimages")),
    );
    let (reason, message) = only_refusal(&decision);
    assert_eq!(reason, "Forbidden");
    assert!(
        message.contains(&format!("subscription {OTHER_SUB}")),
        "{message}"
    );
    assert!(
        message.contains("is not in allowList.subscriptions"),
        "{message}"
    );
    assert!(
        message.contains(SUB),
        "the message lists what is allowed: {message}"
    );
    assert!(
        message.contains("chart value allowList.subscriptions"),
        "the message names the value to change: {message}"
    );
}

#[test]
fn resource_groups_list_admits_its_groups_and_refuses_others() {
    let lists = Lists {
        resource_groups: strings(&[&format!("{SUB}/images")]),
        ..Lists::default()
    };
    assert_eq!(
        admit(&lists, &create(&registry_id(SUB, "images", "sharedimages"))),
        Decision::Admitted
    );
    // Same group name in another subscription is another group.
    for id in [
        registry_id(SUB, "team-rg", "sharedimages"),
        registry_id(OTHER_SUB, "images", "sharedimages"),
    ] {
        let decision = admit(&lists, &create(&id));
        let (reason, message) = only_refusal(&decision);
        assert_eq!(reason, "Forbidden");
        assert!(
            message.contains("is not in allowList.resourceGroups"),
            "{message}"
        );
        assert!(
            message.contains("chart value allowList.resourceGroups"),
            "{message}"
        );
    }
    let decision = admit(
        &lists,
        &create(&registry_id(SUB, "team-rg", "sharedimages")),
    );
    assert!(
        only_refusal(&decision)
            .1
            .starts_with(&format!("resource group {SUB}/team-rg ")),
        "{decision:?}"
    );
}

#[test]
fn registries_list_admits_its_registries_and_refuses_others() {
    let allowed = registry_id(SUB, "images", "sharedimages");
    let lists = Lists {
        registries: strings(&[&allowed]),
        ..Lists::default()
    };
    assert_eq!(admit(&lists, &create(&allowed)), Decision::Admitted);
    let other = registry_id(SUB, "images", "otherimages");
    let decision = admit(&lists, &create(&other));
    let (reason, message) = only_refusal(&decision);
    assert_eq!(reason, "Forbidden");
    assert_eq!(
        message,
        format!(
            "registry {other} is not in allowList.registries; attach one of the allowed registries, or add its resource id to the acr-attach chart value allowList.registries"
        )
    );
}

#[test]
fn every_non_empty_list_must_admit() {
    let lists = Lists {
        subscriptions: strings(&[SUB]),
        resource_groups: strings(&[&format!("{SUB}/images")]),
        registries: strings(&[&registry_id(SUB, "images", "sharedimages")]),
    };
    assert_eq!(
        admit(&lists, &create(&registry_id(SUB, "images", "sharedimages"))),
        Decision::Admitted
    );
    // Right subscription and group, registry not listed: only the registries list refuses.
    let decision = admit(&lists, &create(&registry_id(SUB, "images", "otherimages")));
    assert!(only_refusal(&decision).1.contains("allowList.registries"));
    // Wrong subscription: all three refuse, each naming its own value.
    let decision = admit(
        &lists,
        &create(&registry_id(OTHER_SUB, "images", "sharedimages")),
    );
    let messages: Vec<&str> = decision
        .refusals()
        .iter()
        .map(|(_, m)| m.as_str())
        .collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    for (message, value) in messages.iter().zip([
        "allowList.subscriptions",
        "allowList.resourceGroups",
        "allowList.registries",
    ]) {
        assert!(message.contains(value), "{message}");
    }
}

#[test]
fn ids_compare_case_insensitively_on_both_sides() {
    let lists = Lists {
        subscriptions: strings(&[&SUB.to_ascii_uppercase()]),
        resource_groups: strings(&[&format!("{SUB}/IMAGES")]),
        registries: strings(&[&registry_id(SUB, "Images", "SharedImages").to_ascii_uppercase()]),
    };
    let mixed = format!(
        "/SUBSCRIPTIONS/{}/resourcegroups/Images/PROVIDERS/microsoft.containerregistry/Registries/sharedIMAGES",
        SUB.to_ascii_uppercase()
    );
    assert_eq!(admit(&lists, &create(&mixed)), Decision::Admitted);
    assert_eq!(
        lists
            .operator()
            .permits(&RegistryId::parse(&mixed).unwrap()),
        Ok(()),
        "the operator agrees"
    );
}

#[test]
fn malformed_id_is_refused_once_a_list_is_set() {
    let lists = Lists {
        registries: strings(&[&registry_id(SUB, "images", "sharedimages")]),
        ..Lists::default()
    };
    for id in [
        "sharedimages.azurecr.io",
        "/subscriptions/not-a-guid/resourceGroups/images/providers/Microsoft.ContainerRegistry/registries/sharedimages",
        "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/images/providers/Microsoft.ContainerService/managedClusters/aks1",
        "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/images/providers/Microsoft.ContainerRegistry/registries/sharedimages/extra",
    ] {
        let decision = admit(&lists, &create(id));
        let (reason, message) = only_refusal(&decision);
        assert_eq!(reason, "Invalid", "{id}");
        assert!(
            message.starts_with(&format!(
                "spec.registry.resourceId {id} is not a registry resource id"
            )),
            "{message}"
        );
        assert!(message.contains("allowList"), "{message}");
        assert!(
            RegistryId::parse(id).is_err(),
            "the operator refuses {id} too"
        );
    }
}

#[test]
fn updates_are_checked_only_when_they_change_the_registry() {
    let lists = Lists {
        registries: strings(&[&registry_id(SUB, "images", "sharedimages")]),
        ..Lists::default()
    };
    let outside = registry_id(SUB, "images", "legacyimages");
    // An attachment from before the allow-list: its finalizer can still be removed.
    assert_eq!(
        admit(&lists, &update(&outside, &outside)),
        Decision::Skipped
    );
    assert_eq!(
        admit(&lists, &update(&outside, &outside.to_ascii_uppercase())),
        Decision::Skipped,
        "a change of case is the same registry"
    );
    // Moving an attachment to a registry outside the list is refused; into the list, admitted.
    let allowed = registry_id(SUB, "images", "sharedimages");
    assert!(matches!(
        admit(&lists, &update(&allowed, &outside)),
        Decision::Refused(_)
    ));
    assert_eq!(
        admit(&lists, &update(&outside, &allowed)),
        Decision::Admitted
    );
}

/// Registries named by name with `subscriptionId`: checked as far as the spec says.
#[test]
fn by_name_create_is_admitted_when_the_lists_are_empty() {
    let lists = Lists::default();
    for registry in [
        by_name("sharedimages", None, None),
        by_name("SharedImages", Some("images"), None),
        by_name("sharedimages", None, Some(SUB)),
        by_name("sharedimages", Some("images"), Some(OTHER_SUB)),
    ] {
        assert_eq!(
            admit(&lists, &create_of(registry.clone())),
            Decision::Admitted,
            "{registry}"
        );
    }
}

/// Without `subscriptionId` the registry is looked up in the operator's default subscription,
/// which the policy does not know: it admits, and the operator applies the lists itself.
#[test]
fn by_name_without_subscription_is_admitted_even_with_every_list_set() {
    let lists = Lists {
        subscriptions: strings(&[SUB]),
        resource_groups: strings(&[&format!("{SUB}/images")]),
        registries: strings(&[&registry_id(SUB, "images", "sharedimages")]),
    };
    for registry in [
        by_name("sharedimages", None, None),
        by_name("otherimages", None, None),
        // A group outside allowList.resourceGroups, but in which subscription is unknown.
        by_name("otherimages", Some("team-rg"), None),
    ] {
        assert_eq!(
            admit(&lists, &create_of(registry.clone())),
            Decision::Admitted,
            "{registry}"
        );
    }
}

#[test]
fn by_name_subscription_is_checked_against_the_subscriptions_list() {
    let lists = Lists {
        subscriptions: strings(&[SUB]),
        ..Lists::default()
    };
    for registry in [
        by_name("sharedimages", None, Some(SUB)),
        by_name("sharedimages", None, Some(&SUB.to_ascii_uppercase())),
        by_name("sharedimages", Some("images"), Some(SUB)),
    ] {
        assert_eq!(
            admit(&lists, &create_of(registry.clone())),
            Decision::Admitted,
            "{registry}"
        );
    }
    for registry in [
        by_name("sharedimages", None, Some(OTHER_SUB)),
        by_name("sharedimages", Some("images"), Some(OTHER_SUB)),
    ] {
        let decision = admit(&lists, &create_of(registry.clone()));
        let (reason, message) = only_refusal(&decision);
        assert_eq!(reason, "Forbidden");
        assert_eq!(
            message,
            format!(
                "subscription {OTHER_SUB} of spec.registry.subscriptionId is not in allowList.subscriptions [{SUB}]; set spec.registry.subscriptionId to an allowed subscription, or add it to the acr-attach chart value allowList.subscriptions"
            ),
            "{registry}"
        );
    }
}

#[test]
fn by_name_resource_group_is_checked_against_the_resource_groups_list() {
    let lists = Lists {
        resource_groups: strings(&[&format!("{SUB}/images")]),
        ..Lists::default()
    };
    for registry in [
        by_name("sharedimages", Some("images"), Some(SUB)),
        by_name(
            "sharedimages",
            Some("IMAGES"),
            Some(&SUB.to_ascii_uppercase()),
        ),
        // No resource group: an allowed one lies in the subscription, so its list may be read.
        by_name("sharedimages", None, Some(SUB)),
    ] {
        assert_eq!(
            admit(&lists, &create_of(registry.clone())),
            Decision::Admitted,
            "{registry}"
        );
    }
    let decision = admit(
        &lists,
        &create_of(by_name("sharedimages", Some("Team-RG"), Some(SUB))),
    );
    let (reason, message) = only_refusal(&decision);
    assert_eq!(reason, "Forbidden");
    assert!(
        message.starts_with(&format!(
            "resource group {SUB}/team-rg of spec.registry.subscriptionId and spec.registry.resourceGroup is not in allowList.resourceGroups [{SUB}/images]"
        )),
        "{message}"
    );
    assert!(
        message.contains("chart value allowList.resourceGroups"),
        "{message}"
    );
    // Same group name in another subscription is another group.
    let decision = admit(
        &lists,
        &create_of(by_name("sharedimages", Some("images"), Some(OTHER_SUB))),
    );
    assert!(
        only_refusal(&decision)
            .1
            .starts_with(&format!("resource group {OTHER_SUB}/images ")),
        "{decision:?}"
    );
    // No resource group, and none allowed in the subscription: nothing there could be admitted.
    let decision = admit(
        &lists,
        &create_of(by_name("sharedimages", None, Some(OTHER_SUB))),
    );
    let (reason, message) = only_refusal(&decision);
    assert_eq!(reason, "Forbidden");
    assert!(
        message.starts_with(&format!(
            "no resource group of subscription {OTHER_SUB} (spec.registry.subscriptionId) is in allowList.resourceGroups"
        )),
        "{message}"
    );
    assert!(
        message.contains("spec.registry.resourceGroup")
            && message.contains("chart value allowList.resourceGroups"),
        "{message}"
    );
}

#[test]
fn by_name_with_subscription_and_group_is_checked_against_the_registries_list() {
    let allowed = registry_id(SUB, "images", "sharedimages");
    let lists = Lists {
        registries: strings(&[&allowed]),
        ..Lists::default()
    };
    // The id the three fields make, compared case-insensitively.
    assert_eq!(
        admit(
            &lists,
            &create_of(by_name(
                "SharedImages",
                Some("Images"),
                Some(&SUB.to_ascii_uppercase())
            ))
        ),
        Decision::Admitted
    );
    for (name, group) in [("otherimages", "images"), ("sharedimages", "team-rg")] {
        let decision = admit(&lists, &create_of(by_name(name, Some(group), Some(SUB))));
        let (reason, message) = only_refusal(&decision);
        assert_eq!(reason, "Forbidden");
        assert_eq!(
            message,
            format!(
                "registry /subscriptions/{SUB}/resourcegroups/{group}/providers/microsoft.containerregistry/registries/{name} (spec.registry.name {name} in spec.registry.resourceGroup and subscriptionId) is not in allowList.registries; set spec.registry.name to one of the allowed registries, or add its resource id to the acr-attach chart value allowList.registries"
            )
        );
    }
    // Subscription only: admitted while an allowed registry is in it (the operator then checks
    // the one it finds), refused when none is.
    assert_eq!(
        admit(&lists, &create_of(by_name("anyname", None, Some(SUB)))),
        Decision::Admitted
    );
    let decision = admit(
        &lists,
        &create_of(by_name("anyname", None, Some(OTHER_SUB))),
    );
    let (reason, message) = only_refusal(&decision);
    assert_eq!(reason, "Forbidden");
    assert!(
        message.starts_with(&format!(
            "no registry in subscription {OTHER_SUB} (spec.registry.subscriptionId) is in allowList.registries"
        )),
        "{message}"
    );
    assert!(
        message.contains("spec.registry.name")
            && message.contains("chart value allowList.registries"),
        "{message}"
    );
}

#[test]
fn updates_to_a_by_name_registry_are_checked_only_when_they_change_it() {
    let allowed = registry_id(SUB, "images", "sharedimages");
    let lists = Lists {
        registries: strings(&[&allowed]),
        ..Lists::default()
    };
    let outside = by_name("legacyimages", Some("images"), Some(SUB));
    let inside = by_name("sharedimages", Some("images"), Some(SUB));
    // From resourceId to name: checked, either way.
    assert!(matches!(
        admit(
            &lists,
            &update_of(attachment(by_id(&allowed)), attachment(outside.clone()))
        ),
        Decision::Refused(_)
    ));
    assert_eq!(
        admit(
            &lists,
            &update_of(attachment(by_id(&allowed)), attachment(inside.clone()))
        ),
        Decision::Admitted
    );
    // From name to resourceId: checked.
    assert!(matches!(
        admit(
            &lists,
            &update_of(
                attachment(inside.clone()),
                attachment(by_id(&registry_id(SUB, "images", "legacyimages")))
            )
        ),
        Decision::Refused(_)
    ));
    // Only spec.role changes: not checked, so a by-name attachment from before the allow-list
    // can still be edited and deleted.
    let mut role_changed = attachment(outside.clone());
    role_changed["spec"]["role"] = json!("AcrPull");
    assert_eq!(
        admit(
            &lists,
            &update_of(attachment(outside.clone()), role_changed)
        ),
        Decision::Skipped
    );
    // A change of case in any field is the same registry.
    assert_eq!(
        admit(
            &lists,
            &update_of(
                attachment(outside.clone()),
                attachment(by_name(
                    "LegacyImages",
                    Some("IMAGES"),
                    Some(&SUB.to_ascii_uppercase())
                ))
            )
        ),
        Decision::Skipped
    );
    // Each field changed, added or removed on its own is a change (removing subscriptionId leaves nothing
    // the policy can check, so it is admitted rather than skipped).
    let changes = [
        (
            by_name("legacyimages", Some("images"), None),
            by_name("legacyimages", Some("images"), Some(SUB)),
            false,
        ),
        (
            by_name("legacyimages", None, Some(SUB)),
            by_name("legacyimages", Some("images"), Some(SUB)),
            false,
        ),
        (
            by_name("legacyimages", Some("team-rg"), Some(SUB)),
            by_name("legacyimages", Some("images"), Some(SUB)),
            false,
        ),
        (
            by_name("legacyimages", Some("images"), Some(OTHER_SUB)),
            by_name("legacyimages", Some("images"), Some(SUB)),
            false,
        ),
        (
            by_name("sharedimages", Some("images"), Some(SUB)),
            by_name("legacyimages", Some("images"), Some(SUB)),
            false,
        ),
        (
            by_name("legacyimages", Some("images"), Some(SUB)),
            by_name("legacyimages", Some("images"), None),
            true,
        ),
        (
            by_name("legacyimages", Some("images"), Some(SUB)),
            by_name("legacyimages", None, Some(SUB)),
            true,
        ),
    ];
    for (old, new, admitted) in changes {
        let decision = admit(
            &lists,
            &update_of(attachment(old.clone()), attachment(new.clone())),
        );
        if admitted {
            assert_eq!(decision, Decision::Admitted, "{old} -> {new}");
        } else {
            assert!(
                matches!(decision, Decision::Refused(_)),
                "{old} -> {new}: {decision:?}"
            );
        }
    }
}

/// The schema makes every field of spec.registry optional (the CRD's rules, checked before the
/// policy, require one of resourceId and name); the policy reads each behind `has()`, so no
/// combination makes it error, on CREATE or on an UPDATE from or to any of them. `admit` fails
/// the test on any evaluation error.
#[test]
fn evaluation_never_errors_for_objects_missing_fields() {
    let registries = [
        json!({}),
        json!({"resourceGroup": "images"}),
        json!({"subscriptionId": SUB}),
        json!({"resourceGroup": "images", "subscriptionId": SUB}),
        by_name("sharedimages", None, None),
        by_name("sharedimages", Some("images"), None),
        by_name("sharedimages", None, Some(SUB)),
        by_name("sharedimages", Some("images"), Some(SUB)),
        by_id(&registry_id(SUB, "images", "sharedimages")),
        json!({"resourceId": registry_id(SUB, "images", "sharedimages"), "name": "sharedimages"}),
    ];
    let every_list = Lists {
        subscriptions: strings(&[OTHER_SUB]),
        resource_groups: strings(&[&format!("{OTHER_SUB}/images")]),
        registries: strings(&[&registry_id(OTHER_SUB, "images", "sharedimages")]),
    };
    for lists in [Lists::default(), every_list.clone()] {
        for registry in &registries {
            let decision = admit(&lists, &create_of(registry.clone()));
            for old in &registries {
                admit(
                    &lists,
                    &update_of(attachment(old.clone()), attachment(registry.clone())),
                );
            }
            // Nothing names a subscription: nothing to check here (the CRD refuses these).
            if registry.get("resourceId").is_none() && registry.get("subscriptionId").is_none() {
                assert_eq!(decision, Decision::Admitted, "{registry}");
            }
        }
    }
    // Neither resourceId nor name: what the spec says is not a by-name lookup.
    assert_eq!(
        admit(
            &every_list,
            &create_of(json!({"resourceGroup": "images", "subscriptionId": SUB}))
        ),
        Decision::Admitted
    );
}

/// Names the chart value of an operator flag, as the policy's messages do.
fn list_of_flag(flag: &str) -> &'static str {
    match flag {
        ALLOWED_SUBSCRIPTIONS_FLAG => "allowList.subscriptions",
        ALLOWED_RESOURCE_GROUPS_FLAG => "allowList.resourceGroups",
        ALLOWED_REGISTRIES_FLAG => "allowList.registries",
        other => panic!("{other} is not an allow-list flag"),
    }
}

/// The policy admits what `operator` admits, and otherwise refuses first through the list the
/// operator names (the operator reports the first list that refuses; the policy every one).
fn assert_decides_as(policy: &Decision, operator: Result<(), RegistryNotAllowed>, what: &str) {
    match operator {
        Ok(()) => assert_eq!(policy, &Decision::Admitted, "{what}"),
        Err(refused) => {
            let first = &policy.refusals()[0].1;
            let value = list_of_flag(refused.flag);
            assert!(
                first.contains(&format!("is not in {value}"))
                    || first.contains(&format!("is in {value}")),
                "{what}: operator {}, policy {first}",
                refused.flag
            );
        }
    }
}

/// The policy and the operator's `AllowList` decide alike on every combination, and refuse
/// through the same list: a resourceId, or a name with resourceGroup and subscriptionId, as
/// `permits` decides on that registry; a name with only subscriptionId as `permits_scope`
/// decides on that subscription's list, the check the operator makes before reading it.
#[test]
fn decides_exactly_as_the_operators_allow_list() {
    let triples = [
        (SUB, "images", "sharedimages"),
        (SUB, "Images", "OtherImages"),
        (SUB, "team-rg", "teamimages"),
        (OTHER_SUB, "images", "sharedimages"),
        (&*OTHER_SUB.to_ascii_uppercase(), "TEAM-RG", "TeamImages"),
    ];
    let registries: Vec<String> = triples
        .iter()
        .map(|(sub, group, name)| registry_id(sub, group, name))
        .collect();
    let third_sub = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";
    let scope_subscriptions = [
        SUB.to_string(),
        OTHER_SUB.to_ascii_uppercase(),
        third_sub.to_string(),
    ];
    let subscription_lists = [vec![], strings(&[SUB]), strings(&[SUB, OTHER_SUB])];
    let group_lists = [
        vec![],
        strings(&[&format!("{SUB}/images")]),
        strings(&[
            &format!("{}/team-rg", OTHER_SUB.to_ascii_uppercase()),
            &format!("{SUB}/IMAGES"),
        ]),
    ];
    let registry_lists = [
        vec![],
        strings(&[&registries[0]]),
        strings(&[&registries[1].to_ascii_lowercase(), &registries[4]]),
        strings(&[&registries[3]]),
    ];
    let mut compared = 0;
    let mut refused_by_scope = 0;
    for subscriptions in &subscription_lists {
        for resource_groups in &group_lists {
            for registry_list in &registry_lists {
                let lists = Lists {
                    subscriptions: subscriptions.clone(),
                    resource_groups: resource_groups.clone(),
                    registries: registry_list.clone(),
                };
                let operator = lists.operator();
                for id in &registries {
                    let policy = admit(&lists, &create(id));
                    let what = format!("{id} with {lists:?}");
                    assert_decides_as(
                        &policy,
                        operator.permits(&RegistryId::parse(id).unwrap()),
                        &what,
                    );
                    compared += 1;
                }
                for (sub, group, name) in triples {
                    let policy = admit(&lists, &create_of(by_name(name, Some(group), Some(sub))));
                    let what = format!("name {name} in {sub}/{group} with {lists:?}");
                    let registry = RegistryId::from_parts(sub, group, name).unwrap();
                    assert_decides_as(&policy, operator.permits(&registry), &what);
                    // And so never admits a list the operator would not read.
                    // And so never admits a list the operator would not read, nor refuses a
                    // readable one for anything but the registry itself.
                    match operator.permits_scope(&scope(sub, Some(group))) {
                        Ok(()) => {
                            if let Decision::Refused(refusals) = &policy {
                                assert!(
                                    refusals
                                        .iter()
                                        .all(|(_, m)| m.contains("is not in allowList.registries")),
                                    "{what}: {refusals:?}"
                                );
                            }
                        }
                        refused => assert_decides_as(&policy, refused, &what),
                    }
                    compared += 1;
                }
                for sub in &scope_subscriptions {
                    let policy =
                        admit(&lists, &create_of(by_name("sharedimages", None, Some(sub))));
                    let what = format!("name in {sub} with {lists:?}");
                    let in_scope = operator.permits_scope(&scope(sub, None));
                    refused_by_scope += usize::from(in_scope.is_err());
                    assert_decides_as(&policy, in_scope, &what);
                    compared += 1;
                }
            }
        }
    }
    let combinations = 3 * 3 * registry_lists.len();
    assert_eq!(
        compared,
        combinations * (registries.len() + triples.len() + scope_subscriptions.len())
    );
    // The scope checks were exercised both ways.
    assert!(refused_by_scope > 0 && refused_by_scope < combinations * scope_subscriptions.len());
}

// ---------------------------------------------------------------------------------------------
// Kubernetes compatibility and wiring

/// Kubernetes 1.30's CEL environment for new expressions (k8s.io/apiserver pkg/cel/environment
/// base.go at compatibility version 1.29): the CEL standard definitions and macros, the strings
/// extension at version 2, sets, and the Kubernetes list, regex, URL, authz, quantity, IP and CIDR
/// libraries. Listed here: what a policy like this could reasonably use.
const KUBERNETES_1_30_FUNCTIONS: &[&str] = &[
    // operators
    "_==_",
    "_!=_",
    "_<_",
    "_<=_",
    "_>_",
    "_>=_",
    "_&&_",
    "_||_",
    "!_",
    "-_",
    "_?_:_",
    "_+_",
    "_-_",
    "_*_",
    "_/_",
    "_%_",
    "_[_]",
    "@in",
    // standard functions and macros
    "size",
    "matches",
    "startsWith",
    "endsWith",
    "contains",
    "string",
    "int",
    "has",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    // strings extension, version 2
    "charAt",
    "indexOf",
    "lastIndexOf",
    "lowerAscii",
    "upperAscii",
    "replace",
    "split",
    "substring",
    "trim",
    "join",
    "format",
    "strings.quote",
    // Kubernetes list and regex libraries
    "isSorted",
    "sum",
    "min",
    "max",
    "find",
    "findAll",
];

#[test]
fn expressions_use_only_kubernetes_1_30_cel() {
    let policy = rendered(&Lists {
        subscriptions: strings(&[SUB]),
        resource_groups: strings(&[&format!("{SUB}/images")]),
        registries: strings(&[&registry_id(SUB, "images", "sharedimages")]),
    });
    let mut expressions: Vec<(String, String)> = Vec::new();
    expressions.extend(
        policy
            .match_conditions
            .iter()
            .map(|n| (n.name.clone(), n.expression.clone())),
    );
    expressions.extend(
        policy
            .variables
            .iter()
            .map(|n| (n.name.clone(), n.expression.clone())),
    );
    for (index, v) in policy.validations.iter().enumerate() {
        expressions.push((format!("validations[{index}]"), v.expression.clone()));
        expressions.push((
            format!("validations[{index}].messageExpression"),
            v.message_expression.clone(),
        ));
    }
    let allowed: BTreeSet<&str> = KUBERNETES_1_30_FUNCTIONS.iter().copied().collect();
    let mut used = BTreeSet::new();
    // A parser without macros, so `map(...)` and `exists(...)` show as the calls they are written as.
    let parser_env = cel::Env::default();
    for (what, expression) in &expressions {
        let parsed = parser_env
            .parser()
            .parse(expression)
            .unwrap_or_else(|e| panic!("{what} does not parse: {e:?}"));
        for function in parsed.references().functions() {
            assert!(
                allowed.contains(function),
                "{what} calls {function}, which is not in Kubernetes 1.30's CEL environment"
            );
            used.insert(function.to_string());
        }
        for variable in parsed.references().variables() {
            assert!(
                ["object", "oldObject", "request", "variables", "s", "g", "r"].contains(&variable),
                "{what} reads {variable}, which a ValidatingAdmissionPolicy does not provide"
            );
        }
    }
    // The ones named in the file's header comment, and nothing else.
    const IN_HEADER: &[&str] = &[
        "has",
        "map",
        "exists",
        "size",
        "matches",
        "startsWith",
        "lowerAscii",
        "split",
        "join",
        "@in",
    ];
    let header: String = read(POLICY)
        .lines()
        .take_while(|line| line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for function in IN_HEADER {
        assert!(
            used.contains(*function),
            "{function} is no longer used: update the header of {POLICY}"
        );
        let name = function.trim_start_matches('@');
        assert!(
            header.contains(&format!("{name}()")) || header.contains(&format!(" {name})")),
            "the header of {POLICY} does not name {function}"
        );
    }
    for function in &used {
        assert!(
            IN_HEADER.contains(&function.as_str())
                || function.starts_with('_')
                || function.ends_with('_'),
            "{function} is used: list it in the header of {POLICY}"
        );
    }
}

#[test]
fn resource_id_pattern_is_the_crds() {
    let file = policy_file();
    let well_formed = file["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "wellFormed")
        .expect("a wellFormed variable");
    let expression = well_formed["expression"].as_str().unwrap();
    let pattern = expression
        .strip_prefix("variables.registryId.matches(r'")
        .and_then(|rest| rest.strip_suffix("')"))
        .unwrap_or_else(|| panic!("wellFormed is not a raw-string matches(): {expression}"));
    assert_eq!(pattern, REGISTRY_ID_PATTERN);
}

#[test]
fn policy_matches_registryattachment_writes() {
    let file = policy_file();
    let rules = file["matchConstraints"]["resourceRules"]
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), 1);
    let rule = &rules[0];
    assert_eq!(rule["apiGroups"], json!([RegistryAttachment::group(&())]));
    assert_eq!(rule["resources"], json!([RegistryAttachment::plural(&())]));
    assert_eq!(rule["operations"], json!(["CREATE", "UPDATE"]));
}

#[test]
fn template_emits_the_file_with_the_chart_values() {
    let template = read(TEMPLATE);
    // The three lists, each from its own value, under the names the CEL reads.
    let variables = template_list_variables();
    assert_eq!(
        variables,
        [
            (
                "allowedSubscriptions".to_string(),
                "subscriptions".to_string()
            ),
            (
                "allowedResourceGroups".to_string(),
                "resourceGroups".to_string()
            ),
            ("allowedRegistries".to_string(), "registries".to_string()),
        ]
    );
    let policy = read(POLICY);
    let referenced: BTreeSet<String> = regex::Regex::new(r"variables\.(allowed\w+)")
        .unwrap()
        .captures_iter(&policy)
        .map(|c| c[1].to_string())
        .collect();
    let provided: BTreeSet<String> = variables.into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        referenced, provided,
        "the CEL reads exactly the variables the template provides"
    );
    // And nothing in the file defines them itself (they would shadow the values).
    assert!(
        named(&policy_file()["variables"], "variables")
            .iter()
            .all(|v| !provided.contains(&v.name))
    );

    for needle in [
        "{{- if .Values.admissionPolicy.enabled }}",
        r#".Files.Get "files/admission-policy.yaml" | fromYaml"#,
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\n",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\n",
        "failurePolicy: Fail",
        "{{- toYaml $policy.matchConstraints | nindent 4 }}",
        "{{- toYaml $policy.matchConditions | nindent 4 }}",
        "{{- toYaml $policy.variables | nindent 4 }}",
        "{{- toYaml $policy.validations | nindent 4 }}",
        r#"include "acr-attach.fullname" ."#,
        r#"{{- include "acr-attach.labels" . | nindent 4 }}"#,
        "policyName: {{ $name }}",
        r#"validationActions: {{ .Values.admissionPolicy.validationActions | default (list "Deny") | toJson }}"#,
    ] {
        assert!(template.contains(needle), "{TEMPLATE} lacks {needle:?}");
    }
    // Everything the file holds is emitted, so nothing in it is silently dropped.
    let keys: BTreeSet<String> = policy_file().as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "matchConditions",
            "matchConstraints",
            "validations",
            "variables"
        ]
        .map(String::from)
        .into(),
    );
    // The values the template reads exist in the chart.
    let values: Value = serde_saphyr::from_str(&read("charts/acr-attach/values.yaml")).unwrap();
    assert_eq!(
        values["admissionPolicy"]["enabled"], false,
        "off by default"
    );
    for key in ["subscriptions", "resourceGroups", "registries"] {
        assert_eq!(
            values["allowList"][key],
            json!([]),
            "allowList.{key} defaults to no restriction"
        );
    }
}

#[test]
fn go_json_list_literals_are_cel_list_literals() {
    // Helm's toJson is Go's encoding/json, which escapes <, > and & as \u003c, \u003e, \u0026;
    // CEL reads those escapes, so even such an entry stays the same string.
    let env = env();
    let program = env
        .compile(r#"["a\u003cb", "/subscriptions/x"] == ['a<b', '/subscriptions/x']"#)
        .unwrap();
    let context = cel::Context::with_env(Arc::clone(&env));
    assert_eq!(program.execute(&context), Ok(cel::Value::Bool(true)));
    let empty = env.compile("size([]) == 0").unwrap();
    assert_eq!(empty.execute(&context), Ok(cel::Value::Bool(true)));
}
