//! A grant: "this principal holds this role on this registry, under this condition" — what one
//! role assignment provides, independent of the assignment's name. The planner wants grants,
//! ARM lists assignments, and this module says when an assignment provides a grant.

use std::fmt;

use crate::model::azure::RoleAssignment;
use crate::model::{OwnerId, PrincipalId, PrincipalType, PullRole, RegistryId, RoleAssignmentName};

/// ABAC condition text, compared as ARM may store it: whitespace does not count (repository
/// names and the condition grammar's tokens contain none).
#[derive(Clone, Debug, Eq)]
pub struct Condition(String);

impl Condition {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    fn key(&self) -> String {
        self.0.chars().filter(|c| !c.is_whitespace()).collect()
    }
    /// True when `text` (as ARM returned it) is this condition.
    pub fn matches(&self, text: Option<&str>) -> bool {
        text.is_some_and(|text| Condition::new(text).key() == self.key())
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl std::hash::Hash for Condition {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// An assignment's condition, if it has a non-blank one.
fn condition_of(assignment: &RoleAssignment) -> Option<&str> {
    assignment
        .condition
        .as_deref()
        .filter(|text| !text.trim().is_empty())
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Grant {
    pub registry: RegistryId,
    pub principal: PrincipalId,
    pub principal_type: PrincipalType,
    pub role: PullRole,
    /// `None`: the whole registry.
    pub condition: Option<Condition>,
}

impl Grant {
    /// True when `assignment` provides exactly this grant: what ARM calls the same assignment
    /// (409 RoleAssignmentExists) — same scope, principal, role and condition.
    pub fn is_provided_by(&self, assignment: &RoleAssignment) -> bool {
        let same_condition = match &self.condition {
            None => condition_of(assignment).is_none(),
            Some(condition) => condition.matches(condition_of(assignment)),
        };
        self.is_for(assignment) && same_condition
    }

    /// True when `assignment` is this grant's scope, principal and role, whatever its condition.
    pub fn is_for(&self, assignment: &RoleAssignment) -> bool {
        assignment
            .scope
            .eq_ignore_ascii_case(self.registry.as_str())
            && assignment
                .principal_id
                .eq_ignore_ascii_case(self.principal.as_str())
            && assignment.role() == Some(self.role)
    }

    /// The name this installation gives the assignment; a scoped grant is per attachment.
    pub fn name(&self, owner: &OwnerId, attachment: &str) -> RoleAssignmentName {
        match self.condition {
            None => RoleAssignmentName::derive(&self.registry, &self.principal, self.role, owner),
            Some(_) => RoleAssignmentName::derive_scoped(
                &self.registry,
                &self.principal,
                self.role,
                owner,
                attachment,
            ),
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} for {} on {}",
            self.role.display_name(),
            self.principal,
            self.registry.name()
        )?;
        if self.condition.is_some() {
            f.write_str(" (scoped to repositories)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/shared";
    const PRINCIPAL: &str = "11111111-1111-1111-1111-111111111111";

    fn assignment(role: PullRole, condition: Option<&str>) -> RoleAssignment {
        RoleAssignment {
            id: format!("{REGISTRY}/providers/Microsoft.Authorization/roleAssignments/x"),
            name: RoleAssignmentName::from_arm("x"),
            scope: REGISTRY.to_ascii_lowercase(),
            role_definition_id: role.definition_id("s"),
            principal_id: PRINCIPAL.to_ascii_uppercase(),
            condition: condition.map(str::to_string),
            description: None,
            principal_type: None,
        }
    }

    fn grant(condition: Option<&str>) -> Grant {
        Grant {
            registry: RegistryId::parse(REGISTRY).unwrap(),
            principal: PrincipalId::parse(PRINCIPAL).unwrap(),
            principal_type: PrincipalType::ServicePrincipal,
            role: PullRole::RepositoryReader,
            condition: condition.map(Condition::new),
        }
    }

    #[test]
    fn conditions_compare_without_whitespace() {
        let wanted = grant(Some("((a) OR (b 'x/'))"));
        assert!(wanted.is_provided_by(&assignment(
            PullRole::RepositoryReader,
            Some("( (a)\n OR  (b  'x/') )")
        )));
        assert!(!wanted.is_provided_by(&assignment(
            PullRole::RepositoryReader,
            Some("((a) OR (b 'y/'))")
        )));
        assert!(!wanted.is_provided_by(&assignment(PullRole::RepositoryReader, None)));
    }

    #[test]
    fn an_unscoped_grant_is_not_provided_by_a_conditioned_assignment() {
        let wanted = grant(None);
        assert!(wanted.is_provided_by(&assignment(PullRole::RepositoryReader, Some("  "))));
        assert!(!wanted.is_provided_by(&assignment(PullRole::RepositoryReader, Some("(x)"))));
        assert!(!wanted.is_provided_by(&assignment(PullRole::AcrPull, None)));
        assert!(wanted.is_for(&assignment(PullRole::RepositoryReader, Some("(x)"))));
    }
}
