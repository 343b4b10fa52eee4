//! Built-in role definition GUIDs (identical in every tenant) the emulator knows.
//! A PUT naming any other GUID fails with RoleDefinitionDoesNotExist unless the tenant
//! config lists it in `roleDefinitions`.

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
pub const READER: &str = "acdd72a7-3385-48ef-bd42-f606fffbb2ab";

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
