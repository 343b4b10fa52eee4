//! Finding a registry by name: which registry list to read (the spec's subscription, else the
//! operator's default), and what the list says — exactly one match (its resource id), none
//! (`RegistryNameNotFound`: not there, or not visible to the operator's identity), or several
//! (`RegistryNameAmbiguous`, listing them). ARM's registry list has no name filter, so names are
//! matched here, case-insensitively as ARM compares them.

use crate::decide::failure::{ErrorClass, Failure};
use crate::decide::reasons;
use crate::model::azure::Registry;
use crate::model::{RegistryId, RegistryLookup};

/// The registry list a lookup reads: one subscription, or one resource group in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListScope {
    /// Lower-cased GUID.
    pub subscription: String,
    pub resource_group: Option<String>,
}

impl ListScope {
    /// Cache key: ARM compares scopes case-insensitively.
    pub fn key(&self) -> String {
        match &self.resource_group {
            Some(group) => format!("{}/{}", self.subscription, group.to_ascii_lowercase()),
            None => self.subscription.clone(),
        }
    }
}

impl std::fmt::Display for ListScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.resource_group {
            Some(group) => write!(
                f,
                "resource group {group} of subscription {}",
                self.subscription
            ),
            None => write!(f, "subscription {}", self.subscription),
        }
    }
}

/// Where to look for `lookup`: its own subscription, else `default_subscription` (the operator's
/// `--default-subscription`, else the cluster's subscription).
pub fn list_scope(
    lookup: &RegistryLookup,
    default_subscription: Option<&str>,
) -> Result<ListScope, Failure> {
    let subscription = lookup
        .subscription
        .as_deref()
        .or(default_subscription)
        .ok_or_else(|| {
            Failure::new(
                ErrorClass::NeedsHuman,
                reasons::REGISTRY_SUBSCRIPTION_UNKNOWN,
                format!(
                    "spec.registry.name {} names no subscription and the operator has no default one: set spec.registry.subscriptionId, or start the operator with --default-subscription (or --cluster-resource-id)",
                    lookup.name
                ),
            )
        })?;
    Ok(ListScope {
        subscription: subscription.to_ascii_lowercase(),
        resource_group: lookup.resource_group.clone(),
    })
}

/// The one registry in `listed` named `lookup.name`.
pub fn resolve(
    lookup: &RegistryLookup,
    scope: &ListScope,
    listed: &[Registry],
) -> Result<RegistryId, Failure> {
    let mut matches: Vec<RegistryId> = listed
        .iter()
        .filter_map(|registry| RegistryId::parse(&registry.id).ok())
        .filter(|id| id.name().eq_ignore_ascii_case(&lookup.name))
        .collect();
    matches.sort_by_key(RegistryId::key);
    matches.dedup();
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(Failure::new(
            ErrorClass::NeedsHuman,
            reasons::REGISTRY_NAME_NOT_FOUND,
            not_found_message(lookup, scope, listed),
        )),
        _ => Err(Failure::new(
            ErrorClass::NeedsHuman,
            reasons::REGISTRY_NAME_AMBIGUOUS,
            format!(
                "{} registries named {} in {scope}: {}; set spec.registry.resourceGroup, or name the registry by spec.registry.resourceId",
                matches.len(),
                lookup.name,
                matches
                    .iter()
                    .map(RegistryId::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn not_found_message(lookup: &RegistryLookup, scope: &ListScope, listed: &[Registry]) -> String {
    let hint = match near_miss(&lookup.name, listed) {
        Some(close) => format!(" (did you mean {close}?)"),
        None => String::new(),
    };
    format!(
        "no registry named {}{hint} in {scope} is visible to acr-attach's Azure identity: check the name (`az acr list --subscription {} --query [].name`), set spec.registry.subscriptionId for a registry in another subscription, or give spec.registry.resourceId; the identity needs Reader on the registry to see it listed",
        lookup.name, scope.subscription
    )
}

/// A listed name within two edits of `name` (case-insensitive), the closest first.
fn near_miss(name: &str, listed: &[Registry]) -> Option<String> {
    let wanted = name.to_ascii_lowercase();
    listed
        .iter()
        .filter_map(|registry| RegistryId::parse(&registry.id).ok())
        .map(|id| {
            let distance = edit_distance(&wanted, &id.name().to_ascii_lowercase());
            (distance, id.name().to_string())
        })
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, close)| close)
}

/// Levenshtein distance over bytes (registry names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "00000000-0000-4000-8000-000000000001";

    fn listed(entries: &[(&str, &str)]) -> Vec<Registry> {
        entries
            .iter()
            .map(|(group, name)| Registry {
                id: format!(
                    "/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/{name}"
                ),
                login_server: Some(format!("{}.azurecr.io", name.to_ascii_lowercase())),
                mode: None,
            })
            .collect()
    }

    fn lookup(name: &str) -> RegistryLookup {
        RegistryLookup {
            name: name.to_string(),
            resource_group: None,
            subscription: None,
        }
    }

    fn scope() -> ListScope {
        ListScope {
            subscription: SUB.to_string(),
            resource_group: None,
        }
    }

    #[test]
    fn the_spec_subscription_wins_over_the_default_and_one_is_required() {
        let mut named = lookup("sharedimages");
        assert_eq!(
            list_scope(&named, Some("DEFAULT-SUB"))
                .unwrap()
                .subscription,
            "default-sub"
        );
        named.subscription = Some(SUB.to_string());
        named.resource_group = Some("RG-Images".to_string());
        let scope = list_scope(&named, Some("default-sub")).unwrap();
        assert_eq!(scope.subscription, SUB);
        assert_eq!(scope.key(), format!("{SUB}/rg-images"));
        named.subscription = None;
        let failure = list_scope(&named, None).unwrap_err();
        assert_eq!(failure.reason, reasons::REGISTRY_SUBSCRIPTION_UNKNOWN);
        assert!(failure.message.contains("spec.registry.subscriptionId"));
        assert!(failure.message.contains("--default-subscription"));
    }

    #[test]
    fn one_match_case_insensitively_is_the_registry() {
        let registries = listed(&[("rg-a", "TeamImages"), ("rg-b", "sharedimages")]);
        let id = resolve(&lookup("SharedImages"), &scope(), &registries).unwrap();
        assert_eq!(id.resource_group(), "rg-b");
        assert_eq!(id.name(), "sharedimages");
    }

    #[test]
    fn no_match_names_the_scope_and_a_near_miss() {
        let registries = listed(&[("rg-a", "sharedimages"), ("rg-b", "otherregistry")]);
        let failure = resolve(&lookup("sharedimage"), &scope(), &registries).unwrap_err();
        assert_eq!(failure.reason, reasons::REGISTRY_NAME_NOT_FOUND);
        assert_eq!(failure.class, ErrorClass::NeedsHuman);
        assert!(failure.message.contains(SUB), "{}", failure.message);
        assert!(
            failure.message.contains("did you mean sharedimages?"),
            "{}",
            failure.message
        );
        let failure = resolve(&lookup("zzzzzzzz"), &scope(), &registries).unwrap_err();
        assert!(!failure.message.contains("did you mean"));
        assert!(failure.message.contains("not"), "{}", failure.message);
    }

    #[test]
    fn several_matches_are_ambiguous_and_listed() {
        let registries = listed(&[("rg-a", "sharedimages"), ("rg-b", "SharedImages")]);
        let failure = resolve(&lookup("sharedimages"), &scope(), &registries).unwrap_err();
        assert_eq!(failure.reason, reasons::REGISTRY_NAME_AMBIGUOUS);
        assert!(failure.message.contains("resourceGroups/rg-a/"));
        assert!(failure.message.contains("resourceGroups/rg-b/"));
        assert!(failure.message.contains("spec.registry.resourceGroup"));
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("abc", "ab"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
