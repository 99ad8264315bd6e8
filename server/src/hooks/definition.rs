//! A hook definition as project data: parsing with every problem listed, the path pattern it
//! matches, and its public (secret-masked) form.

use base64::Engine as _;
use serde_json::{json, Map, Value as Json};

/// Longest hook name.
const MAX_NAME_CHARS: usize = 64;
/// Shortest and longest timeout a hook may ask for; the upper bound comes from the settings.
pub const MIN_TIMEOUT_MS: u64 = 100;
/// Timeout of a hook that names none.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Standard Webhooks secrets are 24 to 64 random bytes.
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
const SECRET_PREFIX: &str = "whsec_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    DocumentCreate,
    DocumentUpdate,
    DocumentDelete,
    AuthSignup,
    AuthLogin,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::DocumentCreate,
        EventKind::DocumentUpdate,
        EventKind::DocumentDelete,
        EventKind::AuthSignup,
        EventKind::AuthLogin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::DocumentCreate => "document.create",
            EventKind::DocumentUpdate => "document.update",
            EventKind::DocumentDelete => "document.delete",
            EventKind::AuthSignup => "auth.signup",
            EventKind::AuthLogin => "auth.login",
        }
    }

    fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|e| e.as_str() == text)
    }

    pub fn is_document(self) -> bool {
        matches!(
            self,
            EventKind::DocumentCreate | EventKind::DocumentUpdate | EventKind::DocumentDelete
        )
    }

    /// The CloudEvents `type` of a call in `mode` (DESIGN.md §6).
    pub fn cloud_event_type(self, mode: Mode) -> &'static str {
        match (self, mode) {
            (EventKind::DocumentCreate, Mode::Before) => "dev.hearth.document.beforeCreate",
            (EventKind::DocumentUpdate, Mode::Before) => "dev.hearth.document.beforeUpdate",
            (EventKind::DocumentDelete, Mode::Before) => "dev.hearth.document.beforeDelete",
            (EventKind::DocumentCreate, Mode::After) => "dev.hearth.document.created",
            (EventKind::DocumentUpdate, Mode::After) => "dev.hearth.document.updated",
            (EventKind::DocumentDelete, Mode::After) => "dev.hearth.document.deleted",
            (EventKind::AuthSignup, _) => "dev.hearth.auth.signup",
            (EventKind::AuthLogin, _) => "dev.hearth.auth.login",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Runs synchronously in the write path and may allow, replace or reject.
    Before,
    /// A trigger: delivered from the outbox after the commit, at least once.
    After,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Reject,
    Allow,
}

/// One segment of a `match` pattern: `posts`, `{postId}`, or a last `{rest=**}`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternSegment {
    Literal(String),
    Wildcard,
    Rest,
}

/// The document paths a hook matches, written like a rules `match` (`posts/{postId}`,
/// `rooms/{room}/messages/{id}`, `logs/{path=**}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    segments: Vec<PatternSegment>,
}

impl PathPattern {
    pub fn parse(text: &str) -> Result<PathPattern, String> {
        let trimmed = text.trim_matches('/');
        if trimmed.is_empty() {
            return Err("match: must name at least a collection and a document".into());
        }
        let parts: Vec<&str> = trimmed.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let segment = if let Some(inner) =
                part.strip_prefix('{').and_then(|p| p.strip_suffix('}'))
            {
                let (name, rest) = match inner.split_once('=') {
                    Some((name, "**")) => (name, true),
                    Some(_) => return Err(format!("match: '{part}' may only be '{{name=**}}'")),
                    None => (inner, false),
                };
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!(
                        "match: '{part}' needs a name of letters, digits and '_'"
                    ));
                }
                if rest && !last {
                    return Err(format!("match: '{part}' may only be the last segment"));
                }
                if rest {
                    PatternSegment::Rest
                } else {
                    PatternSegment::Wildcard
                }
            } else {
                if part.is_empty() || part.contains(['{', '}']) || *part == "." || *part == ".." {
                    return Err(format!("match: '{part}' is not a valid path segment"));
                }
                PatternSegment::Literal((*part).to_string())
            };
            segments.push(segment);
        }
        let ends_in_rest = matches!(segments.last(), Some(PatternSegment::Rest));
        if !ends_in_rest && segments.len() % 2 != 0 {
            return Err(format!(
                "match: '{text}' names a collection; a hook matches documents (collection/document pairs)"
            ));
        }
        Ok(PathPattern {
            source: trimmed.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the document path (`posts/p1`) matches.
    pub fn matches(&self, path: &str) -> bool {
        let mut parts = path.split('/');
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                PatternSegment::Rest => {
                    // `{rest=**}` takes one or more segments; the path must still be a document.
                    let remaining = parts.count();
                    return remaining >= 1 && (i + remaining).is_multiple_of(2);
                }
                PatternSegment::Wildcard => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                PatternSegment::Literal(literal) => {
                    if parts.next() != Some(literal.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

/// A Standard Webhooks secret: `whsec_` and the base64 of its key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    text: String,
    key: Vec<u8>,
}

impl Secret {
    pub fn parse(text: &str) -> Result<Secret, String> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| "secret: must start with 'whsec_'".to_string())?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| "secret: the part after 'whsec_' must be standard base64".to_string())?;
        if !SECRET_BYTES.contains(&key.len()) {
            return Err(format!(
                "secret: must encode {} to {} bytes (it encodes {})",
                SECRET_BYTES.start(),
                SECRET_BYTES.end(),
                key.len()
            ));
        }
        Ok(Secret {
            text: text.to_string(),
            key,
        })
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    pub fn expose(&self) -> &str {
        &self.text
    }

    /// What the admin API shows: enough to tell secrets apart, never enough to sign.
    pub fn masked(&self) -> String {
        let tail: String = self
            .text
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{SECRET_PREFIX}****{tail}")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookDefinition {
    pub name: String,
    pub events: Vec<EventKind>,
    /// Required when a document event is named; auth events ignore it.
    pub pattern: Option<PathPattern>,
    pub mode: Mode,
    pub url: String,
    pub secret: Secret,
    pub timeout_ms: u64,
    pub on_failure: OnFailure,
    /// Hooks on one event run by ascending `order`, then by name.
    pub order: i64,
}

/// What validation needs from the settings.
pub struct DefinitionLimits<'a> {
    pub max_timeout_ms: u64,
    /// Hosts a hook may call; empty allows any.
    pub allowed_hosts: &'a [String],
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The host of an `http(s)` URL, or why it is not one.
pub fn url_host(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url: not a valid URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "url: scheme must be http or https, not '{}'",
            parsed.scheme()
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url: must not carry credentials; the signature authenticates calls".into());
    }
    parsed
        .host_str()
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| "url: has no host".to_string())
}

/// Parses a definition, listing every problem. `name` comes from the route; a `name` in the
/// body must agree. `existing_secret` is kept when the body leaves `secret` out.
pub fn parse_definition(
    name: &str,
    body: &Json,
    existing_secret: Option<&Secret>,
    limits: &DefinitionLimits<'_>,
) -> Result<HookDefinition, Vec<String>> {
    let mut problems = Vec::new();
    let Some(object) = body.as_object() else {
        return Err(vec!["the hook definition must be a JSON object".into()]);
    };
    const KNOWN: [&str; 9] = [
        "name",
        "events",
        "match",
        "mode",
        "url",
        "secret",
        "timeoutMs",
        "onFailure",
        "order",
    ];
    for key in object.keys() {
        if !KNOWN.contains(&key.as_str()) {
            problems.push(format!(
                "{key}: unknown field (known: {})",
                KNOWN.join(", ")
            ));
        }
    }
    if !valid_name(name) {
        problems.push(format!(
            "name: '{name}' must be 1 to {MAX_NAME_CHARS} letters, digits, '-' or '_'"
        ));
    }
    match object.get("name") {
        None => {}
        Some(Json::String(body_name)) if body_name == name => {}
        Some(other) => problems.push(format!(
            "name: {other} in the body differs from '{name}' in the route"
        )),
    }

    let mut events = Vec::new();
    match object.get("events") {
        Some(Json::Array(list)) if !list.is_empty() => {
            for item in list {
                match item.as_str().and_then(EventKind::parse) {
                    Some(event) if events.contains(&event) => {
                        problems.push(format!("events: '{}' is listed twice", event.as_str()))
                    }
                    Some(event) => events.push(event),
                    None => problems.push(format!(
                        "events: {item} is not one of {}",
                        EventKind::ALL.map(EventKind::as_str).join(", ")
                    )),
                }
            }
        }
        _ => problems.push("events: required, a non-empty array of event names".into()),
    }

    let pattern = match object.get("match") {
        None | Some(Json::Null) => {
            if events.iter().any(|e| e.is_document()) {
                problems.push("match: required for document events (e.g. 'posts/{postId}')".into());
            }
            None
        }
        Some(Json::String(text)) => match PathPattern::parse(text) {
            Ok(pattern) => Some(pattern),
            Err(problem) => {
                problems.push(problem);
                None
            }
        },
        Some(other) => {
            problems.push(format!("match: must be a string, not {other}"));
            None
        }
    };

    let mode = match object.get("mode").and_then(Json::as_str) {
        Some("before") => Mode::Before,
        Some("after") => Mode::After,
        _ => {
            problems.push("mode: required, 'before' or 'after'".into());
            Mode::Before
        }
    };

    let url = match object.get("url").and_then(Json::as_str) {
        Some(url) => {
            match url_host(url) {
                Ok(host) => {
                    if !limits.allowed_hosts.is_empty()
                        && !limits
                            .allowed_hosts
                            .iter()
                            .any(|h| h.eq_ignore_ascii_case(&host))
                    {
                        problems.push(format!(
                            "url: host '{host}' is not in hooks.allowed_hosts ({})",
                            limits.allowed_hosts.join(", ")
                        ));
                    }
                }
                Err(problem) => problems.push(problem),
            }
            url.to_string()
        }
        None => {
            problems.push("url: required, the function's http(s) URL".into());
            String::new()
        }
    };

    let secret = match object.get("secret") {
        Some(Json::String(text)) => match Secret::parse(text) {
            Ok(secret) => Some(secret),
            Err(problem) => {
                problems.push(problem);
                None
            }
        },
        None | Some(Json::Null) => {
            if existing_secret.is_none() {
                problems.push(
                    "secret: required, 'whsec_' + base64 of 24 to 64 random bytes (e.g. `openssl rand -base64 32`)"
                        .into(),
                );
            }
            existing_secret.cloned()
        }
        Some(other) => {
            problems.push(format!("secret: must be a string, not {other}"));
            None
        }
    };

    let timeout_ms = match object.get("timeoutMs") {
        None | Some(Json::Null) => DEFAULT_TIMEOUT_MS.min(limits.max_timeout_ms),
        Some(value) => match value.as_u64() {
            Some(ms) if (MIN_TIMEOUT_MS..=limits.max_timeout_ms).contains(&ms) => ms,
            _ => {
                problems.push(format!(
                    "timeoutMs: must be an integer from {MIN_TIMEOUT_MS} to {}",
                    limits.max_timeout_ms
                ));
                DEFAULT_TIMEOUT_MS
            }
        },
    };

    let on_failure = match object.get("onFailure") {
        None | Some(Json::Null) => OnFailure::Reject,
        Some(value) => match value.as_str() {
            Some("reject") => OnFailure::Reject,
            Some("allow") => OnFailure::Allow,
            _ => {
                problems.push(format!(
                    "onFailure: must be 'reject' or 'allow', not {value}"
                ));
                OnFailure::Reject
            }
        },
    };

    let order = match object.get("order") {
        None | Some(Json::Null) => 0,
        Some(value) => value.as_i64().unwrap_or_else(|| {
            problems.push(format!("order: must be an integer, not {value}"));
            0
        }),
    };

    match secret {
        Some(secret) if problems.is_empty() => Ok(HookDefinition {
            name: name.to_string(),
            events,
            pattern,
            mode,
            url,
            secret,
            timeout_ms,
            on_failure,
            order,
        }),
        _ => Err(problems),
    }
}

impl HookDefinition {
    /// True when this hook runs in `mode` for `event` on `path` (document events) or always
    /// (auth events).
    pub fn wants(&self, mode: Mode, event: EventKind, path: &str) -> bool {
        self.mode == mode
            && self.events.contains(&event)
            && (!event.is_document() || self.pattern.as_ref().is_some_and(|p| p.matches(path)))
    }

    fn base_json(&self, secret: String) -> Map<String, Json> {
        let mut out = Map::new();
        out.insert("name".into(), json!(self.name));
        out.insert(
            "events".into(),
            json!(self.events.iter().map(|e| e.as_str()).collect::<Vec<_>>()),
        );
        out.insert(
            "match".into(),
            self.pattern
                .as_ref()
                .map_or(Json::Null, |p| json!(p.as_str())),
        );
        out.insert(
            "mode".into(),
            json!(match self.mode {
                Mode::Before => "before",
                Mode::After => "after",
            }),
        );
        out.insert("url".into(), json!(self.url));
        out.insert("secret".into(), json!(secret));
        out.insert("timeoutMs".into(), json!(self.timeout_ms));
        out.insert(
            "onFailure".into(),
            json!(match self.on_failure {
                OnFailure::Reject => "reject",
                OnFailure::Allow => "allow",
            }),
        );
        out.insert("order".into(), json!(self.order));
        out
    }

    /// The admin API's view: the secret masked.
    pub fn public_json(&self) -> Json {
        Json::Object(self.base_json(self.secret.masked()))
    }

    /// What the store keeps, the secret in full.
    pub fn stored_json(&self) -> Json {
        Json::Object(self.base_json(self.secret.expose().to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn limits() -> DefinitionLimits<'static> {
        DefinitionLimits {
            max_timeout_ms: 30_000,
            allowed_hosts: &[],
        }
    }

    #[test]
    fn patterns_match_documents_like_rules() {
        let posts = PathPattern::parse("posts/{postId}").unwrap();
        assert!(posts.matches("posts/p1"));
        assert!(!posts.matches("posts/p1/comments/c1"));
        assert!(!posts.matches("users/u1"));
        let nested = PathPattern::parse("rooms/{room}/messages/{id}").unwrap();
        assert!(nested.matches("rooms/r/messages/m"));
        assert!(!nested.matches("rooms/r"));
        let rest = PathPattern::parse("logs/{path=**}").unwrap();
        assert!(rest.matches("logs/a"));
        assert!(rest.matches("logs/a/b/c"));
        assert!(!rest.matches("logs/a/b"));
        assert!(PathPattern::parse("posts").is_err());
        assert!(PathPattern::parse("{a=**}/x").is_err());
        assert!(PathPattern::parse("posts/{a-b}").is_err());
    }

    #[test]
    fn every_problem_is_listed() {
        let body = json!({"events": ["document.create", "nope"], "mode": "sideways",
            "url": "ftp://x", "secret": "abc", "timeoutMs": 5, "onFailure": "maybe", "extra": 1});
        let problems = parse_definition("bad name!", &body, None, &limits()).unwrap_err();
        for needle in [
            "extra",
            "name",
            "events",
            "match",
            "mode",
            "url",
            "secret",
            "timeoutMs",
            "onFailure",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(needle)),
                "{needle}: {problems:?}"
            );
        }
    }

    #[test]
    fn a_valid_definition_keeps_its_secret_out_of_the_public_view() {
        let body = json!({"events": ["document.create"], "match": "posts/{id}", "mode": "before",
            "url": "http://127.0.0.1:9/x", "secret": SECRET});
        let hook = parse_definition("v", &body, None, &limits()).unwrap();
        assert_eq!(hook.public_json()["secret"], json!("whsec_****LaSw"));
        assert_eq!(hook.stored_json()["secret"], json!(SECRET));
        assert_eq!(hook.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert!(hook.wants(Mode::Before, EventKind::DocumentCreate, "posts/a"));
        assert!(!hook.wants(Mode::After, EventKind::DocumentCreate, "posts/a"));
    }

    #[test]
    fn the_allow_list_is_enforced() {
        let hosts = vec!["fn.internal".to_string()];
        let limits = DefinitionLimits {
            max_timeout_ms: 30_000,
            allowed_hosts: &hosts,
        };
        let body = json!({"events": ["auth.signup"], "mode": "before",
            "url": "http://evil.example/x", "secret": SECRET});
        let problems = parse_definition("v", &body, None, &limits).unwrap_err();
        assert!(problems[0].contains("allowed_hosts"), "{problems:?}");
    }
}
