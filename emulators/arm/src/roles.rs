//! Built-in role definitions (identical in every tenant) the emulator knows: GUID, name and the
//! permission set, as MicrosoftDocs/azure-docs `articles/role-based-access-control/built-in-roles/`
//! (general.md, privileged.md, containers.md) publish them. A PUT naming any other GUID fails with
//! RoleDefinitionDoesNotExist unless the tenant config lists it in `roleDefinitions` (no
//! permissions) or `customRoles` (with permissions).

use crate::config::RolePermissions;

pub const ACR_PULL: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";
pub const ACR_PUSH: &str = "8311e382-0749-4cb8-b61a-304f252e45ec";
pub const ACR_DELETE: &str = "c2f4ef07-c644-48eb-af81-4b1b4947fb11";
/// "Container Registry Repository Reader": the pull role honoured by ABAC-mode registries.
pub const REPOSITORY_READER: &str = "b93aa761-3e63-49ed-ac28-beffa264f7ac";
pub const REPOSITORY_WRITER: &str = "2a1e307c-b015-4ebd-883e-5b7698a07328";
pub const REPOSITORY_CONTRIBUTOR: &str = "2efddaa5-3f1f-4df3-97df-af3f13818f4c";
pub const REPOSITORY_CATALOG_LISTER: &str = "bfdb9389-c9a5-478a-bb2f-ba9ca092c3c7";
pub const DATA_IMPORTER_AND_DATA_READER: &str = "577a9874-89fd-4f24-9dbd-b5034d0ad23a";
pub const CONFIGURATION_READER_AND_DATA_ACCESS_CONFIGURATION_READER: &str =
    "69b07be0-09bf-439a-b9a6-e73de851bd59";
pub const RBAC_ADMINISTRATOR: &str = "f58310d9-a9f6-439a-9e8d-f62e7b41a168";
pub const USER_ACCESS_ADMINISTRATOR: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";
pub const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
pub const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
pub const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

/// A built-in role: GUID, name and permissions (one permissions entry, as every role here has).
pub struct BuiltInRole {
    pub guid: &'static str,
    pub name: &'static str,
    pub actions: &'static [&'static str],
    pub not_actions: &'static [&'static str],
    pub data_actions: &'static [&'static str],
    pub not_data_actions: &'static [&'static str],
}

impl BuiltInRole {
    pub fn permissions(&self) -> RolePermissions {
        let owned = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        RolePermissions {
            actions: owned(self.actions),
            not_actions: owned(self.not_actions),
            data_actions: owned(self.data_actions),
            not_data_actions: owned(self.not_data_actions),
        }
    }
}

const NONE: &[&str] = &[];
const REPO_METADATA_READ: &str =
    "Microsoft.ContainerRegistry/registries/repositories/metadata/read";
const REPO_CONTENT_READ: &str = "Microsoft.ContainerRegistry/registries/repositories/content/read";
const REPO_METADATA_WRITE: &str =
    "Microsoft.ContainerRegistry/registries/repositories/metadata/write";
const REPO_CONTENT_WRITE: &str =
    "Microsoft.ContainerRegistry/registries/repositories/content/write";

/// Every built-in role the emulator knows, with its published permissions.
pub const BUILT_IN: &[BuiltInRole] = &[
    BuiltInRole {
        guid: ACR_PULL,
        name: "AcrPull",
        actions: &["Microsoft.ContainerRegistry/registries/pull/read"],
        not_actions: NONE,
        data_actions: NONE,
        not_data_actions: NONE,
    },
    BuiltInRole {
        guid: ACR_PUSH,
        name: "AcrPush",
        actions: &[
            "Microsoft.ContainerRegistry/registries/pull/read",
            "Microsoft.ContainerRegistry/registries/push/write",
        ],
        not_actions: NONE,
        data_actions: NONE,
        not_data_actions: NONE,
    },
    BuiltInRole {
        guid: ACR_DELETE,
        name: "AcrDelete",
        actions: &["Microsoft.ContainerRegistry/registries/artifacts/delete"],
        not_actions: NONE,
        data_actions: NONE,
        not_data_actions: NONE,
    },
    BuiltInRole {
        guid: REPOSITORY_READER,
        name: "Container Registry Repository Reader",
        actions: NONE,
        not_actions: NONE,
        data_actions: &[REPO_METADATA_READ, REPO_CONTENT_READ],
        not_data_actions: NONE,
    },
    BuiltInRole {
        guid: REPOSITORY_WRITER,
        name: "Container Registry Repository Writer",
        actions: NONE,
        not_actions: NONE,
        data_actions: &[
            REPO_METADATA_READ,
            REPO_CONTENT_READ,
            REPO_METADATA_WRITE,
            REPO_CONTENT_WRITE,
        ],
        not_data_actions: NONE,
    },
    BuiltInRole {
        guid: REPOSITORY_CONTRIBUTOR,
        name: "Container Registry Repository Contributor",
        actions: NONE,
        not_actions: NONE,
        data_actions: &[
            REPO_METADATA_READ,
            REPO_CONTENT_READ,
            REPO_METADATA_WRITE,
            REPO_CONTENT_WRITE,
            "Microsoft.ContainerRegistry/registries/repositories/metadata/delete",
            "Microsoft.ContainerRegistry/registries/repositories/content/delete",
        ],
        not_data_actions: NONE,
    },
    BuiltInRole {
        guid: REPOSITORY_CATALOG_LISTER,
        name: "Container Registry Repository Catalog Lister",
        actions: NONE,
        not_actions: NONE,
        data_actions: &["Microsoft.ContainerRegistry/registries/catalog/read"],
        not_data_actions: NONE,
    },
    BuiltInRole {
        guid: DATA_IMPORTER_AND_DATA_READER,
        name: "Container Registry Data Importer and Data Reader",
        actions: &[
            "Microsoft.ContainerRegistry/registries/importImage/action",
            "Microsoft.ContainerRegistry/registries/read",
            "Microsoft.ContainerRegistry/registries/pull/read",
        ],
        not_actions: NONE,
        data_actions: &[
            REPO_CONTENT_READ,
            REPO_METADATA_READ,
            "Microsoft.ContainerRegistry/registries/catalog/read",
        ],
        not_data_actions: NONE,
    },
    BuiltInRole {
        guid: CONFIGURATION_READER_AND_DATA_ACCESS_CONFIGURATION_READER,
        name: "Container Registry Configuration Reader and Data Access Configuration Reader",
        actions: &[
            "Microsoft.ContainerRegistry/registries/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/read",
            "Microsoft.ContainerRegistry/registries/privateEndpointConnections/read",
            "Microsoft.ContainerRegistry/registries/privateEndpointConnections/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/listCredentials/action",
            "Microsoft.ContainerRegistry/registries/tokens/read",
            "Microsoft.ContainerRegistry/registries/tokens/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/scopeMaps/read",
            "Microsoft.ContainerRegistry/registries/scopeMaps/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/webhooks/read",
            "Microsoft.ContainerRegistry/registries/webhooks/getCallbackConfig/action",
            "Microsoft.ContainerRegistry/registries/webhooks/listEvents/action",
            "Microsoft.ContainerRegistry/registries/webhooks/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/replications/read",
            "Microsoft.ContainerRegistry/registries/replications/operationStatuses/read",
            "Microsoft.ContainerRegistry/registries/connectedRegistries/read",
            "Microsoft.ContainerRegistry/registries/providers/Microsoft.Insights/diagnosticSettings/read",
            "Microsoft.ContainerRegistry/registries/providers/Microsoft.Insights/diagnosticSettings/write",
            "Microsoft.ContainerRegistry/registries/providers/Microsoft.Insights/logDefinitions/read",
            "Microsoft.ContainerRegistry/registries/providers/Microsoft.Insights/metricDefinitions/read",
            "Microsoft.Insights/AlertRules/Write",
            "Microsoft.Insights/AlertRules/Delete",
            "Microsoft.Insights/AlertRules/Read",
            "Microsoft.Insights/AlertRules/Activated/Action",
            "Microsoft.Insights/AlertRules/Resolved/Action",
            "Microsoft.Insights/AlertRules/Throttled/Action",
            "Microsoft.Insights/AlertRules/Incidents/Read",
        ],
        not_actions: NONE,
        data_actions: NONE,
        not_data_actions: NONE,
    },
    BuiltInRole {
        guid: RBAC_ADMINISTRATOR,
        name: "Role Based Access Control Administrator",
        actions: &[
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete",
            "*/read",
            "Microsoft.Support/*",
        ],
        not_actions: NONE,
        data_actions: NONE,
        not_data_actions: NONE,
    },
    BuiltInRole {
        guid: USER_ACCESS_ADMINISTRATOR,
        name: "User Access Administrator",
        actions: &["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"],
        not_actions: NONE,
        data_actions: NONE,
        not_data_actions: NONE,
    },
    BuiltInRole {
        guid: OWNER,
        name: "Owner",
        actions: &["*"],
        not_actions: NONE,
        data_actions: NONE,
        not_data_actions: NONE,
    },
    BuiltInRole {
        guid: CONTRIBUTOR,
        name: "Contributor",
        actions: &["*"],
        not_actions: &[
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
            "Microsoft.Purview/consents/write",
            "Microsoft.Purview/consents/delete",
            "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
            "Microsoft.Subscription/cancel/action",
            "Microsoft.Subscription/enable/action",
        ],
        data_actions: NONE,
        not_data_actions: NONE,
    },
    BuiltInRole {
        guid: READER,
        name: "Reader",
        actions: &["*/read"],
        not_actions: NONE,
        data_actions: NONE,
        not_data_actions: NONE,
    },
];

/// (GUID, role name) of every built-in role the emulator knows.
pub const BUILT_IN_ROLES: &[(&str, &str)] = &[
    (ACR_PULL, "AcrPull"),
    (ACR_PUSH, "AcrPush"),
    (ACR_DELETE, "AcrDelete"),
    (REPOSITORY_READER, "Container Registry Repository Reader"),
    (REPOSITORY_WRITER, "Container Registry Repository Writer"),
    (
        REPOSITORY_CONTRIBUTOR,
        "Container Registry Repository Contributor",
    ),
    (
        REPOSITORY_CATALOG_LISTER,
        "Container Registry Repository Catalog Lister",
    ),
    (
        DATA_IMPORTER_AND_DATA_READER,
        "Container Registry Data Importer and Data Reader",
    ),
    (
        CONFIGURATION_READER_AND_DATA_ACCESS_CONFIGURATION_READER,
        "Container Registry Configuration Reader and Data Access Configuration Reader",
    ),
    (
        RBAC_ADMINISTRATOR,
        "Role Based Access Control Administrator",
    ),
    (USER_ACCESS_ADMINISTRATOR, "User Access Administrator"),
    (OWNER, "Owner"),
    (CONTRIBUTOR, "Contributor"),
    (READER, "Reader"),
];

/// The built-in role with this GUID (case-insensitive).
pub fn built_in(guid: &str) -> Option<&'static BuiltInRole> {
    BUILT_IN.iter().find(|r| r.guid.eq_ignore_ascii_case(guid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_tables_agree() {
        assert_eq!(BUILT_IN.len(), BUILT_IN_ROLES.len());
        for (guid, name) in BUILT_IN_ROLES {
            assert_eq!(built_in(guid).map(|r| r.name), Some(*name));
        }
    }
}
