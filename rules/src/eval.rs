//! The evaluator: runs expressions against a request with bounded steps, depth and lookups.
//!
//! Evaluation is pure: documents come from the caller's [`DocumentReader`]. Values flow as
//! [`Val`], which avoids copying whole documents on `resource.data.x` by walking member chains
//! by reference and cloning only the leaf. In list proofs (`proof`) some values are symbolic.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ast::{BinaryOp, Expr, ExprKind, PathPart, UnaryOp};
use crate::error::EvalError;
use crate::proof::{self, Sym};
use crate::ruleset::Ruleset;
use crate::value::{as_f64, Duration, Path, Timestamp, Value};
use crate::{functions, Document, DocumentReader};

/// At most this many expressions are evaluated for one request (RULES.md limits).
pub const MAX_STEPS: u32 = 1_000;
/// Nested function calls.
pub const MAX_CALL_DEPTH: u32 = 20;
/// Recursion depth of the evaluator across nested calls; keeps stack use small on any thread.
pub const MAX_EVAL_DEPTH: u32 = 200;
/// `get`/`exists` calls per single-document request or query.
pub const SINGLE_REQUEST_LOOKUPS: usize = 10;
/// `get`/`exists` calls per batch or transaction.
pub const BATCH_LOOKUPS: usize = 20;
/// Strings and bytes built by operators are capped so doubling tricks cannot exhaust memory.
pub const MAX_BUILT_BYTES: usize = 1 << 20;
/// Lists, maps and sets built by operators are capped likewise.
pub const MAX_BUILT_ITEMS: usize = 100_000;

/// Counts `get`/`exists`/`getAfter`/`existsAfter` calls and caches their results. Pass one budget
/// to every evaluation of a batch so the batch shares Firestore's limit of 20 lookups.
#[derive(Debug)]
pub struct EvalBudget {
    limit: usize,
    used: usize,
    cache: HashMap<(bool, String), Option<Arc<Value>>>,
}

impl EvalBudget {
    /// The budget of a single-document request or a query: 10 lookups.
    pub fn single() -> EvalBudget {
        EvalBudget::with_limit(SINGLE_REQUEST_LOOKUPS)
    }

    /// The budget shared by all writes of one batch or transaction: 20 lookups.
    pub fn batch() -> EvalBudget {
        EvalBudget::with_limit(BATCH_LOOKUPS)
    }

    pub fn with_limit(limit: usize) -> EvalBudget {
        EvalBudget {
            limit,
            used: 0,
            cache: HashMap::new(),
        }
    }

    /// Distinct documents looked up so far.
    pub fn used(&self) -> usize {
        self.used
    }
}

/// A value during evaluation: owned, shared with the request context, or symbolic (list proofs).
#[derive(Clone, Debug)]
pub enum Val {
    Owned(Value),
    Shared(Arc<Value>),
    Sym(Arc<Sym>),
}

impl Val {
    pub fn value(&self) -> Result<&Value, EvalError> {
        match self {
            Val::Owned(value) => Ok(value),
            Val::Shared(value) => Ok(value),
            Val::Sym(sym) => Err(sym.unprovable()),
        }
    }

    pub fn into_value(self) -> Result<Value, EvalError> {
        match self {
            Val::Owned(value) => Ok(value),
            Val::Shared(value) => {
                Ok(Arc::try_unwrap(value).unwrap_or_else(|shared| (*shared).clone()))
            }
            Val::Sym(sym) => Err(sym.unprovable()),
        }
    }

    fn as_bool(&self, what: &str) -> Result<bool, EvalError> {
        match self.value()? {
            Value::Bool(b) => Ok(*b),
            other => Err(EvalError::type_error(format!(
                "{what} must be a bool, not {}",
                other.type_name()
            ))),
        }
    }
}

impl From<Value> for Val {
    fn from(value: Value) -> Val {
        Val::Owned(value)
    }
}

/// Variables in scope: function parameters and lets, then match wildcards, then the globals.
#[derive(Clone, Copy)]
pub struct Env<'e, 'r> {
    pub locals: &'e [(&'r str, Val)],
    pub wildcards: &'e [(String, Val)],
    /// The function scope calls resolve in (the match or function definition scope).
    pub scope: usize,
}

pub struct Evaluator<'r> {
    pub ruleset: &'r Ruleset,
    pub reader: &'r dyn DocumentReader,
    pub budget: &'r mut EvalBudget,
    pub steps: u32,
    depth: u32,
    call_depth: u32,
    pub request: Arc<Value>,
    pub resource: Val,
    pub uid: Option<String>,
    regex_cache: HashMap<(bool, String), Arc<regex::Regex>>,
}

/// The `resource` map of a document: `data`, `id` and `__name__`.
pub fn document_value(document: &Document) -> Value {
    let path = Path::document(&document.path);
    let id = path.segments.last().cloned().unwrap_or_default();
    let mut map = std::collections::BTreeMap::new();
    map.insert("data".to_string(), document.data.clone());
    map.insert("id".to_string(), Value::String(id));
    map.insert("__name__".to_string(), Value::Path(path));
    Value::Map(map)
}

enum StepExpr<'r> {
    Field(&'r str),
    Index(&'r Expr),
}

pub enum Step<'a> {
    Field(&'a str),
    Index(Val),
}

impl<'r> Evaluator<'r> {
    pub fn new(
        ruleset: &'r Ruleset,
        reader: &'r dyn DocumentReader,
        budget: &'r mut EvalBudget,
        request: Arc<Value>,
        resource: Val,
        uid: Option<String>,
    ) -> Evaluator<'r> {
        Evaluator {
            ruleset,
            reader,
            budget,
            steps: 0,
            depth: 0,
            call_depth: 0,
            request,
            resource,
            uid,
            regex_cache: HashMap::new(),
        }
    }

    /// Starts a fresh step count (each list-proof variant is its own evaluation).
    pub fn reset_steps(&mut self) {
        self.steps = 0;
    }

    pub fn condition(&mut self, expr: &'r Expr, env: &Env<'_, 'r>) -> Result<bool, EvalError> {
        self.eval(expr, env)?.as_bool("a rule condition")
    }

    fn count_step(&mut self) -> Result<(), EvalError> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return Err(EvalError::LimitExceeded(format!(
                "more than {MAX_STEPS} expressions evaluated"
            )));
        }
        Ok(())
    }

    pub fn eval(&mut self, expr: &'r Expr, env: &Env<'_, 'r>) -> Result<Val, EvalError> {
        self.count_step()?;
        self.depth += 1;
        let result = if self.depth > MAX_EVAL_DEPTH {
            Err(EvalError::LimitExceeded(
                "expression evaluation nested too deeply".into(),
            ))
        } else {
            self.eval_kind(expr, env)
        };
        self.depth -= 1;
        result
    }

    fn eval_kind(&mut self, expr: &'r Expr, env: &Env<'_, 'r>) -> Result<Val, EvalError> {
        match &expr.kind {
            ExprKind::Literal(value) => Ok(Val::Owned(value.clone())),
            ExprKind::Ident(name) => self.variable(name, env),
            ExprKind::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.eval(item, env)?.into_value()?);
                }
                Ok(Val::Owned(Value::List(out)))
            }
            ExprKind::Map(entries) => {
                let mut out = std::collections::BTreeMap::new();
                for (key, value) in entries {
                    let key = match self.eval(key, env)?.into_value()? {
                        Value::String(key) => key,
                        other => {
                            return Err(EvalError::type_error(format!(
                                "map keys must be strings, not {}",
                                other.type_name()
                            )))
                        }
                    };
                    let value = self.eval(value, env)?.into_value()?;
                    out.insert(key, value);
                }
                Ok(Val::Owned(Value::Map(out)))
            }
            ExprKind::Path(segments) => self.path_literal(segments, env),
            ExprKind::Unary(op, operand) => {
                let value = self.eval(operand, env)?;
                match (op, value.value()?) {
                    (UnaryOp::Not, Value::Bool(b)) => Ok(Value::Bool(!b).into()),
                    (UnaryOp::Negate, Value::Int(i)) => i
                        .checked_neg()
                        .map(|n| Value::Int(n).into())
                        .ok_or_else(|| EvalError::Arithmetic("integer overflow".into())),
                    (UnaryOp::Negate, Value::Float(f)) => Ok(Value::Float(-f).into()),
                    (UnaryOp::Negate, Value::Duration(d)) => {
                        Duration::from_total_nanos(-d.total_nanos())
                            .map(|d| Value::Duration(d).into())
                            .ok_or_else(|| EvalError::Arithmetic("duration overflow".into()))
                    }
                    (UnaryOp::Not, other) => Err(EvalError::type_error(format!(
                        "`!` needs a bool, not {}",
                        other.type_name()
                    ))),
                    (UnaryOp::Negate, other) => Err(EvalError::type_error(format!(
                        "`-` needs a number, not {}",
                        other.type_name()
                    ))),
                }
            }
            ExprKind::Binary(BinaryOp::And, left, right) => self.logical(true, left, right, env),
            ExprKind::Binary(BinaryOp::Or, left, right) => self.logical(false, left, right, env),
            ExprKind::Binary(op, left, right) => {
                let left = self.eval(left, env)?;
                let right = self.eval(right, env)?;
                binary(*op, left, right)
            }
            ExprKind::Ternary(condition, yes, no) => {
                if self
                    .eval(condition, env)?
                    .as_bool("the condition of `?:`")?
                {
                    self.eval(yes, env)
                } else {
                    self.eval(no, env)
                }
            }
            ExprKind::Member(..) | ExprKind::Index(..) => self.chain(expr, env),
            ExprKind::Slice(target, from, to) => {
                let target = self.eval(target, env)?;
                let from = match from {
                    Some(from) => Some(self.eval(from, env)?),
                    None => None,
                };
                let to = match to {
                    Some(to) => Some(self.eval(to, env)?),
                    None => None,
                };
                functions::slice(target.value()?, from.as_ref(), to.as_ref()).map(Val::Owned)
            }
            ExprKind::Call(name, args) => self.call(name, args, env),
            ExprKind::MethodCall(receiver, name, args) => {
                if let ExprKind::Ident(namespace) = &receiver.kind {
                    if functions::is_namespace(namespace) && !self.is_bound(namespace, env) {
                        let args = self.eval_args(args, env)?;
                        return functions::call_namespace(self, namespace, name, args);
                    }
                }
                let receiver = self.eval(receiver, env)?;
                let args = self.eval_args(args, env)?;
                functions::call_method(self, receiver, name, args)
            }
            ExprKind::Is(operand, type_name) => {
                let value = self.eval(operand, env)?;
                match &value {
                    Val::Sym(sym) => {
                        proof::symbolic_is(sym, type_name).map(|b| Value::Bool(b).into())
                    }
                    _ => Ok(Value::Bool(is_type(value.value()?, type_name)).into()),
                }
            }
        }
    }

    /// `&&` and `||` with CEL's error absorption: an error on one side is forgiven when the other
    /// side alone decides the result (`error || true` is true, `error && false` is false).
    fn logical(
        &mut self,
        is_and: bool,
        left: &'r Expr,
        right: &'r Expr,
        env: &Env<'_, 'r>,
    ) -> Result<Val, EvalError> {
        let deciding = !is_and;
        let what = if is_and {
            "an operand of `&&`"
        } else {
            "an operand of `||`"
        };
        let left = self.eval(left, env).and_then(|v| v.as_bool(what));
        if let Ok(value) = left {
            if value == deciding {
                return Ok(Value::Bool(deciding).into());
            }
        }
        let right = self.eval(right, env).and_then(|v| v.as_bool(what));
        match (left, right) {
            (_, Ok(value)) if value == deciding => Ok(Value::Bool(deciding).into()),
            (Ok(_), Ok(value)) => Ok(Value::Bool(value).into()),
            (Err(error), _) | (_, Err(error)) => Err(error),
        }
    }

    fn is_bound(&self, name: &str, env: &Env<'_, 'r>) -> bool {
        env.locals.iter().any(|(n, _)| *n == name) || env.wildcards.iter().any(|(n, _)| n == name)
    }

    fn variable(&mut self, name: &str, env: &Env<'_, 'r>) -> Result<Val, EvalError> {
        let found = env
            .locals
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .or_else(|| {
                env.wildcards
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v)
            });
        if let Some(value) = found {
            if let Val::Sym(sym) = value {
                if let Sym::Unknown(_) = sym.as_ref() {
                    return Err(sym.unprovable());
                }
            }
            return Ok(value.clone());
        }
        match name {
            "request" => Ok(Val::Shared(self.request.clone())),
            "resource" => Ok(self.resource.clone()),
            _ => Err(EvalError::UnknownVariable(name.to_string())),
        }
    }

    fn eval_args(&mut self, args: &'r [Expr], env: &Env<'_, 'r>) -> Result<Vec<Val>, EvalError> {
        let mut out = Vec::with_capacity(args.len());
        for arg in args {
            out.push(self.eval(arg, env)?);
        }
        Ok(out)
    }

    fn path_literal(
        &mut self,
        segments: &'r [Vec<PathPart>],
        env: &Env<'_, 'r>,
    ) -> Result<Val, EvalError> {
        let mut out = Vec::with_capacity(segments.len() + 3);
        for parts in segments {
            let mut text = String::new();
            for part in parts {
                match part {
                    PathPart::Text(literal) => text.push_str(literal),
                    PathPart::Expr(inner) => match self.eval(inner, env) {
                        Ok(value) => match value.into_value()? {
                            Value::String(s) => text.push_str(&s),
                            Value::Int(i) => text.push_str(&i.to_string()),
                            // A path variable (from `{x=**}`) splices in all its segments.
                            Value::Path(path) if parts.len() == 1 => {
                                out.extend(path.segments);
                                continue;
                            }
                            other => {
                                return Err(EvalError::type_error(format!(
                                    "path segments must be strings, not {}",
                                    other.type_name()
                                )))
                            }
                        },
                        // An unbound variable stays a placeholder for `bind()`.
                        Err(EvalError::UnknownVariable(name))
                            if matches!(inner.kind, ExprKind::Ident(_)) =>
                        {
                            text.push_str(&format!("$({name})"));
                        }
                        Err(error) => return Err(error),
                    },
                }
            }
            if !text.is_empty() {
                out.push(text);
            }
        }
        Ok(Value::Path(Path { segments: out }).into())
    }

    /// Evaluates `a.b[c].d` by walking references from the base and cloning only the leaf.
    fn chain(&mut self, expr: &'r Expr, env: &Env<'_, 'r>) -> Result<Val, EvalError> {
        let mut reversed = Vec::new();
        let mut current = expr;
        loop {
            match &current.kind {
                ExprKind::Member(base, name) => {
                    reversed.push(StepExpr::Field(name));
                    current = base;
                }
                ExprKind::Index(base, index) => {
                    reversed.push(StepExpr::Index(index));
                    current = base;
                }
                _ => break,
            }
        }
        // Each access counts as an expression, as it would without this shortcut.
        for _ in 1..reversed.len() {
            self.count_step()?;
        }
        let base = self.eval(current, env)?;
        let mut steps = Vec::with_capacity(reversed.len());
        for step in reversed.into_iter().rev() {
            steps.push(match step {
                StepExpr::Field(name) => Step::Field(name),
                StepExpr::Index(index) => Step::Index(self.eval(index, env)?),
            });
        }
        walk(base, &steps)
    }

    fn call(&mut self, name: &str, args: &'r [Expr], env: &Env<'_, 'r>) -> Result<Val, EvalError> {
        let Some(function_id) = self.ruleset.resolve_function(env.scope, name) else {
            let args = self.eval_args(args, env)?;
            return functions::call_global(self, name, args);
        };
        let ruleset = self.ruleset;
        let function = &ruleset.functions[function_id];
        if args.len() != function.decl.params.len() {
            return Err(EvalError::type_error(format!(
                "function `{name}` takes {} arguments",
                function.decl.params.len()
            )));
        }
        let mut locals: Vec<(&'r str, Val)> =
            Vec::with_capacity(function.decl.params.len() + function.decl.lets.len());
        for (param, arg) in function.decl.params.iter().zip(args) {
            let value = self.eval(arg, env)?;
            locals.push((param.as_str(), value));
        }
        self.call_depth += 1;
        if self.call_depth > MAX_CALL_DEPTH {
            self.call_depth -= 1;
            return Err(EvalError::LimitExceeded(format!(
                "function calls nested more than {MAX_CALL_DEPTH} deep"
            )));
        }
        let result = (|| {
            for (let_name, let_expr) in &function.decl.lets {
                let inner = Env {
                    locals: &locals,
                    wildcards: env.wildcards,
                    scope: function.scope,
                };
                let value = self.eval(let_expr, &inner)?;
                locals.push((let_name.as_str(), value));
            }
            let inner = Env {
                locals: &locals,
                wildcards: env.wildcards,
                scope: function.scope,
            };
            self.eval(&function.decl.body, &inner)
        })();
        self.call_depth -= 1;
        result
    }

    /// `get`/`exists` (after = false) and `getAfter`/`existsAfter` (after = true).
    pub fn lookup(&mut self, path: &Val, after: bool) -> Result<Option<Arc<Value>>, EvalError> {
        let path = match path.value()? {
            Value::Path(path) => path,
            other => {
                return Err(EvalError::type_error(format!(
                    "get()/exists() need a path, not {}",
                    other.type_name()
                )))
            }
        };
        let relative = path
            .document_relative()
            .filter(|relative| !relative.is_empty())
            .ok_or_else(|| {
                EvalError::Lookup(format!(
                    "{path} is not a document path under /databases/(default)/documents"
                ))
            })?;
        if relative.split('/').count() % 2 != 0 {
            return Err(EvalError::Lookup(format!(
                "{path} is a collection, not a document"
            )));
        }
        let key = (after, relative);
        if let Some(cached) = self.budget.cache.get(&key) {
            return Ok(cached.clone());
        }
        if self.budget.used >= self.budget.limit {
            return Err(EvalError::LimitExceeded(format!(
                "more than {} document lookups",
                self.budget.limit
            )));
        }
        self.budget.used += 1;
        let found = if after {
            self.reader.get_after(&key.1)
        } else {
            self.reader.get(&key.1)
        };
        let document = found.map_err(EvalError::Lookup)?;
        let value = document.map(|document| Arc::new(document_value(&document)));
        self.budget.cache.insert(key, value.clone());
        Ok(value)
    }

    pub fn regex(&mut self, pattern: &str, anchored: bool) -> Result<Arc<regex::Regex>, EvalError> {
        if let Some(compiled) = self.ruleset.precompiled_regex(pattern, anchored) {
            return Ok(compiled);
        }
        let key = (anchored, pattern.to_string());
        if let Some(compiled) = self.regex_cache.get(&key) {
            return Ok(compiled.clone());
        }
        let compiled = Arc::new(compile_regex(pattern, anchored).map_err(EvalError::Invalid)?);
        self.regex_cache.insert(key, compiled.clone());
        Ok(compiled)
    }
}

/// Compiles an RE2-syntax regex with size limits; `anchored` makes it match the whole string.
pub fn compile_regex(pattern: &str, anchored: bool) -> Result<regex::Regex, String> {
    if pattern.len() > 4096 {
        return Err("regular expression longer than 4096 bytes".to_string());
    }
    let source = if anchored {
        format!(r"\A(?:{pattern})\z")
    } else {
        pattern.to_string()
    };
    regex::RegexBuilder::new(&source)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map_err(|error| {
            let text = error.to_string();
            let last = text.lines().last().unwrap_or("invalid").trim();
            last.strip_prefix("error: ").unwrap_or(last).to_string()
        })
}

fn walk(base: Val, steps: &[Step<'_>]) -> Result<Val, EvalError> {
    if steps.is_empty() {
        return Ok(base);
    }
    match base {
        Val::Sym(sym) => proof::walk_symbolic(&sym, steps),
        Val::Owned(value) => walk_ref(&value, steps),
        Val::Shared(shared) => walk_ref(&shared, steps),
    }
}

fn walk_ref(base: &Value, steps: &[Step<'_>]) -> Result<Val, EvalError> {
    let mut current = base;
    for (i, step) in steps.iter().enumerate() {
        match access(current, step)? {
            std::borrow::Cow::Borrowed(next) => current = next,
            std::borrow::Cow::Owned(next) => return walk_ref(&next, &steps[i + 1..]),
        }
    }
    Ok(Val::Owned(current.clone()))
}

/// One member or index access.
fn access<'v>(value: &'v Value, step: &Step<'_>) -> Result<std::borrow::Cow<'v, Value>, EvalError> {
    use std::borrow::Cow;
    match step {
        Step::Field(name) => match value {
            Value::Map(map) => map
                .get(*name)
                .map(Cow::Borrowed)
                .ok_or_else(|| EvalError::MissingField(name.to_string())),
            Value::Null => Err(EvalError::NullAccess(name.to_string())),
            other => Err(EvalError::type_error(format!(
                "{} has no field `{name}`",
                other.type_name()
            ))),
        },
        Step::Index(index) => {
            let index = index.value()?;
            match (value, index) {
                (Value::Map(map), Value::String(key)) => map
                    .get(key)
                    .map(Cow::Borrowed)
                    .ok_or_else(|| EvalError::MissingField(key.clone())),
                (Value::List(items), Value::Int(i)) => usize::try_from(*i)
                    .ok()
                    .and_then(|i| items.get(i))
                    .map(Cow::Borrowed)
                    .ok_or(EvalError::IndexOutOfRange(*i)),
                (Value::String(text), Value::Int(i)) => usize::try_from(*i)
                    .ok()
                    .and_then(|i| text.chars().nth(i))
                    .map(|c| Cow::Owned(Value::String(c.to_string())))
                    .ok_or(EvalError::IndexOutOfRange(*i)),
                (Value::Path(path), Value::Int(i)) => usize::try_from(*i)
                    .ok()
                    .and_then(|i| path.segments.get(i))
                    .map(|segment| Cow::Owned(Value::String(segment.clone())))
                    .ok_or(EvalError::IndexOutOfRange(*i)),
                (Value::Bytes(bytes), Value::Int(i)) => usize::try_from(*i)
                    .ok()
                    .and_then(|i| bytes.get(i))
                    .map(|byte| Cow::Owned(Value::Int(i64::from(*byte))))
                    .ok_or(EvalError::IndexOutOfRange(*i)),
                (Value::Null, _) => Err(EvalError::NullAccess(format!("[{index}]"))),
                (container, index) => Err(EvalError::type_error(format!(
                    "cannot index {} with {}",
                    container.type_name(),
                    index.type_name()
                ))),
            }
        }
    }
}

pub fn is_type(value: &Value, type_name: &str) -> bool {
    match type_name {
        "number" => matches!(value, Value::Int(_) | Value::Float(_)),
        other => value.type_name() == other,
    }
}

/// Orders two values of comparable types; `None` when `<` is not defined between them.
pub fn compare(left: &Value, right: &Value) -> Option<std::cmp::Ordering> {
    match (left, right) {
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            if let (Value::Int(a), Value::Int(b)) = (left, right) {
                return Some(a.cmp(b));
            }
            as_f64(left)?.partial_cmp(&as_f64(right)?)
        }
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bytes(a), Value::Bytes(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Timestamp(a), Value::Timestamp(b)) => Some(a.cmp(b)),
        (Value::Duration(a), Value::Duration(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

pub fn binary(op: BinaryOp, left: Val, right: Val) -> Result<Val, EvalError> {
    if matches!(left, Val::Sym(_)) || matches!(right, Val::Sym(_)) {
        return proof::symbolic_binary(op, &left, &right);
    }
    let (l, r) = (left.value()?, right.value()?);
    let mismatch = || {
        EvalError::type_error(format!(
            "operator `{}` is not defined for {} and {}",
            op.symbol(),
            l.type_name(),
            r.type_name()
        ))
    };
    let overflow = || EvalError::Arithmetic(format!("overflow in `{}`", op.symbol()));
    let value = match op {
        BinaryOp::Eq => Value::Bool(l == r),
        BinaryOp::Ne => Value::Bool(l != r),
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            use std::cmp::Ordering::*;
            let ordering = compare(l, r);
            let is_nan = matches!(l, Value::Float(f) if f.is_nan())
                || matches!(r, Value::Float(f) if f.is_nan());
            if ordering.is_none() && !is_nan {
                return Err(mismatch());
            }
            Value::Bool(match (op, ordering) {
                (_, None) => false,
                (BinaryOp::Lt, Some(o)) => o == Less,
                (BinaryOp::Le, Some(o)) => o != Greater,
                (BinaryOp::Gt, Some(o)) => o == Greater,
                _ => ordering != Some(Less),
            })
        }
        BinaryOp::In => match r {
            Value::List(items) => Value::Bool(items.iter().any(|item| item == l)),
            Value::Set(items) => Value::Bool(items.iter().any(|item| item == l)),
            Value::Map(map) => match l {
                Value::String(key) => Value::Bool(map.contains_key(key)),
                _ => return Err(mismatch()),
            },
            _ => return Err(mismatch()),
        },
        BinaryOp::Add => match (l, r) {
            (Value::Int(a), Value::Int(b)) => Value::Int(a.checked_add(*b).ok_or_else(overflow)?),
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
                Value::Float(as_f64(l).unwrap_or(0.0) + as_f64(r).unwrap_or(0.0))
            }
            (Value::String(a), Value::String(b)) => {
                check_bytes(a.len() + b.len())?;
                Value::String(format!("{a}{b}"))
            }
            (Value::Bytes(a), Value::Bytes(b)) => {
                check_bytes(a.len() + b.len())?;
                Value::Bytes([a.as_slice(), b.as_slice()].concat())
            }
            (Value::List(a), Value::List(b)) => {
                check_items(a.len() + b.len())?;
                Value::List(a.iter().chain(b).cloned().collect())
            }
            (Value::Timestamp(t), Value::Duration(d))
            | (Value::Duration(d), Value::Timestamp(t)) => Value::Timestamp(
                Timestamp::from_total_nanos(t.total_nanos() + d.total_nanos())
                    .ok_or_else(overflow)?,
            ),
            (Value::Duration(a), Value::Duration(b)) => Value::Duration(
                Duration::from_total_nanos(a.total_nanos() + b.total_nanos())
                    .ok_or_else(overflow)?,
            ),
            _ => return Err(mismatch()),
        },
        BinaryOp::Sub => match (l, r) {
            (Value::Int(a), Value::Int(b)) => Value::Int(a.checked_sub(*b).ok_or_else(overflow)?),
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
                Value::Float(as_f64(l).unwrap_or(0.0) - as_f64(r).unwrap_or(0.0))
            }
            (Value::Timestamp(a), Value::Timestamp(b)) => Value::Duration(
                Duration::from_total_nanos(a.total_nanos() - b.total_nanos())
                    .ok_or_else(overflow)?,
            ),
            (Value::Timestamp(t), Value::Duration(d)) => Value::Timestamp(
                Timestamp::from_total_nanos(t.total_nanos() - d.total_nanos())
                    .ok_or_else(overflow)?,
            ),
            (Value::Duration(a), Value::Duration(b)) => Value::Duration(
                Duration::from_total_nanos(a.total_nanos() - b.total_nanos())
                    .ok_or_else(overflow)?,
            ),
            _ => return Err(mismatch()),
        },
        BinaryOp::Mul => match (l, r) {
            (Value::Int(a), Value::Int(b)) => Value::Int(a.checked_mul(*b).ok_or_else(overflow)?),
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
                Value::Float(as_f64(l).unwrap_or(0.0) * as_f64(r).unwrap_or(0.0))
            }
            _ => return Err(mismatch()),
        },
        BinaryOp::Div => match (l, r) {
            (Value::Int(_), Value::Int(0)) => {
                return Err(EvalError::Arithmetic("division by zero".into()))
            }
            (Value::Int(a), Value::Int(b)) => Value::Int(a.checked_div(*b).ok_or_else(overflow)?),
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
                Value::Float(as_f64(l).unwrap_or(0.0) / as_f64(r).unwrap_or(0.0))
            }
            _ => return Err(mismatch()),
        },
        BinaryOp::Rem => match (l, r) {
            (Value::Int(_), Value::Int(0)) => {
                return Err(EvalError::Arithmetic("modulus by zero".into()))
            }
            (Value::Int(a), Value::Int(b)) => Value::Int(a.checked_rem(*b).ok_or_else(overflow)?),
            _ => return Err(mismatch()),
        },
        BinaryOp::And | BinaryOp::Or => match (l, r) {
            (Value::Bool(a), Value::Bool(b)) => Value::Bool(if op == BinaryOp::And {
                *a && *b
            } else {
                *a || *b
            }),
            _ => return Err(mismatch()),
        },
    };
    Ok(Val::Owned(value))
}

pub fn check_bytes(len: usize) -> Result<(), EvalError> {
    if len > MAX_BUILT_BYTES {
        return Err(EvalError::LimitExceeded(format!(
            "value larger than {MAX_BUILT_BYTES} bytes"
        )));
    }
    Ok(())
}

pub fn check_items(len: usize) -> Result<(), EvalError> {
    if len > MAX_BUILT_ITEMS {
        return Err(EvalError::LimitExceeded(format!(
            "collection larger than {MAX_BUILT_ITEMS} items"
        )));
    }
    Ok(())
}
