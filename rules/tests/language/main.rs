//! Language tests for hearth-rules, compiled into one binary: parse tables, expression tables,
//! matching and request semantics, list proofs, limits and the corpus of realistic rulesets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod corpus;
mod expressions;
mod parse;
mod proofs;
mod semantics;
