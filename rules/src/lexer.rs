//! The lexer: turns rules source into tokens on demand, with raw path scanning for the parser.
//!
//! Paths (`match /users/{id}` and `/databases/$(db)/documents/x` in expressions) are not made of
//! ordinary tokens — segments may contain `-` or `.` — so the parser scans them with
//! [`Lexer::scan_path_text`] and friends instead of asking for tokens.

use crate::error::RuleErrorKind;
use crate::span::Span;

#[derive(Clone, Debug, PartialEq)]
pub enum TokenKind {
    Ident(String),
    Int(u64),
    Float(f64),
    String(String),
    Bytes(Vec<u8>),
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Semicolon,
    Colon,
    Dot,
    Question,
    Assign,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Bang,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Dollar,
    Eof,
}

impl TokenKind {
    /// How the token reads in "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match self {
            TokenKind::Ident(name) => format!("`{name}`"),
            TokenKind::Int(i) => format!("number {i}"),
            TokenKind::Float(f) => format!("number {f}"),
            TokenKind::String(_) => "a string".to_string(),
            TokenKind::Bytes(_) => "bytes".to_string(),
            TokenKind::Eof => "end of file".to_string(),
            other => format!("`{}`", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            TokenKind::LBrace => "{",
            TokenKind::RBrace => "}",
            TokenKind::LParen => "(",
            TokenKind::RParen => ")",
            TokenKind::LBracket => "[",
            TokenKind::RBracket => "]",
            TokenKind::Comma => ",",
            TokenKind::Semicolon => ";",
            TokenKind::Colon => ":",
            TokenKind::Dot => ".",
            TokenKind::Question => "?",
            TokenKind::Assign => "=",
            TokenKind::EqEq => "==",
            TokenKind::NotEq => "!=",
            TokenKind::Lt => "<",
            TokenKind::Le => "<=",
            TokenKind::Gt => ">",
            TokenKind::Ge => ">=",
            TokenKind::AndAnd => "&&",
            TokenKind::OrOr => "||",
            TokenKind::Bang => "!",
            TokenKind::Plus => "+",
            TokenKind::Minus => "-",
            TokenKind::Star => "*",
            TokenKind::Slash => "/",
            TokenKind::Percent => "%",
            TokenKind::Dollar => "$",
            _ => "?",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

pub type LexError = (RuleErrorKind, Span);

pub struct Lexer<'a> {
    source: &'a str,
    pos: usize,
    /// Errors the lexer recovered from by still producing a token (an out-of-range number, an
    /// unterminated string), so the parser does not report knock-on errors.
    pub errors: Vec<LexError>,
}

/// String and bytes literals longer than this are refused (the whole file is at most 256 KB anyway,
/// this keeps one literal from dominating memory after escapes).
const MAX_LITERAL_BYTES: usize = 64 * 1024;

impl<'a> Lexer<'a> {
    pub fn new(source: &'a str) -> Lexer<'a> {
        Lexer {
            source,
            pos: 0,
            errors: Vec::new(),
        }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    fn peek_char(&self) -> Option<char> {
        self.source
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn peek_char_at(&self, ahead: usize) -> Option<char> {
        self.source
            .get(self.pos..)
            .and_then(|rest| rest.chars().nth(ahead))
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// The next character, without skipping whitespace (used by path scanning).
    pub fn raw_peek(&self) -> Option<char> {
        self.peek_char()
    }

    /// Consumes one character (used by path scanning).
    pub fn raw_bump(&mut self) -> Option<char> {
        self.bump()
    }

    /// Skips whitespace and comments; reports an unterminated block comment.
    pub fn skip_trivia(&mut self) -> Result<(), LexError> {
        loop {
            match (self.peek_char(), self.peek_char_at(1)) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('/'), Some('/')) => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.pos;
                    self.pos += 2;
                    match self.source.get(self.pos..).and_then(|rest| rest.find("*/")) {
                        Some(end) => self.pos += end + 2,
                        None => {
                            self.pos = self.source.len();
                            return Err((
                                RuleErrorKind::Syntax("unterminated block comment".into()),
                                Span::new(start, start + 2),
                            ));
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Scans the literal text of a path segment: the characters a collection or document ID may
    /// use in a rules path. Stops at `/`, whitespace, brackets and operators.
    pub fn scan_path_text(&mut self, match_path: bool) -> (String, Span) {
        let start = self.pos;
        while let Some(c) = self.peek_char() {
            let accepted = if match_path {
                // Match paths end at whitespace, `/` or `{`; everything else is part of an ID.
                !(c.is_whitespace() || matches!(c, '/' | '{' | '}' | ';'))
            } else {
                c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '~' | '%' | '@' | '+')
            };
            if !accepted {
                break;
            }
            self.bump();
        }
        let text = self.source.get(start..self.pos).unwrap_or("").to_string();
        (text, Span::new(start, self.pos))
    }

    /// Scans an identifier at the current position (no trivia skipping), for `{name}` in paths.
    pub fn scan_raw_ident(&mut self) -> Option<(String, Span)> {
        let start = self.pos;
        match self.peek_char() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
            _ => return None,
        }
        while matches!(self.peek_char(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
            self.bump();
        }
        Some((
            self.source[start..self.pos].to_string(),
            Span::new(start, self.pos),
        ))
    }

    pub fn next_token(&mut self) -> Result<Token, LexError> {
        self.skip_trivia()?;
        let start = self.pos;
        let Some(c) = self.bump() else {
            return Ok(Token {
                kind: TokenKind::Eof,
                span: Span::new(start, start),
            });
        };
        let two = |lexer: &mut Lexer<'a>, next: char, yes: TokenKind, no: TokenKind| {
            if lexer.peek_char() == Some(next) {
                lexer.bump();
                yes
            } else {
                no
            }
        };
        let kind = match c {
            '{' => TokenKind::LBrace,
            '}' => TokenKind::RBrace,
            '(' => TokenKind::LParen,
            ')' => TokenKind::RParen,
            '[' => TokenKind::LBracket,
            ']' => TokenKind::RBracket,
            ',' => TokenKind::Comma,
            ';' => TokenKind::Semicolon,
            ':' => TokenKind::Colon,
            '?' => TokenKind::Question,
            '+' => TokenKind::Plus,
            '-' => TokenKind::Minus,
            '*' => TokenKind::Star,
            '/' => TokenKind::Slash,
            '%' => TokenKind::Percent,
            '$' => TokenKind::Dollar,
            '.' if matches!(self.peek_char(), Some(d) if d.is_ascii_digit()) => {
                self.pos = start;
                return self.number(start);
            }
            '.' => TokenKind::Dot,
            '=' => two(self, '=', TokenKind::EqEq, TokenKind::Assign),
            '!' => two(self, '=', TokenKind::NotEq, TokenKind::Bang),
            '<' => two(self, '=', TokenKind::Le, TokenKind::Lt),
            '>' => two(self, '=', TokenKind::Ge, TokenKind::Gt),
            '&' if self.peek_char() == Some('&') => {
                self.bump();
                TokenKind::AndAnd
            }
            '|' if self.peek_char() == Some('|') => {
                self.bump();
                TokenKind::OrOr
            }
            '\'' | '"' => return self.string(start, c, false, false),
            'r' | 'R' if matches!(self.peek_char(), Some('\'' | '"')) => {
                let quote = self.bump().unwrap_or('\'');
                return self.string(start, quote, true, false);
            }
            'b' | 'B' if matches!(self.peek_char(), Some('\'' | '"')) => {
                let quote = self.bump().unwrap_or('\'');
                return self.string(start, quote, false, true);
            }
            c if c.is_ascii_digit() => {
                self.pos = start;
                return self.number(start);
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                while matches!(self.peek_char(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
                    self.bump();
                }
                TokenKind::Ident(self.source[start..self.pos].to_string())
            }
            other => {
                return Err((
                    RuleErrorKind::Syntax(format!("unexpected character `{other}`")),
                    Span::new(start, self.pos),
                ))
            }
        };
        Ok(Token {
            kind,
            span: Span::new(start, self.pos),
        })
    }

    fn number(&mut self, start: usize) -> Result<Token, LexError> {
        let rest = self.source.get(start..).unwrap_or("");
        if rest.starts_with("0x") || rest.starts_with("0X") {
            self.pos += 2;
            let digits_start = self.pos;
            while matches!(self.peek_char(), Some(c) if c.is_ascii_hexdigit()) {
                self.bump();
            }
            let digits = &self.source[digits_start..self.pos];
            let span = Span::new(start, self.pos);
            return u64::from_str_radix(digits, 16)
                .map(|value| Token {
                    kind: TokenKind::Int(value),
                    span,
                })
                .map_err(|_| {
                    (
                        RuleErrorKind::Syntax("invalid hexadecimal number".into()),
                        span,
                    )
                });
        }
        let mut is_float = false;
        while matches!(self.peek_char(), Some(c) if c.is_ascii_digit()) {
            self.bump();
        }
        if self.peek_char() == Some('.')
            && matches!(self.peek_char_at(1), Some(c) if c.is_ascii_digit())
        {
            is_float = true;
            self.bump();
            while matches!(self.peek_char(), Some(c) if c.is_ascii_digit()) {
                self.bump();
            }
        }
        if matches!(self.peek_char(), Some('e' | 'E')) {
            let save = self.pos;
            self.bump();
            if matches!(self.peek_char(), Some('+' | '-')) {
                self.bump();
            }
            if matches!(self.peek_char(), Some(c) if c.is_ascii_digit()) {
                is_float = true;
                while matches!(self.peek_char(), Some(c) if c.is_ascii_digit()) {
                    self.bump();
                }
            } else {
                self.pos = save;
            }
        }
        let text = &self.source[start..self.pos];
        let span = Span::new(start, self.pos);
        let kind = if is_float {
            text.parse::<f64>().map(TokenKind::Float).ok()
        } else {
            text.parse::<u64>().map(TokenKind::Int).ok()
        };
        let kind = kind.unwrap_or_else(|| {
            self.errors.push((
                RuleErrorKind::Syntax(format!("number `{text}` is out of range")),
                span,
            ));
            TokenKind::Int(0)
        });
        Ok(Token { kind, span })
    }

    fn string(
        &mut self,
        start: usize,
        quote: char,
        raw: bool,
        bytes: bool,
    ) -> Result<Token, LexError> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.bump() else {
                self.errors.push((
                    RuleErrorKind::Syntax("unterminated string".into()),
                    Span::new(start, self.pos),
                ));
                break;
            };
            if out.len() > MAX_LITERAL_BYTES {
                return Err((
                    RuleErrorKind::Limit("string literal longer than 64 KiB".into()),
                    Span::new(start, self.pos),
                ));
            }
            match c {
                '\n' => {
                    self.errors.push((
                        RuleErrorKind::Syntax("unterminated string".into()),
                        Span::new(start, self.pos - 1),
                    ));
                    // Leave the newline so the next line lexes normally.
                    self.pos -= 1;
                    break;
                }
                c if c == quote => break,
                '\\' if !raw => self.escape(start, bytes, &mut out)?,
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        let span = Span::new(start, self.pos);
        if bytes {
            return Ok(Token {
                kind: TokenKind::Bytes(out),
                span,
            });
        }
        String::from_utf8(out)
            .map(|text| Token {
                kind: TokenKind::String(text),
                span,
            })
            .map_err(|_| {
                (
                    RuleErrorKind::Syntax("string is not valid UTF-8".into()),
                    span,
                )
            })
    }

    fn escape(&mut self, start: usize, bytes: bool, out: &mut Vec<u8>) -> Result<(), LexError> {
        let escape_start = self.pos - 1;
        let Some(c) = self.bump() else {
            return Err((
                RuleErrorKind::Syntax("unterminated string".into()),
                Span::new(start, self.pos),
            ));
        };
        let bad = |lexer: &Lexer<'a>, what: &str| {
            (
                RuleErrorKind::Syntax(format!("invalid escape: {what}")),
                Span::new(escape_start, lexer.pos),
            )
        };
        let simple = match c {
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'b' => Some(8),
            'f' => Some(12),
            'v' => Some(11),
            'a' => Some(7),
            '\\' => Some(b'\\'),
            '\'' => Some(b'\''),
            '"' => Some(b'"'),
            '`' => Some(b'`'),
            '?' => Some(b'?'),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            return Ok(());
        }
        match c {
            'x' | 'X' | 'u' | 'U' => {
                let count = match c {
                    'x' | 'X' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let digits_start = self.pos;
                for _ in 0..count {
                    match self.peek_char() {
                        Some(d) if d.is_ascii_hexdigit() => {
                            self.bump();
                        }
                        _ => return Err(bad(self, "expected hexadecimal digits")),
                    }
                }
                let code = u32::from_str_radix(&self.source[digits_start..self.pos], 16)
                    .map_err(|_| bad(self, "expected hexadecimal digits"))?;
                if (c == 'x' || c == 'X') && bytes {
                    out.push(u8::try_from(code).unwrap_or(0));
                } else {
                    let ch = char::from_u32(code)
                        .ok_or_else(|| bad(self, "not a Unicode scalar value"))?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
            }
            '0'..='7' => {
                let digits_start = self.pos - 1;
                for _ in 0..2 {
                    if matches!(self.peek_char(), Some('0'..='7')) {
                        self.bump();
                    }
                }
                let code =
                    u32::from_str_radix(&self.source[digits_start..self.pos], 8).unwrap_or(0);
                if bytes {
                    out.push(
                        u8::try_from(code).map_err(|_| bad(self, "octal escape above \\377"))?,
                    );
                } else {
                    let ch = char::from_u32(code)
                        .ok_or_else(|| bad(self, "not a Unicode scalar value"))?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
            }
            other => {
                // Real rulesets write regexes such as '.*\.com' with a single backslash; keep the
                // backslash so the regex sees the escape it was meant to.
                out.push(b'\\');
                let mut buf = [0u8; 4];
                out.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<TokenKind> {
        let mut lexer = Lexer::new(source);
        let mut out = Vec::new();
        loop {
            let token = lexer.next_token().unwrap();
            if token.kind == TokenKind::Eof {
                return out;
            }
            out.push(token.kind);
        }
    }

    #[test]
    fn lexes_operators_literals_and_comments() {
        assert_eq!(
            kinds("a.b <= 1.5 && !c /* x */ // y\n || 'it\\'s' != b'\\x01' 0x1F 2e3"),
            vec![
                TokenKind::Ident("a".into()),
                TokenKind::Dot,
                TokenKind::Ident("b".into()),
                TokenKind::Le,
                TokenKind::Float(1.5),
                TokenKind::AndAnd,
                TokenKind::Bang,
                TokenKind::Ident("c".into()),
                TokenKind::OrOr,
                TokenKind::String("it's".into()),
                TokenKind::NotEq,
                TokenKind::Bytes(vec![1]),
                TokenKind::Int(31),
                TokenKind::Float(2000.0),
            ]
        );
    }

    #[test]
    fn unknown_escapes_keep_the_backslash_for_regexes() {
        assert_eq!(
            kinds(r"'.*\.com'"),
            vec![TokenKind::String(r".*\.com".into())]
        );
        assert_eq!(kinds(r"r'\d+'"), vec![TokenKind::String(r"\d+".into())]);
    }

    #[test]
    fn unterminated_literals_are_errors() {
        let mut lexer = Lexer::new("'abc");
        assert!(lexer.next_token().is_ok());
        assert_eq!(lexer.errors.len(), 1);
        assert!(Lexer::new("/* abc").next_token().is_err());
    }
}
