//! Hearth's implementation of the Firestore Security Rules language: parse a ruleset once, then
//! decide requests with it. Pure and bounded; the server supplies documents via [`DocumentReader`].
//!
//! ```
//! use hearth_rules::{Ruleset, Request, Method, Auth, Value, Timestamp, NoDocuments};
//! let rules = Ruleset::parse(r#"
//!     rules_version = '2';
//!     service cloud.firestore {
//!       match /databases/{database}/documents {
//!         match /notes/{id} { allow get: if request.auth != null; }
//!       }
//!     }"#).unwrap();
//! let request = Request {
//!     method: Method::Get,
//!     path: "notes/n1".into(),
//!     auth: Some(Auth { uid: "u1".into(), token: Value::Map(Default::default()) }),
//!     time: Timestamp::now(),
//!     resource: None,
//!     request_resource: None,
//! };
//! assert!(rules.evaluate(&request, &NoDocuments).allowed);
//! ```

pub mod ast;
pub mod error;
pub mod eval;
pub mod functions;
pub mod lexer;
pub mod matcher;
pub mod parser;
pub mod proof;
pub mod ruleset;
pub mod span;
pub mod testing;
pub mod value;

pub use ast::RulesVersion;
pub use error::{format_errors, EvalError, RuleError, RuleErrorKind};
pub use eval::EvalBudget;
pub use ruleset::Ruleset;
pub use testing::{run_cases, CaseResult, TestReport};
pub use value::{Duration, MapDiff, Path, Timestamp, Value};

/// A request method. `read` covers `Get` and `List`; `write` covers the other three.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    List,
    Create,
    Update,
    Delete,
}

impl Method {
    /// The name rules see in `request.method`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::List => "list",
            Method::Create => "create",
            Method::Update => "update",
            Method::Delete => "delete",
        }
    }

    pub fn parse(name: &str) -> Option<Method> {
        Some(match name {
            "get" => Method::Get,
            "list" => Method::List,
            "create" => Method::Create,
            "update" => Method::Update,
            "delete" => Method::Delete,
            _ => return None,
        })
    }
}

/// The signed-in caller: `request.auth`.
#[derive(Clone, Debug, PartialEq)]
pub struct Auth {
    pub uid: String,
    /// A `Value::Map` of every claim of the access token.
    pub token: Value,
}

/// A stored document. `path` is relative to `/databases/(default)/documents` (`users/u1`).
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub path: String,
    /// A `Value::Map` of the fields. Reference fields are `Value::Path(Path::document(..))`.
    pub data: Value,
}

/// A single-document request.
#[derive(Clone, Debug)]
pub struct Request {
    /// `Get`, `Create`, `Update` or `Delete` (lists go through [`Ruleset::evaluate_list`]).
    pub method: Method,
    /// The document path, e.g. `posts/p1`.
    pub path: String,
    pub auth: Option<Auth>,
    /// `request.time`; on a write with a server timestamp, that timestamp.
    pub time: Timestamp,
    /// The stored document (`resource`), `None` when it does not exist.
    pub resource: Option<Document>,
    /// `request.resource` on create/update: the whole document as it would be after the write.
    pub request_resource: Option<Document>,
}

/// A query (list) request.
#[derive(Clone, Debug)]
pub struct ListRequest {
    /// `posts` or `users/u1/posts`; for a collection-group query only the collection ID.
    pub collection_path: String,
    /// A collection-group query: every collection with this ID at any depth.
    pub all_descendants: bool,
    pub auth: Option<Auth>,
    pub time: Timestamp,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// Field path and whether the order is descending.
    pub order_by: Vec<(String, bool)>,
    /// The where clause in disjunctive normal form: the list is allowed only if every disjunct is
    /// proven. Empty means no where clause.
    pub disjuncts: Vec<Vec<FieldConstraint>>,
}

/// One `where` condition of a query.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldConstraint {
    /// Field path segments (`["address", "city"]`); `["__name__"]` constrains the document ID.
    pub field: Vec<String>,
    pub op: ConstraintOp,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ConstraintOp {
    Eq(Value),
    In(Vec<Value>),
    NotEq(Value),
    NotIn(Vec<Value>),
    Lt(Value),
    Le(Value),
    Gt(Value),
    Ge(Value),
    ArrayContains(Value),
    ArrayContainsAny(Vec<Value>),
}

/// How rules reach the database and the role store. Implemented by the server.
pub trait DocumentReader {
    /// The stored document at `path` (relative, `users/u1`), for `get()` and `exists()`.
    fn get(&self, path: &str) -> Result<Option<Document>, String>;
    /// The document as if the current write or batch had committed, for `getAfter()`/`existsAfter()`.
    fn get_after(&self, path: &str) -> Result<Option<Document>, String>;
    /// Whether `uid` holds `role` (directly or inherited) in `domain`, for `hasRole()`.
    fn has_role(&self, uid: &str, role: &str, domain: Option<&str>) -> bool;
}

/// A reader with no documents and no roles (for rules that need neither, and tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDocuments;

impl DocumentReader for NoDocuments {
    fn get(&self, _path: &str) -> Result<Option<Document>, String> {
        Ok(None)
    }
    fn get_after(&self, _path: &str) -> Result<Option<Document>, String> {
        Ok(None)
    }
    fn has_role(&self, _uid: &str, _role: &str, _domain: Option<&str>) -> bool {
        false
    }
}

/// The answer for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Which rule allowed, or why every candidate rule failed; for logs and `rules test`.
    pub reason: String,
}

impl Decision {
    pub fn allow(reason: impl Into<String>) -> Decision {
        Decision {
            allowed: true,
            reason: reason.into(),
        }
    }

    pub fn deny(reason: impl Into<String>) -> Decision {
        Decision {
            allowed: false,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn ruleset_can_be_shared_across_threads() {
        assert_send_sync::<Ruleset>();
        assert_send_sync::<std::sync::Arc<Ruleset>>();
        assert_send_sync::<EvalBudget>();
    }
}
