//! Path matching: finds every `match` block that completely matches a request path, with the
//! wildcard bindings of each way it matches.

use std::sync::Arc;

use crate::ast::{MatchSegment, RulesVersion};
use crate::eval::Val;
use crate::proof::Sym;
use crate::ruleset::CompiledMatch;
use crate::value::{Path, Value};

/// One segment of the path being matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Lit(String),
    /// The ID of a document a query may return: matches `{x}` or `{x=**}`, never a literal.
    UnknownId,
    /// Any run of segments (the parents of a collection-group query): only `{x=**}` absorbs it.
    AnyPrefix,
}

pub struct Hit<'r> {
    pub node: &'r CompiledMatch,
    pub bindings: Vec<(String, Val)>,
}

/// Upper bound on matching work, so patterns with several `**` cannot blow up on long paths.
const MAX_MATCH_WORK: usize = 100_000;
/// Upper bound on the number of complete matches considered for one request.
const MAX_HITS: usize = 256;

pub fn find_matches<'r>(
    roots: &'r [CompiledMatch],
    path: &[Seg],
    version: RulesVersion,
) -> Vec<Hit<'r>> {
    let mut out = Vec::new();
    let mut work = MAX_MATCH_WORK;
    visit(roots, path, 0, &[], version, &mut out, &mut work);
    out
}

fn visit<'r>(
    nodes: &'r [CompiledMatch],
    path: &[Seg],
    pos: usize,
    bindings: &[(String, Val)],
    version: RulesVersion,
    out: &mut Vec<Hit<'r>>,
    work: &mut usize,
) {
    for node in nodes {
        let mut ends = Vec::new();
        match_segments(
            &node.segments,
            path,
            pos,
            bindings.to_vec(),
            version,
            &mut ends,
            work,
        );
        for (end, node_bindings) in ends {
            if out.len() >= MAX_HITS {
                return;
            }
            if !node.children.is_empty() {
                visit(
                    &node.children,
                    path,
                    end,
                    &node_bindings,
                    version,
                    out,
                    work,
                );
            }
            if end == path.len() {
                out.push(Hit {
                    node,
                    bindings: node_bindings,
                });
            }
        }
    }
}

fn match_segments(
    pattern: &[MatchSegment],
    path: &[Seg],
    pos: usize,
    mut bindings: Vec<(String, Val)>,
    version: RulesVersion,
    out: &mut Vec<(usize, Vec<(String, Val)>)>,
    work: &mut usize,
) {
    if *work == 0 {
        return;
    }
    *work -= 1;
    let Some((first, rest)) = pattern.split_first() else {
        out.push((pos, bindings));
        return;
    };
    match first {
        MatchSegment::Literal(literal) => {
            if matches!(path.get(pos), Some(Seg::Lit(segment)) if segment == literal) {
                match_segments(rest, path, pos + 1, bindings, version, out, work);
            }
        }
        MatchSegment::Wildcard(name) => {
            let value = match path.get(pos) {
                Some(Seg::Lit(segment)) => Val::Owned(Value::String(segment.clone())),
                Some(Seg::UnknownId) => {
                    Val::Sym(Arc::new(Sym::Unknown(format!("the document ID `{name}`"))))
                }
                Some(Seg::AnyPrefix) | None => return,
            };
            bindings.push((name.clone(), value));
            match_segments(rest, path, pos + 1, bindings, version, out, work);
        }
        MatchSegment::Recursive(name) => {
            let remaining = path.len().saturating_sub(pos);
            // v1: `{x=**}` ends the path and takes at least one segment; v2: zero or more, anywhere.
            let lengths: Vec<usize> = match version {
                RulesVersion::V1 if remaining >= 1 => vec![remaining],
                RulesVersion::V1 => Vec::new(),
                RulesVersion::V2 => (0..=remaining).collect(),
            };
            for length in lengths {
                let taken = &path[pos..pos + length];
                let literal: Option<Vec<String>> = taken
                    .iter()
                    .map(|seg| match seg {
                        Seg::Lit(text) => Some(text.clone()),
                        _ => None,
                    })
                    .collect();
                let value = match literal {
                    Some(segments) => Val::Owned(Value::Path(Path { segments })),
                    None => Val::Sym(Arc::new(Sym::Unknown(format!(
                        "the path wildcard `{name}`"
                    )))),
                };
                let mut with = bindings.clone();
                with.push((name.clone(), value));
                match_segments(rest, path, pos + length, with, version, out, work);
            }
        }
    }
}
