//! A loaded ruleset: validation at load time (every error at once) and the entry points that
//! decide single-document requests and list queries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::ast::{
    Allow, Body, Expr, ExprKind, FunctionDecl, MatchBlock, MatchSegment, MethodSet, RulesVersion,
};
use crate::error::{RuleError, RuleErrorKind};
use crate::eval::{compile_regex, document_value, Env, EvalBudget, Evaluator, Val};
use crate::functions::{is_namespace, GLOBALS, METHODS, NAMESPACE_FUNCTIONS};
use crate::matcher::{find_matches, Hit, Seg};
use crate::parser::parse_file;
use crate::proof::resource_variants;
use crate::span::{LineIndex, Span};
use crate::value::{Path, Value, DOCUMENTS_PREFIX};
use crate::{Auth, Decision, Document, DocumentReader, ListRequest, Method, Request, Timestamp};

/// Largest rules source accepted (Firestore's limit).
pub const MAX_SOURCE_BYTES: usize = 256 * 1024;
pub const MAX_FUNCTION_PARAMS: usize = 7;
pub const MAX_FUNCTION_LETS: usize = 10;

/// A parsed and validated ruleset. Immutable, `Send + Sync`, cheap to share in an `Arc`.
#[derive(Debug)]
pub struct Ruleset {
    pub(crate) version: RulesVersion,
    pub(crate) functions: Vec<CompiledFunction>,
    scopes: Vec<Scope>,
    pub(crate) roots: Vec<CompiledMatch>,
    /// Regexes written as literals, compiled once at load: `[unanchored, anchored]` maps from
    /// pattern to regex (two maps so lookups by `&str` need no allocation).
    regexes: [HashMap<String, Arc<regex::Regex>>; 2],
}

#[derive(Debug)]
pub(crate) struct CompiledFunction {
    pub decl: FunctionDecl,
    /// The scope the function was declared in; its body resolves calls there.
    pub scope: usize,
}

#[derive(Debug)]
struct Scope {
    parent: Option<usize>,
    functions: HashMap<String, usize>,
}

#[derive(Debug)]
pub struct CompiledMatch {
    pub(crate) segments: Vec<MatchSegment>,
    /// The full path of this block including its parents, for decision reasons.
    pub(crate) path_text: String,
    pub(crate) scope: usize,
    pub(crate) allows: Vec<CompiledAllow>,
    pub(crate) children: Vec<CompiledMatch>,
}

#[derive(Debug)]
pub(crate) struct CompiledAllow {
    pub methods: MethodSet,
    /// `allow read, write (line 12)`.
    pub label: String,
    pub condition: Option<Expr>,
}

struct Loader<'s> {
    index: LineIndex<'s>,
    errors: Vec<RuleError>,
    version: RulesVersion,
    functions: Vec<CompiledFunction>,
    scopes: Vec<Scope>,
    regexes: HashMap<(bool, String), Arc<regex::Regex>>,
}

impl Loader<'_> {
    fn error(&mut self, span: Span, kind: RuleErrorKind) {
        self.errors.push(RuleError::new(&self.index, span, kind));
    }

    fn add_scope(&mut self, parent: Option<usize>, functions: Vec<FunctionDecl>) -> usize {
        let scope = self.scopes.len();
        self.scopes.push(Scope {
            parent,
            functions: HashMap::new(),
        });
        for decl in functions {
            if decl.params.len() > MAX_FUNCTION_PARAMS {
                self.error(
                    decl.span,
                    RuleErrorKind::Limit(format!(
                        "function `{}` has more than {MAX_FUNCTION_PARAMS} parameters",
                        decl.name
                    )),
                );
            }
            if decl.lets.len() > MAX_FUNCTION_LETS {
                self.error(
                    decl.span,
                    RuleErrorKind::Limit(format!(
                        "function `{}` has more than {MAX_FUNCTION_LETS} let bindings",
                        decl.name
                    )),
                );
            }
            let id = self.functions.len();
            if self.scopes[scope]
                .functions
                .insert(decl.name.clone(), id)
                .is_some()
            {
                self.error(
                    decl.span,
                    RuleErrorKind::DuplicateFunction(decl.name.clone()),
                );
            }
            self.functions.push(CompiledFunction { decl, scope });
        }
        scope
    }

    fn compile_match(
        &mut self,
        block: MatchBlock,
        parent_scope: usize,
        parent_path: &str,
    ) -> CompiledMatch {
        let mut path_text = parent_path.to_string();
        for (i, segment) in block.segments.iter().enumerate() {
            match segment {
                MatchSegment::Literal(text) => path_text.push_str(&format!("/{text}")),
                MatchSegment::Wildcard(name) => path_text.push_str(&format!("/{{{name}}}")),
                MatchSegment::Recursive(name) => {
                    path_text.push_str(&format!("/{{{name}=**}}"));
                    if self.version == RulesVersion::V1 && i + 1 != block.segments.len() {
                        self.error(block.span, RuleErrorKind::Invalid(
                            "with rules_version '1' a recursive wildcard `{x=**}` must be the last segment (use rules_version = '2')".into(),
                        ));
                    }
                }
            }
        }
        let Body {
            functions,
            matches,
            allows,
        } = block.body;
        let scope = self.add_scope(Some(parent_scope), functions);
        let allows = allows
            .into_iter()
            .map(|allow| self.compile_allow(allow))
            .collect();
        let children = matches
            .into_iter()
            .map(|child| self.compile_match(child, scope, &path_text))
            .collect();
        CompiledMatch {
            segments: block.segments,
            path_text,
            scope,
            allows,
            children,
        }
    }

    fn compile_allow(&mut self, allow: Allow) -> CompiledAllow {
        let line = self.index.line_column(allow.span.start).line;
        CompiledAllow {
            methods: allow.methods,
            label: format!("`allow {}` (line {line})", allow.method_names.join(", ")),
            condition: allow.condition,
        }
    }

    fn resolve(&self, mut scope: usize, name: &str) -> Option<usize> {
        loop {
            let current = self.scopes.get(scope)?;
            if let Some(id) = current.functions.get(name) {
                return Some(*id);
            }
            scope = current.parent?;
        }
    }

    /// Checks calls, methods and literal regexes in one expression; returns the user functions
    /// it calls (for the recursion check).
    fn check_expr(&mut self, expr: &Expr, scope: usize, locals: &[&str]) -> Vec<(usize, Span)> {
        let mut calls = Vec::new();
        let mut problems: Vec<(Span, RuleErrorKind)> = Vec::new();
        let mut regexes: Vec<(Span, bool, String)> = Vec::new();
        expr.walk(&mut |node| match &node.kind {
            ExprKind::Call(name, args) => {
                if let Some(id) = self.resolve(scope, name) {
                    let expected = self.functions[id].decl.params.len();
                    if expected != args.len() {
                        problems.push((
                            node.span,
                            RuleErrorKind::WrongArity {
                                name: name.clone(),
                                expected,
                                found: args.len(),
                            },
                        ));
                    }
                    calls.push((id, node.span));
                } else if let Some((_, min, max)) = GLOBALS.iter().find(|(n, _, _)| n == name) {
                    if args.len() < *min || args.len() > *max {
                        problems.push((
                            node.span,
                            RuleErrorKind::WrongArity {
                                name: name.clone(),
                                expected: *min,
                                found: args.len(),
                            },
                        ));
                    }
                } else {
                    problems.push((node.span, RuleErrorKind::UnknownFunction(name.clone())));
                }
            }
            ExprKind::MethodCall(receiver, name, args) => {
                let namespace = match &receiver.kind {
                    ExprKind::Ident(ns) if is_namespace(ns) && !locals.contains(&ns.as_str()) => {
                        Some(ns)
                    }
                    _ => None,
                };
                if let Some(namespace) = namespace {
                    match NAMESPACE_FUNCTIONS
                        .iter()
                        .find(|(ns, n, _, _)| ns == namespace && n == name)
                    {
                        Some((_, _, min, max)) => {
                            if args.len() < *min || args.len() > *max {
                                problems.push((
                                    node.span,
                                    RuleErrorKind::WrongArity {
                                        name: format!("{namespace}.{name}"),
                                        expected: *min,
                                        found: args.len(),
                                    },
                                ));
                            }
                        }
                        None => problems.push((
                            node.span,
                            RuleErrorKind::UnknownFunction(format!("{namespace}.{name}")),
                        )),
                    }
                } else if !METHODS.contains(&name.as_str()) {
                    problems.push((
                        node.span,
                        RuleErrorKind::Invalid(format!("unknown method `{name}`")),
                    ));
                }
                if let (true, Some(first)) = (
                    matches!(name.as_str(), "matches" | "replace" | "split"),
                    args.first(),
                ) {
                    if let ExprKind::Literal(Value::String(pattern)) = &first.kind {
                        regexes.push((first.span, name == "matches", pattern.clone()));
                    }
                }
            }
            _ => {}
        });
        for (span, anchored, pattern) in regexes {
            let key = (anchored, pattern);
            if self.regexes.contains_key(&key) {
                continue;
            }
            match compile_regex(&key.1, anchored) {
                Ok(regex) => {
                    self.regexes.insert(key, Arc::new(regex));
                }
                Err(message) => problems.push((span, RuleErrorKind::Regex(message))),
            }
        }
        for (span, kind) in problems {
            self.error(span, kind);
        }
        calls
    }

    fn check_match(&mut self, node: &CompiledMatch) {
        for allow in &node.allows {
            if let Some(condition) = &allow.condition {
                self.check_expr(condition, node.scope, &[]);
            }
        }
        for child in &node.children {
            self.check_match(child);
        }
    }

    fn check_functions(&mut self) {
        let mut edges: Vec<Vec<(usize, Span)>> = Vec::with_capacity(self.functions.len());
        for id in 0..self.functions.len() {
            let decl = self.functions[id].decl.clone();
            let scope = self.functions[id].scope;
            let mut locals: Vec<&str> = decl.params.iter().map(String::as_str).collect();
            let mut calls = Vec::new();
            for (name, value) in &decl.lets {
                calls.extend(self.check_expr(value, scope, &locals));
                locals.push(name);
            }
            calls.extend(self.check_expr(&decl.body, scope, &locals));
            edges.push(calls);
        }
        // Depth-first search for cycles: 0 = unvisited, 1 = on the stack, 2 = done.
        let mut state = vec![0u8; self.functions.len()];
        for start in 0..self.functions.len() {
            if state[start] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            state[start] = 1;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&(callee, span)) = edges[node].get(*next) {
                    *next += 1;
                    match state[callee] {
                        0 => {
                            state[callee] = 1;
                            stack.push((callee, 0));
                        }
                        1 => {
                            let cycle_start =
                                stack.iter().position(|(id, _)| *id == callee).unwrap_or(0);
                            let mut names: Vec<&str> = stack[cycle_start..]
                                .iter()
                                .map(|(id, _)| self.functions[*id].decl.name.as_str())
                                .collect();
                            names.push(self.functions[callee].decl.name.as_str());
                            let message = format!(
                                "functions may not call themselves: {}",
                                names.join(" -> ")
                            );
                            self.errors.push(RuleError::new(
                                &self.index,
                                span,
                                RuleErrorKind::Recursion(message),
                            ));
                        }
                        _ => {}
                    }
                } else {
                    state[node] = 2;
                    stack.pop();
                }
            }
        }
    }
}

impl Ruleset {
    /// Parses and validates a whole rules file, returning every error found (sorted by position).
    pub fn parse(source: &str) -> Result<Ruleset, Vec<RuleError>> {
        let index = LineIndex::new(source);
        if source.len() > MAX_SOURCE_BYTES {
            return Err(vec![RuleError::new(
                &index,
                Span::new(0, 0),
                RuleErrorKind::Limit(format!(
                    "rules source is larger than {} KB",
                    MAX_SOURCE_BYTES / 1024
                )),
            )]);
        }
        let (file, syntax_errors) = parse_file(source);
        let mut loader = Loader {
            index,
            errors: Vec::new(),
            version: file.version,
            functions: Vec::new(),
            scopes: Vec::new(),
            regexes: HashMap::new(),
        };
        for (kind, span) in syntax_errors {
            loader.error(span, kind);
        }
        let (service_functions, service_matches) = match file.service {
            Some(service) => {
                for allow in &service.body.allows {
                    // An allow outside any match could never apply to a document path.
                    loader.error(
                        allow.span,
                        RuleErrorKind::Invalid("`allow` must be inside a `match` block".into()),
                    );
                }
                (service.body.functions, service.body.matches)
            }
            None => (Vec::new(), Vec::new()),
        };
        let mut global_functions = file.functions;
        global_functions.extend(service_functions);
        let global = loader.add_scope(None, global_functions);
        let roots: Vec<CompiledMatch> = service_matches
            .into_iter()
            .map(|block| loader.compile_match(block, global, ""))
            .collect();
        for root in &roots {
            loader.check_match(root);
        }
        loader.check_functions();
        if !loader.errors.is_empty() {
            let mut errors = loader.errors;
            errors.sort_by_key(|error| (error.line, error.column));
            errors.dedup();
            return Err(errors);
        }
        Ok(Ruleset {
            version: loader.version,
            functions: loader.functions,
            scopes: loader.scopes,
            roots,
            regexes: {
                let mut maps = [HashMap::new(), HashMap::new()];
                for ((anchored, pattern), regex) in loader.regexes {
                    maps[usize::from(anchored)].insert(pattern, regex);
                }
                maps
            },
        })
    }

    /// `rules_version` of the file (`V1` when absent).
    pub fn version(&self) -> RulesVersion {
        self.version
    }

    pub(crate) fn resolve_function(&self, mut scope: usize, name: &str) -> Option<usize> {
        loop {
            let current = self.scopes.get(scope)?;
            if let Some(id) = current.functions.get(name) {
                return Some(*id);
            }
            scope = current.parent?;
        }
    }

    pub(crate) fn precompiled_regex(
        &self,
        pattern: &str,
        anchored: bool,
    ) -> Option<Arc<regex::Regex>> {
        self.regexes[usize::from(anchored)].get(pattern).cloned()
    }

    /// Decides a single-document request (get, create, update, delete). Every matching `allow`
    /// for the method is tried (OR); default deny; an evaluation error makes that `allow` false.
    pub fn evaluate(&self, request: &Request, reader: &dyn DocumentReader) -> Decision {
        self.evaluate_with_budget(request, reader, &mut EvalBudget::single())
    }

    /// Like [`Ruleset::evaluate`], drawing `get`/`exists` calls from a budget the caller shares
    /// across the writes of a batch ([`EvalBudget::batch`]).
    pub fn evaluate_with_budget(
        &self,
        request: &Request,
        reader: &dyn DocumentReader,
        budget: &mut EvalBudget,
    ) -> Decision {
        let method = match request.method {
            Method::Get => MethodSet::GET,
            Method::Create => MethodSet::CREATE,
            Method::Update => MethodSet::UPDATE,
            Method::Delete => MethodSet::DELETE,
            Method::List => {
                return Decision::deny("a list request must be decided with evaluate_list")
            }
        };
        let relative = match document_segments(&request.path) {
            Ok(segments) => segments,
            Err(message) => return Decision::deny(message),
        };
        let mut path: Vec<Seg> = DOCUMENTS_PREFIX
            .iter()
            .map(|s| Seg::Lit(s.to_string()))
            .collect();
        path.extend(relative.iter().map(|s| Seg::Lit(s.clone())));
        let hits = find_matches(&self.roots, &path, self.version);

        let method_name = request.method.as_str();
        let request_value = Arc::new(request_value(
            method_name,
            Path::document(&request.path),
            request.auth.as_ref(),
            request.time,
            request.request_resource.as_ref(),
            None,
        ));
        let resource = match &request.resource {
            Some(document) => Val::Shared(Arc::new(document_value(document))),
            None => Val::Owned(Value::Null),
        };
        let uid = request.auth.as_ref().map(|auth| auth.uid.clone());
        let mut evaluator = Evaluator::new(self, reader, budget, request_value, resource, uid);
        let outcome = run_allows(&mut evaluator, &hits, method);
        match outcome {
            Outcome::Allowed(label) => Decision::allow(format!("allowed by {label}")),
            Outcome::Denied(notes) if notes.is_empty() => Decision::deny(format!(
                "no `allow {method_name}` rule matches {}",
                request.path
            )),
            Outcome::Denied(notes) => Decision::deny(format!("denied: {}", notes.join("; "))),
        }
    }

    /// Decides a list (query) request by proving the `list` rule from the query's constraints
    /// ("rules are not filters"): every disjunct must be proven for every document it may return.
    pub fn evaluate_list(&self, request: &ListRequest, reader: &dyn DocumentReader) -> Decision {
        let relative = match collection_segments(&request.collection_path, request.all_descendants)
        {
            Ok(segments) => segments,
            Err(message) => return Decision::deny(message),
        };
        let mut path: Vec<Seg> = DOCUMENTS_PREFIX
            .iter()
            .map(|s| Seg::Lit(s.to_string()))
            .collect();
        if request.all_descendants {
            path.push(Seg::AnyPrefix);
        }
        path.extend(relative.iter().map(|s| Seg::Lit(s.clone())));
        path.push(Seg::UnknownId);
        let hits = find_matches(&self.roots, &path, self.version);
        if !hits.iter().any(|hit| {
            hit.node
                .allows
                .iter()
                .any(|a| a.methods.contains(MethodSet::LIST))
        }) {
            return Decision::deny(format!(
                "no `allow list` rule matches {}",
                describe_collection(request)
            ));
        }

        let collection = Path::document(&relative.join("/"));
        let request_value = Arc::new(request_value(
            "list",
            collection.clone(),
            request.auth.as_ref(),
            request.time,
            None,
            Some(query_value(request)),
        ));
        let uid = request.auth.as_ref().map(|auth| auth.uid.clone());
        let mut budget = EvalBudget::single();
        let mut evaluator = Evaluator::new(
            self,
            reader,
            &mut budget,
            request_value,
            Val::Owned(Value::Null),
            uid,
        );
        let no_constraints: Vec<Vec<crate::FieldConstraint>> = vec![Vec::new()];
        let disjuncts = if request.disjuncts.is_empty() {
            &no_constraints
        } else {
            &request.disjuncts
        };
        let mut labels = Vec::new();
        for (number, disjunct) in disjuncts.iter().enumerate() {
            let variants = match resource_variants(disjunct, &collection) {
                Ok(variants) => variants,
                Err(message) => return Decision::deny(message),
            };
            for variant in variants {
                evaluator.resource = variant;
                evaluator.reset_steps();
                match run_allows(&mut evaluator, &hits, MethodSet::LIST) {
                    Outcome::Allowed(label) => labels.push(label),
                    Outcome::Denied(notes) => {
                        let which = if disjuncts.len() > 1 {
                            format!(" (disjunct {} of the query)", number + 1)
                        } else {
                            String::new()
                        };
                        return Decision::deny(format!(
                            "denied: the query's constraints do not prove the list rule{which}: {}",
                            notes.join("; ")
                        ));
                    }
                }
            }
        }
        labels.dedup();
        if labels.is_empty() {
            // Every disjunct was contradictory: the query can return nothing.
            return Decision::allow("allowed: the query's constraints exclude every document");
        }
        Decision::allow(format!(
            "allowed by {} for every document the query may return",
            labels.join(", ")
        ))
    }
}

enum Outcome {
    Allowed(String),
    Denied(Vec<String>),
}

fn run_allows<'r>(evaluator: &mut Evaluator<'r>, hits: &[Hit<'r>], method: MethodSet) -> Outcome {
    let mut notes = Vec::new();
    for hit in hits {
        for allow in &hit.node.allows {
            if !allow.methods.contains(method) {
                continue;
            }
            let label = format!("{} in match {}", allow.label, hit.node.path_text);
            let Some(condition) = &allow.condition else {
                return Outcome::Allowed(label);
            };
            let env = Env {
                locals: &[],
                wildcards: &hit.bindings,
                scope: hit.node.scope,
            };
            match evaluator.condition(condition, &env) {
                Ok(true) => return Outcome::Allowed(label),
                Ok(false) => notes.push(format!("{label} is false")),
                Err(error) => notes.push(format!("{label} failed: {error}")),
            }
            if matches!(notes.last(), Some(note) if note.contains("limit exceeded")) {
                // A spent budget fails every later rule too; stop early.
                return Outcome::Denied(notes);
            }
        }
    }
    Outcome::Denied(notes)
}

fn describe_collection(request: &ListRequest) -> String {
    if request.all_descendants {
        format!("collection group `{}`", request.collection_path)
    } else {
        format!("collection {}", request.collection_path)
    }
}

/// Hearth document paths have an even, non-zero number of non-empty segments.
fn document_segments(path: &str) -> Result<Vec<String>, String> {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    if segments.iter().any(String::is_empty)
        || !segments.len().is_multiple_of(2)
        || segments.len() > 200
    {
        return Err(format!("`{path}` is not a document path"));
    }
    Ok(segments)
}

fn collection_segments(path: &str, all_descendants: bool) -> Result<Vec<String>, String> {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    let valid = !segments.iter().any(String::is_empty)
        && segments.len() <= 200
        && if all_descendants {
            segments.len() == 1
        } else {
            segments.len() % 2 == 1
        };
    if !valid {
        return Err(format!("`{path}` is not a collection path"));
    }
    Ok(segments)
}

fn auth_value(auth: Option<&Auth>) -> Value {
    match auth {
        None => Value::Null,
        Some(auth) => {
            let mut map = BTreeMap::new();
            map.insert("uid".to_string(), Value::String(auth.uid.clone()));
            map.insert("token".to_string(), auth.token.clone());
            Value::Map(map)
        }
    }
}

fn request_value(
    method: &str,
    path: Path,
    auth: Option<&Auth>,
    time: Timestamp,
    request_resource: Option<&Document>,
    query: Option<Value>,
) -> Value {
    let mut map = BTreeMap::new();
    map.insert("auth".to_string(), auth_value(auth));
    map.insert("method".to_string(), Value::String(method.to_string()));
    map.insert("path".to_string(), Value::Path(path));
    map.insert("time".to_string(), Value::Timestamp(time));
    map.insert(
        "resource".to_string(),
        request_resource.map(document_value).unwrap_or(Value::Null),
    );
    if let Some(query) = query {
        map.insert("query".to_string(), query);
    }
    Value::Map(map)
}

/// `request.query`: `limit` and `offset` (null when absent) and `orderBy`, a map from field path
/// to `"ASC"` or `"DESC"`.
fn query_value(request: &ListRequest) -> Value {
    let mut map = BTreeMap::new();
    map.insert(
        "limit".to_string(),
        request.limit.map(Value::Int).unwrap_or(Value::Null),
    );
    map.insert(
        "offset".to_string(),
        request.offset.map(Value::Int).unwrap_or(Value::Null),
    );
    let order: BTreeMap<String, Value> = request
        .order_by
        .iter()
        .map(|(field, descending)| {
            (
                field.clone(),
                Value::String(if *descending { "DESC" } else { "ASC" }.to_string()),
            )
        })
        .collect();
    map.insert("orderBy".to_string(), Value::Map(order));
    Value::Map(map)
}
