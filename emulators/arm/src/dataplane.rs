//! Data-plane authorization for tests: would ACR let this principal pull from a repository, or
//! list the catalog? Decided from the emulator's role assignments the way ACR documents it
//! (research §1 and §3); no HTTP surface, only `ArmEmulator::may_read_repository` and
//! `ArmEmulator::may_list_catalog`.
//!
//! - Legacy-mode registry (`LegacyRegistryPermissions`): an assignment at or above the registry
//!   (to the principal or to a group it belongs to, nesting followed) whose role's `actions`
//!   grant `Microsoft.ContainerRegistry/registries/pull/read` (AcrPull, AcrPush, Reader's
//!   `*/read`, Owner's `*`, …). Data actions do not count, so Repository Reader grants nothing.
//!   Catalog listing needs the same.
//! - ABAC-mode registry (`AbacRepositoryPermissions`): only `dataActions` count (AcrPull and
//!   Owner/Contributor/Reader grant nothing). A repository read needs both
//!   `…/repositories/content/read` and `…/repositories/metadata/read`, each granted by some
//!   assignment whose condition (if any) is fulfilled for that action and repository. Catalog
//!   listing needs `…/registries/catalog/read`, evaluated without a repository name.
//!
//! Conditions: the repository grammar of research §3: parentheses, `!`/`NOT`, `AND`/`&&`,
//! `OR`/`||` (keywords case-insensitive), `ActionMatches{'…'}`, and
//! `@Request[Microsoft.ContainerRegistry/registries/repositories:name]` compared with
//! `StringEquals`, `StringEqualsIgnoreCase`, `StringStartsWith`, `StringStartsWithIgnoreCase`,
//! `StringLike` (`*` any run, `?` one character, case-sensitive) or their `StringNot…` negations,
//! against one quoted value; whitespace anywhere. A condition written in the delegation subset
//! (role-assignment attributes, see `rbac.rs`) is evaluated with that grammar instead, with no
//! request attributes. Anything else grants nothing: never open. A comparison of the repository
//! name when there is none (catalog listing) is unknown, and unknown is never "fulfilled".

use crate::config::{RegistryMode, RolePermissions};
use crate::rbac::{self, Token, action_matches, grants_action, tokenize};
use crate::state::{State, norm_id};
use std::collections::HashSet;

pub(crate) const PULL_READ: &str = "Microsoft.ContainerRegistry/registries/pull/read";
pub(crate) const CONTENT_READ: &str =
    "Microsoft.ContainerRegistry/registries/repositories/content/read";
pub(crate) const METADATA_READ: &str =
    "Microsoft.ContainerRegistry/registries/repositories/metadata/read";
pub(crate) const CATALOG_READ: &str = "Microsoft.ContainerRegistry/registries/catalog/read";
const REPOSITORY_NAME: &str = "@Request[Microsoft.ContainerRegistry/registries/repositories:name]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrOp {
    Equals,
    StartsWith,
    Like,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparison {
    op: StrOp,
    ignore_case: bool,
    negated: bool,
    value: String,
}

impl Comparison {
    fn parse_operator(word: &str, value: String) -> Option<Comparison> {
        let lower = word.to_ascii_lowercase();
        let (negated, rest) = match lower.strip_prefix("stringnot") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower.strip_prefix("string")?.to_string()),
        };
        let (op, ignore_case) = match rest.as_str() {
            "equals" => (StrOp::Equals, false),
            "equalsignorecase" => (StrOp::Equals, true),
            "startswith" => (StrOp::StartsWith, false),
            "startswithignorecase" => (StrOp::StartsWith, true),
            "like" => (StrOp::Like, false),
            _ => return None,
        };
        Some(Comparison {
            op,
            ignore_case,
            negated,
            value,
        })
    }

    fn holds(&self, name: &str) -> bool {
        let (left, right) = if self.ignore_case {
            (name.to_lowercase(), self.value.to_lowercase())
        } else {
            (name.to_string(), self.value.clone())
        };
        let positive = match self.op {
            StrOp::Equals => left == right,
            StrOp::StartsWith => left.starts_with(&right),
            StrOp::Like => like(&right, &left),
        };
        positive != self.negated
    }
}

/// `StringLike`: `*` matches any run of characters, `?` exactly one.
fn like(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    ActionMatches(String),
    RepositoryName(Comparison),
}

/// A parsed repository condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepositoryCondition(Expr);

/// What a data-plane request offers a condition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DataRequest<'a> {
    pub action: &'a str,
    /// `None` for requests that are not about one repository (catalog listing).
    pub repository: Option<&'a str>,
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: Token) -> Result<(), String> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            other => Err(format!("expected {want:?}, found {other:?}")),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut terms = vec![self.and()?];
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::Or(terms)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut terms = vec![self.unary()?];
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Expr::And(terms)
        })
    }

    fn unary(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some(Token::Not) => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(Token::Open) => {
                self.pos += 1;
                let inner = self.or()?;
                self.expect(Token::Close)?;
                Ok(inner)
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("ActionMatches") => {
                self.expect(Token::BraceOpen)?;
                let action = match self.next() {
                    Some(Token::Str(s)) => s,
                    other => return Err(format!("ActionMatches needs a string, found {other:?}")),
                };
                self.expect(Token::BraceClose)?;
                Ok(Expr::ActionMatches(action))
            }
            Some(Token::Attr(a)) => {
                let compact: String = a.chars().filter(|c| !c.is_whitespace()).collect();
                if !compact.eq_ignore_ascii_case(REPOSITORY_NAME) {
                    return Err(format!("unsupported attribute {a}"));
                }
                let op = match self.next() {
                    Some(Token::Word(w)) => w,
                    other => {
                        return Err(format!("expected an operator after {a}, found {other:?}"));
                    }
                };
                let value = match self.next() {
                    Some(Token::Str(s)) => s,
                    other => return Err(format!("'{op}' needs one quoted value, found {other:?}")),
                };
                Comparison::parse_operator(&op, value)
                    .map(Expr::RepositoryName)
                    .ok_or_else(|| format!("unsupported operator '{op}'"))
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

impl RepositoryCondition {
    pub fn parse(text: &str) -> Result<RepositoryCondition, String> {
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Err("empty condition".to_string());
        }
        let mut parser = Parser { tokens, pos: 0 };
        let expr = parser.or()?;
        if parser.pos != parser.tokens.len() {
            return Err(format!(
                "unexpected {:?} after the condition",
                parser.tokens[parser.pos]
            ));
        }
        Ok(RepositoryCondition(expr))
    }

    /// True only when the condition is definitely fulfilled.
    pub fn fulfilled(&self, req: &DataRequest<'_>) -> bool {
        eval(&self.0, req) == Some(true)
    }
}

/// Three-valued: `None` = depends on an attribute the request does not have.
fn eval(expr: &Expr, req: &DataRequest<'_>) -> Option<bool> {
    match expr {
        Expr::Or(terms) => {
            let values: Vec<Option<bool>> = terms.iter().map(|t| eval(t, req)).collect();
            if values.contains(&Some(true)) {
                Some(true)
            } else if values.contains(&None) {
                None
            } else {
                Some(false)
            }
        }
        Expr::And(terms) => {
            let values: Vec<Option<bool>> = terms.iter().map(|t| eval(t, req)).collect();
            if values.contains(&Some(false)) {
                Some(false)
            } else if values.contains(&None) {
                None
            } else {
                Some(true)
            }
        }
        Expr::Not(inner) => eval(inner, req).map(|v| !v),
        Expr::ActionMatches(pattern) => Some(action_matches(pattern, req.action)),
        Expr::RepositoryName(cmp) => req.repository.map(|name| cmp.holds(name)),
    }
}

/// Whether an assignment's condition lets `req` through (no condition: yes).
fn condition_allows(condition: Option<&str>, req: &DataRequest<'_>) -> bool {
    let Some(text) = condition.filter(|c| !c.trim().is_empty()) else {
        return true;
    };
    if let Ok(c) = RepositoryCondition::parse(text) {
        return c.fulfilled(req);
    }
    rbac::Condition::parse(text).is_ok_and(|c| {
        c.fulfilled(&rbac::RequestContext {
            action: req.action.to_string(),
            ..rbac::RequestContext::default()
        })
    })
}

fn grants_data_action(perms: &RolePermissions, action: &str) -> bool {
    perms.data_actions.iter().any(|p| action_matches(p, action))
        && !perms
            .not_data_actions
            .iter()
            .any(|p| action_matches(p, action))
}

fn covers(scope: &str, target: &str) -> bool {
    let (s, t) = (norm_id(scope), norm_id(target));
    s == "/" || t == s || t.starts_with(&format!("{s}/"))
}

/// Some assignment of one of `principals` at or above `registry` grants `req.action` (as a
/// data action or as a control-plane action) with its condition fulfilled.
fn allowed(
    st: &State,
    registry: &str,
    principals: &HashSet<String>,
    data_action: bool,
    req: &DataRequest<'_>,
) -> bool {
    st.assignments.values().any(|rec| {
        principals.contains(&rec.principal_id.to_ascii_lowercase())
            && covers(&rec.scope, registry)
            && st
                .role_permissions
                .get(&rec.role_definition_guid().to_ascii_lowercase())
                .is_some_and(|perms| {
                    if data_action {
                        grants_data_action(perms, req.action)
                    } else {
                        grants_action(perms, req.action)
                    }
                })
            && condition_allows(rec.condition.as_deref(), req)
    })
}

/// See the module documentation. False for a registry the emulator does not have.
pub(crate) fn may_read_repository(
    st: &State,
    registry_id: &str,
    principal_id: &str,
    repository: &str,
) -> bool {
    let Some(reg) = st.registries.get(&norm_id(registry_id)) else {
        return false;
    };
    let principals = st.principal_and_groups(principal_id);
    let repository = Some(repository);
    match reg.config.mode {
        RegistryMode::Legacy => allowed(
            st,
            registry_id,
            &principals,
            false,
            &DataRequest {
                action: PULL_READ,
                repository,
            },
        ),
        RegistryMode::Abac => [CONTENT_READ, METADATA_READ].iter().all(|action| {
            allowed(
                st,
                registry_id,
                &principals,
                true,
                &DataRequest { action, repository },
            )
        }),
    }
}

/// See the module documentation. False for a registry the emulator does not have.
pub(crate) fn may_list_catalog(st: &State, registry_id: &str, principal_id: &str) -> bool {
    let Some(reg) = st.registries.get(&norm_id(registry_id)) else {
        return false;
    };
    let principals = st.principal_and_groups(principal_id);
    let (data_action, action) = match reg.config.mode {
        RegistryMode::Legacy => (false, PULL_READ),
        RegistryMode::Abac => (true, CATALOG_READ),
    };
    allowed(
        st,
        registry_id,
        &principals,
        data_action,
        &DataRequest {
            action,
            repository: None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PrincipalConfig, RegistryConfig, RoleAssignmentConfig, TenantConfig};
    use crate::roles::{
        ACR_PULL, DATA_IMPORTER_AND_DATA_READER, OWNER, READER, REPOSITORY_CATALOG_LISTER,
        REPOSITORY_READER,
    };

    const SUB: &str = "00000000-0000-4000-8000-000000000001";
    const KUBELET: &str = "11111111-1111-4111-8111-111111111111";
    const OTHER: &str = "22222222-2222-4222-8222-222222222222";

    fn rg() -> String {
        format!("/subscriptions/{SUB}/resourceGroups/images")
    }

    fn legacy() -> String {
        format!(
            "{}/providers/Microsoft.ContainerRegistry/registries/legacyacr",
            rg()
        )
    }

    fn abac() -> String {
        format!(
            "{}/providers/Microsoft.ContainerRegistry/registries/abacacr",
            rg()
        )
    }

    /// The single-repository example of the ACR ABAC article, with its line breaks.
    const SINGLE_REPO: &str = "(
 (
  !(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'})
  AND
  !(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/metadata/read'})
 )
 OR 
 (
  @Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEqualsIgnoreCase 'nginx'
 )
)";

    /// The article's condition shape with `inner` as the repository clause.
    fn repo_condition(inner: &str) -> String {
        format!(
            "((!(ActionMatches{{'Microsoft.ContainerRegistry/registries/repositories/content/read'}}) AND !(ActionMatches{{'Microsoft.ContainerRegistry/registries/repositories/metadata/read'}})) OR ({inner}))"
        )
    }

    fn prefix(p: &str) -> String {
        format!(
            "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringStartsWithIgnoreCase '{p}'"
        )
    }

    fn grant(
        scope: &str,
        role: &str,
        principal: &str,
        condition: Option<&str>,
    ) -> RoleAssignmentConfig {
        RoleAssignmentConfig {
            scope: scope.to_string(),
            role_definition: role.to_string(),
            principal_id: principal.to_string(),
            principal_type: Some("ServicePrincipal".to_string()),
            condition: condition.map(str::to_string),
            ..RoleAssignmentConfig::default()
        }
    }

    fn state(assignments: Vec<RoleAssignmentConfig>) -> State {
        state_with(assignments, Vec::new())
    }

    fn state_with(
        assignments: Vec<RoleAssignmentConfig>,
        principals: Vec<PrincipalConfig>,
    ) -> State {
        State::new(TenantConfig {
            registries: vec![
                RegistryConfig::new(legacy(), RegistryMode::Legacy),
                RegistryConfig::new(abac(), RegistryMode::Abac),
            ],
            principals,
            role_assignments: assignments,
            ..TenantConfig::default()
        })
        .expect("valid config")
    }

    fn reads(c: &str, repository: &str) -> bool {
        let c = RepositoryCondition::parse(c).expect("parses");
        [CONTENT_READ, METADATA_READ].iter().all(|action| {
            c.fulfilled(&DataRequest {
                action,
                repository: Some(repository),
            })
        })
    }

    #[test]
    fn the_documented_single_repository_condition() {
        assert!(reads(SINGLE_REPO, "nginx"));
        assert!(reads(SINGLE_REPO, "NGINX"), "StringEqualsIgnoreCase");
        assert!(!reads(SINGLE_REPO, "nginx2"));
        assert!(!reads(SINGLE_REPO, "team-a/nginx"));
        let st = state(vec![grant(
            &abac(),
            REPOSITORY_READER,
            KUBELET,
            Some(SINGLE_REPO),
        )]);
        assert!(may_read_repository(&st, &abac(), KUBELET, "nginx"));
        assert!(!may_read_repository(&st, &abac(), KUBELET, "redis"));
        assert!(!may_read_repository(&st, &abac(), OTHER, "nginx"));
    }

    #[test]
    fn the_documented_prefix_conditions() {
        let one = repo_condition(&prefix("backend/"));
        assert!(reads(&one, "backend/api"));
        assert!(reads(&one, "Backend/deep/er"));
        assert!(!reads(&one, "backend-infra/k8s"));
        assert!(!reads(&one, "backendsvc/containers"));
        assert!(!reads(&one, "backend"));
        let without_slash = repo_condition(&prefix("backend"));
        assert!(
            reads(&without_slash, "backend-infra/k8s"),
            "the doc's warning: no trailing slash matches more"
        );
        let two = repo_condition(&format!(
            "{} OR {}",
            prefix("backend/"),
            prefix("frontend/js/")
        ));
        assert!(reads(&two, "backend/api"));
        assert!(reads(&two, "frontend/js/app"));
        assert!(!reads(&two, "frontend/css/app"));
    }

    #[test]
    fn a_prefix_with_a_slash_does_not_match_a_longer_sibling() {
        let c = repo_condition(&prefix("team-a/"));
        let st = state(vec![grant(&abac(), REPOSITORY_READER, KUBELET, Some(&c))]);
        assert!(may_read_repository(&st, &abac(), KUBELET, "team-a/x"));
        assert!(!may_read_repository(&st, &abac(), KUBELET, "team-ab/x"));
        assert!(!may_read_repository(&st, &abac(), KUBELET, "team-a"));
    }

    #[test]
    fn keywords_operators_and_whitespace_are_flexible() {
        let c = "  (  ( ! ( actionmatches { 'Microsoft.ContainerRegistry/registries/repositories/content/read' } )\n\tand NOT(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/metadata/read'}) )\n or\t@request[ Microsoft.ContainerRegistry/registries/repositories : name ]   stringequalsIGNORECASE   'Team-A/App' ) ";
        assert!(reads(c, "team-a/app"));
        assert!(!reads(c, "team-a/other"));
        // Case-sensitive operators are.
        let exact = repo_condition(
            "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEquals 'Team-A/App'",
        );
        assert!(reads(&exact, "Team-A/App"));
        assert!(!reads(&exact, "team-a/app"));
        let starts = repo_condition(
            "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringStartsWith 'Team/'",
        );
        assert!(reads(&starts, "Team/x"));
        assert!(!reads(&starts, "team/x"));
        let like = repo_condition(
            "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringLike 'team-?/*-api'",
        );
        assert!(reads(&like, "team-a/orders-api"));
        assert!(!reads(&like, "team-ab/orders-api"));
        assert!(!reads(&like, "team-a/orders-ui"));
        let not = repo_condition(
            "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringNotStartsWithIgnoreCase 'secret/'",
        );
        assert!(reads(&not, "public/x"));
        assert!(!reads(&not, "SECRET/x"));
    }

    #[test]
    fn unparseable_conditions_grant_nothing() {
        for bad in [
            "garbage",
            "",
            "   ",
            "(",
            "ActionMatches{'x'} OR",
            "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEqualsIgnoreCase",
            "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEqualsIgnoreCase 'a' 'b'",
            "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEqualsIgnoreCase {'a', 'b'}",
            "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringContains 'a'",
            "@Resource[Microsoft.ContainerRegistry/registries/repositories:name] StringEquals 'a'",
            "@Request[Microsoft.ContainerRegistry/registries/repositories:tag] StringEquals 'a'",
            "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEquals 'unterminated",
            "SubOperationMatches{'x'}",
        ] {
            assert!(RepositoryCondition::parse(bad).is_err(), "{bad:?} parses");
        }
        // An assignment carrying a garbage condition grants nothing, not even the other repos.
        let st = state(vec![
            grant(&abac(), REPOSITORY_READER, KUBELET, Some("((garbage")),
            grant(&legacy(), ACR_PULL, KUBELET, Some("((garbage")),
        ]);
        assert!(!may_read_repository(&st, &abac(), KUBELET, "nginx"));
        assert!(!may_read_repository(&st, &legacy(), KUBELET, "nginx"));
        // A blank condition is no condition.
        let st = state(vec![grant(&abac(), REPOSITORY_READER, KUBELET, Some("  "))]);
        assert!(may_read_repository(&st, &abac(), KUBELET, "nginx"));
    }

    #[test]
    fn legacy_roles_are_ignored_on_abac_registries_and_vice_versa() {
        let st = state(vec![
            grant(&rg(), ACR_PULL, KUBELET, None),
            grant(&rg(), OWNER, KUBELET, None),
        ]);
        assert!(may_read_repository(&st, &legacy(), KUBELET, "nginx"));
        assert!(!may_read_repository(&st, &abac(), KUBELET, "nginx"));
        assert!(!may_list_catalog(&st, &abac(), KUBELET));

        let st = state(vec![grant(&rg(), REPOSITORY_READER, KUBELET, None)]);
        assert!(
            may_read_repository(&st, &abac(), KUBELET, "any/repo"),
            "no condition: registry-wide"
        );
        assert!(!may_read_repository(&st, &legacy(), KUBELET, "any/repo"));
        assert!(!may_list_catalog(&st, &legacy(), KUBELET));
        assert!(
            !may_list_catalog(&st, &abac(), KUBELET),
            "Repository Reader excludes the catalog"
        );

        // Reader's */read covers pull/read on a legacy registry.
        let st = state(vec![grant(&legacy(), READER, KUBELET, None)]);
        assert!(may_read_repository(&st, &legacy(), KUBELET, "x"));
        assert!(may_list_catalog(&st, &legacy(), KUBELET));
        assert!(
            !may_read_repository(&st, &abac(), KUBELET, "x"),
            "scoped to the other registry"
        );
    }

    #[test]
    fn catalog_and_partial_grants() {
        let st = state(vec![grant(
            &abac(),
            REPOSITORY_CATALOG_LISTER,
            KUBELET,
            None,
        )]);
        assert!(may_list_catalog(&st, &abac(), KUBELET));
        assert!(!may_read_repository(&st, &abac(), KUBELET, "x"));
        // A role with catalog/read and the documented repository condition: the catalog action
        // is outside the condition's clauses, so listing is allowed; a bare name comparison is
        // unknown for a catalog request (no repository), so it does not grant the catalog.
        let st = state(vec![grant(
            &abac(),
            DATA_IMPORTER_AND_DATA_READER,
            KUBELET,
            Some(&repo_condition(&prefix("team-a/"))),
        )]);
        assert!(may_list_catalog(&st, &abac(), KUBELET));
        assert!(may_read_repository(&st, &abac(), KUBELET, "team-a/x"));
        assert!(!may_read_repository(&st, &abac(), KUBELET, "team-b/x"));
        let bare =
            "@Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEquals 'x'";
        let st = state(vec![grant(
            &abac(),
            DATA_IMPORTER_AND_DATA_READER,
            KUBELET,
            Some(bare),
        )]);
        assert!(!may_list_catalog(&st, &abac(), KUBELET));
        assert!(may_read_repository(&st, &abac(), KUBELET, "x"));
        assert!(!may_read_repository(&st, &abac(), KUBELET, "y"));
        // Content allowed only for 'x', metadata for everything: both are needed.
        let content_only = "!(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'}) OR @Request[Microsoft.ContainerRegistry/registries/repositories:name] StringEquals 'x'";
        let st = state(vec![grant(
            &abac(),
            REPOSITORY_READER,
            KUBELET,
            Some(content_only),
        )]);
        assert!(may_read_repository(&st, &abac(), KUBELET, "x"));
        assert!(!may_read_repository(&st, &abac(), KUBELET, "y"));
        // ...unless another assignment grants the missing action.
        let st = state(vec![
            grant(&abac(), REPOSITORY_READER, KUBELET, Some(content_only)),
            grant(
                &abac(),
                REPOSITORY_READER,
                KUBELET,
                Some(&repo_condition(&prefix("y"))),
            ),
        ]);
        assert!(may_read_repository(&st, &abac(), KUBELET, "y"));
        assert!(!may_read_repository(&st, &abac(), KUBELET, "z"));
        // Unknown registry.
        assert!(!may_read_repository(
            &st,
            &format!(
                "{}/providers/Microsoft.ContainerRegistry/registries/nope",
                rg()
            ),
            KUBELET,
            "y"
        ));
    }

    #[test]
    fn group_membership_counts_including_nested_groups() {
        let outer = "33333333-3333-4333-8333-333333333333";
        let inner = "44444444-4444-4444-8444-444444444444";
        let group = |id: &str, members: &[&str]| PrincipalConfig {
            object_id: id.to_string(),
            principal_type: "Group".to_string(),
            members: members.iter().map(|m| m.to_string()).collect(),
            ..PrincipalConfig::default()
        };
        let mut st = state_with(
            vec![
                grant(
                    &abac(),
                    REPOSITORY_READER,
                    outer,
                    Some(&repo_condition(&prefix("team-a/"))),
                ),
                grant(&legacy(), ACR_PULL, inner, None),
            ],
            vec![
                group(outer, &[inner]),
                group(inner, &[&KUBELET.to_ascii_uppercase()]),
            ],
        );
        assert!(may_read_repository(&st, &abac(), KUBELET, "team-a/x"));
        assert!(!may_read_repository(&st, &abac(), KUBELET, "team-b/x"));
        assert!(may_read_repository(&st, &legacy(), KUBELET, "anything"));
        assert!(!may_read_repository(&st, &legacy(), OTHER, "anything"));
        // Emptying the group takes the grant away; cyclic nesting terminates.
        st.set_members(inner, &[]);
        assert!(!may_read_repository(&st, &legacy(), KUBELET, "anything"));
        st.set_members(inner, &[outer.to_string(), KUBELET.to_string()]);
        st.set_members(outer, &[inner.to_string()]);
        assert!(may_read_repository(&st, &abac(), KUBELET, "team-a/x"));
    }

    #[test]
    fn delegation_style_conditions_are_evaluated_with_their_own_grammar() {
        // RBAC Administrator-like delegation condition on a Reader assignment: pull/read is
        // outside its write/delete clauses, so the read is allowed.
        let delegation = "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR (@Request[Microsoft.Authorization/roleAssignments:PrincipalType] StringEqualsIgnoreCase 'ServicePrincipal'))";
        let st = state(vec![grant(&legacy(), READER, KUBELET, Some(delegation))]);
        assert!(may_read_repository(&st, &legacy(), KUBELET, "x"));
    }

    #[test]
    fn like_wildcards() {
        assert!(like("*", ""));
        assert!(like("a*b", "ab"));
        assert!(like("a*b", "a/x/b"));
        assert!(!like("a?b", "ab"));
        assert!(like("a?b", "axb"));
        assert!(!like("a*b", "a/x/bc"));
    }
}
