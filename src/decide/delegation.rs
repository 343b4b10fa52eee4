//! May acr-attach's identity write (or delete) the role assignment it needs? Owns that decision,
//! from the identity's `Microsoft.Authorization/permissions` entries at the registry (which
//! entries grant the action, by `actions`/`notActions` with ARM's wildcards) and from the ABAC
//! delegation conditions on those routes: what role definitions and principal types a conditioned
//! `roleAssignments/write` or `/delete` lets through, and whether it admits this request.
//!
//! Where the conditions come from: permissions entries carry `condition` when ARM reports it. When
//! none does (the 2022-04-01 schema has no such field), the operator's own assignments at or above
//! the registry of a built-in role that can assign roles stand in for the routes. That can only
//! err towards "not allowed". A condition that does not parse never allows anything.
//!
//! Pure: plain data in, a verdict out. `check` reports it; the serde names are part of its JSON.

use serde::Serialize;

use crate::model::PullRole;
use crate::model::azure::{Permission, RoleAssignment, action_matches};

pub const WRITE: &str = "Microsoft.Authorization/roleAssignments/write";
pub const DELETE: &str = "Microsoft.Authorization/roleAssignments/delete";
/// acr-attach always sends this principal type.
pub const PRINCIPAL_TYPE: &str = "ServicePrincipal";

/// Built-in roles that include roleAssignments/write and /delete: Owner (`*`), User Access
/// Administrator (`Microsoft.Authorization/*`), Role Based Access Control Administrator.
const ASSIGNING_ROLES: [&str; 3] = [
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
];

/// The two role-assignment actions the operator performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Write,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Write => WRITE,
            Action::Delete => DELETE,
        }
    }

    /// A write is judged on the assignment requested (`@Request`), a delete on the one that
    /// exists (`@Resource`).
    fn source(self) -> condition::Source {
        match self {
            Action::Write => condition::Source::Request,
            Action::Delete => condition::Source::Resource,
        }
    }
}

/// The role assignment the operator would write or delete, as a condition sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub role_definition_id: String,
    pub principal_type: String,
    pub principal_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessState {
    /// An unconditioned route grants the action.
    Allowed,
    /// Every route carries a condition; `permits_role` says whether one admits the request.
    Conditioned,
    /// No route grants the action.
    Denied,
    /// Not evaluated (an earlier read failed).
    Unknown,
}

/// The verdict for one action.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    pub state: AccessState,
    pub permits_role: Option<bool>,
    pub conditions: Vec<ConditionVerdict>,
}

/// One route's condition: what it lets through, and whether it admits the request.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionVerdict {
    pub roles: Vec<String>,
    pub principal_types: Vec<String>,
    pub permits_role: bool,
    /// False for a condition outside the subset acr-attach reads; it then permits nothing.
    pub understood: bool,
}

impl Access {
    pub fn unknown() -> Self {
        Self::settled(AccessState::Unknown, None)
    }

    fn settled(state: AccessState, permits_role: Option<bool>) -> Self {
        Access {
            state,
            permits_role,
            conditions: Vec::new(),
        }
    }

    /// True when the operator may perform the action for the role it needs.
    pub fn permits(&self) -> bool {
        match self.state {
            AccessState::Allowed => true,
            AccessState::Conditioned => self.permits_role == Some(true),
            AccessState::Denied | AccessState::Unknown => false,
        }
    }
}

/// Which of the caller's routes to `action` there are, and whether one admits `request`.
/// `own` is the caller's own assignments at or above the scope, when they could be read.
pub fn access(
    permissions: &[Permission],
    own: Option<&[RoleAssignment]>,
    action: Action,
    request: &Request,
) -> Access {
    let Some(routes) = routes(permissions, own, action) else {
        return Access::settled(AccessState::Denied, Some(false));
    };
    if routes.iter().any(Option::is_none) {
        return Access::settled(AccessState::Allowed, Some(true));
    }
    let conditions: Vec<ConditionVerdict> = routes
        .iter()
        .flatten()
        .map(|text| judge(text, action, request))
        .collect();
    Access {
        state: AccessState::Conditioned,
        permits_role: Some(conditions.iter().any(|c| c.permits_role)),
        conditions,
    }
}

/// The condition of each route to `action` (`None`: unconditioned), or `None` when no
/// permissions entry grants it at all.
fn routes(
    permissions: &[Permission],
    own: Option<&[RoleAssignment]>,
    action: Action,
) -> Option<Vec<Option<String>>> {
    let granting: Vec<Option<String>> = permissions
        .iter()
        .filter(|p| p.allows(action.as_str()))
        .map(|p| p.condition.clone())
        .collect();
    if granting.is_empty() {
        return None;
    }
    let reported = permissions.iter().any(|p| p.condition.is_some());
    let from_own = match own {
        Some(own) if !reported => assigning_conditions(own),
        _ => Vec::new(),
    };
    Some(if from_own.is_empty() {
        granting
    } else {
        from_own
    })
}

/// The conditions of the caller's own assignments of a role that can assign roles.
fn assigning_conditions(own: &[RoleAssignment]) -> Vec<Option<String>> {
    own.iter()
        .filter(|a| {
            let guid = a.role_definition_id.rsplit('/').next().unwrap_or_default();
            ASSIGNING_ROLES.iter().any(|r| r.eq_ignore_ascii_case(guid))
        })
        .map(|a| a.condition.clone().filter(|c| !c.trim().is_empty()))
        .collect()
}

fn judge(text: &str, action: Action, request: &Request) -> ConditionVerdict {
    let source = action.source();
    match condition::Condition::parse(text) {
        Ok(parsed) => ConditionVerdict {
            roles: parsed.values(source, condition::Attribute::RoleDefinitionId),
            principal_types: parsed.values(source, condition::Attribute::PrincipalType),
            permits_role: parsed.fulfilled(&condition::Context {
                action: action.as_str(),
                source,
                request,
            }),
            understood: true,
        },
        Err(_) => ConditionVerdict {
            roles: Vec::new(),
            principal_types: Vec::new(),
            permits_role: false,
            understood: false,
        },
    }
}

/// "only AcrPull, Container Registry Repository Reader for ServicePrincipal", one clause per
/// route, joined with "; or ".
pub fn describe(conditions: &[ConditionVerdict]) -> String {
    conditions
        .iter()
        .map(describe_one)
        .collect::<Vec<_>>()
        .join("; or ")
}

fn describe_one(verdict: &ConditionVerdict) -> String {
    if !verdict.understood {
        return "a condition acr-attach cannot read".to_string();
    }
    let roles = if verdict.roles.is_empty() {
        "any role".to_string()
    } else {
        let names: Vec<String> = verdict.roles.iter().map(|g| role_name(g)).collect();
        names.join(", ")
    };
    let types = if verdict.principal_types.is_empty() {
        "any principal type".to_string()
    } else {
        verdict.principal_types.join(", ")
    };
    format!("only {roles} for {types}")
}

/// The display name of a pull role's bare GUID; anything else (other roles, a full definition id
/// compared as a string) as written.
fn role_name(guid: &str) -> String {
    PullRole::from_definition_id(guid)
        .filter(|_| !guid.contains('/'))
        .map(|role| role.display_name().to_string())
        .unwrap_or_else(|| guid.to_string())
}

/// The subset of the role-assignment condition language that least-privilege delegation uses
/// (the ARM emulator's `rbac.rs` implements the same subset on the server side): `!`/`NOT`,
/// `AND`/`&&`, `OR`/`||`, parentheses, `ActionMatches{'…'}`, and comparisons of
/// `@Request[…]`/`@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId|PrincipalType|PrincipalId]`
/// with `GuidEquals`, `GuidNotEquals`, `StringEquals[IgnoreCase]`, `StringNotEquals[IgnoreCase]`,
/// optionally `ForAnyOfAnyValues:`/`ForAnyOfAllValues:`. Anything else does not parse.
mod condition {
    use super::{Request, action_matches};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Source {
        Request,
        Resource,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Attribute {
        RoleDefinitionId,
        PrincipalType,
        PrincipalId,
    }

    /// The hypothetical request: the action, and the assignment's attributes under `source`.
    pub struct Context<'a> {
        pub action: &'a str,
        pub source: Source,
        pub request: &'a Request,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Quantifier {
        Single,
        AnyOfAny,
        AnyOfAll,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Op {
        Equals { ignore_case: bool },
        NotEquals { ignore_case: bool },
    }

    #[derive(Debug, Clone)]
    struct Comparison {
        source: Source,
        attribute: Attribute,
        quantifier: Quantifier,
        op: Op,
        values: Vec<String>,
    }

    #[derive(Debug, Clone)]
    enum Expr {
        Or(Vec<Expr>),
        And(Vec<Expr>),
        Not(Box<Expr>),
        ActionMatches(String),
        Compare(Comparison),
    }

    #[derive(Debug, Clone)]
    pub struct Condition(Expr);

    impl Condition {
        pub fn parse(text: &str) -> Result<Condition, String> {
            let tokens = tokenize(text)?;
            if tokens.is_empty() {
                return Err("empty condition".to_string());
            }
            let mut parser = Parser { tokens, at: 0 };
            let expr = parser.or()?;
            if parser.at != parser.tokens.len() {
                return Err("trailing text after the condition".to_string());
            }
            Ok(Condition(expr))
        }

        /// True only when definitely fulfilled (an attribute the request lacks is unknown).
        pub fn fulfilled(&self, context: &Context) -> bool {
            eval(&self.0, context) == Some(true)
        }

        /// Values the condition compares `attribute` of `source` with, positively (what it lets
        /// through), in order, without duplicates.
        pub fn values(&self, source: Source, attribute: Attribute) -> Vec<String> {
            let mut out: Vec<String> = Vec::new();
            collect(&self.0, source, attribute, &mut out);
            out
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Token {
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

    fn is_word_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.' | '/')
    }

    fn tokenize(text: &str) -> Result<Vec<Token>, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut tokens = Vec::new();
        let mut at = 0;
        while at < chars.len() {
            let (token, len) = next_token(&chars[at..])?;
            tokens.extend(token);
            at += len;
        }
        Ok(tokens)
    }

    /// The token at the start of `rest` (`None` for whitespace) and how many characters it spans.
    fn next_token(rest: &[char]) -> Result<(Option<Token>, usize), String> {
        let one = |token| Ok((Some(token), 1));
        match rest[0] {
            '(' => one(Token::Open),
            ')' => one(Token::Close),
            '{' => one(Token::BraceOpen),
            '}' => one(Token::BraceClose),
            ',' => one(Token::Comma),
            '!' => one(Token::Not),
            c if c.is_whitespace() => Ok((None, 1)),
            '&' if rest.get(1) == Some(&'&') => Ok((Some(Token::And), 2)),
            '|' if rest.get(1) == Some(&'|') => Ok((Some(Token::Or), 2)),
            '\'' => {
                let len = rest[1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .ok_or("unterminated string")?;
                Ok((Some(Token::Str(rest[1..=len].iter().collect())), len + 2))
            }
            '@' => {
                let len = rest
                    .iter()
                    .position(|&c| c == ']')
                    .ok_or("unterminated attribute")?;
                Ok((Some(Token::Attr(rest[..=len].iter().collect())), len + 1))
            }
            c if is_word_char(c) => {
                let len = rest.iter().take_while(|&&c| is_word_char(c)).count();
                let word: String = rest[..len].iter().collect();
                let token = match word.to_ascii_uppercase().as_str() {
                    "AND" => Token::And,
                    "OR" => Token::Or,
                    "NOT" => Token::Not,
                    _ => Token::Word(word),
                };
                Ok((Some(token), len))
            }
            other => Err(format!("unexpected character {other:?}")),
        }
    }

    /// Recursive descent: `or := and (OR and)*`, `and := unary (AND unary)*`,
    /// `unary := NOT unary | '(' or ')' | atom`.
    struct Parser {
        tokens: Vec<Token>,
        at: usize,
    }

    impl Parser {
        fn peek(&self) -> Option<&Token> {
            self.tokens.get(self.at)
        }

        fn take(&mut self) -> Option<Token> {
            let token = self.tokens.get(self.at).cloned();
            self.at += 1;
            token
        }

        fn expect(&mut self, want: &Token) -> Result<(), String> {
            match self.take() {
                Some(ref got) if got == want => Ok(()),
                got => Err(format!("expected {want:?}, got {got:?}")),
            }
        }

        /// One or more `next`, separated by `separator`; a single item stands for itself.
        fn list(
            &mut self,
            separator: Token,
            next: fn(&mut Parser) -> Result<Expr, String>,
            combine: fn(Vec<Expr>) -> Expr,
        ) -> Result<Expr, String> {
            let mut items = vec![next(self)?];
            while self.peek() == Some(&separator) {
                self.at += 1;
                items.push(next(self)?);
            }
            Ok(if items.len() == 1 {
                items.remove(0)
            } else {
                combine(items)
            })
        }

        fn or(&mut self) -> Result<Expr, String> {
            self.list(Token::Or, Parser::and, Expr::Or)
        }

        fn and(&mut self) -> Result<Expr, String> {
            self.list(Token::And, Parser::unary, Expr::And)
        }

        fn unary(&mut self) -> Result<Expr, String> {
            match self.peek() {
                Some(Token::Not) => {
                    self.at += 1;
                    Ok(Expr::Not(Box::new(self.unary()?)))
                }
                Some(Token::Open) => {
                    self.at += 1;
                    let inner = self.or()?;
                    self.expect(&Token::Close)?;
                    Ok(inner)
                }
                _ => self.atom(),
            }
        }

        fn atom(&mut self) -> Result<Expr, String> {
            match self.take() {
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("ActionMatches") => {
                    self.action_matches()
                }
                Some(Token::Attr(text)) => self.comparison(&text).map(Expr::Compare),
                got => Err(format!("unexpected {got:?}")),
            }
        }

        /// `ActionMatches{'…'}`, after the keyword.
        fn action_matches(&mut self) -> Result<Expr, String> {
            self.expect(&Token::BraceOpen)?;
            let Some(Token::Str(action)) = self.take() else {
                return Err("ActionMatches needs a quoted action".to_string());
            };
            self.expect(&Token::BraceClose)?;
            Ok(Expr::ActionMatches(action))
        }

        /// `<operator> <value>` or `<operator> {<value>, …}`, after the attribute `text`.
        fn comparison(&mut self, text: &str) -> Result<Comparison, String> {
            let (source, attribute) = attribute(text)?;
            let Some(Token::Word(op_text)) = self.take() else {
                return Err(format!("expected an operator after {text}"));
            };
            let (quantifier, op, guid) = operator(&op_text)?;
            let values = self.values()?;
            if quantifier == Quantifier::Single && values.len() != 1 {
                return Err(format!("{op_text} takes one value"));
            }
            if guid && values.iter().any(|v| uuid::Uuid::try_parse(v).is_err()) {
                return Err(format!("{op_text} takes GUIDs"));
            }
            Ok(Comparison {
                source,
                attribute,
                quantifier,
                op,
                values,
            })
        }

        fn values(&mut self) -> Result<Vec<String>, String> {
            if self.peek() != Some(&Token::BraceOpen) {
                return Ok(vec![self.value()?]);
            }
            self.at += 1;
            let mut values = vec![self.value()?];
            loop {
                match self.take() {
                    Some(Token::Comma) => values.push(self.value()?),
                    Some(Token::BraceClose) => return Ok(values),
                    got => return Err(format!("expected ',' or '}}', got {got:?}")),
                }
            }
        }

        fn value(&mut self) -> Result<String, String> {
            match self.take() {
                Some(Token::Str(s)) | Some(Token::Word(s)) => Ok(s),
                got => Err(format!("expected a value, got {got:?}")),
            }
        }
    }

    /// `[ForAnyOfAnyValues:|ForAnyOfAllValues:]<name>`, and whether its values must be GUIDs.
    fn operator(text: &str) -> Result<(Quantifier, Op, bool), String> {
        let unsupported = || format!("unsupported operator {text}");
        let (quantifier, name) = match text.split_once(':') {
            None => (Quantifier::Single, text),
            Some((q, name)) if q.eq_ignore_ascii_case("ForAnyOfAnyValues") => {
                (Quantifier::AnyOfAny, name)
            }
            Some((q, name)) if q.eq_ignore_ascii_case("ForAnyOfAllValues") => {
                (Quantifier::AnyOfAll, name)
            }
            Some(_) => return Err(unsupported()),
        };
        let (op, guid) = match name.to_ascii_lowercase().as_str() {
            "guidequals" => (Op::Equals { ignore_case: true }, true),
            "guidnotequals" => (Op::NotEquals { ignore_case: true }, true),
            "stringequals" => (Op::Equals { ignore_case: false }, false),
            "stringequalsignorecase" => (Op::Equals { ignore_case: true }, false),
            "stringnotequals" => (Op::NotEquals { ignore_case: false }, false),
            "stringnotequalsignorecase" => (Op::NotEquals { ignore_case: true }, false),
            _ => return Err(unsupported()),
        };
        Ok((quantifier, op, guid))
    }

    fn attribute(text: &str) -> Result<(Source, Attribute), String> {
        let malformed = || format!("malformed attribute {text}");
        let unsupported = || format!("unsupported attribute {text}");
        let (source, rest) = text
            .strip_suffix(']')
            .and_then(|t| t.split_once('['))
            .ok_or_else(malformed)?;
        let source = match source.to_ascii_lowercase().as_str() {
            "@request" => Source::Request,
            "@resource" => Source::Resource,
            _ => return Err(unsupported()),
        };
        let (namespace, name) = rest.split_once(':').ok_or_else(malformed)?;
        if !namespace.eq_ignore_ascii_case("Microsoft.Authorization/roleAssignments") {
            return Err(unsupported());
        }
        let attribute = match name.to_ascii_lowercase().as_str() {
            "roledefinitionid" => Attribute::RoleDefinitionId,
            "principaltype" => Attribute::PrincipalType,
            "principalid" => Attribute::PrincipalId,
            _ => return Err(unsupported()),
        };
        Ok((source, attribute))
    }

    fn collect(expr: &Expr, source: Source, attribute: Attribute, out: &mut Vec<String>) {
        match expr {
            Expr::Or(items) | Expr::And(items) => items
                .iter()
                .for_each(|e| collect(e, source, attribute, out)),
            Expr::Not(_) | Expr::ActionMatches(_) => {}
            Expr::Compare(c)
                if matches!(c.op, Op::Equals { .. })
                    && c.source == source
                    && c.attribute == attribute =>
            {
                for v in &c.values {
                    if !out.iter().any(|o| o.eq_ignore_ascii_case(v)) {
                        out.push(v.clone());
                    }
                }
            }
            Expr::Compare(_) => {}
        }
    }

    /// Three-valued: `None` when the outcome depends on an attribute the request lacks.
    fn eval(expr: &Expr, context: &Context) -> Option<bool> {
        match expr {
            Expr::Or(items) => decided_by(true, items, context),
            Expr::And(items) => decided_by(false, items, context),
            Expr::Not(inner) => eval(inner, context).map(|v| !v),
            Expr::ActionMatches(pattern) => Some(action_matches(pattern, context.action)),
            Expr::Compare(comparison) => comparison.eval(context),
        }
    }

    /// OR (`decisive` true) or AND (`decisive` false) in Kleene logic: one decisive item decides;
    /// otherwise an unknown item leaves the whole unknown.
    fn decided_by(decisive: bool, items: &[Expr], context: &Context) -> Option<bool> {
        let values: Vec<Option<bool>> = items.iter().map(|e| eval(e, context)).collect();
        if values.contains(&Some(decisive)) {
            Some(decisive)
        } else if values.contains(&None) {
            None
        } else {
            Some(!decisive)
        }
    }

    impl Comparison {
        fn eval(&self, context: &Context) -> Option<bool> {
            if self.source != context.source {
                return None;
            }
            let left = match self.attribute {
                Attribute::RoleDefinitionId => &context.request.role_definition_id,
                Attribute::PrincipalType => &context.request.principal_type,
                Attribute::PrincipalId => &context.request.principal_id,
            };
            let holds = |right: &String| match self.op {
                Op::Equals { ignore_case: true } => left.eq_ignore_ascii_case(right),
                Op::Equals { ignore_case: false } => left == right,
                Op::NotEquals { ignore_case: true } => !left.eq_ignore_ascii_case(right),
                Op::NotEquals { ignore_case: false } => left != right,
            };
            Some(match self.quantifier {
                Quantifier::Single | Quantifier::AnyOfAny => self.values.iter().any(holds),
                Quantifier::AnyOfAll => self.values.iter().all(holds),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RoleAssignmentName;

    const PULL: &str = PullRole::ACR_PULL_GUID;
    const READER: &str = PullRole::REPOSITORY_READER_GUID;
    const RBAC_ADMIN: &str = "f58310d9-a9f6-439a-9e8d-f62e7b41a168";
    const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
    const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";

    /// The delegation README's Install section recommends: write and delete only for `roles`
    /// and service principals.
    fn delegation(roles: &str) -> String {
        format!(
            "((!(ActionMatches{{'{WRITE}'}})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{roles}}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}})) AND ((!(ActionMatches{{'{DELETE}'}})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{roles}}} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}}))"
        )
    }

    fn entry(actions: &[&str], not_actions: &[&str], condition: Option<String>) -> Permission {
        Permission {
            actions: actions.iter().map(|s| s.to_string()).collect(),
            not_actions: not_actions.iter().map(|s| s.to_string()).collect(),
            condition,
            ..Permission::default()
        }
    }

    /// Role Based Access Control Administrator's actions.
    fn rbac_admin(condition: Option<String>) -> Permission {
        entry(&[WRITE, DELETE, "*/read"], &[], condition)
    }

    fn needs(role: &str) -> Request {
        Request {
            role_definition_id: role.to_string(),
            principal_type: PRINCIPAL_TYPE.to_string(),
            principal_id: "11111111-1111-1111-1111-111111111111".to_string(),
        }
    }

    fn own(role: &str, condition: Option<String>) -> RoleAssignment {
        RoleAssignment {
            id: "id".to_string(),
            name: RoleAssignmentName::from_arm("n"),
            scope: "/subscriptions/s/resourceGroups/rg".to_string(),
            role_definition_id: format!(
                "/providers/Microsoft.Authorization/roleDefinitions/{role}"
            ),
            principal_id: "op".to_string(),
            condition,
            description: None,
            principal_type: None,
        }
    }

    fn state(permissions: &[Permission], action: Action, role: &str) -> AccessState {
        access(permissions, None, action, &needs(role)).state
    }

    /// The verdict of one condition on `action` for `role`, as the only route.
    fn condition_permits(condition: &str, action: Action, role: &str) -> bool {
        let routes = [entry(&["*"], &[], Some(condition.to_string()))];
        access(&routes, None, action, &needs(role)).permits()
    }

    #[test]
    fn write_follows_actions_and_not_actions_with_wildcards() {
        let owner = [entry(&["*"], &[], None)];
        assert_eq!(state(&owner, Action::Write, PULL), AccessState::Allowed);
        let uaa = [entry(&["*/read", "Microsoft.Authorization/*"], &[], None)];
        assert_eq!(state(&uaa, Action::Write, PULL), AccessState::Allowed);
        let contributor = [entry(&["*"], &["Microsoft.Authorization/*/Write"], None)];
        assert_eq!(
            state(&contributor, Action::Write, PULL),
            AccessState::Denied
        );
        let reader = [entry(&["*/read"], &[], None)];
        assert_eq!(state(&reader, Action::Write, PULL), AccessState::Denied);
        assert!(!access(&reader, None, Action::Write, &needs(PULL)).permits());
        // notActions of one entry do not cancel another entry's grant.
        let both = [contributor[0].clone(), uaa[0].clone()];
        assert_eq!(state(&both, Action::Write, PULL), AccessState::Allowed);
    }

    #[test]
    fn a_reported_condition_is_evaluated_for_the_needed_role() {
        let only_pull = [rbac_admin(Some(delegation(PULL)))];
        let report = access(&only_pull, None, Action::Write, &needs(READER));
        assert_eq!(report.state, AccessState::Conditioned);
        assert_eq!(report.permits_role, Some(false));
        assert!(!report.permits());
        assert_eq!(report.conditions[0].roles, vec![PULL.to_string()]);
        assert_eq!(
            report.conditions[0].principal_types,
            vec!["ServicePrincipal".to_string()]
        );
        assert_eq!(
            describe(&report.conditions),
            "only AcrPull for ServicePrincipal"
        );
        let permits = |action, role| access(&only_pull, None, action, &needs(role)).permits();
        assert!(permits(Action::Write, PULL));
        assert!(permits(Action::Delete, PULL));
        assert!(!permits(Action::Delete, READER));
        // An unconditioned route beside it wins.
        let with_owner = [only_pull[0].clone(), entry(&["*"], &[], None)];
        assert_eq!(
            state(&with_owner, Action::Write, READER),
            AccessState::Allowed
        );
    }

    #[test]
    fn without_reported_conditions_the_operators_own_assignments_tell() {
        let rbac = [rbac_admin(None)];
        let mine = [
            own(RBAC_ADMIN, Some(delegation(PULL))),
            own("acdd72a7-3385-48ef-bd42-f606fba81ae7", None),
        ];
        let report = access(&rbac, Some(&mine), Action::Write, &needs(READER));
        assert_eq!(report.state, AccessState::Conditioned);
        assert_eq!(report.permits_role, Some(false));
        // Owner without a condition: allowed.
        let owner = [own(OWNER, None)];
        assert_eq!(
            access(&rbac, Some(&owner), Action::Write, &needs(READER)).state,
            AccessState::Allowed
        );
        // No assigning role among them (Contributor, say): the permissions entries decide.
        let other = [own(CONTRIBUTOR, Some(delegation(PULL)))];
        assert_eq!(
            access(&rbac, Some(&other), Action::Write, &needs(READER)).state,
            AccessState::Allowed
        );
    }

    #[test]
    fn own_assignments_do_not_override_conditions_arm_reports() {
        // One entry reports a condition: the own assignments (an unconditioned Owner) are not
        // consulted, so the reported condition still restricts the route.
        let reported = [rbac_admin(Some(delegation(PULL)))];
        let owner = [own(OWNER, None)];
        let report = access(&reported, Some(&owner), Action::Write, &needs(READER));
        assert_eq!(report.state, AccessState::Conditioned);
        assert!(!report.permits());
    }

    #[test]
    fn an_unreadable_condition_never_allows() {
        let odd = [entry(
            &["*"],
            &[],
            Some("@Resource[Microsoft.Storage/x:y] StringEquals 'z'".to_string()),
        )];
        let report = access(&odd, None, Action::Write, &needs(PULL));
        assert_eq!(report.permits_role, Some(false));
        assert!(!report.conditions[0].understood);
        assert!(describe(&report.conditions).contains("cannot read"));
    }

    #[test]
    fn a_condition_that_does_not_parse_grants_nothing() {
        let guid_attr = "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId]";
        for broken in [
            format!("{guid_attr} GuidEquals '{PULL}"),
            format!("{guid_attr} GuidEquals '{PULL}' extra"),
            format!("({guid_attr} GuidEquals '{PULL}'"),
            format!("{guid_attr} GuidEquals {{'{PULL}', '{READER}'}}"),
            format!("{guid_attr} GuidEquals 'not-a-guid'"),
            format!("{guid_attr} ForEachValue:GuidEquals '{PULL}'"),
            format!("{guid_attr} GuidGreaterThan '{PULL}'"),
            "ActionMatches{'*'} AND".to_string(),
            "ActionMatches{unquoted}".to_string(),
            "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId".to_string(),
            "a = b".to_string(),
            "   ".to_string(),
        ] {
            let routes = [entry(&["*"], &[], Some(broken.clone()))];
            let report = access(&routes, None, Action::Write, &needs(PULL));
            assert_eq!(report.state, AccessState::Conditioned, "{broken}");
            assert!(!report.permits(), "{broken}");
            assert!(!report.conditions[0].understood, "{broken}");
        }
    }

    #[test]
    fn a_write_condition_on_the_existing_assignment_is_unknown_and_never_allows() {
        // @Resource describes the assignment being deleted; a write has none to look at.
        let on_resource = format!(
            "@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] GuidEquals '{PULL}'"
        );
        assert!(!condition_permits(&on_resource, Action::Write, PULL));
        assert!(condition_permits(&on_resource, Action::Delete, PULL));
        // Unknown OR true is true; unknown AND true stays unknown.
        let on_request = on_resource.replace("@Resource", "@Request");
        assert!(condition_permits(
            &format!("{on_resource} OR {on_request}"),
            Action::Write,
            PULL
        ));
        assert!(!condition_permits(
            &format!("{on_resource} AND {on_request}"),
            Action::Write,
            PULL
        ));
    }

    #[test]
    fn and_binds_tighter_than_or_and_the_symbol_forms_match_the_words() {
        let role = |guid: &str| {
            format!(
                "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] GuidEquals '{guid}'"
            )
        };
        let sp = "@Request[Microsoft.Authorization/roleAssignments:PrincipalType] StringEquals 'ServicePrincipal'";
        let user =
            "@Request[Microsoft.Authorization/roleAssignments:PrincipalType] StringEquals 'User'";
        // PULL OR (READER AND User): a ServicePrincipal READER request fails.
        let words = format!("{} OR {} AND {user}", role(PULL), role(READER));
        let symbols = format!("{} || {} && {user}", role(PULL), role(READER));
        for text in [&words, &symbols] {
            assert!(condition_permits(text, Action::Write, PULL), "{text}");
            assert!(!condition_permits(text, Action::Write, READER), "{text}");
        }
        let grouped = format!("({} OR {}) AND {sp}", role(PULL), role(READER));
        assert!(condition_permits(&grouped, Action::Write, READER));
        assert!(!condition_permits(
            &format!("NOT ({grouped})"),
            Action::Write,
            READER
        ));
        // StringEquals is case-sensitive, StringEqualsIgnoreCase is not.
        let lower = sp.replace("'ServicePrincipal'", "'serviceprincipal'");
        assert!(!condition_permits(&lower, Action::Write, PULL));
        let ignoring = lower.replace("StringEquals", "StringEqualsIgnoreCase");
        assert!(condition_permits(&ignoring, Action::Write, PULL));
    }

    #[test]
    fn for_any_of_all_values_with_not_equals_excludes_a_set() {
        // "Any role except Owner and User Access Administrator", the other common delegation.
        let except = "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAllValues:GuidNotEquals {8e3af657-a8ff-443c-a75c-2fe8c4bcb635, 18d7d88d-d35e-4fb5-a5c3-7773c20a72d9}";
        assert!(condition_permits(except, Action::Write, READER));
        assert!(!condition_permits(except, Action::Write, OWNER));
        // Negative comparisons name no role the condition lets through.
        let report = access(
            &[entry(&["*"], &[], Some(except.to_string()))],
            None,
            Action::Write,
            &needs(READER),
        );
        assert!(report.conditions[0].roles.is_empty());
    }

    #[test]
    fn several_conditioned_routes_are_each_described_and_one_suffices() {
        let routes = [
            rbac_admin(Some(delegation(PULL))),
            rbac_admin(Some(delegation(&format!("{PULL}, {READER}")))),
        ];
        let report = access(&routes, None, Action::Write, &needs(READER));
        assert!(report.permits());
        assert_eq!(
            report
                .conditions
                .iter()
                .map(|c| c.permits_role)
                .collect::<Vec<_>>(),
            [false, true]
        );
        assert_eq!(
            describe(&report.conditions),
            "only AcrPull for ServicePrincipal; or only AcrPull, Container Registry Repository Reader for ServicePrincipal"
        );
    }
}
