//! The operator-side allow-list: which registries this installation may touch at all. Checked
//! before any Azure call, so a refused attachment costs nothing and cannot be used to make the
//! operator's (powerful) identity write role assignments on someone else's registry. Three
//! independent lists (subscriptions, resource groups, registries); each non-empty list must admit
//! the registry, an empty list admits everything. Ids compare case-insensitively, as ARM's do.
//!
//! The login-server suffix of the cloud (e.g. `.azurecr.io`) is checked separately, once the
//! registry has been read: see [`login_server_allowed`].

use std::fmt;

use crate::decide::registry_lookup::ListScope;
use crate::model::{RegistryId, ResourceIdError};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    /// Lowercased subscription GUIDs.
    subscriptions: Vec<String>,
    /// Lowercased `<subscription>/<resourceGroup>`.
    resource_groups: Vec<String>,
    /// Lowercased registry resource ids.
    registries: Vec<String>,
}

/// Why a registry is refused; names the flag to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryNotAllowed {
    pub flag: &'static str,
    pub message: String,
}

impl fmt::Display for RegistryNotAllowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub const ALLOWED_SUBSCRIPTIONS_FLAG: &str = "--allowed-subscriptions";
pub const ALLOWED_RESOURCE_GROUPS_FLAG: &str = "--allowed-resource-groups";
pub const ALLOWED_REGISTRIES_FLAG: &str = "--allowed-registries";

impl AllowList {
    /// Builds the list from the flags' values, refusing entries that could never match.
    pub fn new(
        subscriptions: &[String],
        resource_groups: &[String],
        registries: &[String],
    ) -> Result<Self, String> {
        let subscriptions = normalise(subscriptions);
        for subscription in &subscriptions {
            if uuid::Uuid::parse_str(subscription).is_err() {
                return Err(format!(
                    "{ALLOWED_SUBSCRIPTIONS_FLAG}: {subscription:?} is not a subscription id (a GUID)"
                ));
            }
        }
        let resource_groups = normalise(resource_groups);
        for group in &resource_groups {
            let well_formed = group.split_once('/').is_some_and(|(sub, rg)| {
                uuid::Uuid::parse_str(sub).is_ok() && !rg.is_empty() && !rg.contains('/')
            });
            if !well_formed {
                return Err(format!(
                    "{ALLOWED_RESOURCE_GROUPS_FLAG}: {group:?} must be <subscriptionId>/<resourceGroup>"
                ));
            }
        }
        let registries = normalise(registries)
            .into_iter()
            .map(|id| {
                RegistryId::parse(&id)
                    .map(|registry| registry.as_str().to_ascii_lowercase())
                    .map_err(|ResourceIdError(e)| format!("{ALLOWED_REGISTRIES_FLAG}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            subscriptions,
            resource_groups,
            registries,
        })
    }

    pub fn is_unrestricted(&self) -> bool {
        self.subscriptions.is_empty()
            && self.resource_groups.is_empty()
            && self.registries.is_empty()
    }

    /// Admits the registry, or says which flag refuses it.
    pub fn permits(&self, registry: &RegistryId) -> Result<(), RegistryNotAllowed> {
        let subscription = registry.subscription().to_ascii_lowercase();
        if !self.subscriptions.is_empty() && !self.subscriptions.contains(&subscription) {
            return Err(RegistryNotAllowed {
                flag: ALLOWED_SUBSCRIPTIONS_FLAG,
                message: format!(
                    "subscription {subscription} is not in the operator's {ALLOWED_SUBSCRIPTIONS_FLAG}; ask the operator's administrators to add it, or use a registry in an allowed subscription"
                ),
            });
        }
        let group = format!(
            "{subscription}/{}",
            registry.resource_group().to_ascii_lowercase()
        );
        if !self.resource_groups.is_empty() && !self.resource_groups.contains(&group) {
            return Err(RegistryNotAllowed {
                flag: ALLOWED_RESOURCE_GROUPS_FLAG,
                message: format!(
                    "resource group {group} is not in the operator's {ALLOWED_RESOURCE_GROUPS_FLAG}; ask the operator's administrators to add it, or use a registry in an allowed resource group"
                ),
            });
        }
        let id = registry.as_str().to_ascii_lowercase();
        if !self.registries.is_empty() && !self.registries.contains(&id) {
            return Err(RegistryNotAllowed {
                flag: ALLOWED_REGISTRIES_FLAG,
                message: format!(
                    "registry {} is not in the operator's {ALLOWED_REGISTRIES_FLAG}; ask the operator's administrators to add it",
                    registry.name()
                ),
            });
        }
        Ok(())
    }
}

impl AllowList {
    /// Before a registry list is read for a lookup by name: refuses a subscription (or resource
    /// group) in which no registry could pass [`permits`](Self::permits), so a name cannot make
    /// the operator read lists it was never meant to touch. The found registry is checked with
    /// `permits` afterwards.
    pub fn permits_scope(&self, scope: &ListScope) -> Result<(), RegistryNotAllowed> {
        let subscription = scope.subscription.as_str();
        let group = scope
            .resource_group
            .as_ref()
            .map(|group| format!("{subscription}/{}", group.to_ascii_lowercase()));
        let within = |entry: &str| match &group {
            Some(group) => entry == group || entry.starts_with(&format!("{group}/")),
            None => entry.starts_with(&format!("{subscription}/")),
        };
        if !self.subscriptions.is_empty() && !self.subscriptions.iter().any(|s| s == subscription) {
            return Err(RegistryNotAllowed {
                flag: ALLOWED_SUBSCRIPTIONS_FLAG,
                message: format!(
                    "subscription {subscription} is not in the operator's {ALLOWED_SUBSCRIPTIONS_FLAG}; ask the operator's administrators to add it, or set spec.registry.subscriptionId to an allowed subscription"
                ),
            });
        }
        if !self.resource_groups.is_empty() && !self.resource_groups.iter().any(|g| within(g)) {
            return Err(RegistryNotAllowed {
                flag: ALLOWED_RESOURCE_GROUPS_FLAG,
                message: format!(
                    "no resource group of {scope} is in the operator's {ALLOWED_RESOURCE_GROUPS_FLAG}; set spec.registry.resourceGroup to an allowed one, or ask the operator's administrators to add it"
                ),
            });
        }
        let registry_within = |id: &str| {
            let prefix = id.trim_start_matches("/subscriptions/");
            let group_prefix = prefix.replacen("/resourcegroups/", "/", 1);
            within(&group_prefix)
        };
        if !self.registries.is_empty() && !self.registries.iter().any(|id| registry_within(id)) {
            return Err(RegistryNotAllowed {
                flag: ALLOWED_REGISTRIES_FLAG,
                message: format!(
                    "no registry in {scope} is in the operator's {ALLOWED_REGISTRIES_FLAG}; name an allowed registry, or ask the operator's administrators to add it"
                ),
            });
        }
        Ok(())
    }
}

fn normalise(entries: &[String]) -> Vec<String> {
    entries
        .iter()
        .map(|entry| entry.trim().trim_end_matches('/').to_ascii_lowercase())
        .filter(|entry| !entry.is_empty())
        .collect()
}

/// A registry's login server must belong to the operator's cloud (`<name>.azurecr.io` in Azure
/// public, `.azurecr.cn` in China, `.azurecr.us` in US Government): anything else is a registry
/// the kubelet of this cluster would not be pulling from through this cloud's ACR.
pub fn login_server_allowed(login_server: &str, suffix: &str) -> Result<(), RegistryNotAllowed> {
    let login_server = login_server.to_ascii_lowercase();
    if login_server.ends_with(&suffix.to_ascii_lowercase()) {
        Ok(())
    } else {
        Err(RegistryNotAllowed {
            flag: "--cloud",
            message: format!(
                "the registry's login server {login_server} does not end with {suffix}, the registry suffix of the operator's --cloud; run the operator for that registry's cloud"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "00000000-0000-4000-8000-000000000001";
    const OTHER_SUB: &str = "00000000-0000-4000-8000-000000000002";

    fn registry(sub: &str, rg: &str, name: &str) -> RegistryId {
        RegistryId::parse(&format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{name}"
        ))
        .unwrap()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn empty_lists_admit_everything() {
        let list = AllowList::new(&[], &[], &[]).unwrap();
        assert!(list.is_unrestricted());
        assert!(list.permits(&registry(SUB, "rg", "acr01")).is_ok());
    }

    #[test]
    fn each_list_refuses_what_it_does_not_name_and_names_its_flag() {
        let by_sub = AllowList::new(&strings(&[SUB]), &[], &[]).unwrap();
        assert!(by_sub.permits(&registry(SUB, "rg", "acr01")).is_ok());
        let refused = by_sub
            .permits(&registry(OTHER_SUB, "rg", "acr01"))
            .unwrap_err();
        assert_eq!(refused.flag, ALLOWED_SUBSCRIPTIONS_FLAG);
        assert!(refused.message.contains(OTHER_SUB), "{}", refused.message);

        let by_group =
            AllowList::new(&[], &strings(&[&format!("{SUB}/Platform-RG")]), &[]).unwrap();
        assert!(
            by_group
                .permits(&registry(SUB, "platform-rg", "acr01"))
                .is_ok()
        );
        let refused = by_group
            .permits(&registry(SUB, "team-rg", "acr01"))
            .unwrap_err();
        assert_eq!(refused.flag, ALLOWED_RESOURCE_GROUPS_FLAG);

        let allowed = registry(SUB, "rg", "Shared01");
        let by_registry = AllowList::new(
            &[],
            &[],
            &strings(&[&allowed.as_str().to_ascii_uppercase()]),
        )
        .unwrap();
        assert!(
            by_registry
                .permits(&registry(SUB, "RG", "shared01"))
                .is_ok(),
            "ids compare case-insensitively"
        );
        let refused = by_registry
            .permits(&registry(SUB, "rg", "other01"))
            .unwrap_err();
        assert_eq!(refused.flag, ALLOWED_REGISTRIES_FLAG);
        assert!(refused.message.contains("other01"));
    }

    #[test]
    fn every_non_empty_list_must_admit() {
        let list =
            AllowList::new(&strings(&[SUB]), &strings(&[&format!("{SUB}/rg")]), &[]).unwrap();
        assert!(list.permits(&registry(SUB, "rg", "acr01")).is_ok());
        assert_eq!(
            list.permits(&registry(SUB, "rg2", "acr01"))
                .unwrap_err()
                .flag,
            ALLOWED_RESOURCE_GROUPS_FLAG
        );
    }

    #[test]
    fn malformed_entries_are_refused_with_the_flag_named() {
        let error = AllowList::new(&strings(&["prod"]), &[], &[]).unwrap_err();
        assert!(error.starts_with(ALLOWED_SUBSCRIPTIONS_FLAG), "{error}");
        let error = AllowList::new(&[], &strings(&["platform-rg"]), &[]).unwrap_err();
        assert!(
            error.contains("<subscriptionId>/<resourceGroup>"),
            "{error}"
        );
        let error = AllowList::new(&[], &[], &strings(&["myregistry"])).unwrap_err();
        assert!(error.starts_with(ALLOWED_REGISTRIES_FLAG), "{error}");
    }

    #[test]
    fn a_lookup_scope_is_refused_when_no_allowed_registry_could_be_in_it() {
        let scope = |sub: &str, group: Option<&str>| ListScope {
            subscription: sub.to_string(),
            resource_group: group.map(ToString::to_string),
        };
        let unrestricted = AllowList::default();
        assert!(unrestricted.permits_scope(&scope(OTHER_SUB, None)).is_ok());

        let by_sub = AllowList::new(&strings(&[SUB]), &[], &[]).unwrap();
        assert!(by_sub.permits_scope(&scope(SUB, Some("any"))).is_ok());
        let refused = by_sub.permits_scope(&scope(OTHER_SUB, None)).unwrap_err();
        assert_eq!(refused.flag, ALLOWED_SUBSCRIPTIONS_FLAG);

        let by_group = AllowList::new(&[], &strings(&[&format!("{SUB}/Platform")]), &[]).unwrap();
        assert!(by_group.permits_scope(&scope(SUB, None)).is_ok());
        assert!(
            by_group
                .permits_scope(&scope(SUB, Some("PLATFORM")))
                .is_ok()
        );
        assert_eq!(
            by_group
                .permits_scope(&scope(SUB, Some("platform2")))
                .unwrap_err()
                .flag,
            ALLOWED_RESOURCE_GROUPS_FLAG
        );
        assert!(by_group.permits_scope(&scope(OTHER_SUB, None)).is_err());

        let allowed = registry(SUB, "images", "shared01");
        let by_registry = AllowList::new(&[], &[], &strings(&[allowed.as_str()])).unwrap();
        assert!(by_registry.permits_scope(&scope(SUB, None)).is_ok());
        assert!(
            by_registry
                .permits_scope(&scope(SUB, Some("Images")))
                .is_ok()
        );
        let refused = by_registry
            .permits_scope(&scope(SUB, Some("images2")))
            .unwrap_err();
        assert_eq!(refused.flag, ALLOWED_REGISTRIES_FLAG);
        assert!(by_registry.permits_scope(&scope(OTHER_SUB, None)).is_err());
    }

    #[test]
    fn login_servers_must_belong_to_the_cloud() {
        assert!(login_server_allowed("Shared.azurecr.io", ".azurecr.io").is_ok());
        let refused = login_server_allowed("shared.azurecr.cn", ".azurecr.io").unwrap_err();
        assert_eq!(refused.flag, "--cloud");
    }
}
