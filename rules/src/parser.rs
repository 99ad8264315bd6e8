//! The recursive-descent parser: source → [`RulesFile`], collecting every syntax error.
//!
//! Recovery is per statement: an error inside an `allow`, `let` or `return` skips to the next
//! `;` or closing `}` and parsing goes on, so one run reports all independent mistakes.
//! Recursion is bounded (`MAX_NESTING`) and so is the height of the tree (`MAX_EXPR_DEPTH`), so
//! hostile input cannot overflow the stack here or later in evaluation.

use crate::ast::*;
use crate::error::RuleErrorKind;
use crate::lexer::{Lexer, Token, TokenKind};
use crate::span::Span;
use crate::value::Value;

/// Deepest recursion of the expression parser (parentheses, unary operators, nested literals).
const MAX_NESTING: u32 = 48;
/// Tallest expression tree accepted; long `&&` chains grow the tree without recursion.
pub const MAX_EXPR_DEPTH: u32 = 100;

/// Type names accepted after `is`.
pub const TYPE_NAMES: [&str; 15] = [
    "bool",
    "int",
    "float",
    "number",
    "string",
    "list",
    "map",
    "timestamp",
    "duration",
    "path",
    "latlng",
    "bytes",
    "set",
    "map_diff",
    "null",
];

/// The error was already recorded; the caller only needs to recover.
struct Reported;
type PResult<T> = Result<T, Reported>;

pub struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<Token>,
    errors: Vec<(RuleErrorKind, Span)>,
    nesting: u32,
}

/// Parses a whole file. Errors are returned alongside whatever tree could be built.
pub fn parse_file(source: &str) -> (RulesFile, Vec<(RuleErrorKind, Span)>) {
    let mut parser = Parser {
        lexer: Lexer::new(source),
        peeked: None,
        errors: Vec::new(),
        nesting: 0,
    };
    let file = parser.file();
    (file, parser.errors)
}

/// Parses a single expression (used by tests and tools).
pub fn parse_expression(source: &str) -> Result<Expr, Vec<(RuleErrorKind, Span)>> {
    let mut parser = Parser {
        lexer: Lexer::new(source),
        peeked: None,
        errors: Vec::new(),
        nesting: 0,
    };
    let result = parser.expr();
    if let Ok(expr) = result {
        if parser.errors.is_empty() {
            let token = parser.peek();
            if token.kind == TokenKind::Eof {
                return Ok(expr);
            }
            let _ = parser.fail::<()>(
                token.span,
                format!("unexpected {} after expression", token.kind.describe()),
            );
        }
    }
    Err(parser.errors)
}

fn is_keyword(token: &Token, word: &str) -> bool {
    matches!(&token.kind, TokenKind::Ident(name) if name == word)
}

impl<'a> Parser<'a> {
    fn peek(&mut self) -> Token {
        loop {
            if let Some(token) = &self.peeked {
                return token.clone();
            }
            let result = self.lexer.next_token();
            self.errors.append(&mut self.lexer.errors);
            match result {
                Ok(token) => self.peeked = Some(token),
                Err(error) => self.errors.push(error),
            }
        }
    }

    fn bump(&mut self) -> Token {
        let token = self.peek();
        self.peeked = None;
        token
    }

    fn fail<T>(&mut self, span: Span, message: impl Into<String>) -> PResult<T> {
        self.errors
            .push((RuleErrorKind::Syntax(message.into()), span));
        Err(Reported)
    }

    fn expect(&mut self, kind: TokenKind, what: &str) -> PResult<Token> {
        let token = self.peek();
        if token.kind == kind {
            return Ok(self.bump());
        }
        self.fail(
            token.span,
            format!("expected {what}, found {}", token.kind.describe()),
        )
    }

    fn expect_ident(&mut self, what: &str) -> PResult<(String, Span)> {
        let token = self.peek();
        if let TokenKind::Ident(name) = token.kind {
            self.bump();
            return Ok((name, token.span));
        }
        self.fail(
            token.span,
            format!("expected {what}, found {}", token.kind.describe()),
        )
    }

    /// Skips to the end of the broken statement: past the next `;`, or up to (not past) the `}`
    /// that closes the current block, or up to the next statement keyword.
    fn synchronize(&mut self) {
        let mut depth = 0u32;
        loop {
            let token = self.peek();
            match token.kind {
                TokenKind::Eof => return,
                TokenKind::LBrace | TokenKind::LParen | TokenKind::LBracket => depth += 1,
                TokenKind::RBrace | TokenKind::RParen | TokenKind::RBracket => {
                    if depth == 0 {
                        if token.kind == TokenKind::RBrace {
                            return;
                        }
                    } else {
                        depth -= 1;
                    }
                }
                TokenKind::Semicolon if depth == 0 => {
                    self.bump();
                    return;
                }
                TokenKind::Ident(ref name)
                    if depth == 0
                        && matches!(
                            name.as_str(),
                            "allow" | "match" | "function" | "let" | "return"
                        ) =>
                {
                    return
                }
                _ => {}
            }
            self.bump();
        }
    }

    fn file(&mut self) -> RulesFile {
        let mut file = RulesFile {
            version: RulesVersion::V1,
            functions: Vec::new(),
            service: None,
        };
        if is_keyword(&self.peek(), "rules_version") {
            if let Ok(version) = self.rules_version() {
                file.version = version;
            } else {
                self.synchronize();
            }
        }
        loop {
            let token = self.peek();
            match &token.kind {
                TokenKind::Eof => break,
                TokenKind::Ident(name) if name == "function" => {
                    if let Ok(function) = self.function() {
                        file.functions.push(function);
                    }
                }
                TokenKind::Ident(name) if name == "service" => {
                    let service = self.service();
                    if file.service.is_some() {
                        self.errors.push((
                            RuleErrorKind::Invalid("only one `service` block is allowed".into()),
                            token.span,
                        ));
                    } else {
                        file.service = service;
                    }
                }
                other => {
                    let message = format!(
                        "expected `service` or `function`, found {}",
                        other.describe()
                    );
                    let _ = self.fail::<()>(token.span, message);
                    self.bump();
                    self.synchronize();
                    if self.peek().kind == TokenKind::RBrace {
                        self.bump();
                    }
                }
            }
        }
        if file.service.is_none()
            && !self
                .errors
                .iter()
                .any(|(kind, _)| matches!(kind, RuleErrorKind::Syntax(_)))
        {
            let end = self.lexer.position();
            self.errors.push((
                RuleErrorKind::Invalid("missing `service cloud.firestore { ... }` block".into()),
                Span::new(end, end),
            ));
        }
        file
    }

    fn rules_version(&mut self) -> PResult<RulesVersion> {
        self.bump();
        self.expect(TokenKind::Assign, "`=`")?;
        let token = self.peek();
        let version = match &token.kind {
            TokenKind::String(text) if text == "1" => RulesVersion::V1,
            TokenKind::String(text) if text == "2" => RulesVersion::V2,
            TokenKind::String(text) => {
                let message = format!("unsupported rules_version '{text}' (expected '1' or '2')");
                return self.fail(token.span, message);
            }
            other => {
                let message = format!("expected a version string, found {}", other.describe());
                return self.fail(token.span, message);
            }
        };
        self.bump();
        if self.peek().kind == TokenKind::Semicolon {
            self.bump();
        }
        Ok(version)
    }

    fn service(&mut self) -> Option<Service> {
        let keyword = self.bump();
        let mut name = match self.expect_ident("a service name") {
            Ok((name, _)) => name,
            Err(Reported) => {
                self.synchronize();
                return None;
            }
        };
        while self.peek().kind == TokenKind::Dot {
            self.bump();
            match self.expect_ident("a service name") {
                Ok((part, _)) => {
                    name.push('.');
                    name.push_str(&part);
                }
                Err(Reported) => return None,
            }
        }
        if name != "cloud.firestore" {
            self.errors.push((
                RuleErrorKind::Invalid(format!(
                    "unsupported service `{name}`: Hearth runs `cloud.firestore` rules"
                )),
                keyword.span,
            ));
        }
        self.expect(TokenKind::LBrace, "`{`").ok()?;
        let body = self.body(0);
        let _ = self.expect(TokenKind::RBrace, "`}`");
        Some(Service {
            name,
            span: keyword.span,
            body,
        })
    }

    fn body(&mut self, match_depth: u32) -> Body {
        let mut body = Body::default();
        loop {
            let token = self.peek();
            match &token.kind {
                TokenKind::RBrace | TokenKind::Eof => return body,
                TokenKind::Ident(name) if name == "match" => {
                    if let Ok(block) = self.match_block(match_depth + 1) {
                        body.matches.push(block);
                    }
                }
                TokenKind::Ident(name) if name == "allow" => match self.allow() {
                    Ok(allow) => body.allows.push(allow),
                    Err(Reported) => self.synchronize(),
                },
                TokenKind::Ident(name) if name == "function" => {
                    if let Ok(function) = self.function() {
                        body.functions.push(function);
                    }
                }
                other => {
                    let message = format!(
                        "expected `match`, `allow` or `function`, found {}",
                        other.describe()
                    );
                    let _ = self.fail::<()>(token.span, message);
                    self.bump();
                    self.synchronize();
                }
            }
        }
    }

    fn match_block(&mut self, depth: u32) -> PResult<MatchBlock> {
        let keyword = self.bump();
        if depth > 10 {
            self.errors.push((
                RuleErrorKind::Limit("match blocks nested more than 10 deep".into()),
                keyword.span,
            ));
            // Skip the whole block without recursing, so hostile nesting cannot exhaust the stack.
            let errors_before = self.errors.len();
            let _ = self.match_path();
            self.errors.truncate(errors_before);
            let mut open = 0usize;
            loop {
                match self.bump().kind {
                    TokenKind::Eof => return Err(Reported),
                    TokenKind::LBrace => open += 1,
                    TokenKind::RBrace if open <= 1 => return Err(Reported),
                    TokenKind::RBrace => open -= 1,
                    _ => {}
                }
            }
        }
        let segments = match self.match_path() {
            Ok(segments) => segments,
            Err(Reported) => {
                // Skip the rest of the path; still parse the block so its own errors show up.
                loop {
                    let token = self.peek();
                    match token.kind {
                        TokenKind::LBrace => break,
                        TokenKind::Eof | TokenKind::RBrace | TokenKind::Semicolon => {
                            return Err(Reported)
                        }
                        _ => {
                            self.bump();
                        }
                    }
                }
                Vec::new()
            }
        };
        self.expect(TokenKind::LBrace, "`{` after the match path")?;
        let body = self.body(depth);
        let close = self.expect(TokenKind::RBrace, "`}`");
        let end = close.map(|token| token.span).unwrap_or(keyword.span);
        Ok(MatchBlock {
            segments,
            span: keyword.span.to(end),
            body,
        })
    }

    fn match_path(&mut self) -> PResult<Vec<MatchSegment>> {
        let slash = self.peek();
        if slash.kind != TokenKind::Slash {
            return self.fail(
                slash.span,
                format!(
                    "expected a path starting with `/`, found {}",
                    slash.kind.describe()
                ),
            );
        }
        self.bump();
        let mut segments = Vec::new();
        loop {
            let start = self.lexer.position();
            if self.lexer.raw_peek() == Some('{') {
                self.lexer.raw_bump();
                self.skip_raw_spaces();
                let Some((name, _)) = self.lexer.scan_raw_ident() else {
                    let here = self.lexer.position();
                    return self.fail(
                        Span::new(here, here + 1),
                        "expected a wildcard name after `{`",
                    );
                };
                self.skip_raw_spaces();
                let mut recursive = false;
                if self.lexer.raw_peek() == Some('=') {
                    self.lexer.raw_bump();
                    self.skip_raw_spaces();
                    let stars = (self.lexer.raw_bump(), self.lexer.raw_bump());
                    if stars != (Some('*'), Some('*')) {
                        let here = self.lexer.position();
                        return self.fail(
                            Span::new(start, here),
                            "expected `**` after `=` in a wildcard",
                        );
                    }
                    self.skip_raw_spaces();
                    recursive = true;
                }
                if self.lexer.raw_bump() != Some('}') {
                    let here = self.lexer.position();
                    return self.fail(Span::new(start, here), "expected `}` to close the wildcard");
                }
                segments.push(if recursive {
                    MatchSegment::Recursive(name)
                } else {
                    MatchSegment::Wildcard(name)
                });
            } else {
                let (text, span) = self.lexer.scan_path_text(true);
                if text.is_empty() {
                    return self.fail(
                        Span::new(span.start as usize, span.start as usize + 1),
                        "empty path segment",
                    );
                }
                segments.push(MatchSegment::Literal(text));
            }
            if self.lexer.raw_peek() == Some('/') {
                self.lexer.raw_bump();
            } else {
                return Ok(segments);
            }
        }
    }

    fn skip_raw_spaces(&mut self) {
        while matches!(self.lexer.raw_peek(), Some(c) if c == ' ' || c == '\t') {
            self.lexer.raw_bump();
        }
    }

    fn allow(&mut self) -> PResult<Allow> {
        let keyword = self.bump();
        let mut methods = MethodSet::default();
        let mut method_names = Vec::new();
        loop {
            let (name, span) =
                self.expect_ident("a method (read, write, get, list, create, update, delete)")?;
            match MethodSet::from_name(&name) {
                Some(set) => methods = methods.union(set),
                None => {
                    return self.fail(span, format!("unknown method `{name}` (expected read, write, get, list, create, update or delete)"))
                }
            }
            method_names.push(name);
            if self.peek().kind == TokenKind::Comma {
                self.bump();
            } else {
                break;
            }
        }
        let mut condition = None;
        let token = self.peek();
        if token.kind == TokenKind::Colon {
            self.bump();
            let token = self.peek();
            if !is_keyword(&token, "if") {
                return self.fail(
                    token.span,
                    format!("expected `if`, found {}", token.kind.describe()),
                );
            }
            self.bump();
            condition = Some(self.expr()?);
        }
        self.statement_end()?;
        Ok(Allow {
            methods,
            method_names,
            condition,
            span: keyword.span,
        })
    }

    /// A `;`, or nothing right before a `}` (real files often omit the last semicolon).
    fn statement_end(&mut self) -> PResult<()> {
        let token = self.peek();
        match token.kind {
            TokenKind::Semicolon => {
                self.bump();
                Ok(())
            }
            TokenKind::RBrace => Ok(()),
            other => self.fail(
                token.span,
                format!("expected `;`, found {}", other.describe()),
            ),
        }
    }

    fn function(&mut self) -> PResult<FunctionDecl> {
        let keyword = self.bump();
        let header = (|| -> PResult<(String, Vec<String>)> {
            let (name, _) = self.expect_ident("a function name")?;
            self.expect(TokenKind::LParen, "`(`")?;
            let mut params = Vec::new();
            if self.peek().kind != TokenKind::RParen {
                loop {
                    params.push(self.expect_ident("a parameter name")?.0);
                    if self.peek().kind == TokenKind::Comma {
                        self.bump();
                    } else {
                        break;
                    }
                }
            }
            self.expect(TokenKind::RParen, "`)`")?;
            self.expect(TokenKind::LBrace, "`{`")?;
            Ok((name, params))
        })();
        let (name, params) = match header {
            Ok(header) => header,
            Err(Reported) => {
                self.synchronize();
                if self.peek().kind == TokenKind::RBrace {
                    self.bump();
                }
                return Err(Reported);
            }
        };
        let mut lets = Vec::new();
        let mut body = None;
        let mut failed = false;
        loop {
            let token = self.peek();
            match &token.kind {
                TokenKind::RBrace => {
                    self.bump();
                    break;
                }
                TokenKind::Eof => {
                    let _ = self.fail::<()>(token.span, "expected `}` to close the function");
                    return Err(Reported);
                }
                TokenKind::Ident(word) if word == "let" && body.is_none() => {
                    self.bump();
                    let binding = (|| -> PResult<(String, Expr)> {
                        let (name, _) = self.expect_ident("a variable name")?;
                        self.expect(TokenKind::Assign, "`=`")?;
                        let value = self.expr()?;
                        self.statement_end()?;
                        Ok((name, value))
                    })();
                    match binding {
                        Ok(binding) => lets.push(binding),
                        Err(Reported) => {
                            failed = true;
                            self.synchronize();
                        }
                    }
                }
                TokenKind::Ident(word) if word == "return" && body.is_none() => {
                    self.bump();
                    match self
                        .expr()
                        .and_then(|expr| self.statement_end().map(|()| expr))
                    {
                        Ok(expr) => body = Some(expr),
                        Err(Reported) => {
                            failed = true;
                            self.synchronize();
                        }
                    }
                }
                other => {
                    let message = if body.is_some() {
                        format!(
                            "expected `}}` after the return statement, found {}",
                            other.describe()
                        )
                    } else {
                        format!("expected `let` or `return`, found {}", other.describe())
                    };
                    let _ = self.fail::<()>(token.span, message);
                    failed = true;
                    self.bump();
                    self.synchronize();
                }
            }
        }
        let Some(body) = body else {
            if !failed {
                let _ = self.fail::<()>(
                    keyword.span,
                    format!("function `{name}` has no return statement"),
                );
            }
            return Err(Reported);
        };
        if failed {
            return Err(Reported);
        }
        Ok(FunctionDecl {
            name,
            params,
            lets,
            body,
            span: keyword.span,
        })
    }

    // ---- expressions -------------------------------------------------------------------------

    fn node(&mut self, kind: ExprKind, span: Span, child_depth: u32) -> PResult<Expr> {
        let depth = child_depth + 1;
        if depth > MAX_EXPR_DEPTH {
            self.errors.push((
                RuleErrorKind::Limit(format!(
                    "expression nested more than {MAX_EXPR_DEPTH} levels deep"
                )),
                span,
            ));
            return Err(Reported);
        }
        Ok(Expr { kind, span, depth })
    }

    fn enter(&mut self, span: Span) -> PResult<()> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            self.nesting -= 1;
            self.errors.push((
                RuleErrorKind::Limit(format!(
                    "expression nested more than {MAX_NESTING} levels deep"
                )),
                span,
            ));
            return Err(Reported);
        }
        Ok(())
    }

    fn expr(&mut self) -> PResult<Expr> {
        let span = self.peek().span;
        self.enter(span)?;
        let result = self.ternary();
        self.nesting -= 1;
        result
    }

    fn ternary(&mut self) -> PResult<Expr> {
        let condition = self.binary(0)?;
        if self.peek().kind != TokenKind::Question {
            return Ok(condition);
        }
        self.bump();
        let yes = self.expr()?;
        self.expect(TokenKind::Colon, "`:` in a conditional expression")?;
        let no = self.expr()?;
        let span = condition.span.to(no.span);
        let depth = condition.depth.max(yes.depth).max(no.depth);
        self.node(
            ExprKind::Ternary(Box::new(condition), Box::new(yes), Box::new(no)),
            span,
            depth,
        )
    }

    /// Precedence climbing over the levels, loosest to tightest: `||`, `&&`, `== !=`, `is`,
    /// `in`, `< <= > >=`, `+ -`, `* / %` (RULES.md's table). One frame per nesting level keeps
    /// the parser's stack use low.
    fn binary(&mut self, min_level: u8) -> PResult<Expr> {
        let mut left = self.unary()?;
        loop {
            let token = self.peek();
            let (level, op) = match &token.kind {
                TokenKind::OrOr => (0, BinaryOp::Or),
                TokenKind::AndAnd => (1, BinaryOp::And),
                TokenKind::EqEq => (2, BinaryOp::Eq),
                TokenKind::NotEq => (2, BinaryOp::Ne),
                TokenKind::Ident(word) if word == "is" => (3, BinaryOp::Eq),
                TokenKind::Ident(word) if word == "in" => (4, BinaryOp::In),
                TokenKind::Lt => (5, BinaryOp::Lt),
                TokenKind::Le => (5, BinaryOp::Le),
                TokenKind::Gt => (5, BinaryOp::Gt),
                TokenKind::Ge => (5, BinaryOp::Ge),
                TokenKind::Plus => (6, BinaryOp::Add),
                TokenKind::Minus => (6, BinaryOp::Sub),
                TokenKind::Star => (7, BinaryOp::Mul),
                TokenKind::Slash => (7, BinaryOp::Div),
                TokenKind::Percent => (7, BinaryOp::Rem),
                _ => return Ok(left),
            };
            if level < min_level {
                return Ok(left);
            }
            self.bump();
            if level == 3 {
                let (type_name, type_span) = self.expect_ident("a type name after `is`")?;
                if !TYPE_NAMES.contains(&type_name.as_str()) {
                    return self.fail(
                        type_span,
                        format!(
                            "unknown type `{type_name}` (expected one of {})",
                            TYPE_NAMES.join(", ")
                        ),
                    );
                }
                let span = left.span.to(type_span);
                let depth = left.depth;
                left = self.node(ExprKind::Is(Box::new(left), type_name), span, depth)?;
                continue;
            }
            let right = self.binary(level + 1)?;
            let span = left.span.to(right.span);
            let depth = left.depth.max(right.depth);
            left = self.node(
                ExprKind::Binary(op, Box::new(left), Box::new(right)),
                span,
                depth,
            )?;
        }
    }

    fn unary(&mut self) -> PResult<Expr> {
        let token = self.peek();
        let op = match token.kind {
            TokenKind::Bang => UnaryOp::Not,
            TokenKind::Minus => UnaryOp::Negate,
            _ => return self.postfix(),
        };
        self.bump();
        if op == UnaryOp::Negate {
            // Fold negative number literals, which also makes i64::MIN writable.
            let next = self.peek();
            match next.kind {
                TokenKind::Int(n) if n <= 1u64 << 63 => {
                    self.bump();
                    let value = if n == 1u64 << 63 {
                        i64::MIN
                    } else {
                        -(i64::try_from(n).unwrap_or(0))
                    };
                    let literal = self.node(
                        ExprKind::Literal(Value::Int(value)),
                        token.span.to(next.span),
                        0,
                    )?;
                    return self.postfix_on(literal);
                }
                TokenKind::Float(f) => {
                    self.bump();
                    let literal = self.node(
                        ExprKind::Literal(Value::Float(-f)),
                        token.span.to(next.span),
                        0,
                    )?;
                    return self.postfix_on(literal);
                }
                _ => {}
            }
        }
        self.enter(token.span)?;
        let operand = self.unary();
        self.nesting -= 1;
        let operand = operand?;
        let span = token.span.to(operand.span);
        let depth = operand.depth;
        self.node(ExprKind::Unary(op, Box::new(operand)), span, depth)
    }

    fn postfix(&mut self) -> PResult<Expr> {
        let primary = self.primary()?;
        self.postfix_on(primary)
    }

    fn postfix_on(&mut self, mut expr: Expr) -> PResult<Expr> {
        loop {
            let token = self.peek();
            match token.kind {
                TokenKind::Dot => {
                    self.bump();
                    let (name, name_span) =
                        self.expect_ident("a field or method name after `.`")?;
                    if self.peek().kind == TokenKind::LParen {
                        self.bump();
                        let (args, close) = self.arguments()?;
                        let depth = args
                            .iter()
                            .map(|a| a.depth)
                            .max()
                            .unwrap_or(0)
                            .max(expr.depth);
                        let span = expr.span.to(close);
                        expr = self.node(
                            ExprKind::MethodCall(Box::new(expr), name, args),
                            span,
                            depth,
                        )?;
                    } else {
                        let span = expr.span.to(name_span);
                        let depth = expr.depth;
                        expr = self.node(ExprKind::Member(Box::new(expr), name), span, depth)?;
                    }
                }
                TokenKind::LBracket => {
                    self.bump();
                    let mut from = None;
                    if self.peek().kind != TokenKind::Colon {
                        from = Some(self.expr()?);
                    }
                    if self.peek().kind == TokenKind::Colon {
                        self.bump();
                        let mut to = None;
                        if self.peek().kind != TokenKind::RBracket {
                            to = Some(self.expr()?);
                        }
                        let close = self.expect(TokenKind::RBracket, "`]`")?;
                        let depth = expr
                            .depth
                            .max(from.as_ref().map_or(0, |e| e.depth))
                            .max(to.as_ref().map_or(0, |e| e.depth));
                        let span = expr.span.to(close.span);
                        expr = self.node(
                            ExprKind::Slice(Box::new(expr), from.map(Box::new), to.map(Box::new)),
                            span,
                            depth,
                        )?;
                    } else {
                        let close = self.expect(TokenKind::RBracket, "`]`")?;
                        let Some(index) = from else {
                            return self.fail(close.span, "expected an index expression");
                        };
                        let depth = expr.depth.max(index.depth);
                        let span = expr.span.to(close.span);
                        expr = self.node(
                            ExprKind::Index(Box::new(expr), Box::new(index)),
                            span,
                            depth,
                        )?;
                    }
                }
                _ => return Ok(expr),
            }
        }
    }

    /// Parses `args )` after an opening parenthesis; returns the arguments and the `)` span.
    fn arguments(&mut self) -> PResult<(Vec<Expr>, Span)> {
        let mut args = Vec::new();
        loop {
            let token = self.peek();
            if token.kind == TokenKind::RParen {
                self.bump();
                return Ok((args, token.span));
            }
            args.push(self.expr()?);
            let token = self.peek();
            match token.kind {
                TokenKind::Comma => {
                    self.bump();
                }
                TokenKind::RParen => {}
                other => {
                    return self.fail(
                        token.span,
                        format!("expected `,` or `)`, found {}", other.describe()),
                    )
                }
            }
        }
    }

    fn primary(&mut self) -> PResult<Expr> {
        let token = self.bump();
        let span = token.span;
        let literal = |value: Value| ExprKind::Literal(value);
        match token.kind {
            TokenKind::Int(n) => match i64::try_from(n) {
                Ok(value) => self.node(literal(Value::Int(value)), span, 0),
                Err(_) => self.fail(span, "integer literal out of range"),
            },
            TokenKind::Float(f) => self.node(literal(Value::Float(f)), span, 0),
            TokenKind::String(s) => self.node(literal(Value::String(s)), span, 0),
            TokenKind::Bytes(b) => self.node(literal(Value::Bytes(b)), span, 0),
            TokenKind::Ident(name) => match name.as_str() {
                "true" => self.node(literal(Value::Bool(true)), span, 0),
                "false" => self.node(literal(Value::Bool(false)), span, 0),
                "null" => self.node(literal(Value::Null), span, 0),
                _ => {
                    if self.peek().kind == TokenKind::LParen {
                        self.bump();
                        let (args, close) = self.arguments()?;
                        let depth = args.iter().map(|a| a.depth).max().unwrap_or(0);
                        self.node(ExprKind::Call(name, args), span.to(close), depth)
                    } else {
                        self.node(ExprKind::Ident(name), span, 0)
                    }
                }
            },
            TokenKind::LParen => {
                let inner = self.expr()?;
                self.expect(TokenKind::RParen, "`)`")?;
                Ok(inner)
            }
            TokenKind::LBracket => {
                let mut items = Vec::new();
                loop {
                    let next = self.peek();
                    if next.kind == TokenKind::RBracket {
                        self.bump();
                        let depth = items.iter().map(|e: &Expr| e.depth).max().unwrap_or(0);
                        return self.node(ExprKind::List(items), span.to(next.span), depth);
                    }
                    items.push(self.expr()?);
                    let next = self.peek();
                    match next.kind {
                        TokenKind::Comma => {
                            self.bump();
                        }
                        TokenKind::RBracket => {}
                        other => {
                            return self.fail(
                                next.span,
                                format!("expected `,` or `]`, found {}", other.describe()),
                            )
                        }
                    }
                }
            }
            TokenKind::LBrace => {
                let mut entries = Vec::new();
                loop {
                    let next = self.peek();
                    if next.kind == TokenKind::RBrace {
                        self.bump();
                        let depth = entries
                            .iter()
                            .map(|(k, v): &(Expr, Expr)| k.depth.max(v.depth))
                            .max()
                            .unwrap_or(0);
                        return self.node(ExprKind::Map(entries), span.to(next.span), depth);
                    }
                    let key = self.expr()?;
                    self.expect(TokenKind::Colon, "`:` after a map key")?;
                    let value = self.expr()?;
                    entries.push((key, value));
                    let next = self.peek();
                    match next.kind {
                        TokenKind::Comma => {
                            self.bump();
                        }
                        TokenKind::RBrace => {}
                        other => {
                            return self.fail(
                                next.span,
                                format!("expected `,` or `}}`, found {}", other.describe()),
                            )
                        }
                    }
                }
            }
            TokenKind::Slash => self.path_literal(span),
            other => self.fail(
                span,
                format!("expected an expression, found {}", other.describe()),
            ),
        }
    }

    /// Parses a path literal after its first `/`: segments of text, `$(expr)` or `(expr)`.
    fn path_literal(&mut self, start: Span) -> PResult<Expr> {
        let mut segments = Vec::new();
        let mut depth = 0;
        loop {
            let mut parts = Vec::new();
            loop {
                match self.lexer.raw_peek() {
                    Some('$') | Some('(') => {
                        let here = self.lexer.position();
                        if self.lexer.raw_bump() == Some('$') && self.lexer.raw_bump() != Some('(')
                        {
                            return self.fail(
                                Span::new(here, here + 1),
                                "expected `(` after `$` in a path",
                            );
                        }
                        let inner = self.expr()?;
                        self.expect(TokenKind::RParen, "`)` to close the path variable")?;
                        depth = depth.max(inner.depth);
                        // `(default)` names the default database rather than a variable.
                        if matches!(&inner.kind, ExprKind::Ident(name) if name == "default") {
                            parts.push(PathPart::Text("(default)".to_string()));
                        } else {
                            parts.push(PathPart::Expr(inner));
                        }
                    }
                    Some(c)
                        if c.is_alphanumeric()
                            || matches!(c, '_' | '-' | '.' | '~' | '%' | '@' | '+') =>
                    {
                        let (text, _) = self.lexer.scan_path_text(false);
                        parts.push(PathPart::Text(text));
                    }
                    _ => break,
                }
            }
            if parts.is_empty() {
                let here = self.lexer.position();
                return self.fail(
                    Span::new(here.saturating_sub(1), here),
                    "empty segment in path literal",
                );
            }
            segments.push(parts);
            if self.lexer.raw_peek() == Some('/') {
                self.lexer.raw_bump();
            } else {
                break;
            }
        }
        let end = self.lexer.position();
        self.node(
            ExprKind::Path(segments),
            start.to(Span::new(end, end)),
            depth,
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn operators_bind_as_documented() {
        let expr = parse_expression("a || b && c == d").unwrap();
        let ExprKind::Binary(BinaryOp::Or, _, right) = expr.kind else {
            panic!("{expr:?}")
        };
        assert!(matches!(right.kind, ExprKind::Binary(BinaryOp::And, _, _)));
        let expr = parse_expression("1 + 2 * 3 < 10").unwrap();
        assert!(matches!(expr.kind, ExprKind::Binary(BinaryOp::Lt, _, _)));
    }

    #[test]
    fn path_literals_with_substitutions_parse() {
        let expr = parse_expression(
            "get(/databases/$(database)/documents/users/$(request.auth.uid)).data",
        )
        .unwrap();
        let ExprKind::Member(call, _) = expr.kind else {
            panic!()
        };
        let ExprKind::Call(name, args) = call.kind else {
            panic!()
        };
        assert_eq!(name, "get");
        let ExprKind::Path(segments) = &args[0].kind else {
            panic!()
        };
        assert_eq!(segments.len(), 5);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let source = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse_expression(&source).is_err());
        let chain = vec!["a"; 5_000].join(" && ");
        assert!(parse_expression(&chain).is_err());
        let negations = format!("{}true", "!".repeat(10_000));
        assert!(parse_expression(&negations).is_err());
    }
}
