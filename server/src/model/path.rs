//! Validated names: document paths, collection paths, document IDs and field paths.
//!
//! They are parsed once at the edge; inner code trusts them.

use std::fmt;

use rand::Rng as _;

use super::timestamp::Timestamp;
use super::ModelError;

const MAX_ID_BYTES: usize = 1_500;
/// Firestore caps path depth at 100 segments; so do we.
const MAX_SEGMENTS: usize = 100;

/// One document ID or collection ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocId(String);

impl DocId {
    pub fn parse(text: &str) -> Result<DocId, ModelError> {
        validate_segment(text)?;
        Ok(DocId(text.to_string()))
    }

    /// 20 characters of `[A-Za-z0-9]`: 9 characters of creation time (µs, base 62 in ASCII
    /// order), then 11 random ones (65 bits). Time first makes auto IDs sort by creation and
    /// makes new documents and their index entries land next to each other in the B-tree, so a
    /// group commit dirties far fewer pages than with fully random IDs.
    pub fn generate() -> DocId {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let micros = Timestamp::now().micros().max(0) as u64;
        let mut id = [0u8; 20];
        let mut rest = micros;
        for slot in id[..9].iter_mut().rev() {
            *slot = ALPHABET[(rest % 62) as usize];
            rest /= 62;
        }
        let mut rng = rand::rng();
        for slot in id[9..].iter_mut() {
            *slot = ALPHABET[rng.random_range(0..ALPHABET.len())];
        }
        DocId(id.iter().map(|&b| b as char).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate_segment(segment: &str) -> Result<(), ModelError> {
    if segment.is_empty() {
        return Err(ModelError::invalid(
            "path segments and IDs must not be empty",
        ));
    }
    if segment.len() > MAX_ID_BYTES {
        return Err(ModelError::invalid(format!(
            "ID is longer than {MAX_ID_BYTES} bytes"
        )));
    }
    if segment.contains('/') {
        return Err(ModelError::invalid("IDs must not contain '/'"));
    }
    if segment == "." || segment == ".." {
        return Err(ModelError::invalid(format!(
            "'{segment}' is not a valid ID"
        )));
    }
    if segment.len() >= 4 && segment.starts_with("__") && segment.ends_with("__") {
        return Err(ModelError::invalid(format!(
            "ID '{segment}' is reserved (matches __.*__)"
        )));
    }
    Ok(())
}

fn split_segments(text: &str) -> Result<Vec<&str>, ModelError> {
    let trimmed = text.strip_prefix('/').unwrap_or(text);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err(ModelError::invalid("path is empty"));
    }
    let segments: Vec<&str> = trimmed.split('/').collect();
    if segments.len() > MAX_SEGMENTS {
        return Err(ModelError::invalid(format!(
            "path has more than {MAX_SEGMENTS} segments"
        )));
    }
    for segment in &segments {
        validate_segment(segment)?;
    }
    Ok(segments)
}

/// The validated segments of a path and their joined text; shared by both path kinds, which
/// differ only in the parity of their segment count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Segments {
    path: String,
    segments: Vec<String>,
}

impl Segments {
    fn parse(text: &str, even: bool, kind: &str) -> Result<Segments, ModelError> {
        let segments = split_segments(text)?;
        if segments.len().is_multiple_of(2) != even {
            let parity = if even { "even" } else { "odd" };
            return Err(ModelError::invalid(format!(
                "'{text}' is not a {kind} path: it needs an {parity} number of segments"
            )));
        }
        Ok(Self::new(segments.into_iter().map(String::from).collect()))
    }

    fn new(segments: Vec<String>) -> Segments {
        Segments {
            path: segments.join("/"),
            segments,
        }
    }

    /// The last segment.
    fn last(&self) -> &str {
        self.segments.last().map(String::as_str).unwrap_or_default()
    }
}

/// A document path: an even number of segments, `collection/doc[/collection/doc...]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocPath(Segments);

impl DocPath {
    pub fn parse(text: &str) -> Result<DocPath, ModelError> {
        Segments::parse(text, true, "document").map(DocPath)
    }

    /// A document path from its segments (as decoded from a document key), validated like
    /// `parse` without joining and splitting the text again.
    pub fn from_segments(segments: Vec<String>) -> Result<DocPath, ModelError> {
        if segments.is_empty() || !segments.len().is_multiple_of(2) {
            return Err(ModelError::invalid(
                "a document path needs an even number of segments",
            ));
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(ModelError::invalid(format!(
                "path has more than {MAX_SEGMENTS} segments"
            )));
        }
        for segment in &segments {
            validate_segment(segment)?;
        }
        Ok(DocPath(Segments::new(segments)))
    }

    pub fn as_str(&self) -> &str {
        &self.0.path
    }

    pub fn segments(&self) -> &[String] {
        &self.0.segments
    }

    /// The document ID: the last segment.
    pub fn id(&self) -> &str {
        self.0.last()
    }

    pub fn collection(&self) -> CollectionPath {
        CollectionPath(Segments::new(
            self.segments()[..self.segments().len() - 1].to_vec(),
        ))
    }
}

impl fmt::Display for DocPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A collection path: an odd number of segments, `collection[/doc/collection...]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CollectionPath(Segments);

impl CollectionPath {
    pub fn parse(text: &str) -> Result<CollectionPath, ModelError> {
        Segments::parse(text, false, "collection").map(CollectionPath)
    }

    pub fn as_str(&self) -> &str {
        &self.0.path
    }

    pub fn segments(&self) -> &[String] {
        &self.0.segments
    }

    /// The collection ID: the last segment.
    pub fn id(&self) -> &str {
        self.0.last()
    }

    pub fn doc(&self, id: &DocId) -> DocPath {
        let mut segments = self.segments().to_vec();
        segments.push(id.0.clone());
        DocPath(Segments::new(segments))
    }

    /// A subcollection of `parent` (a document path) with the collection ID `id`.
    pub fn child_of(parent: Option<&DocPath>, id: &DocId) -> CollectionPath {
        let mut segments = parent.map(|p| p.segments().to_vec()).unwrap_or_default();
        segments.push(id.0.clone());
        CollectionPath(Segments::new(segments))
    }
}

impl fmt::Display for CollectionPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A field path: `address.city`, with back-quoted segments for other names (`` `first.name` ``).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(Vec<String>);

/// Field paths deeper than the value depth limit could never exist.
const MAX_FIELD_SEGMENTS: usize = 20;

impl FieldPath {
    pub fn parse(text: &str) -> Result<FieldPath, ModelError> {
        let mut segments = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            let mut segment = String::new();
            if chars.peek() == Some(&'`') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some(escaped) => segment.push(escaped),
                            None => break,
                        },
                        '`' => {
                            closed = true;
                            break;
                        }
                        other => segment.push(other),
                    }
                }
                if !closed {
                    return Err(ModelError::invalid(format!(
                        "field path '{text}' has an unclosed back-quote"
                    )));
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    segment.push(c);
                    chars.next();
                }
                if !is_simple_segment(&segment) {
                    return Err(ModelError::invalid(format!(
                        "field path '{text}': segment '{segment}' must match [A-Za-z_][A-Za-z0-9_]* or be back-quoted"
                    )));
                }
            }
            if segment.is_empty() {
                return Err(ModelError::invalid(format!(
                    "field path '{text}' has an empty segment"
                )));
            }
            segments.push(segment);
            match chars.next() {
                None => break,
                Some('.') => continue,
                Some(other) => {
                    return Err(ModelError::invalid(format!(
                        "field path '{text}': unexpected '{other}' after a back-quoted segment"
                    )))
                }
            }
        }
        if segments.len() > MAX_FIELD_SEGMENTS {
            return Err(ModelError::invalid(format!(
                "field path '{text}' is deeper than {MAX_FIELD_SEGMENTS}"
            )));
        }
        Ok(FieldPath(segments))
    }

    pub fn from_segments(segments: Vec<String>) -> FieldPath {
        FieldPath(segments)
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// True when `self` is a proper or equal prefix of `other` (`a` covers `a.b`).
    pub fn is_prefix_of(&self, other: &FieldPath) -> bool {
        other.0.len() >= self.0.len() && other.0[..self.0.len()] == self.0[..]
    }

    /// The special field path naming the document ID in queries.
    pub fn is_document_id(&self) -> bool {
        self.0.len() == 1 && self.0[0] == "__name__"
    }
}

fn is_simple_segment(segment: &str) -> bool {
    let mut chars = segment.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            if is_simple_segment(segment) {
                f.write_str(segment)?;
            } else {
                write!(f, "`{}`", segment.replace('\\', "\\\\").replace('`', "\\`"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn document_and_collection_paths_alternate() {
        assert!(DocPath::parse("posts/p1").is_ok());
        assert!(DocPath::parse("users/u1/posts/p1").is_ok());
        assert!(DocPath::parse("posts").is_err());
        assert!(CollectionPath::parse("users/u1/posts").is_ok());
        assert!(CollectionPath::parse("users/u1").is_err());
        assert!(DocPath::parse("posts//p1").is_err());
        assert!(DocPath::parse("posts/..").is_err());
        assert!(DocPath::parse("posts/__id__").is_err());
        assert!(DocPath::parse(&format!("posts/{}", "x".repeat(1_501))).is_err());
    }

    #[test]
    fn field_paths_parse_back_quotes() {
        let path = FieldPath::parse("address.`first.name`.x_1").unwrap();
        assert_eq!(path.segments(), ["address", "first.name", "x_1"]);
        assert_eq!(path.to_string(), "address.`first.name`.x_1");
        assert!(FieldPath::parse("a..b").is_err());
        assert!(FieldPath::parse("1abc").is_err());
        assert!(FieldPath::parse("`unclosed").is_err());
        assert!(FieldPath::parse("").is_err());
    }

    #[test]
    fn auto_ids_are_twenty_alphanumerics() {
        let id = DocId::generate();
        assert_eq!(id.as_str().len(), 20);
        assert!(id.as_str().chars().all(|c| c.is_ascii_alphanumeric()));
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = DocId::generate();
        assert!(later > id, "auto IDs sort by creation time");
        assert_ne!(DocId::generate(), DocId::generate());
    }
}
