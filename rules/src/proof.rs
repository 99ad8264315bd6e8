//! "Rules are not filters": proving a `list` rule from a query's constraints.
//!
//! For each disjunct of the query, `resource` is bound to a symbolic document: fields with an
//! equality constraint are known values (an `in` constraint is enumerated value by value), fields
//! with range, inequality or array constraints are [`Sym::Field`] facts, and every other field is
//! unknown. Operations that cannot be decided for every document the query may return fail with
//! [`EvalError::Unprovable`], which denies like any other evaluation error. Error absorption in
//! `&&`/`||` keeps this sound: `unknown || true` holds for every document.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ast::BinaryOp;
use crate::error::EvalError;
use crate::eval::{compare, Step, Val};
use crate::value::{Path, Value};
use crate::{ConstraintOp, FieldConstraint};

/// At most this many combinations of `in` / `array-contains-any` values are checked per disjunct.
pub const MAX_VARIANTS: usize = 512;

/// A value known only partly.
#[derive(Debug)]
pub enum Sym {
    /// Nothing is known (a wildcard bound to the unknown document ID of a query).
    Unknown(String),
    /// A map of which only some keys are known (`resource`, `resource.data`, nested maps).
    Map {
        name: String,
        known: BTreeMap<String, Val>,
    },
    /// A field constrained by ranges, exclusions or array membership.
    Field(FieldFacts),
}

#[derive(Debug, Default, Clone)]
pub struct FieldFacts {
    pub name: String,
    /// Lower bound and whether it is inclusive.
    pub lower: Option<(Value, bool)>,
    /// Upper bound and whether it is inclusive.
    pub upper: Option<(Value, bool)>,
    pub not_equal: Vec<Value>,
    /// Values the (array) field is known to contain.
    pub contains: Vec<Value>,
}

impl Sym {
    pub fn unprovable(&self) -> EvalError {
        match self {
            Sym::Unknown(what) => EvalError::Unprovable(format!("{what} is not known for a query")),
            Sym::Map { name, .. } => EvalError::Unprovable(format!("{name} is only partly known from the query")),
            Sym::Field(facts) => EvalError::Unprovable(format!(
                "{} is not a single value in this query (only range, inequality or array constraints)",
                facts.name
            )),
        }
    }
}

fn unprovable(message: String) -> EvalError {
    EvalError::Unprovable(message)
}

pub fn walk_symbolic(sym: &Arc<Sym>, steps: &[Step<'_>]) -> Result<Val, EvalError> {
    let Some((first, rest)) = steps.split_first() else {
        return Ok(Val::Sym(sym.clone()));
    };
    let next = match sym.as_ref() {
        Sym::Map { name, known } => {
            let key = match first {
                Step::Field(key) => (*key).to_string(),
                Step::Index(index) => match index.value()? {
                    Value::String(key) => key.clone(),
                    other => {
                        return Err(EvalError::type_error(format!(
                            "cannot index a map with {}",
                            other.type_name()
                        )))
                    }
                },
            };
            match known.get(&key) {
                Some(value) => value.clone(),
                None => {
                    return Err(unprovable(format!(
                        "{name}.{key} is not constrained by the query"
                    )))
                }
            }
        }
        other => return Err(other.unprovable()),
    };
    match next {
        Val::Sym(inner) => walk_symbolic(&inner, rest),
        Val::Owned(value) => walk_value(value, rest),
        Val::Shared(value) => walk_value((*value).clone(), rest),
    }
}

fn walk_value(value: Value, rest: &[Step<'_>]) -> Result<Val, EvalError> {
    if rest.is_empty() {
        return Ok(Val::Owned(value));
    }
    // Re-enter the ordinary walker through a one-element chain evaluation.
    let mut current = value;
    for step in rest {
        current = match (step, current) {
            (Step::Field(key), Value::Map(mut map)) => map
                .remove(*key)
                .ok_or_else(|| EvalError::MissingField(key.to_string()))?,
            (Step::Index(index), Value::Map(mut map)) => match index.value()? {
                Value::String(key) => map
                    .remove(key)
                    .ok_or_else(|| EvalError::MissingField(key.clone()))?,
                other => {
                    return Err(EvalError::type_error(format!(
                        "cannot index a map with {}",
                        other.type_name()
                    )))
                }
            },
            (Step::Index(index), Value::List(items)) => match index.value()? {
                Value::Int(i) => usize::try_from(*i)
                    .ok()
                    .and_then(|i| items.into_iter().nth(i))
                    .ok_or(EvalError::IndexOutOfRange(*i))?,
                other => {
                    return Err(EvalError::type_error(format!(
                        "cannot index a list with {}",
                        other.type_name()
                    )))
                }
            },
            (Step::Field(key), Value::Null) => return Err(EvalError::NullAccess(key.to_string())),
            (_, other) => {
                return Err(EvalError::type_error(format!(
                    "cannot access into {}",
                    other.type_name()
                )))
            }
        };
    }
    Ok(Val::Owned(current))
}

/// Binary operators where at least one side is symbolic.
pub fn symbolic_binary(op: BinaryOp, left: &Val, right: &Val) -> Result<Val, EvalError> {
    let bool_result = |b: bool| Ok(Val::Owned(Value::Bool(b)));
    match (left, right) {
        // A document (or a map inside it) is never null.
        (Val::Sym(sym), other) | (other, Val::Sym(sym))
            if matches!(sym.as_ref(), Sym::Map { .. }) =>
        {
            match (op, other.value()) {
                (BinaryOp::Eq, Ok(Value::Null)) => bool_result(false),
                (BinaryOp::Ne, Ok(Value::Null)) => bool_result(true),
                _ => Err(sym.unprovable()),
            }
        }
        (Val::Sym(sym), Val::Sym(_)) => Err(sym.unprovable()),
        (Val::Sym(sym), concrete) => match sym.as_ref() {
            Sym::Field(facts) => field_op(facts, op, concrete.value()?, false),
            other => Err(other.unprovable()),
        },
        (concrete, Val::Sym(sym)) => match sym.as_ref() {
            Sym::Field(facts) => field_op(facts, op, concrete.value()?, true),
            other => Err(other.unprovable()),
        },
        _ => Err(unprovable("no symbolic operand".into())),
    }
}

/// `field op c` (or `c op field` when `flipped`) decided from the facts, or unprovable.
fn field_op(facts: &FieldFacts, op: BinaryOp, c: &Value, flipped: bool) -> Result<Val, EvalError> {
    let undecided = || {
        Err(unprovable(format!(
            "`{}` on {} is not decided by the query's constraints",
            op.symbol(),
            facts.name
        )))
    };
    let decided = |b: bool| Ok(Val::Owned(Value::Bool(b)));
    let op = if flipped {
        match op {
            BinaryOp::Lt => BinaryOp::Gt,
            BinaryOp::Le => BinaryOp::Ge,
            BinaryOp::Gt => BinaryOp::Lt,
            BinaryOp::Ge => BinaryOp::Le,
            other => other,
        }
    } else {
        op
    };
    let cmp = |bound: &Value| compare(bound, c);
    match op {
        BinaryOp::Eq | BinaryOp::Ne => {
            let excluded = facts.not_equal.iter().any(|v| v == c)
                || facts.lower.as_ref().is_some_and(|(l, inclusive)| {
                    matches!(cmp(l), Some(Ordering::Greater))
                        || (!inclusive && cmp(l) == Some(Ordering::Equal))
                })
                || facts.upper.as_ref().is_some_and(|(u, inclusive)| {
                    matches!(cmp(u), Some(Ordering::Less))
                        || (!inclusive && cmp(u) == Some(Ordering::Equal))
                })
                || (!facts.contains.is_empty() && !matches!(c, Value::List(_)));
            if excluded {
                return decided(op == BinaryOp::Ne);
            }
            undecided()
        }
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            let upper = facts
                .upper
                .as_ref()
                .and_then(|(u, inclusive)| Some((cmp(u)?, *inclusive)));
            let lower = facts
                .lower
                .as_ref()
                .and_then(|(l, inclusive)| Some((cmp(l)?, *inclusive)));
            use Ordering::*;
            let (always, never) = match op {
                // field < c
                BinaryOp::Lt => (
                    matches!(upper, Some((Less, _)) | Some((Equal, false))),
                    matches!(lower, Some((Greater | Equal, _))),
                ),
                // field <= c
                BinaryOp::Le => (
                    matches!(upper, Some((Less | Equal, _))),
                    matches!(lower, Some((Greater, _)) | Some((Equal, false))),
                ),
                // field > c
                BinaryOp::Gt => (
                    matches!(lower, Some((Greater, _)) | Some((Equal, false))),
                    matches!(upper, Some((Less | Equal, _))),
                ),
                // field >= c
                _ => (
                    matches!(lower, Some((Greater | Equal, _))),
                    matches!(upper, Some((Less, _)) | Some((Equal, false))),
                ),
            };
            if always {
                decided(true)
            } else if never {
                decided(false)
            } else {
                undecided()
            }
        }
        // `c in field`: proven by array-contains.
        BinaryOp::In if flipped => {
            if facts.contains.iter().any(|v| v == c) {
                decided(true)
            } else {
                undecided()
            }
        }
        // `field in [..]`: false if every listed value is excluded.
        BinaryOp::In => match c {
            Value::List(items)
                if items
                    .iter()
                    .all(|item| facts.not_equal.iter().any(|v| v == item)) =>
            {
                decided(false)
            }
            _ => undecided(),
        },
        _ => undecided(),
    }
}

/// `symbolic is type`.
pub fn symbolic_is(sym: &Sym, type_name: &str) -> Result<bool, EvalError> {
    match sym {
        Sym::Map { .. } => Ok(type_name == "map"),
        Sym::Field(facts) => {
            let class = if !facts.contains.is_empty() {
                Some("list")
            } else {
                facts
                    .lower
                    .as_ref()
                    .or(facts.upper.as_ref())
                    .map(|(bound, _)| match bound {
                        Value::Int(_) | Value::Float(_) => "number",
                        other => other.type_name(),
                    })
            };
            match class {
                // Range queries only return values of the bound's type class (Firestore semantics).
                Some("number") if type_name == "int" || type_name == "float" => {
                    Err(sym.unprovable())
                }
                Some(class) => Ok(class == type_name),
                None => Err(sym.unprovable()),
            }
        }
        Sym::Unknown(_) => Err(sym.unprovable()),
    }
}

/// Methods on symbolic receivers: the few that array or map facts can decide.
pub fn symbolic_method(sym: &Arc<Sym>, name: &str, args: &[Val]) -> Result<Val, EvalError> {
    let decided = |b: bool| Ok(Val::Owned(Value::Bool(b)));
    match (sym.as_ref(), name) {
        (Sym::Field(facts), "hasAny") if !facts.contains.is_empty() => {
            let list = list_arg(args)?;
            if facts
                .contains
                .iter()
                .any(|known| list.iter().any(|v| v == known))
            {
                return decided(true);
            }
            Err(sym.unprovable())
        }
        (Sym::Field(facts), "hasAll") if !facts.contains.is_empty() => {
            let list = list_arg(args)?;
            if list
                .iter()
                .all(|v| facts.contains.iter().any(|known| known == v))
            {
                return decided(true);
            }
            Err(sym.unprovable())
        }
        (
            Sym::Map {
                known,
                name: map_name,
            },
            "get",
        ) if args.len() == 2 => match args[0].value()? {
            Value::String(key) => known.get(key).cloned().ok_or_else(|| {
                unprovable(format!("{map_name}.{key} is not constrained by the query"))
            }),
            _ => Err(sym.unprovable()),
        },
        _ => Err(sym.unprovable()),
    }
}

fn list_arg(args: &[Val]) -> Result<&[Value], EvalError> {
    match args.first().map(Val::value).transpose()? {
        Some(Value::List(items) | Value::Set(items)) => Ok(items),
        _ => Err(EvalError::type_error(
            "expected a list argument".to_string(),
        )),
    }
}

/// What the constraints of one disjunct say about one field.
#[derive(Default)]
struct FieldKnowledge {
    /// `Some` when equality or `in` constraints pin the field to these candidates.
    candidates: Option<Vec<Value>>,
    facts: FieldFacts,
    /// Each `array-contains-any` adds one alternative set of contained values.
    contains_any: Vec<Vec<Value>>,
}

/// Builds every symbolic `resource` the disjunct describes (one per combination of `in` values).
/// An empty result means the constraints contradict each other: the disjunct returns nothing.
pub fn resource_variants(
    disjunct: &[FieldConstraint],
    collection: &Path,
) -> Result<Vec<Val>, String> {
    let mut fields: BTreeMap<Vec<String>, FieldKnowledge> = BTreeMap::new();
    for constraint in disjunct {
        if constraint.field.is_empty() {
            return Err("a constraint has an empty field path".into());
        }
        let knowledge = fields.entry(constraint.field.clone()).or_default();
        knowledge.facts.name = format!("resource.data.{}", constraint.field.join("."));
        let narrow = |knowledge: &mut FieldKnowledge, values: Vec<Value>| {
            knowledge.candidates = Some(match knowledge.candidates.take() {
                None => values,
                Some(existing) => existing
                    .into_iter()
                    .filter(|v| values.iter().any(|w| w == v))
                    .collect(),
            });
        };
        match &constraint.op {
            ConstraintOp::Eq(value) => narrow(knowledge, vec![value.clone()]),
            ConstraintOp::In(values) => narrow(knowledge, values.clone()),
            ConstraintOp::NotEq(value) => knowledge.facts.not_equal.push(value.clone()),
            ConstraintOp::NotIn(values) => knowledge.facts.not_equal.extend(values.iter().cloned()),
            ConstraintOp::Lt(value) => {
                tighten(&mut knowledge.facts.upper, value, false, Ordering::Less)
            }
            ConstraintOp::Le(value) => {
                tighten(&mut knowledge.facts.upper, value, true, Ordering::Less)
            }
            ConstraintOp::Gt(value) => {
                tighten(&mut knowledge.facts.lower, value, false, Ordering::Greater)
            }
            ConstraintOp::Ge(value) => {
                tighten(&mut knowledge.facts.lower, value, true, Ordering::Greater)
            }
            ConstraintOp::ArrayContains(value) => knowledge.facts.contains.push(value.clone()),
            ConstraintOp::ArrayContainsAny(values) => knowledge.contains_any.push(values.clone()),
        }
    }

    // Expand the choices: each field with candidates picks one; each array-contains-any picks one.
    let mut variants: Vec<BTreeMap<Vec<String>, Val>> = vec![BTreeMap::new()];
    for (path, knowledge) in &fields {
        let mut options: Vec<Val> = Vec::new();
        match &knowledge.candidates {
            Some(candidates) => {
                for candidate in candidates {
                    if satisfies(candidate, &knowledge.facts) {
                        options.push(Val::Owned(candidate.clone()));
                    }
                }
            }
            None => {
                let mut fact_sets = vec![knowledge.facts.clone()];
                for alternatives in &knowledge.contains_any {
                    let mut next = Vec::new();
                    for facts in &fact_sets {
                        for value in alternatives {
                            let mut with = facts.clone();
                            with.contains.push(value.clone());
                            next.push(with);
                        }
                    }
                    fact_sets = next;
                    if fact_sets.len() > MAX_VARIANTS {
                        return Err(too_many());
                    }
                }
                options.extend(
                    fact_sets
                        .into_iter()
                        .map(|facts| Val::Sym(Arc::new(Sym::Field(facts)))),
                );
            }
        }
        let mut next = Vec::with_capacity(variants.len() * options.len());
        for variant in &variants {
            for option in &options {
                let mut with = variant.clone();
                with.insert(path.clone(), option.clone());
                next.push(with);
            }
        }
        if next.len() > MAX_VARIANTS {
            return Err(too_many());
        }
        variants = next;
    }

    Ok(variants
        .into_iter()
        .map(|variant| build_resource(variant, collection))
        .collect())
}

fn too_many() -> String {
    format!("the query's `in` constraints make more than {MAX_VARIANTS} combinations to prove")
}

/// Keeps the tighter of an existing bound and a new one.
fn tighten(bound: &mut Option<(Value, bool)>, value: &Value, inclusive: bool, tighter: Ordering) {
    let replace = match bound {
        None => true,
        Some((existing, existing_inclusive)) => match compare(value, existing) {
            Some(order) if order == tighter => true,
            Some(Ordering::Equal) => *existing_inclusive && !inclusive,
            _ => false,
        },
    };
    if replace {
        *bound = Some((value.clone(), inclusive));
    }
}

/// Whether a concrete candidate value is consistent with the other facts about its field.
fn satisfies(value: &Value, facts: &FieldFacts) -> bool {
    if facts.not_equal.iter().any(|v| v == value) {
        return false;
    }
    let within = |bound: &Option<(Value, bool)>, outside: Ordering| match bound {
        None => true,
        Some((b, inclusive)) => match compare(value, b) {
            Some(Ordering::Equal) => *inclusive,
            Some(order) => order != outside,
            None => false,
        },
    };
    within(&facts.lower, Ordering::Less) && within(&facts.upper, Ordering::Greater)
}

fn build_resource(fields: BTreeMap<Vec<String>, Val>, collection: &Path) -> Val {
    let mut data = Node::Branch(BTreeMap::new());
    let mut id: Option<Val> = None;
    let mut name: Option<Val> = None;
    for (path, value) in fields {
        if path.len() == 1 && path[0] == "__name__" {
            // A document-ID constraint makes `resource.id` and `resource.__name__` known.
            if let Ok(concrete) = value.value() {
                let full = match concrete {
                    Value::Path(p) => Some(p.clone()),
                    Value::String(s) => {
                        let mut p = collection.clone();
                        p.segments.push(s.clone());
                        Some(p)
                    }
                    _ => None,
                };
                if let Some(full) = full {
                    id = full
                        .segments
                        .last()
                        .map(|s| Val::Owned(Value::String(s.clone())));
                    name = Some(Val::Owned(Value::Path(full)));
                }
            }
            continue;
        }
        data.insert(&path, value);
    }
    let mut known = BTreeMap::new();
    known.insert("data".to_string(), data.into_val("resource.data"));
    if let Some(id) = id {
        known.insert("id".to_string(), id);
    }
    if let Some(name) = name {
        known.insert("__name__".to_string(), name);
    }
    Val::Sym(Arc::new(Sym::Map {
        name: "resource".into(),
        known,
    }))
}

/// A tree of constrained field paths, turned into nested symbolic maps once complete.
enum Node {
    Leaf(Val),
    Branch(BTreeMap<String, Node>),
}

impl Node {
    fn insert(&mut self, path: &[String], value: Val) {
        let Node::Branch(children) = self else {
            // A whole-value constraint on a parent already fixes this field.
            return;
        };
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        if rest.is_empty() {
            children.entry(first.clone()).or_insert(Node::Leaf(value));
        } else {
            children
                .entry(first.clone())
                .or_insert_with(|| Node::Branch(BTreeMap::new()))
                .insert(rest, value);
        }
    }

    fn into_val(self, name: &str) -> Val {
        match self {
            Node::Leaf(value) => value,
            Node::Branch(children) => {
                let known = children
                    .into_iter()
                    .map(|(key, child)| {
                        let child_name = format!("{name}.{key}");
                        (key, child.into_val(&child_name))
                    })
                    .collect();
                Val::Sym(Arc::new(Sym::Map {
                    name: name.to_string(),
                    known,
                }))
            }
        }
    }
}
