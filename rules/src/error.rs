//! Error types: load-time errors with line:column and a caret, and evaluation errors (which deny).

use std::fmt;

use crate::span::{LineIndex, Span};

/// What went wrong while loading a ruleset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleErrorKind {
    #[error("{0}")]
    Syntax(String),
    #[error("unknown function `{0}`")]
    UnknownFunction(String),
    #[error("function `{name}` takes {expected} argument(s) but is called with {found}")]
    WrongArity {
        name: String,
        expected: usize,
        found: usize,
    },
    #[error("function `{0}` is defined twice in the same scope")]
    DuplicateFunction(String),
    #[error("recursive function call: {0}")]
    Recursion(String),
    #[error("{0}")]
    Limit(String),
    #[error("invalid regular expression: {0}")]
    Regex(String),
    #[error("{0}")]
    Invalid(String),
}

/// One load-time error: `line:column: message`, then the source line and a caret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub line: u32,
    pub column: u32,
    pub message: String,
    pub kind: RuleErrorKind,
    /// The source line the error points into, for the caret display.
    pub source_line: String,
}

impl RuleError {
    pub(crate) fn new(index: &LineIndex<'_>, span: Span, kind: RuleErrorKind) -> RuleError {
        let position = index.line_column(span.start);
        RuleError {
            line: position.line,
            column: position.column,
            message: kind.to_string(),
            kind,
            source_line: index.line_text(position.line).to_string(),
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}:{}: {}", self.line, self.column, self.message)?;
        writeln!(f, "    {}", self.source_line)?;
        // Tabs are kept so the caret lines up under the column in a terminal.
        let pad: String = self
            .source_line
            .chars()
            .take((self.column as usize).saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "    {pad}^")
    }
}

impl std::error::Error for RuleError {}

/// Formats a list of load errors one after another, as `hearth rules check` prints them.
pub fn format_errors(errors: &[RuleError]) -> String {
    errors
        .iter()
        .map(|error| error.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why an expression could not be evaluated. Any of these makes the enclosing `allow` false.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Type(String),
    #[error("null value has no field `{0}`")]
    NullAccess(String),
    #[error("no field `{0}`")]
    MissingField(String),
    #[error("index {0} out of range")]
    IndexOutOfRange(i64),
    #[error("unknown variable `{0}`")]
    UnknownVariable(String),
    #[error("{0}")]
    Arithmetic(String),
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    #[error("document lookup failed: {0}")]
    Lookup(String),
    /// Only in list proofs: the value depends on something the query does not constrain.
    #[error("cannot prove for every document: {0}")]
    Unprovable(String),
    #[error("{0}")]
    Invalid(String),
}

impl EvalError {
    pub(crate) fn type_error(message: impl Into<String>) -> EvalError {
        EvalError::Type(message.into())
    }
}
