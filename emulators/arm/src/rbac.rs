//! Real RBAC for `authorization: Rbac`: action patterns with wildcards, role permission sets, the
//! subset of the ABAC condition language that least-privilege delegation conditions use, and the
//! `Microsoft.Authorization/permissions` answer built from the caller's own assignments.
//!
//! Condition subset (MicrosoftDocs "delegate role assignments with conditions" examples):
//! `!(ActionMatches{'…'})` / `NOT`, `AND`/`&&`, `OR`/`||`, parentheses, and comparisons of
//! `@Request[Microsoft.Authorization/roleAssignments:{RoleDefinitionId|PrincipalType|PrincipalId}]`
//! or the same `@Resource[…]` attributes with `GuidEquals`, `GuidNotEquals`, `StringEquals`,
//! `StringEqualsIgnoreCase`, `StringNotEquals`, `StringNotEqualsIgnoreCase`, optionally prefixed
//! by `ForAnyOfAnyValues:` or `ForAnyOfAllValues:`, against a value or a `{…}` set. Anything else
//! does not parse, and an assignment whose condition does not parse grants nothing: never open.
//! A comparison whose attribute the request does not carry is "unknown", and unknown never turns
//! into "allowed" (three-valued AND/OR/NOT, the condition must be definitely true).

use crate::config::RolePermissions;

/// `pattern` (ARM action syntax, `*` matches any run of characters including `/`) against an
/// action, case-insensitively: `*/read`, `Microsoft.Authorization/*`, `*`.
pub(crate) fn action_matches(pattern: &str, action: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let a: Vec<char> = action.to_ascii_lowercase().chars().collect();
    // Iterative wildcard match with backtracking to the last star.
    let (mut pi, mut ai) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ai < a.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ai));
            pi += 1;
        } else if pi < p.len() && p[pi] == a[ai] {
            pi += 1;
            ai += 1;
        } else if let Some((sp, sa)) = star {
            pi = sp + 1;
            ai = sa + 1;
            star = Some((sp, sa + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// One permissions entry allows `action` when an `actions` pattern matches and no `notActions`
/// pattern of the same entry does (notActions are not deny rules across roles).
pub(crate) fn grants_action(perms: &RolePermissions, action: &str) -> bool {
    perms.actions.iter().any(|p| action_matches(p, action))
        && !perms.not_actions.iter().any(|p| action_matches(p, action))
}

/// The role-assignment attributes a condition can look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AssignmentAttributes {
    /// Lower-case GUID.
    pub role_definition_id: String,
    pub principal_type: String,
    pub principal_id: String,
}

/// What a condition is evaluated against.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestContext {
    pub action: String,
    /// `@Request[...]`: the assignment being written (PUT).
    pub request: Option<AssignmentAttributes>,
    /// `@Resource[...]`: the assignment being deleted (DELETE).
    pub resource: Option<AssignmentAttributes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Request,
    Resource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attribute {
    RoleDefinitionId,
    PrincipalType,
    PrincipalId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quantifier {
    /// A single value on the right.
    Single,
    ForAnyOfAnyValues,
    ForAnyOfAllValues,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    GuidEquals,
    GuidNotEquals,
    StringEquals,
    StringEqualsIgnoreCase,
    StringNotEquals,
    StringNotEqualsIgnoreCase,
}

impl Comparison {
    fn parse(word: &str) -> Option<Comparison> {
        Some(match word.to_ascii_lowercase().as_str() {
            "guidequals" => Comparison::GuidEquals,
            "guidnotequals" => Comparison::GuidNotEquals,
            "stringequals" => Comparison::StringEquals,
            "stringequalsignorecase" => Comparison::StringEqualsIgnoreCase,
            "stringnotequals" => Comparison::StringNotEquals,
            "stringnotequalsignorecase" => Comparison::StringNotEqualsIgnoreCase,
            _ => return None,
        })
    }

    fn is_guid(self) -> bool {
        matches!(self, Comparison::GuidEquals | Comparison::GuidNotEquals)
    }

    fn holds(self, left: &str, right: &str) -> bool {
        match self {
            Comparison::GuidEquals | Comparison::StringEqualsIgnoreCase => {
                left.eq_ignore_ascii_case(right)
            }
            Comparison::GuidNotEquals | Comparison::StringNotEqualsIgnoreCase => {
                !left.eq_ignore_ascii_case(right)
            }
            Comparison::StringEquals => left == right,
            Comparison::StringNotEquals => left != right,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    ActionMatches(String),
    Compare {
        source: Source,
        attribute: Attribute,
        quantifier: Quantifier,
        comparison: Comparison,
        values: Vec<String>,
    },
}

/// A parsed condition; [`Condition::parse`] refuses anything outside the subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Condition(Expr);

/// Lexical tokens of the condition language (shared with the data-plane evaluator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Open,
    Close,
    BraceOpen,
    BraceClose,
    Comma,
    Not,
    And,
    Or,
    Str(String),
    Attr(String),
    Word(String),
}

pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '{' => {
                out.push(Token::BraceOpen);
                i += 1;
            }
            '}' => {
                out.push(Token::BraceClose);
                i += 1;
            }
            ',' => {
                out.push(Token::Comma);
                i += 1;
            }
            '!' => {
                out.push(Token::Not);
                i += 1;
            }
            '&' if chars.get(i + 1) == Some(&'&') => {
                out.push(Token::And);
                i += 2;
            }
            '|' if chars.get(i + 1) == Some(&'|') => {
                out.push(Token::Or);
                i += 2;
            }
            '\'' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .ok_or("unterminated string literal")?;
                out.push(Token::Str(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            '@' => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .ok_or("unterminated attribute")?;
                out.push(Token::Attr(chars[i..=i + end].iter().collect()));
                i += end + 1;
            }
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '/') => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || matches!(chars[i], '_' | '-' | ':' | '.' | '/'))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.to_ascii_uppercase().as_str() {
                    "AND" => Token::And,
                    "OR" => Token::Or,
                    "NOT" => Token::Not,
                    _ => Token::Word(word),
                });
            }
            other => return Err(format!("unexpected character '{other}'")),
        }
    }
    Ok(out)
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
                let (source, attribute) = parse_attribute(&a)?;
                let op = match self.next() {
                    Some(Token::Word(w)) => w,
                    other => {
                        return Err(format!("expected an operator after {a}, found {other:?}"));
                    }
                };
                let (quantifier, name) = match op.split_once(':') {
                    Some((q, name)) if q.eq_ignore_ascii_case("ForAnyOfAnyValues") => {
                        (Quantifier::ForAnyOfAnyValues, name)
                    }
                    Some((q, name)) if q.eq_ignore_ascii_case("ForAnyOfAllValues") => {
                        (Quantifier::ForAnyOfAllValues, name)
                    }
                    Some(_) => return Err(format!("unsupported operator '{op}'")),
                    None => (Quantifier::Single, op.as_str()),
                };
                let comparison = Comparison::parse(name)
                    .ok_or_else(|| format!("unsupported operator '{op}'"))?;
                let values = self.values()?;
                if quantifier == Quantifier::Single && values.len() != 1 {
                    return Err(format!("'{op}' compares with exactly one value"));
                }
                if comparison.is_guid() && !values.iter().all(|v| uuid::Uuid::parse_str(v).is_ok())
                {
                    return Err(format!("'{op}' needs GUID values"));
                }
                Ok(Expr::Compare {
                    source,
                    attribute,
                    quantifier,
                    comparison,
                    values,
                })
            }
            other => Err(format!("unexpected {other:?}")),
        }
    }

    fn value(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Str(s)) | Some(Token::Word(s)) => Ok(s),
            other => Err(format!("expected a value, found {other:?}")),
        }
    }

    fn values(&mut self) -> Result<Vec<String>, String> {
        if self.peek() != Some(&Token::BraceOpen) {
            return Ok(vec![self.value()?]);
        }
        self.pos += 1;
        let mut values = vec![self.value()?];
        loop {
            match self.next() {
                Some(Token::Comma) => values.push(self.value()?),
                Some(Token::BraceClose) => return Ok(values),
                other => return Err(format!("expected ',' or '}}', found {other:?}")),
            }
        }
    }
}

fn parse_attribute(text: &str) -> Result<(Source, Attribute), String> {
    let inner = text
        .strip_suffix(']')
        .and_then(|t| t.split_once('['))
        .ok_or_else(|| format!("malformed attribute {text}"))?;
    let source = match inner.0.to_ascii_lowercase().as_str() {
        "@request" => Source::Request,
        "@resource" => Source::Resource,
        _ => return Err(format!("unsupported attribute source in {text}")),
    };
    let (namespace, name) = inner
        .1
        .split_once(':')
        .ok_or_else(|| format!("malformed attribute {text}"))?;
    if !namespace.eq_ignore_ascii_case("Microsoft.Authorization/roleAssignments") {
        return Err(format!("unsupported attribute {text}"));
    }
    let attribute = match name.to_ascii_lowercase().as_str() {
        "roledefinitionid" => Attribute::RoleDefinitionId,
        "principaltype" => Attribute::PrincipalType,
        "principalid" => Attribute::PrincipalId,
        _ => return Err(format!("unsupported attribute {text}")),
    };
    Ok((source, attribute))
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, String> {
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
        Ok(Condition(expr))
    }

    /// True only when the condition is definitely fulfilled for this request.
    pub fn fulfilled(&self, ctx: &RequestContext) -> bool {
        eval(&self.0, ctx) == Some(true)
    }
}

/// Three-valued: `None` = depends on an attribute the request does not have.
fn eval(expr: &Expr, ctx: &RequestContext) -> Option<bool> {
    match expr {
        Expr::Or(terms) => {
            let values: Vec<Option<bool>> = terms.iter().map(|t| eval(t, ctx)).collect();
            if values.contains(&Some(true)) {
                Some(true)
            } else if values.contains(&None) {
                None
            } else {
                Some(false)
            }
        }
        Expr::And(terms) => {
            let values: Vec<Option<bool>> = terms.iter().map(|t| eval(t, ctx)).collect();
            if values.contains(&Some(false)) {
                Some(false)
            } else if values.contains(&None) {
                None
            } else {
                Some(true)
            }
        }
        Expr::Not(inner) => eval(inner, ctx).map(|v| !v),
        Expr::ActionMatches(pattern) => Some(action_matches(pattern, &ctx.action)),
        Expr::Compare {
            source,
            attribute,
            quantifier,
            comparison,
            values,
        } => {
            let attrs = match source {
                Source::Request => ctx.request.as_ref()?,
                Source::Resource => ctx.resource.as_ref()?,
            };
            let left = match attribute {
                Attribute::RoleDefinitionId => &attrs.role_definition_id,
                Attribute::PrincipalType => &attrs.principal_type,
                Attribute::PrincipalId => &attrs.principal_id,
            };
            Some(match quantifier {
                Quantifier::Single | Quantifier::ForAnyOfAnyValues => {
                    values.iter().any(|v| comparison.holds(left, v))
                }
                Quantifier::ForAnyOfAllValues => values.iter().all(|v| comparison.holds(left, v)),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELEGATION: &str = "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {7f951dda-4ed3-4680-a7ca-43fe172d538d, b93aa761-3e63-49ed-ac28-beffa264f7ac} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'})) AND ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {7f951dda-4ed3-4680-a7ca-43fe172d538d, b93aa761-3e63-49ed-ac28-beffa264f7ac} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'}))";

    fn attrs(role: &str, principal_type: &str) -> AssignmentAttributes {
        AssignmentAttributes {
            role_definition_id: role.to_string(),
            principal_type: principal_type.to_string(),
            principal_id: "11111111-1111-1111-1111-111111111111".to_string(),
        }
    }

    fn write(role: &str, principal_type: &str) -> RequestContext {
        RequestContext {
            action: "Microsoft.Authorization/roleAssignments/write".to_string(),
            request: Some(attrs(role, principal_type)),
            resource: None,
        }
    }

    #[test]
    fn wildcards_span_segments_and_ignore_case() {
        assert!(action_matches(
            "*",
            "Microsoft.Authorization/roleAssignments/write"
        ));
        assert!(action_matches(
            "*/read",
            "Microsoft.ContainerRegistry/registries/read"
        ));
        assert!(!action_matches(
            "*/read",
            "Microsoft.Authorization/roleAssignments/write"
        ));
        assert!(action_matches(
            "Microsoft.Authorization/*/Write",
            "microsoft.authorization/roleassignments/write"
        ));
        assert!(action_matches(
            "Microsoft.Authorization/*",
            "Microsoft.Authorization/roleAssignments/delete"
        ));
        assert!(!action_matches(
            "Microsoft.Authorization/roleAssignments/read",
            "Microsoft.Authorization/roleAssignments/write"
        ));
    }

    #[test]
    fn the_delegation_condition_allows_only_its_roles_for_service_principals() {
        let c = Condition::parse(DELEGATION).expect("parses");
        assert!(c.fulfilled(&write(
            "7f951dda-4ed3-4680-a7ca-43fe172d538d",
            "ServicePrincipal"
        )));
        assert!(c.fulfilled(&write(
            "b93aa761-3e63-49ed-ac28-beffa264f7ac",
            "serviceprincipal"
        )));
        assert!(!c.fulfilled(&write(
            "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
            "ServicePrincipal"
        )));
        assert!(!c.fulfilled(&write("7f951dda-4ed3-4680-a7ca-43fe172d538d", "User")));
        // Reads are outside both clauses.
        let read = RequestContext {
            action: "Microsoft.ContainerRegistry/registries/read".to_string(),
            ..RequestContext::default()
        };
        assert!(c.fulfilled(&read));
        // A write without request attributes is unknown, hence not fulfilled.
        let bare = RequestContext {
            action: "Microsoft.Authorization/roleAssignments/write".to_string(),
            ..RequestContext::default()
        };
        assert!(!c.fulfilled(&bare));
        let delete = |role: &str| RequestContext {
            action: "Microsoft.Authorization/roleAssignments/delete".to_string(),
            request: None,
            resource: Some(attrs(role, "ServicePrincipal")),
        };
        assert!(c.fulfilled(&delete("7f951dda-4ed3-4680-a7ca-43fe172d538d")));
        assert!(!c.fulfilled(&delete("acdd72a7-3385-48ef-bd42-f606fba81ae7")));
    }

    #[test]
    fn anything_outside_the_subset_is_refused() {
        for bad in [
            "",
            "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:ContainerName] StringEqualsIgnoreCase 'x'",
            "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAllOfAllValues:GuidEquals {7f951dda-4ed3-4680-a7ca-43fe172d538d}",
            "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] GuidEquals {7f951dda-4ed3-4680-a7ca-43fe172d538d, b93aa761-3e63-49ed-ac28-beffa264f7ac}",
            "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] GuidEquals 'not-a-guid'",
            "(ActionMatches{'x'}",
            "ActionMatches{'x'} OR",
            "SubOperationMatches{'x'}",
        ] {
            assert!(Condition::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn negated_comparisons_and_single_values() {
        let c = Condition::parse("!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'}) || @Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAllValues:GuidNotEquals {8e3af657-a8ff-443c-a75c-2fe8c4bcb635, 18d7d88d-d35e-4fb5-a5c3-7773c20a72d9}").unwrap();
        assert!(c.fulfilled(&write("7f951dda-4ed3-4680-a7ca-43fe172d538d", "User")));
        assert!(!c.fulfilled(&write("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "User")));
        let c = Condition::parse("NOT ActionMatches{'*/write'} OR @Request[Microsoft.Authorization/roleAssignments:PrincipalType] StringEquals 'Group'").unwrap();
        assert!(!c.fulfilled(&write("7f951dda-4ed3-4680-a7ca-43fe172d538d", "group")));
        assert!(c.fulfilled(&write("7f951dda-4ed3-4680-a7ca-43fe172d538d", "Group")));
    }
}
