//! Co-ownership recorded on the role assignment itself. Two clusters that share a kubelet
//! identity need the same grant, and ARM refuses a duplicate, so they share one assignment: its
//! description lists every acr-attach installation (owner id) that relies on it, and the one that
//! created it. An installation that adopts one made by another acr-attach adds itself; one that
//! detaches removes itself, and deletes the assignment only when nobody else is listed.

use std::collections::BTreeSet;

use crate::model::azure::RoleAssignment;
use crate::model::grant::Grant;
use crate::model::{OwnerId, RoleAssignmentName};

const PREFIX: &str = "Managed by acr-attach (";

/// Who relies on an assignment, as its description says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owners {
    pub owners: BTreeSet<String>,
    /// The installation whose derived name the assignment carries.
    pub creator: Option<String>,
}

impl Owners {
    pub fn created_by(me: &OwnerId) -> Self {
        Self {
            owners: [me.as_str().to_string()].into(),
            creator: Some(me.as_str().to_string()),
        }
    }
    pub fn lists(&self, me: &OwnerId) -> bool {
        self.owners.contains(me.as_str())
    }
    pub fn with(mut self, me: &OwnerId) -> Self {
        self.owners.insert(me.as_str().to_string());
        self
    }
    pub fn without(mut self, me: &OwnerId) -> Self {
        self.owners.remove(me.as_str());
        self
    }
}

/// The owners an acr-attach description lists, or `None` for any other description. Reads
/// today's `(owners: a, b; creator: a)` and the `(owner a)` earlier releases wrote.
pub fn parse(description: Option<&str>) -> Option<Owners> {
    let rest = description?.strip_prefix(PREFIX)?;
    let inside = &rest[..rest.find(')')?];
    let split = |list: &str| -> BTreeSet<String> {
        list.split(',')
            .map(|owner| owner.trim().to_ascii_lowercase())
            .filter(|owner| !owner.is_empty())
            .collect()
    };
    if let Some(single) = inside.strip_prefix("owner ") {
        let owner = single.trim().to_ascii_lowercase();
        return Some(Owners {
            owners: [owner.clone()].into(),
            creator: Some(owner),
        });
    }
    let (list, creator) = match inside.split_once(';') {
        Some((list, creator)) => (list, creator.trim().strip_prefix("creator:")),
        None => (inside, None),
    };
    Some(Owners {
        owners: split(list.strip_prefix("owners:")?),
        creator: creator.map(|c| c.trim().to_ascii_lowercase()),
    })
}

/// The description acr-attach writes.
pub fn describe(owners: &Owners, attachment: &str) -> String {
    let list: Vec<&str> = owners.owners.iter().map(String::as_str).collect();
    let creator = owners
        .creator
        .as_deref()
        .map(|creator| format!("; creator: {creator}"))
        .unwrap_or_default();
    format!(
        "{PREFIX}owners: {}{creator}) for RegistryAttachment {attachment}",
        list.join(", ")
    )
}

/// The attachment an acr-attach description names (`… for RegistryAttachment NAME`).
pub fn described_attachment(description: Option<&str>) -> Option<&str> {
    let (_, attachment) = description?
        .strip_prefix(PREFIX)?
        .rsplit_once(") for RegistryAttachment ")?;
    Some(attachment.trim()).filter(|name| !name.is_empty())
}

/// True when acr-attach (the creator, or an installation listed) derived the assignment's name
/// for `grant`'s registry, principal and role: proof that acr-attach made it. A description alone
/// could be written by anyone. A repository-scoped assignment carries the name derived for the
/// attachment its description names.
pub fn made_by_acr_attach(assignment: &RoleAssignment, grant: &Grant) -> bool {
    let Some(owners) = parse(assignment.description.as_deref()) else {
        return false;
    };
    let scoped_for = described_attachment(assignment.description.as_deref());
    owners
        .owners
        .iter()
        .chain(owners.creator.iter())
        .any(|owner| {
            let owner = OwnerId::new(owner.as_str());
            let (registry, principal, role) = (&grant.registry, &grant.principal, grant.role);
            assignment.name == RoleAssignmentName::derive(registry, principal, role, &owner)
                || scoped_for.is_some_and(|attachment| {
                    assignment.name
                        == RoleAssignmentName::derive_scoped(
                            registry, principal, role, &owner, attachment,
                        )
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_round_trip_and_the_old_form_is_read() {
        let owners = Owners::created_by(&OwnerId::new("b")).with(&OwnerId::new("a"));
        let text = describe(&owners, "shared-images");
        assert_eq!(
            text,
            "Managed by acr-attach (owners: a, b; creator: b) for RegistryAttachment shared-images"
        );
        assert_eq!(parse(Some(&text)), Some(owners.clone()));
        let left = owners.without(&OwnerId::new("b"));
        assert_eq!(
            describe(&left, "x"),
            "Managed by acr-attach (owners: a; creator: b) for RegistryAttachment x"
        );
        let old = parse(Some(
            "Managed by acr-attach (owner 6C1B-X) for RegistryAttachment a",
        ))
        .unwrap();
        assert!(old.lists(&OwnerId::new("6c1b-x")));
        assert_eq!(old.creator.as_deref(), Some("6c1b-x"));
        assert_eq!(parse(Some("made by hand")), None);
        assert_eq!(parse(None), None);
    }
}
