//! CRD validation rules: `x-kubernetes-validations` (CEL), as kube-apiserver 1.32 runs them.
//!
//! - When a CRD is written, every rule is compiled against the type of the schema node that
//!   carries it (`apiextensions-apiserver/pkg/apiserver/schema/cel/compilation.go`): a parse
//!   error, an undefined field, an undeclared identifier, a clearly mismatched operator or a
//!   non-boolean result refuses the CRD with the apiserver's texts
//!   (`…x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{…}:
//!   compilation failed: ERROR: <input>:1:5: undefined field 'x'\n | self.x\n | ....^`).
//! - On every write of a custom resource the rules run with `self` bound to the value of their
//!   node (`…/schema/cel/validation.go`): absent or `null` values are not visited, transition
//!   rules (those naming `oldSelf`) only run where an old value correlates (not on create,
//!   not in items of lists other than `x-kubernetes-list-type: map`, unless
//!   `optionalOldSelf`), and on updates a failing rule that does not use `oldSelf` on a value
//!   equal to its old value is only a warning (CRDValidationRatcheting, on by default in 1.32).
//!
//! The type checker is a subset of cel-go's (see the crate README); evaluation is the `cel`
//! crate's interpreter with the strings extension.

use crate::schema::{Schema, json_eq};
use crate::status::{FieldError, FieldErrorKind};
use crate::util::go_quote;
use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// One `x-kubernetes-validations` entry, and (after [`compile`]) its programs.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    pub rule: String,
    pub message: String,
    pub message_expression: String,
    pub reason: Option<String>,
    pub field_path: String,
    pub optional_old_self: Option<bool>,
    /// Where the rule sits in the CRD (`….x-kubernetes-validations[0]`).
    pub crd_path: String,
    compiled: Option<Arc<Compiled>>,
}

#[derive(Debug)]
struct Compiled {
    program: Option<cel::Program>,
    /// `compilation failed: …` or `cel expression must evaluate to a bool`.
    error: Option<String>,
    uses_old_self: bool,
    message_program: Option<cel::Program>,
    message_error: Option<String>,
    /// The rule's `fieldPath` as a field path (`.a['b']` → `a[b]`), when valid.
    field_path: Option<String>,
}

impl Rule {
    pub fn from_json(v: &Value, crd_path: &str) -> Rule {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Rule {
            rule: s("rule"),
            message: s("message"),
            message_expression: s("messageExpression"),
            reason: v.get("reason").and_then(Value::as_str).map(str::to_string),
            field_path: s("fieldPath"),
            optional_old_self: v.get("optionalOldSelf").and_then(Value::as_bool),
            crd_path: crd_path.to_string(),
            compiled: None,
        }
    }

    /// `%#v` of the internal `apiextensions.ValidationRule`, as field errors print it.
    fn go_sharp_v(&self) -> String {
        let reason = match &self.reason {
            None => "(*apiextensions.FieldValueErrorReason)(nil)".to_string(),
            Some(_) => "(*apiextensions.FieldValueErrorReason)(0xc000a3c5f0)".to_string(),
        };
        let optional = match self.optional_old_self {
            None => "(*bool)(nil)".to_string(),
            Some(_) => "(*bool)(0xc000a3c5f8)".to_string(),
        };
        format!(
            "apiextensions.ValidationRule{{Rule:{}, Message:{}, MessageExpression:{}, Reason:{reason}, FieldPath:{}, OptionalOldSelf:{optional}}}",
            go_quote(&self.rule),
            go_quote(&self.message),
            go_quote(&self.message_expression),
            go_quote(&self.field_path),
        )
    }

    /// `ruleErrorString`: the message if set, else the rule.
    fn error_string(&self) -> String {
        if self.message.is_empty() {
            self.rule.trim().to_string()
        } else {
            self.message.trim().to_string()
        }
    }

    /// `ruleMessageOrDefault`.
    fn message_or_default(&self) -> String {
        if self.message.is_empty() {
            format!("failed rule: {}", self.error_string())
        } else {
            self.message.trim().to_string()
        }
    }
}

fn env() -> Arc<cel::Env> {
    thread_local! {
        static ENV: Arc<cel::Env> = {
            let mut env = cel::Env::stdlib();
            // Kubernetes' base environment has cel-go's strings extension.
            let _ = env.add_extension(cel::extensions::strings);
            Arc::new(env)
        };
    }
    ENV.with(Arc::clone)
}

// ---------------------------------------------------------------------------------------
// Types (`apiserver/pkg/cel/common/schemas.go` `SchemaDeclType`) and the checker.

#[derive(Clone, Debug)]
enum Ty<'s> {
    Dyn,
    Bool,
    Int,
    Uint,
    Double,
    Str,
    Bytes,
    Null,
    Timestamp,
    Duration,
    Type,
    List(Box<Ty<'s>>),
    Map(Box<Ty<'s>>),
    /// An object with declared properties; `true` at a resource root (the CR itself or an
    /// `x-kubernetes-embedded-resource`), which adds apiVersion, kind and metadata.
    Obj(&'s Schema, bool),
    /// `metadata` at a resource root: only `name` and `generateName` are visible.
    Meta,
    Opt(Box<Ty<'s>>),
}

impl Ty<'_> {
    fn name(&self) -> String {
        match self {
            Ty::Dyn => "dyn".into(),
            Ty::Bool => "bool".into(),
            Ty::Int => "int".into(),
            Ty::Uint => "uint".into(),
            Ty::Double => "double".into(),
            Ty::Str => "string".into(),
            Ty::Bytes => "bytes".into(),
            Ty::Null => "null_type".into(),
            Ty::Timestamp => "google.protobuf.Timestamp".into(),
            Ty::Duration => "google.protobuf.Duration".into(),
            Ty::Type => "type".into(),
            Ty::List(t) => format!("list({})", t.name()),
            Ty::Map(t) => format!("map(string, {})", t.name()),
            Ty::Obj(..) | Ty::Meta => "object".into(),
            Ty::Opt(t) => format!("optional_type({})", t.name()),
        }
    }

    fn is_dyn(&self) -> bool {
        matches!(self, Ty::Dyn)
    }

    fn is_num(&self) -> bool {
        matches!(self, Ty::Int | Ty::Uint | Ty::Double)
    }

    /// A primitive whose overloads are fully known.
    fn is_prim(&self) -> bool {
        matches!(
            self,
            Ty::Bool
                | Ty::Int
                | Ty::Uint
                | Ty::Double
                | Ty::Str
                | Ty::Bytes
                | Ty::Timestamp
                | Ty::Duration
                | Ty::Null
        )
    }

    fn same_prim(&self, other: &Ty) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// Whether values of `a` and `b` may be compared with `==`.
fn comparable(a: &Ty, b: &Ty) -> bool {
    match (a, b) {
        (Ty::Dyn, _) | (_, Ty::Dyn) => true,
        (Ty::List(x), Ty::List(y)) | (Ty::Map(x), Ty::Map(y)) => comparable(x, y),
        (Ty::Opt(x), Ty::Opt(y)) => comparable(x, y),
        (x, y) if x.is_prim() && y.is_prim() => x.same_prim(y),
        (Ty::Null, _) | (_, Ty::Null) => true,
        (x, y) if x.is_prim() || y.is_prim() => false,
        (Ty::List(_), _) | (_, Ty::List(_)) | (Ty::Map(_), _) | (_, Ty::Map(_)) => {
            matches!(
                (a, b),
                (Ty::Map(_), Ty::Obj(..)) | (Ty::Obj(..), Ty::Map(_))
            )
        }
        _ => true,
    }
}

/// `Escape` of `apiserver/pkg/cel/escaping.go`: how a property name is spelled in CEL.
pub fn escape(name: &str) -> Option<String> {
    const RESERVED: &[&str] = &[
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ];
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let b: Vec<char> = name.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '_' && b.get(i + 1) == Some(&'_') {
            out.push_str("__underscores__");
            i += 2;
            continue;
        }
        match c {
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
        i += 1;
    }
    Some(out)
}

fn schema_ty(s: &Schema, resource_root: bool) -> Option<Ty<'_>> {
    if s.int_or_string {
        return Some(Ty::Dyn);
    }
    match s.ty.as_deref() {
        Some("array") => {
            let items = s.items.as_deref()?;
            Some(Ty::List(Box::new(schema_ty(
                items,
                items.embedded_resource,
            )?)))
        }
        Some("object") => match s.additional.as_deref() {
            Some(a) => Some(Ty::Map(Box::new(schema_ty(a, a.embedded_resource)?))),
            None => Some(Ty::Obj(s, resource_root || s.embedded_resource)),
        },
        Some("string") => Some(match s.format.as_deref() {
            Some("byte") => Ty::Bytes,
            Some("duration") => Ty::Duration,
            Some("date") | Some("date-time") => Ty::Timestamp,
            _ => Ty::Str,
        }),
        Some("boolean") => Some(Ty::Bool),
        Some("number") => Some(Ty::Double),
        Some("integer") => Some(Ty::Int),
        _ => None,
    }
}

/// The declared field `name` (as spelled in CEL) of an object type.
fn field_ty<'s>(obj: &Ty<'s>, name: &str) -> Option<Ty<'s>> {
    match obj {
        Ty::Obj(s, root) => {
            if *root {
                match name {
                    "apiVersion" | "kind" => return Some(Ty::Str),
                    "metadata" => return Some(Ty::Meta),
                    _ => {}
                }
            }
            s.properties
                .iter()
                .find(|(k, _)| escape(k).as_deref() == Some(name))
                .and_then(|(_, p)| schema_ty(p, p.embedded_resource))
        }
        Ty::Meta => matches!(name, "name" | "generateName").then_some(Ty::Str),
        _ => None,
    }
}

struct Checker<'s> {
    self_ty: Ty<'s>,
    old_self_ty: Ty<'s>,
    scopes: Vec<(String, Ty<'s>)>,
    errors: Vec<(u64, String)>,
}

impl<'s> Checker<'s> {
    fn err(&mut self, id: u64, msg: String) -> Ty<'s> {
        self.errors.push((id, msg));
        Ty::Dyn
    }

    fn no_overload(&mut self, id: u64, f: &str, args: &[&Ty], member: bool) -> Ty<'s> {
        let names: Vec<String> = args.iter().map(|t| t.name()).collect();
        let sig = if member {
            format!("{}.({})", names[0], names[1..].join(", "))
        } else {
            format!("({})", names.join(", "))
        };
        self.err(
            id,
            format!("found no matching overload for '{f}' applied to '{sig}'"),
        )
    }

    fn select(&mut self, id: u64, operand: Ty<'s>, field: &str) -> Ty<'s> {
        match &operand {
            Ty::Dyn => Ty::Dyn,
            Ty::Map(v) => (**v).clone(),
            Ty::Obj(..) | Ty::Meta => match field_ty(&operand, field) {
                Some(t) => t,
                None => self.err(id, format!("undefined field '{field}'")),
            },
            Ty::Opt(_) => Ty::Dyn,
            other => {
                let n = other.name();
                self.err(id, format!("type '{n}' does not support field selection"))
            }
        }
    }

    fn check(&mut self, e: &IdedExpr) -> Ty<'s> {
        match &e.expr {
            Expr::Literal(l) => match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::Str,
                LiteralValue::UInt(_) => Ty::Uint,
            },
            Expr::Ident(name) => {
                if let Some((_, t)) = self.scopes.iter().rev().find(|(n, _)| n == name) {
                    return t.clone();
                }
                match name.as_str() {
                    "self" => self.self_ty.clone(),
                    "oldSelf" => self.old_self_ty.clone(),
                    "int" | "uint" | "double" | "bool" | "string" | "bytes" | "list" | "map"
                    | "null_type" | "type" | "dyn" => Ty::Type,
                    _ => self.err(
                        e.id,
                        format!("undeclared reference to '{name}' (in container '')"),
                    ),
                }
            }
            Expr::Select(sel) => {
                let operand = self.check(&sel.operand);
                let t = self.select(e.id, operand, &sel.field);
                if sel.test { Ty::Bool } else { t }
            }
            Expr::List(l) => {
                let tys: Vec<Ty> = l.elements.iter().map(|x| self.check(x)).collect();
                match tys.first() {
                    Some(first) if tys.iter().all(|t| t.same_prim(first)) && first.is_prim() => {
                        Ty::List(Box::new(first.clone()))
                    }
                    _ => Ty::List(Box::new(Ty::Dyn)),
                }
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.check(&me.key);
                        self.check(&me.value);
                    }
                }
                Ty::Map(Box::new(Ty::Dyn))
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        self.check(&f.value);
                    }
                }
                Ty::Dyn
            }
            Expr::Comprehension(c) => {
                let range = self.check(&c.iter_range);
                let (elem, second) = match &range {
                    Ty::List(t) => (Ty::Int, (**t).clone()),
                    Ty::Map(v) => (Ty::Str, (**v).clone()),
                    Ty::Dyn => (Ty::Dyn, Ty::Dyn),
                    other => {
                        let n = other.name();
                        self.err(
                            c.iter_range.id,
                            format!(
                                "expression of type '{n}' cannot be range of a comprehension (must be list, map, or dynamic)"
                            ),
                        );
                        (Ty::Dyn, Ty::Dyn)
                    }
                };
                // One variable: a list's elements or a map's keys; two: index/key and value.
                let first = match (&range, &c.iter_var2) {
                    (Ty::List(_), None) => second.clone(),
                    _ => elem,
                };
                let accu = self.check(&c.accu_init);
                let depth = self.scopes.len();
                self.scopes.push((c.accu_var.clone(), accu.clone()));
                self.scopes.push((c.iter_var.clone(), first));
                if let Some(v2) = &c.iter_var2 {
                    self.scopes.push((v2.clone(), second));
                }
                self.check(&c.loop_cond);
                self.check(&c.loop_step);
                self.scopes.truncate(depth + 1);
                let result = self.check(&c.result);
                self.scopes.truncate(depth);
                result
            }
            Expr::Call(call) => self.call(e.id, call),
            Expr::Unspecified => Ty::Dyn,
        }
    }

    fn call(&mut self, id: u64, call: &cel::common::ast::CallExpr) -> Ty<'s> {
        let f = call.func_name.as_str();
        // `optional.of(x)` and friends are global functions in a namespace.
        if let Some(t) = &call.target
            && matches!(&t.expr, Expr::Ident(n) if n == "optional")
        {
            for a in &call.args {
                self.check(a);
            }
            return Ty::Opt(Box::new(Ty::Dyn));
        }
        if f == "_?._" && call.target.is_none() && call.args.len() == 2 {
            let operand = self.check(&call.args[0]);
            let field = match &call.args[1].expr {
                Expr::Literal(LiteralValue::String(s)) => s.inner().to_string(),
                _ => String::new(),
            };
            let operand = match operand {
                Ty::Opt(t) => *t,
                t => t,
            };
            let t = self.select(id, operand, &field);
            return Ty::Opt(Box::new(t));
        }
        let target = call.target.as_ref().map(|t| self.check(t));
        let args: Vec<Ty> = call.args.iter().map(|a| self.check(a)).collect();
        if let Some(t) = target {
            return self.member(id, f, t, args);
        }
        match (f, args.as_slice()) {
            ("_&&_" | "_||_", [a, b]) => {
                if !matches!(a, Ty::Bool | Ty::Dyn) || !matches!(b, Ty::Bool | Ty::Dyn) {
                    return self.no_overload(id, f, &[a, b], false);
                }
                Ty::Bool
            }
            ("!_", [a]) => {
                if !matches!(a, Ty::Bool | Ty::Dyn) {
                    return self.no_overload(id, f, &[a], false);
                }
                Ty::Bool
            }
            ("-_", [a]) => {
                if a.is_num() || a.is_dyn() || matches!(a, Ty::Duration) {
                    a.clone()
                } else {
                    self.no_overload(id, f, &[a], false)
                }
            }
            ("_?_:_", [c, a, b]) => {
                if !matches!(c, Ty::Bool | Ty::Dyn) || !comparable(a, b) {
                    return self.no_overload(id, f, &[c, a, b], false);
                }
                if a.is_dyn() { b.clone() } else { a.clone() }
            }
            ("_==_" | "_!=_", [a, b]) => {
                if comparable(a, b) {
                    Ty::Bool
                } else {
                    self.no_overload(id, f, &[a, b], false)
                }
            }
            ("_<_" | "_<=_" | "_>_" | "_>=_", [a, b]) => {
                let ok = a.is_dyn()
                    || b.is_dyn()
                    || (a.is_num() && b.is_num())
                    || (a.same_prim(b)
                        && matches!(
                            a,
                            Ty::Str | Ty::Bytes | Ty::Bool | Ty::Timestamp | Ty::Duration
                        ));
                if ok {
                    Ty::Bool
                } else {
                    self.no_overload(id, f, &[a, b], false)
                }
            }
            ("_+_" | "_-_" | "_*_" | "_/_" | "_%_", [a, b]) => self.arith(id, f, a, b),
            ("_[_]", [c, k]) => match c {
                Ty::List(t) if matches!(k, Ty::Int | Ty::Uint | Ty::Dyn) => (**t).clone(),
                Ty::Map(v) if matches!(k, Ty::Str | Ty::Dyn) => (**v).clone(),
                Ty::List(_) | Ty::Map(_) => self.no_overload(id, f, &[c, k], false),
                c if c.is_prim() => self.no_overload(id, f, &[c, k], false),
                _ => Ty::Dyn,
            },
            ("_[?_]", _) => Ty::Opt(Box::new(Ty::Dyn)),
            ("@in", [_, _]) | ("@not_strictly_false", _) => Ty::Bool,
            ("size", [a]) => self.size(id, a, false),
            ("matches", [a, b]) => {
                if matches!(a, Ty::Str | Ty::Dyn) && matches!(b, Ty::Str | Ty::Dyn) {
                    Ty::Bool
                } else {
                    self.no_overload(id, f, &[a, b], false)
                }
            }
            ("int", _) => Ty::Int,
            ("uint", _) => Ty::Uint,
            ("double", _) => Ty::Double,
            ("string", _) => Ty::Str,
            ("bool", _) => Ty::Bool,
            ("bytes", _) => Ty::Bytes,
            ("timestamp", _) => Ty::Timestamp,
            ("duration", _) => Ty::Duration,
            ("type", _) => Ty::Type,
            // Functions of the Kubernetes libraries (quantity, url, ip, …) are not typed here.
            _ => Ty::Dyn,
        }
    }

    fn size(&mut self, id: u64, a: &Ty<'s>, member: bool) -> Ty<'s> {
        match a {
            Ty::Str | Ty::Bytes | Ty::List(_) | Ty::Map(_) | Ty::Dyn => Ty::Int,
            other => self.no_overload(id, "size", &[other], member),
        }
    }

    fn arith(&mut self, id: u64, f: &str, a: &Ty<'s>, b: &Ty<'s>) -> Ty<'s> {
        if a.is_dyn() {
            return b.clone();
        }
        if b.is_dyn() {
            return a.clone();
        }
        let r = match (f, a, b) {
            (_, Ty::Int, Ty::Int) | (_, Ty::Uint, Ty::Uint) => Some(a.clone()),
            ("_%_", _, _) => None,
            (_, Ty::Double, Ty::Double) => Some(Ty::Double),
            ("_+_", Ty::Str, Ty::Str) | ("_+_", Ty::Bytes, Ty::Bytes) => Some(a.clone()),
            ("_+_", Ty::List(x), Ty::List(y)) => {
                Some(Ty::List(Box::new(if x.same_prim(y) && x.is_prim() {
                    (**x).clone()
                } else {
                    Ty::Dyn
                })))
            }
            ("_+_", Ty::Timestamp, Ty::Duration) | ("_+_", Ty::Duration, Ty::Timestamp) => {
                Some(Ty::Timestamp)
            }
            ("_+_" | "_-_", Ty::Duration, Ty::Duration) => Some(Ty::Duration),
            ("_-_", Ty::Timestamp, Ty::Timestamp) => Some(Ty::Duration),
            ("_-_", Ty::Timestamp, Ty::Duration) => Some(Ty::Timestamp),
            _ => None,
        };
        match r {
            Some(t) => t,
            None => self.no_overload(id, f, &[a, b], false),
        }
    }

    fn member(&mut self, id: u64, f: &str, t: Ty<'s>, args: Vec<Ty<'s>>) -> Ty<'s> {
        let string_target = |c: &mut Self, result: Ty<'s>| -> Ty<'s> {
            if matches!(t, Ty::Str | Ty::Dyn) {
                result
            } else {
                let mut all: Vec<&Ty> = vec![&t];
                all.extend(args.iter());
                c.no_overload(id, f, &all, true)
            }
        };
        match f {
            "startsWith" | "endsWith" | "contains" | "matches" => {
                if let Some(a) = args.first()
                    && !matches!(a, Ty::Str | Ty::Dyn)
                {
                    let mut all: Vec<&Ty> = vec![&t];
                    all.extend(args.iter());
                    return self.no_overload(id, f, &all, true);
                }
                string_target(self, Ty::Bool)
            }
            "lowerAscii" | "upperAscii" | "trim" | "replace" | "substring" | "charAt"
            | "format" | "quote" => string_target(self, Ty::Str),
            "split" => string_target(self, Ty::List(Box::new(Ty::Str))),
            "size" => self.size(id, &t, true),
            "indexOf" | "lastIndexOf" => Ty::Int,
            "join" => Ty::Str,
            "hasValue" | "isSorted" => Ty::Bool,
            "value" | "orValue" => match t {
                Ty::Opt(inner) => *inner,
                _ => Ty::Dyn,
            },
            "or" => t,
            "sum" | "min" | "max" => match t {
                Ty::List(inner) => *inner,
                _ => Ty::Dyn,
            },
            _ => Ty::Dyn,
        }
    }
}

/// cel-go's `ToDisplayString` of one error at character `offset` of `src`.
fn display_error(src: &str, line: usize, col: usize, msg: &str) -> String {
    let mut out = format!("ERROR: <input>:{line}:{}: {msg}", col + 1);
    if let Some(snippet) = src.lines().nth(line.saturating_sub(1)) {
        let snippet = snippet.replace('\t', " ");
        out.push_str("\n | ");
        out.push_str(&snippet);
        out.push_str("\n | ");
        out.extend(snippet.chars().take(col).map(|_| '.'));
        out.push('^');
    }
    out
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut col = 0;
    for (i, c) in src.chars().enumerate() {
        if i == offset {
            break;
        }
        if c == '\n' {
            line += 1;
            col = 0;
        } else {
            col += 1;
        }
    }
    (line, col)
}

fn references_old_self(e: &IdedExpr) -> bool {
    match &e.expr {
        Expr::Ident(n) => n == "oldSelf",
        Expr::Select(s) => references_old_self(&s.operand),
        Expr::Call(c) => {
            c.target.as_deref().is_some_and(references_old_self)
                || c.args.iter().any(references_old_self)
        }
        Expr::List(l) => l.elements.iter().any(references_old_self),
        Expr::Map(m) => m.entries.iter().any(|en| match &en.expr {
            EntryExpr::MapEntry(me) => {
                references_old_self(&me.key) || references_old_self(&me.value)
            }
            EntryExpr::StructField(f) => references_old_self(&f.value),
        }),
        Expr::Struct(s) => s.entries.iter().any(|en| match &en.expr {
            EntryExpr::MapEntry(me) => {
                references_old_self(&me.key) || references_old_self(&me.value)
            }
            EntryExpr::StructField(f) => references_old_self(&f.value),
        }),
        Expr::Comprehension(c) => {
            // A macro variable named oldSelf would shadow it; nobody does that.
            [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ]
            .into_iter()
            .any(references_old_self)
        }
        Expr::Literal(_) | Expr::Unspecified => false,
    }
}

/// Compiles and type-checks `src` with `self` (and `oldSelf`) of `self_ty`; returns the
/// program and its result type, or cel-go's issues text.
fn compile_expr<'s>(
    src: &str,
    self_ty: &Ty<'s>,
    optional_old_self: bool,
) -> Result<(cel::Program, Ty<'s>), String> {
    let program = env().compile(src).map_err(|errs| {
        errs.errors
            .iter()
            .map(|e| {
                let line = e.pos.0.max(1) as usize;
                let col = (e.pos.1.max(1) - 1) as usize;
                display_error(src, line, col, &e.msg)
            })
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let mut checker = Checker {
        self_ty: self_ty.clone(),
        old_self_ty: if optional_old_self {
            Ty::Opt(Box::new(self_ty.clone()))
        } else {
            self_ty.clone()
        },
        scopes: Vec::new(),
        errors: Vec::new(),
    };
    let ty = checker.check(program.expression());
    if checker.errors.is_empty() {
        return Ok((program, ty));
    }
    let info = program.source_info();
    let mut located: Vec<(usize, String)> = checker
        .errors
        .iter()
        .map(|(id, msg)| {
            let offset = info.offset_for(*id).map(|(s, _)| s as usize).unwrap_or(0);
            (offset, msg.clone())
        })
        .collect();
    located.sort_by_key(|(o, _)| *o);
    located.dedup();
    Err(located
        .iter()
        .map(|(offset, msg)| {
            let (line, col) = line_col(src, *offset);
            display_error(src, line, col, msg)
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `ValidFieldPath`: a rule's `fieldPath` (`.a.b`, `.a['b.c']`) resolved against the node's
/// schema, as the field path string errors carry.
fn valid_field_path(path: &str, s: &Schema) -> Result<String, String> {
    let mut out = String::new();
    let mut cur = s;
    let chars: Vec<char> = path.chars().collect();
    let mut i = 0;
    let step = |name: String, cur: &mut &Schema, out: &mut String| -> Result<(), String> {
        if !cur.properties.is_empty() {
            let Some(next) = cur.properties.get(&name) else {
                return Err("does not refer to a valid field".into());
            };
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&name);
            *cur = next;
        } else if let Some(a) = cur.additional.as_deref() {
            out.push_str(&format!("[{name}]"));
            *cur = a;
        } else {
            return Err("does not refer to a valid field".into());
        }
        Ok(())
    };
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && !matches!(chars[j], '.' | '[' | ']') {
                    j += 1;
                }
                if j == start {
                    return Err("unexpected end of JSON path".into());
                }
                step(chars[start..j].iter().collect(), &mut cur, &mut out)?;
                i = j;
            }
            '[' => {
                if chars.get(i + 1) != Some(&'\'') {
                    return Err("expected single quoted string".into());
                }
                let mut j = i + 2;
                let mut name = String::new();
                while j < chars.len() && !(chars[j] == '\'' && chars[j - 1] != '\\') {
                    name.push(chars[j]);
                    j += 1;
                }
                if chars.get(j + 1) != Some(&']') {
                    return Err("expected ]".into());
                }
                step(name.replace("\\'", "'"), &mut cur, &mut out)?;
                i = j + 2;
            }
            c => return Err(format!("expected [ or . but got: {c}")),
        }
    }
    Ok(out)
}

/// Compiles the rules of `s` and everything below it; `resource_root` for the CR's root.
pub fn compile(s: &mut Schema, resource_root: bool) {
    compile_node(s, resource_root);
}

fn compile_node(s: &mut Schema, resource_root: bool) -> bool {
    let mut has = false;
    for p in s.properties.values_mut() {
        let root = p.embedded_resource;
        has |= compile_node(p, root);
    }
    if let Some(items) = s.items.as_deref_mut() {
        let root = items.embedded_resource;
        has |= compile_node(items, root);
    }
    if let Some(a) = s.additional.as_deref_mut() {
        let root = a.embedded_resource;
        has |= compile_node(a, root);
    }
    // Rules inside allOf apply to this node, typed as this node.
    let node = s.clone();
    for sub in s.all_of.iter_mut() {
        for r in sub.validations.iter_mut() {
            r.compiled = Some(Arc::new(compile_rule(r, &node, resource_root)));
            has = true;
        }
    }
    for i in 0..s.validations.len() {
        let compiled = compile_rule(&s.validations[i], &node, resource_root);
        s.validations[i].compiled = Some(Arc::new(compiled));
        has = true;
    }
    s.has_rules = has;
    has
}

fn compile_rule(r: &Rule, node: &Schema, resource_root: bool) -> Compiled {
    let mut c = Compiled {
        program: None,
        error: None,
        uses_old_self: false,
        message_program: None,
        message_error: None,
        field_path: None,
    };
    if !r.field_path.trim().is_empty() {
        c.field_path = valid_field_path(&r.field_path, node).ok();
    }
    let Some(self_ty) = schema_ty(node, resource_root) else {
        c.error = Some(format!(
            "rule declared on schema that does not support validation rules type: '{}' x-kubernetes-preserve-unknown-fields: '{}'",
            node.ty.as_deref().unwrap_or(""),
            node.preserve_unknown
        ));
        return c;
    };
    let optional = r.optional_old_self == Some(true);
    if !r.rule.trim().is_empty() {
        match compile_expr(&r.rule, &self_ty, optional) {
            Err(issues) => c.error = Some(format!("compilation failed: {issues}")),
            Ok((program, ty)) => {
                c.uses_old_self = references_old_self(program.expression());
                if !matches!(ty, Ty::Bool | Ty::Dyn) {
                    c.error = Some("cel expression must evaluate to a bool".into());
                } else {
                    c.program = Some(program);
                }
            }
        }
    }
    if !r.message_expression.trim().is_empty() {
        match compile_expr(&r.message_expression, &self_ty, optional) {
            Err(issues) => {
                c.message_error = Some(format!("messageExpression compilation failed: {issues}"))
            }
            Ok((program, ty)) => {
                if !matches!(ty, Ty::Str | Ty::Dyn) {
                    c.message_error = Some("messageExpression must evaluate to a string".into());
                } else {
                    c.message_program = Some(program);
                }
            }
        }
    }
    c
}

// ---------------------------------------------------------------------------------------
// CRD-time checks (`apiextensions/validation/validation.go`).

fn has_newlines(s: &str) -> bool {
    s.contains('\n')
}

/// The errors a CRD write gets for the rules of `s` (compiled): `path` is the CRD path of
/// `s`, `uncorrelatable` the first list above it whose items cannot see `oldSelf`.
pub fn crd_errors(
    s: &Schema,
    path: &str,
    uncorrelatable: Option<&str>,
    errs: &mut Vec<FieldError>,
) {
    let rules = s
        .validations
        .iter()
        .chain(s.all_of.iter().flat_map(|a| a.validations.iter()));
    for r in rules {
        rule_errors(r, uncorrelatable, errs);
    }
    for (k, p) in &s.properties {
        crd_errors(p, &format!("{path}.properties[{k}]"), uncorrelatable, errs);
    }
    if let Some(a) = &s.additional {
        crd_errors(
            a,
            &format!("{path}.additionalProperties"),
            uncorrelatable,
            errs,
        );
    }
    if let Some(items) = &s.items {
        let here;
        let unc = match uncorrelatable {
            Some(u) => Some(u),
            None if s.list_type.as_deref() != Some("map") => {
                here = path.to_string();
                Some(here.as_str())
            }
            None => None,
        };
        crd_errors(items, &format!("{path}.items"), unc, errs);
    }
}

fn rule_errors(r: &Rule, uncorrelatable: Option<&str>, errs: &mut Vec<FieldError>) {
    let at = |f: &str| format!("{}.{f}", r.crd_path);
    let rule_value = Some(r.go_sharp_v());
    let trimmed_rule = r.rule.trim();
    let trimmed_msg = r.message.trim();
    if trimmed_rule.is_empty() {
        errs.push(FieldError::required(at("rule"), "rule is not specified"));
    }
    if !r.message.is_empty() && trimmed_msg.is_empty() {
        errs.push(FieldError::invalid(
            at("message"),
            &Value::String(r.message.clone()),
            "message must be non-empty if specified",
        ));
    } else if has_newlines(trimmed_msg) {
        errs.push(FieldError::invalid(
            at("message"),
            &Value::String(r.message.clone()),
            "message must not contain line breaks",
        ));
    } else if has_newlines(trimmed_rule) && trimmed_msg.is_empty() {
        errs.push(FieldError::required(
            at("message"),
            "message must be specified if rule contains line breaks",
        ));
    }
    if !r.message_expression.is_empty() && r.message_expression.trim().is_empty() {
        errs.push(FieldError::required(
            at("messageExpression"),
            "messageExpression must be non-empty if specified",
        ));
    }
    if let Some(reason) = &r.reason
        && !REASONS.contains(&reason.as_str())
    {
        errs.push(FieldError::not_supported(
            at("reason"),
            &Value::String(reason.clone()),
            &REASONS.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ));
    }
    if !r.field_path.is_empty() && r.field_path.trim().is_empty() {
        errs.push(FieldError::invalid(
            at("fieldPath"),
            &Value::String(r.field_path.clone()),
            "fieldPath must be non-empty if specified",
        ));
    }
    if has_newlines(&r.field_path) {
        errs.push(FieldError::invalid(
            at("fieldPath"),
            &Value::String(r.field_path.clone()),
            "fieldPath must not contain line breaks",
        ));
    }
    let Some(c) = &r.compiled else { return };
    if !r.field_path.trim().is_empty() && c.field_path.is_none() {
        errs.push(FieldError::invalid(
            at("fieldPath"),
            &Value::String(r.field_path.clone()),
            "fieldPath must be a valid path",
        ));
    }
    if let Some(e) = &c.error {
        errs.push(FieldError {
            kind: FieldErrorKind::Invalid,
            field: at("rule"),
            value: rule_value.clone(),
            detail: e.clone(),
        });
    }
    if let Some(e) = &c.message_error {
        errs.push(FieldError {
            kind: FieldErrorKind::Invalid,
            field: at("messageExpression"),
            value: rule_value,
            detail: e.clone(),
        });
    }
    if c.program.is_some() {
        if c.uses_old_self {
            if let Some(u) = uncorrelatable {
                errs.push(FieldError::invalid(
                    at("rule"),
                    &Value::String(r.rule.clone()),
                    format!(
                        "oldSelf cannot be used on the uncorrelatable portion of the schema within {u}"
                    ),
                ));
            }
        } else if let Some(b) = r.optional_old_self {
            errs.push(FieldError::invalid(
                at("optionalOldSelf"),
                &Value::Bool(b),
                "may not be set if oldSelf is not used in rule",
            ));
        }
    }
}

const REASONS: &[&str] = &[
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueInvalid",
    "FieldValueRequired",
];

// ---------------------------------------------------------------------------------------
// Values (`UnstructuredToVal`) and evaluation.

fn key(s: &str) -> cel::objects::Key {
    cel::objects::Key::from(s.to_string())
}

fn cel_map(m: HashMap<cel::objects::Key, cel::Value>) -> cel::Value {
    cel::Value::Map(cel::objects::Map { map: Arc::new(m) })
}

fn raw_to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => match n.as_u64() {
                Some(u) => cel::Value::UInt(u),
                None => cel::Value::Float(n.as_f64().unwrap_or(0.0)),
            },
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(raw_to_cel).collect())),
        Value::Object(m) => cel_map(m.iter().map(|(k, v)| (key(k), raw_to_cel(v))).collect()),
    }
}

/// Go's `time.ParseDuration` (what `format: duration` values are parsed with).
fn parse_go_duration(s: &str) -> Option<chrono::Duration> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(chrono::Duration::zero());
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        nanos += n * scale;
    }
    let d = chrono::Duration::nanoseconds(nanos as i64);
    Some(if neg { -d } else { d })
}

fn string_to_cel(s: &str, format: Option<&str>) -> cel::Value {
    match format {
        Some("date-time") => {
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                return cel::Value::Timestamp(t);
            }
        }
        Some("date") => {
            if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                && let Some(t) = d.and_hms_opt(0, 0, 0)
            {
                return cel::Value::Timestamp(t.and_utc().fixed_offset());
            }
        }
        Some("duration") => {
            if let Some(d) = parse_go_duration(s) {
                return cel::Value::Duration(d);
            }
        }
        Some("byte") => {
            use base64::Engine;
            if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(s) {
                return cel::Value::Bytes(Arc::new(b));
            }
        }
        _ => {}
    }
    cel::Value::String(Arc::new(s.to_string()))
}

/// A JSON value as CEL sees it through schema `s`: declared properties only (under their
/// escaped names), numbers as the schema's type, formatted strings as timestamps, durations
/// or bytes.
fn to_cel(v: &Value, s: Option<&Schema>, resource_root: bool) -> cel::Value {
    let Some(s) = s else { return raw_to_cel(v) };
    if s.int_or_string {
        return raw_to_cel(v);
    }
    match v {
        Value::Number(n) => match s.ty.as_deref() {
            Some("number") => cel::Value::Float(n.as_f64().unwrap_or(0.0)),
            Some("integer") => match n.as_i64() {
                Some(i) => cel::Value::Int(i),
                None => cel::Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            _ => raw_to_cel(v),
        },
        Value::String(st) => string_to_cel(st, s.format.as_deref()),
        Value::Array(a) => cel::Value::List(Arc::new(
            a.iter()
                .map(|x| {
                    to_cel(
                        x,
                        s.items.as_deref(),
                        s.items.as_deref().is_some_and(|i| i.embedded_resource),
                    )
                })
                .collect(),
        )),
        Value::Object(m) => {
            if let Some(a) = s.additional.as_deref() {
                return cel_map(
                    m.iter()
                        .map(|(k, x)| (key(k), to_cel(x, Some(a), a.embedded_resource)))
                        .collect(),
                );
            }
            if s.ty.is_none() && s.properties.is_empty() {
                return raw_to_cel(v);
            }
            let root = resource_root || s.embedded_resource;
            let mut out = HashMap::new();
            for (k, x) in m {
                if root && (k == "apiVersion" || k == "kind") {
                    out.insert(key(k), raw_to_cel(x));
                    continue;
                }
                if root && k == "metadata" {
                    let mut meta = HashMap::new();
                    for f in ["name", "generateName"] {
                        if let Some(val) = x.get(f)
                            && !val.is_null()
                        {
                            meta.insert(key(f), raw_to_cel(val));
                        }
                    }
                    out.insert(key(k), cel_map(meta));
                    continue;
                }
                if x.is_null() {
                    continue;
                }
                if let Some(p) = s.properties.get(k)
                    && let Some(name) = escape(k)
                {
                    out.insert(key(&name), to_cel(x, Some(p), p.embedded_resource));
                }
            }
            cel_map(out)
        }
        other => raw_to_cel(other),
    }
}

fn optional(v: Option<cel::Value>) -> cel::Value {
    let o = match v {
        Some(v) => cel::objects::OptionalValue::of(v),
        None => cel::objects::OptionalValue::none(),
    };
    cel::Value::Opaque(Arc::new(o))
}

fn eval(
    program: &cel::Program,
    self_val: &cel::Value,
    old_self: Option<&cel::Value>,
) -> Result<cel::Value, cel::ExecutionError> {
    let mut ctx = cel::Context::with_env(env());
    ctx.add_variable_from_value("self", self_val.clone());
    if let Some(o) = old_self {
        ctx.add_variable_from_value("oldSelf", o.clone());
    }
    program.execute(&ctx)
}

/// cel-go's text for an evaluation error.
fn go_eval_error(e: &cel::ExecutionError) -> String {
    use cel::ExecutionError as E;
    match e {
        E::NoSuchKey(k) => format!("no such key: {k}"),
        E::DivisionByZero(_) => "division by zero".into(),
        E::RemainderByZero(_) => "modulus by zero".into(),
        E::Overflow(..) => "integer overflow".into(),
        E::IndexOutOfBounds(v) => match v {
            cel::Value::Int(i) => format!("index out of bounds: {i}"),
            cel::Value::UInt(i) => format!("index out of bounds: {i}"),
            other => format!("index out of bounds: {other:?}"),
        },
        E::NoSuchOverload(_) | E::UnsupportedBinaryOperator(..) => "no such overload".into(),
        other => {
            let s = other.to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}

/// What the rules of a write found: errors, and the ratcheted ones as warnings.
#[derive(Debug, Default)]
pub struct Outcome {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<String>,
}

/// The ratcheting correlation of a node (`apiserver/pkg/cel/common/equality.go`).
#[derive(Clone, Copy)]
struct Corr<'a> {
    enabled: bool,
    current: Option<&'a Value>,
    /// Whether the nearest correlated ancestor equals its old value.
    parent_equal: bool,
}

impl<'a> Corr<'a> {
    fn ratchets(&self, new: &Value) -> bool {
        self.enabled
            && match self.current {
                Some(old) => json_eq(new, old),
                None => self.parent_equal,
            }
    }

    fn child(&self, new: &Value, old_child: Option<&'a Value>) -> Corr<'a> {
        match self.current {
            None => *self,
            Some(old) => Corr {
                enabled: self.enabled,
                current: old_child,
                parent_equal: json_eq(new, old),
            },
        }
    }
}

/// Runs every rule of `root` over `new` (a custom resource); `old` on updates.
pub fn validate(root: &Schema, new: &Value, old: Option<&Value>) -> Outcome {
    let mut out = Outcome::default();
    if !root.has_rules {
        return out;
    }
    let corr = Corr {
        enabled: old.is_some(),
        current: old,
        parent_equal: false,
    };
    node(root, true, None, new, old, corr, &mut out);
    out
}

fn child_path(p: &Option<String>, name: &str) -> Option<String> {
    Some(match p {
        None => name.to_string(),
        Some(p) => format!("{p}.{name}"),
    })
}

fn bracket_path(p: &Option<String>, k: &str) -> Option<String> {
    Some(format!("{}[{k}]", p.as_deref().unwrap_or("")))
}

/// The old item with the same `x-kubernetes-list-map-keys` as `item`.
pub fn map_list_match<'a>(keys: &[String], old: &'a [Value], item: &Value) -> Option<&'a Value> {
    if keys.is_empty() {
        return None;
    }
    old.iter().find(|o| {
        keys.iter().all(|k| match (o.get(k), item.get(k)) {
            (Some(a), Some(b)) => json_eq(a, b),
            (None, None) => true,
            _ => false,
        })
    })
}

#[allow(clippy::too_many_arguments)]
fn node(
    s: &Schema,
    resource_root: bool,
    path: Option<String>,
    new: &Value,
    old: Option<&Value>,
    corr: Corr,
    out: &mut Outcome,
) {
    if new.is_null() || !s.has_rules {
        return;
    }
    let old = old.filter(|o| !o.is_null());
    let rules: Vec<&Rule> = s
        .validations
        .iter()
        .chain(s.all_of.iter().flat_map(|a| a.validations.iter()))
        .collect();
    if !rules.is_empty() {
        run_rules(s, &rules, resource_root, &path, new, old, corr, out);
    }
    match new {
        Value::Object(m) => {
            let old_map = old.and_then(Value::as_object);
            for (k, v) in m {
                let (child, p) = match s.properties.get(k) {
                    Some(c) => (c, child_path(&path, k)),
                    None => match s.additional.as_deref() {
                        Some(a) => (a, bracket_path(&path, k)),
                        None => continue,
                    },
                };
                let old_child = old_map.and_then(|o| o.get(k));
                let c = corr.child(new, old_child);
                node(child, child.embedded_resource, p, v, old_child, c, out);
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = s.items.as_deref() else {
                return;
            };
            let old_items: &[Value] = old.and_then(Value::as_array).map_or(&[], Vec::as_slice);
            let is_map = s.list_type.as_deref() == Some("map");
            for (i, item) in items.iter().enumerate() {
                let old_item = if is_map {
                    map_list_match(&s.list_map_keys, old_items, item)
                } else {
                    None
                };
                let ratchet_old = match s.list_type.as_deref() {
                    Some("map") => old_item,
                    Some("set") | Some("atomic") => None,
                    _ => old_items.get(i),
                };
                let p = Some(format!("{}[{i}]", path.as_deref().unwrap_or("")));
                let c = corr.child(new, ratchet_old);
                node(
                    item_schema,
                    item_schema.embedded_resource,
                    p,
                    item,
                    old_item,
                    c,
                    out,
                );
            }
        }
        _ => {}
    }
}

#[allow(clippy::too_many_arguments)]
fn run_rules(
    s: &Schema,
    rules: &[&Rule],
    resource_root: bool,
    path: &Option<String>,
    new: &Value,
    old: Option<&Value>,
    corr: Corr,
    out: &mut Outcome,
) {
    let field = path.clone().unwrap_or_else(|| "<nil>".to_string());
    let sts_type = Value::String(s.ty.clone().unwrap_or_default());
    let self_val = to_cel(new, Some(s), resource_root);
    let old_val = old.map(|o| to_cel(o, Some(s), resource_root));
    for r in rules {
        let Some(c) = &r.compiled else { continue };
        if let Some(e) = &c.error {
            out.errors.push(FieldError::invalid(
                &field,
                &sts_type,
                format!("rule compile error: {e}"),
            ));
            continue;
        }
        let Some(program) = &c.program else { continue };
        let optional_rule = r.optional_old_self == Some(true);
        if c.uses_old_self && old_val.is_none() && !optional_rule {
            // Transition rules run only where an old value correlates.
            continue;
        }
        let old_for_rule = if optional_rule {
            Some(optional(old_val.clone()))
        } else {
            old_val.clone()
        };
        let result = match eval(program, &self_val, old_for_rule.as_ref()) {
            Ok(v) => v,
            Err(e) => {
                let detail = match &e {
                    cel::ExecutionError::NoSuchOverload(_)
                    | cel::ExecutionError::UnsupportedBinaryOperator(..) => format!(
                        "'{}': call arguments did not match a supported operator, function or macro signature for rule: {}",
                        go_eval_error(&e),
                        r.error_string()
                    ),
                    _ => format!(
                        "{} evaluating rule: {}",
                        go_eval_error(&e),
                        r.error_string()
                    ),
                };
                out.errors
                    .push(FieldError::invalid(&field, &sts_type, detail));
                continue;
            }
        };
        if result == cel::Value::Bool(true) {
            continue;
        }
        let current = match &c.field_path {
            Some(fp) => child_path(path, fp).unwrap_or_default(),
            None => field.clone(),
        };
        let mut detail = None;
        if let Some(mp) = &c.message_program
            && let Ok(cel::Value::String(m)) = eval(mp, &self_val, old_val.as_ref())
        {
            let m = m.trim();
            if !m.is_empty() && !m.contains('\n') && m.len() <= 5 * 1024 {
                detail = Some(m.to_string());
            }
        }
        let detail = detail.unwrap_or_else(|| r.message_or_default());
        let err = match r.reason.as_deref() {
            Some("FieldValueForbidden") => FieldError::forbidden(&current, detail),
            Some("FieldValueRequired") => FieldError::required(&current, detail),
            Some("FieldValueDuplicate") => FieldError::duplicate(&current, &sts_type),
            _ => FieldError::invalid(&current, &sts_type, detail),
        };
        if !c.uses_old_self && corr.ratchets(new) {
            out.warnings.push(err.message());
        } else {
            out.errors.push(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Schema {
        let mut s = Schema::parse(&v, "spec.validation.openAPIV3Schema").unwrap();
        compile(&mut s, true);
        s
    }

    fn crd_messages(s: &Schema) -> Vec<String> {
        let mut errs = Vec::new();
        crd_errors(s, "spec.validation.openAPIV3Schema", None, &mut errs);
        errs.iter().map(FieldError::message).collect()
    }

    fn registry_schema() -> Schema {
        schema(json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "registry": {"type": "object",
                    "x-kubernetes-validations": [{"rule": "has(self.name) != has(self.resourceId)",
                        "message": "exactly one of name or resourceId must be set"}],
                    "properties": {"name": {"type": "string"}, "resourceId": {"type": "string"}}},
                "repositories": {"type": "array", "items": {"type": "string"},
                    "x-kubernetes-validations": [{"rule": "self.all(r, r.endsWith('/*') || !r.contains('*'))"}]},
                "role": {"type": "string",
                    "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "role is immutable"}]}
            }}
        }}))
    }

    #[test]
    fn rules_run_where_they_are_declared() {
        let s = registry_schema();
        assert!(crd_messages(&s).is_empty(), "{:?}", crd_messages(&s));
        let ok = json!({"spec": {"registry": {"name": "r"}, "repositories": ["a/*", "b"], "role": "Auto"}});
        assert!(validate(&s, &ok, None).errors.is_empty());

        let both = json!({"spec": {"registry": {"name": "r", "resourceId": "/x"}}});
        let out = validate(&s, &both, None);
        assert_eq!(
            out.errors
                .iter()
                .map(FieldError::message)
                .collect::<Vec<_>>(),
            vec![
                "spec.registry: Invalid value: \"object\": exactly one of name or resourceId must be set"
            ]
        );
        let neither = json!({"spec": {"registry": {}}});
        assert_eq!(validate(&s, &neither, None).errors.len(), 1);
        // Absent optional fields are not visited.
        assert!(validate(&s, &json!({"spec": {}}), None).errors.is_empty());

        let wild = json!({"spec": {"repositories": ["a*b"]}});
        assert_eq!(
            validate(&s, &wild, None).errors[0].message(),
            "spec.repositories: Invalid value: \"array\": failed rule: self.all(r, r.endsWith('/*') || !r.contains('*'))"
        );
    }

    #[test]
    fn transition_rules_and_ratcheting() {
        let s = registry_schema();
        let old = json!({"spec": {"role": "Auto", "registry": {"name": "a", "resourceId": "b"}}});
        // Create: transition rules are skipped.
        let created = json!({"spec": {"role": "AcrPull"}});
        assert!(validate(&s, &created, None).errors.is_empty());
        // Update changing role: refused.
        let new =
            json!({"spec": {"role": "AcrPull", "registry": {"name": "a", "resourceId": "b"}}});
        let out = validate(&s, &new, Some(&old));
        let msgs: Vec<String> = out.errors.iter().map(FieldError::message).collect();
        assert_eq!(
            msgs,
            vec!["spec.role: Invalid value: \"string\": role is immutable"]
        );
        // The unchanged (already invalid) registry only warns.
        assert_eq!(
            out.warnings,
            vec![
                "spec.registry: Invalid value: \"object\": exactly one of name or resourceId must be set"
            ]
        );
    }

    #[test]
    fn reasons_field_paths_and_message_expressions() {
        let s = schema(json!({"type": "object",
            "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('ra-')"}],
            "properties": {"spec": {"type": "object",
                "x-kubernetes-validations": [
                    {"rule": "!has(self.legacy)", "reason": "FieldValueForbidden", "fieldPath": ".legacy", "message": "legacy is not supported"},
                    {"rule": "has(self.x)", "reason": "FieldValueRequired", "fieldPath": ".x", "messageExpression": "'x is needed when legacy is ' + self.legacy"},
                    {"rule": "size(self.tags) < 2", "reason": "FieldValueDuplicate"}
                ],
                "properties": {"legacy": {"type": "string"}, "x": {"type": "integer"},
                    "tags": {"type": "array", "items": {"type": "string"}}}}}}));
        assert!(crd_messages(&s).is_empty(), "{:?}", crd_messages(&s));
        let obj = json!({"metadata": {"name": "x"}, "spec": {"legacy": "on", "tags": ["a", "b"]}});
        let msgs: Vec<String> = validate(&s, &obj, None)
            .errors
            .iter()
            .map(FieldError::message)
            .collect();
        assert_eq!(
            msgs,
            vec![
                "<nil>: Invalid value: \"object\": failed rule: self.metadata.name.startsWith('ra-')",
                "spec.legacy: Forbidden: legacy is not supported",
                "spec.x: Required value: x is needed when legacy is on",
                "spec: Duplicate value: \"object\"",
            ]
        );
    }

    #[test]
    fn compile_errors_read_like_cel_go() {
        let s = schema(
            json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.type != 'secret' || has(self.namespace)", "message": "m"},
                {"rule": "self.a =="},
                {"rule": "self.a"},
                {"rule": "self.a > 1"},
                {"rule": "self.a == 'x'", "optionalOldSelf": true},
                {"rule": "self.a.startsWith('x')", "reason": "Bogus"}
            ],
            "properties": {"type": {"type": "string"}, "a": {"type": "string"}}}}}),
        );
        let msgs = crd_messages(&s);
        let base = "spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations";
        assert_eq!(
            msgs[0],
            format!(
                "{base}[0].rule: Invalid value: apiextensions.ValidationRule{{Rule:\"self.type != 'secret' || has(self.namespace)\", Message:\"m\", MessageExpression:\"\", Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:\"\", OptionalOldSelf:(*bool)(nil)}}: compilation failed: ERROR: <input>:1:29: undefined field 'namespace'\n | self.type != 'secret' || has(self.namespace)\n | ............................^"
            )
        );
        assert!(msgs[1].contains("compilation failed: ERROR: <input>:1:10: Syntax error: mismatched input '<EOF>' expecting"), "{}", msgs[1]);
        assert!(
            msgs[2].ends_with(": cel expression must evaluate to a bool"),
            "{}",
            msgs[2]
        );
        assert!(
            msgs[3].contains("found no matching overload for '_>_' applied to '(string, int)'"),
            "{}",
            msgs[3]
        );
        assert_eq!(
            msgs[4],
            format!(
                "{base}[4].optionalOldSelf: Invalid value: true: may not be set if oldSelf is not used in rule"
            )
        );
        assert_eq!(
            msgs[5],
            format!(
                "{base}[5].reason: Unsupported value: \"Bogus\": supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\""
            )
        );
    }

    #[test]
    fn old_self_in_atomic_list_items_is_refused() {
        let s = schema(
            json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"type": "string",
                "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}},
            "conds": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                "items": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}, "status": {"type": "string"}},
                    "x-kubernetes-validations": [{"rule": "self.status == oldSelf.status || oldSelf.status == 'False'", "message": "no"}]}}}}}}),
        );
        let msgs = crd_messages(&s);
        assert_eq!(
            msgs,
            vec![
                "spec.validation.openAPIV3Schema.properties[spec].properties[items].items.x-kubernetes-validations[0].rule: Invalid value: \"self == oldSelf\": oldSelf cannot be used on the uncorrelatable portion of the schema within spec.validation.openAPIV3Schema.properties[spec].properties[items]"
            ]
        );
        // Map-list items correlate by key.
        let old = json!({"spec": {"conds": [{"type": "A", "status": "True"}, {"type": "B", "status": "False"}]}});
        let new = json!({"spec": {"conds": [{"type": "B", "status": "True"}, {"type": "A", "status": "False"}]}});
        let out = validate(&s, &new, Some(&old));
        assert_eq!(
            out.errors
                .iter()
                .map(FieldError::message)
                .collect::<Vec<_>>(),
            vec!["spec.conds[1]: Invalid value: \"object\": no"]
        );
    }

    #[test]
    fn values_are_typed_by_the_schema() {
        let s = schema(
            json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.ratio == 1.0 && self.count == 2 && self.until > timestamp('2020-01-01T00:00:00Z')"},
                {"rule": "self.timeout < duration('1h') && self.my__dash__field == 'v' && self.__namespace__ == 'n'"},
                {"rule": "self.labels.all(k, self.labels[k].size() < 4)"}
            ],
            "properties": {"ratio": {"type": "number"}, "count": {"type": "integer"},
                "until": {"type": "string", "format": "date-time"},
                "timeout": {"type": "string", "format": "duration"},
                "my-field": {"type": "string"}, "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}}}),
        );
        assert!(crd_messages(&s).is_empty(), "{:?}", crd_messages(&s));
        let ok = json!({"spec": {"ratio": 1, "count": 2, "until": "2024-05-01T10:00:00Z", "timeout": "1m30s",
            "my-field": "v", "namespace": "n", "labels": {"a": "x"}}});
        let out = validate(&s, &ok, None);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let bad = json!({"spec": {"ratio": 1, "count": 2, "until": "2024-05-01T10:00:00Z", "timeout": "2h",
            "my-field": "v", "namespace": "n", "labels": {"a": "long"}}});
        assert_eq!(validate(&s, &bad, None).errors.len(), 2);
        // A declared field absent at run time is cel-go's "no such key".
        let missing = json!({"spec": {"count": 2, "until": "2024-05-01T10:00:00Z"}});
        assert_eq!(
            validate(&s, &missing, None).errors[0].message(),
            "spec: Invalid value: \"object\": no such key: ratio evaluating rule: self.ratio == 1.0 && self.count == 2 && self.until > timestamp('2020-01-01T00:00:00Z')"
        );
    }
}
