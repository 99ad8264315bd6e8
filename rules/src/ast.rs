//! The syntax tree of a rules file, as the parser produces it (every node carries its span).

use crate::span::Span;
use crate::value::Value;

/// `rules_version = '1'` (or absent) vs `'2'`: they differ in recursive wildcard semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RulesVersion {
    V1,
    V2,
}

#[derive(Clone, Debug)]
pub struct RulesFile {
    pub version: RulesVersion,
    /// Functions declared before `service` (shared with the service body).
    pub functions: Vec<FunctionDecl>,
    pub service: Option<Service>,
}

#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub span: Span,
    pub body: Body,
}

/// The contents of a `service` or `match` block.
#[derive(Clone, Debug, Default)]
pub struct Body {
    pub functions: Vec<FunctionDecl>,
    pub matches: Vec<MatchBlock>,
    pub allows: Vec<Allow>,
}

#[derive(Clone, Debug)]
pub struct MatchBlock {
    pub segments: Vec<MatchSegment>,
    pub span: Span,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatchSegment {
    Literal(String),
    /// `{name}`: exactly one segment.
    Wildcard(String),
    /// `{name=**}`: a run of segments (v2: zero or more, anywhere; v1: one or more, at the end).
    Recursive(String),
}

/// A set of request methods, as a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MethodSet(pub u8);

impl MethodSet {
    pub const GET: MethodSet = MethodSet(1);
    pub const LIST: MethodSet = MethodSet(2);
    pub const CREATE: MethodSet = MethodSet(4);
    pub const UPDATE: MethodSet = MethodSet(8);
    pub const DELETE: MethodSet = MethodSet(16);
    pub const READ: MethodSet = MethodSet(1 | 2);
    pub const WRITE: MethodSet = MethodSet(4 | 8 | 16);

    pub fn from_name(name: &str) -> Option<MethodSet> {
        Some(match name {
            "get" => MethodSet::GET,
            "list" => MethodSet::LIST,
            "create" => MethodSet::CREATE,
            "update" => MethodSet::UPDATE,
            "delete" => MethodSet::DELETE,
            "read" => MethodSet::READ,
            "write" => MethodSet::WRITE,
            _ => return None,
        })
    }

    pub fn union(self, other: MethodSet) -> MethodSet {
        MethodSet(self.0 | other.0)
    }

    pub fn contains(self, other: MethodSet) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
}

#[derive(Clone, Debug)]
pub struct Allow {
    pub methods: MethodSet,
    /// The method names as written (`read, write`), for decision reasons.
    pub method_names: Vec<String>,
    /// `None` means `allow x;` without a condition: always allowed.
    pub condition: Option<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct FunctionDecl {
    pub name: String,
    pub params: Vec<String>,
    pub lets: Vec<(String, Expr)>,
    pub body: Expr,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// Height of this subtree; the parser refuses trees taller than its limit so evaluation and
    /// dropping never recurse deeply.
    pub depth: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Negate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "||",
            BinaryOp::And => "&&",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::In => "in",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
        }
    }
}

/// One piece of a path literal segment: literal text or a `$(expr)` substitution.
#[derive(Clone, Debug)]
pub enum PathPart {
    Text(String),
    Expr(Expr),
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    Literal(Value),
    Ident(String),
    List(Vec<Expr>),
    Map(Vec<(Expr, Expr)>),
    /// A path literal; each segment is the concatenation of its parts.
    Path(Vec<Vec<PathPart>>),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Ternary(Box<Expr>, Box<Expr>, Box<Expr>),
    Member(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    Slice(Box<Expr>, Option<Box<Expr>>, Option<Box<Expr>>),
    /// `name(args)`: a user function or a global built-in.
    Call(String, Vec<Expr>),
    /// `receiver.name(args)`: a method, or a namespace function such as `math.abs(x)`.
    MethodCall(Box<Expr>, String, Vec<Expr>),
    /// `expr is type`.
    Is(Box<Expr>, String),
}

impl Expr {
    /// Visits this expression and every sub-expression (iteratively, so it is safe on any tree).
    pub fn walk<'a>(&'a self, visit: &mut dyn FnMut(&'a Expr)) {
        let mut stack: Vec<&'a Expr> = vec![self];
        while let Some(expr) = stack.pop() {
            visit(expr);
            match &expr.kind {
                ExprKind::Literal(_) | ExprKind::Ident(_) => {}
                ExprKind::List(items) | ExprKind::Call(_, items) => stack.extend(items),
                ExprKind::Map(entries) => {
                    for (key, value) in entries {
                        stack.push(key);
                        stack.push(value);
                    }
                }
                ExprKind::Path(segments) => {
                    for part in segments.iter().flatten() {
                        if let PathPart::Expr(inner) = part {
                            stack.push(inner);
                        }
                    }
                }
                ExprKind::Unary(_, inner) | ExprKind::Member(inner, _) | ExprKind::Is(inner, _) => {
                    stack.push(inner)
                }
                ExprKind::Binary(_, left, right) | ExprKind::Index(left, right) => {
                    stack.push(left);
                    stack.push(right);
                }
                ExprKind::Ternary(a, b, c) => {
                    stack.push(a);
                    stack.push(b);
                    stack.push(c);
                }
                ExprKind::Slice(target, from, to) => {
                    stack.push(target);
                    stack.extend(from.as_deref());
                    stack.extend(to.as_deref());
                }
                ExprKind::MethodCall(receiver, _, args) => {
                    stack.push(receiver);
                    stack.extend(args);
                }
            }
        }
    }
}
