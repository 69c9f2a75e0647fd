//! A port of `ganigeorgiev/fexpr`'s scanner and parser, the grammar PocketBase parses filters with.
//!
//! It keeps fexpr's quirks on purpose, since they decide which filters PocketBase rejects: a NUL
//! ends the input, a group is re-parsed from its text (so `()` is an error), a text token ends at
//! the first matching quote not preceded by a backslash and only `\<quote>` is unescaped, a
//! number may be `-.5`, and identifiers are ASCII.

use super::error::FilterError;

/// A join between two expressions or groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Join {
    And,
    Or,
}

/// A comparison operator; `any` is the `?` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Op {
    pub(crate) sign: Sign,
    pub(crate) any: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sign {
    Eq,
    Neq,
    Like,
    NotLike,
    Lt,
    Lte,
    Gt,
    Gte,
}

/// An operand token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Identifier(String),
    Text(String),
    Number(String),
    Function { name: String, args: Vec<Operand> },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expr {
    pub(crate) left: Operand,
    pub(crate) op: Op,
    pub(crate) right: Operand,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    Expr(Expr),
    Group(Vec<Group>),
}

/// One parsed item and the join that precedes it (the first item's join is `And`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Group {
    pub(crate) join: Join,
    pub(crate) item: Item,
}

#[derive(Debug)]
enum Token {
    Eof,
    Whitespace,
    Comment,
    Join(Join),
    Sign(Op),
    Group(String),
    Operand(Operand),
}

fn invalid(reason: impl Into<String>) -> FilterError {
    FilterError::Invalid {
        reason: reason.into(),
    }
}

const MAX_FUNC_DEPTH: usize = 3;

struct Scanner<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            data: text.as_bytes(),
            pos: 0,
        }
    }

    /// The next character; `'\0'` at the end (a NUL in the text ends it too, as in fexpr).
    /// A byte that does not start a UTF-8 character reads as U+FFFD, as Go's decoder does
    /// after fexpr's one-byte `unread` lands inside a multi-byte character.
    fn read(&mut self) -> char {
        let Some(&b) = self.data.get(self.pos) else {
            return '\0';
        };
        if b < 0x80 {
            self.pos += 1;
            return b as char;
        }
        let rest = &self.data[self.pos..];
        let len = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 0,
        };
        if len > 0
            && let Some(Ok(s)) = rest.get(..len).map(std::str::from_utf8)
            && let Some(c) = s.chars().next()
        {
            self.pos += len;
            return c;
        }
        self.pos += 1;
        '\u{FFFD}'
    }

    /// fexpr steps back one byte, not one character.
    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn scan(&mut self) -> Result<Token, FilterError> {
        let ch = self.read();
        if ch == '\0' {
            return Ok(Token::Eof);
        }
        self.unread();
        if is_whitespace(ch) {
            self.scan_whitespace();
            return Ok(Token::Whitespace);
        }
        if ch == '(' {
            return self.scan_group().map(Token::Group);
        }
        if is_identifier_start(ch) {
            return self.scan_identifier(MAX_FUNC_DEPTH).map(Token::Operand);
        }
        if is_number_start(ch) {
            return self.scan_number().map(Token::Operand);
        }
        if is_text_start(ch) {
            return self
                .scan_text(false)
                .map(|t| Token::Operand(Operand::Text(t)));
        }
        if is_sign_start(ch) {
            return self.scan_sign().map(Token::Sign);
        }
        if ch == '&' || ch == '|' {
            return self.scan_join().map(Token::Join);
        }
        if ch == '/' {
            return self.scan_comment().map(|_| Token::Comment);
        }
        // the character was unread: skip it for the message
        self.read();
        Err(invalid(format!("unexpected character {ch:?}")))
    }

    fn scan_whitespace(&mut self) {
        loop {
            let ch = self.read();
            if ch == '\0' {
                break;
            }
            if !is_whitespace(ch) {
                self.unread();
                break;
            }
        }
    }

    fn scan_number(&mut self) -> Result<Operand, FilterError> {
        let mut buf = String::new();
        let mut had_dot = false;
        loop {
            let ch = self.read();
            if ch == '\0' {
                break;
            }
            if !ch.is_ascii_digit() && (ch != '-' || !buf.is_empty()) && (ch != '.' || had_dot) {
                self.unread();
                break;
            }
            buf.push(ch);
            if ch == '.' {
                had_dot = true;
            }
        }
        if buf == "-" || buf.starts_with('.') || buf.ends_with('.') {
            return Err(invalid(format!("invalid number {buf:?}")));
        }
        Ok(Operand::Number(buf))
    }

    /// A quoted text; with `preserve_quotes` (inside a group) the raw literal is returned.
    fn scan_text(&mut self, preserve_quotes: bool) -> Result<String, FilterError> {
        let quote = self.read();
        let mut buf = String::new();
        buf.push(quote);
        let mut prev = '\0';
        let mut closed = false;
        loop {
            let ch = self.read();
            if ch == '\0' {
                break;
            }
            buf.push(ch);
            if ch == quote && prev != '\\' {
                closed = true;
                break;
            }
            prev = ch;
        }
        if !closed {
            return Err(invalid(format!("invalid quoted text {buf:?}")));
        }
        if preserve_quotes {
            return Ok(buf);
        }
        let inner = &buf[quote.len_utf8()..buf.len() - quote.len_utf8()];
        let escaped = format!("\\{quote}");
        Ok(inner.replace(&escaped, &quote.to_string()))
    }

    fn scan_comment(&mut self) -> Result<(), FilterError> {
        if self.read() != '/' || self.read() != '/' {
            return Err(invalid("invalid comment"));
        }
        loop {
            let ch = self.read();
            if ch == '\0' || ch == '\n' {
                return Ok(());
            }
        }
    }

    fn scan_identifier(&mut self, depth: usize) -> Result<Operand, FilterError> {
        let mut buf = String::new();
        buf.push(self.read());
        loop {
            let ch = self.read();
            if ch == '\0' {
                break;
            }
            if ch == '(' {
                if depth == 0 {
                    return Err(invalid(format!(
                        "max nested function arguments reached (max: {MAX_FUNC_DEPTH})"
                    )));
                }
                if !is_valid_identifier(&buf) {
                    return Err(invalid(format!("invalid function name {buf:?}")));
                }
                self.unread();
                return self.scan_function_args(buf, depth);
            }
            if !ch.is_ascii_alphanumeric() && ch != '.' && ch != ':' && ch != '_' {
                self.unread();
                break;
            }
            buf.push(ch);
        }
        if !is_valid_identifier(&buf) {
            return Err(invalid(format!("invalid identifier {buf:?}")));
        }
        Ok(Operand::Identifier(buf))
    }

    fn scan_sign(&mut self) -> Result<Op, FilterError> {
        let mut buf = String::new();
        loop {
            let ch = self.read();
            if ch == '\0' {
                break;
            }
            if !is_sign_start(ch) {
                self.unread();
                break;
            }
            buf.push(ch);
        }
        let (any, rest) = match buf.strip_prefix('?') {
            Some(rest) => (true, rest),
            None => (false, buf.as_str()),
        };
        let sign = match rest {
            "=" => Sign::Eq,
            "!=" => Sign::Neq,
            "~" => Sign::Like,
            "!~" => Sign::NotLike,
            "<" => Sign::Lt,
            "<=" => Sign::Lte,
            ">" => Sign::Gt,
            ">=" => Sign::Gte,
            _ => return Err(invalid(format!("invalid sign operator {buf:?}"))),
        };
        Ok(Op { sign, any })
    }

    fn scan_join(&mut self) -> Result<Join, FilterError> {
        let mut buf = String::new();
        loop {
            let ch = self.read();
            if ch == '\0' {
                break;
            }
            if ch != '&' && ch != '|' {
                self.unread();
                break;
            }
            buf.push(ch);
        }
        match buf.as_str() {
            "&&" => Ok(Join::And),
            "||" => Ok(Join::Or),
            _ => Err(invalid(format!("invalid join operator {buf:?}"))),
        }
    }

    fn scan_group(&mut self) -> Result<String, FilterError> {
        self.read(); // '('
        let mut buf = String::new();
        let mut open = 1usize;
        loop {
            let ch = self.read();
            if ch == '\0' {
                break;
            }
            if ch == '(' {
                open += 1;
                buf.push(ch);
            } else if is_text_start(ch) {
                self.unread();
                buf.push_str(&self.scan_text(true)?);
            } else if ch == ')' {
                open -= 1;
                if open == 0 {
                    break;
                }
                buf.push(ch);
            } else {
                buf.push(ch);
            }
        }
        if open > 0 {
            return Err(invalid(format!(
                "invalid formatted group - missing {open} closing bracket(s)"
            )));
        }
        Ok(buf)
    }

    fn scan_function_args(&mut self, name: String, depth: usize) -> Result<Operand, FilterError> {
        let mut args = Vec::new();
        let (mut expect_comma, mut closed) = (false, false);
        if self.read() != '(' {
            return Err(invalid(format!(
                "invalid or incomplete function call {name:?}"
            )));
        }
        loop {
            let ch = self.read();
            if ch == '\0' {
                break;
            }
            if ch == ')' {
                closed = true;
                break;
            }
            if is_whitespace(ch) {
                self.scan_whitespace();
                continue;
            }
            if ch == '/' {
                self.unread();
                self.scan_comment()?;
                continue;
            }
            let is_comma = ch == ',';
            if expect_comma && !is_comma {
                return Err(invalid(format!(
                    "expected comma after the last argument in function {name:?}"
                )));
            }
            if !expect_comma && is_comma {
                return Err(invalid(format!("unexpected comma in function {name:?}")));
            }
            expect_comma = false;
            if is_comma {
                continue;
            }
            self.unread();
            if is_identifier_start(ch) {
                args.push(self.scan_identifier(depth - 1)?);
            } else if is_number_start(ch) {
                args.push(self.scan_number()?);
            } else if is_text_start(ch) {
                args.push(Operand::Text(self.scan_text(false)?));
            } else {
                return Err(invalid(format!(
                    "unsupported argument character {ch:?} in function {name:?}"
                )));
            }
            expect_comma = true;
        }
        if !closed {
            return Err(invalid(format!(
                "invalid or incomplete function {name:?} (expected ')')"
            )));
        }
        Ok(Operand::Function { name, args })
    }
}

fn is_whitespace(ch: char) -> bool {
    ch == ' ' || ch == '\t' || ch == '\n'
}
fn is_text_start(ch: char) -> bool {
    ch == '\'' || ch == '"'
}
fn is_number_start(ch: char) -> bool {
    ch == '-' || ch.is_ascii_digit()
}
fn is_sign_start(ch: char) -> bool {
    matches!(ch, '=' | '?' | '!' | '>' | '<' | '~')
}
fn is_identifier_start(ch: char) -> bool {
    ch.is_ascii_alphabetic() || matches!(ch, '@' | '_' | '#')
}
fn is_valid_identifier(lit: &str) -> bool {
    let Some(last) = lit.chars().last() else {
        return false;
    };
    last != '.' && last != ':' && !(lit.len() == 1 && matches!(last, '@' | '_' | '#'))
}

#[derive(PartialEq)]
enum Step {
    BeforeSign,
    Sign,
    AfterSign,
    Join,
}

/// fexpr's `Parse`: the flat list of joined items, groups parsed recursively.
pub(crate) fn parse(text: &str) -> Result<Vec<Group>, FilterError> {
    let mut result = Vec::new();
    let mut scanner = Scanner::new(text);
    let mut step = Step::BeforeSign;
    let mut join = Join::And;
    let mut left: Option<Operand> = None;
    let mut op: Option<Op> = None;
    loop {
        let token = scanner.scan()?;
        match token {
            Token::Eof => break,
            Token::Whitespace | Token::Comment => continue,
            Token::Group(inner) => {
                let groups = parse(&inner)?;
                if !groups.is_empty() {
                    result.push(Group {
                        join,
                        item: Item::Group(groups),
                    });
                }
                step = Step::Join;
                continue;
            }
            _ => {}
        }
        match step {
            Step::BeforeSign => match token {
                Token::Operand(o) => {
                    left = Some(o);
                    step = Step::Sign;
                }
                _ => return Err(invalid("expected left operand")),
            },
            Step::Sign => match token {
                Token::Sign(o) => {
                    op = Some(o);
                    step = Step::AfterSign;
                }
                _ => return Err(invalid("expected a sign operator")),
            },
            Step::AfterSign => match (token, left.take(), op.take()) {
                (Token::Operand(right), Some(left), Some(op)) => {
                    result.push(Group {
                        join,
                        item: Item::Expr(Expr { left, op, right }),
                    });
                    step = Step::Join;
                }
                _ => return Err(invalid("expected right operand")),
            },
            Step::Join => match token {
                Token::Join(j) => {
                    join = j;
                    step = Step::BeforeSign;
                }
                _ => return Err(invalid("expected && or ||")),
            },
        }
    }
    if step != Step::Join {
        if result.is_empty() && left.is_none() {
            return Err(invalid("empty filter expression"));
        }
        return Err(invalid("invalid or incomplete filter expression"));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<Group> {
        match parse(text) {
            Ok(g) => g,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    fn ident(s: &str) -> Operand {
        Operand::Identifier(s.into())
    }

    #[test]
    fn expressions_and_joins() {
        let g = ok("a = 1 && b != 'x' || c ?~ \"y\"");
        assert_eq!(g.len(), 3);
        assert_eq!(g[1].join, Join::And);
        assert_eq!(g[2].join, Join::Or);
        let Item::Expr(e) = &g[2].item else {
            panic!("expr")
        };
        assert_eq!(e.left, ident("c"));
        assert_eq!(
            e.op,
            Op {
                sign: Sign::Like,
                any: true
            }
        );
        assert_eq!(e.right, Operand::Text("y".into()));
    }

    #[test]
    fn groups_nest_and_keep_quotes() {
        let g = ok("(a = ')' && (b = 1)) || c = -.5");
        let Item::Group(inner) = &g[0].item else {
            panic!("group")
        };
        assert_eq!(inner.len(), 2);
        let Item::Expr(e) = &inner[0].item else {
            panic!("expr")
        };
        assert_eq!(e.right, Operand::Text(")".into()));
        let Item::Expr(e) = &g[1].item else {
            panic!("expr")
        };
        assert_eq!(e.right, Operand::Number("-.5".into()));
    }

    #[test]
    fn text_escapes_only_the_quote() {
        let g = ok(r#"a = "x\"y\n" && b = 'it\'s'"#);
        let texts: Vec<_> = g
            .iter()
            .map(|g| match &g.item {
                Item::Expr(e) => e.right.clone(),
                _ => panic!("expr"),
            })
            .collect();
        assert_eq!(texts[0], Operand::Text(r#"x"y\n"#.into()));
        assert_eq!(texts[1], Operand::Text("it's".into()));
        // a quote after any backslash counts as escaped: this text never ends
        assert!(parse(r#"c = "\\" && d = 1"#).is_err());
    }

    #[test]
    fn functions_and_comments() {
        let g = ok("geoDistance(a.lon, 1, 'x',) < 5 // tail");
        let Item::Expr(e) = &g[0].item else {
            panic!("expr")
        };
        let Operand::Function { name, args } = &e.left else {
            panic!("function")
        };
        assert_eq!(name, "geoDistance");
        assert_eq!(args.len(), 3);
        assert!(parse("f(,a) = 1").is_err());
        assert!(parse("a(b(c(d(1)))) = 1").is_err());
    }

    #[test]
    fn invalid_inputs() {
        for text in [
            "",
            "  ",
            "()",
            "() && a = 1",
            "a",
            "a =",
            "a = 1 &&",
            "a == 1",
            "a = 1 & b = 2",
            "a = 1 b = 2",
            "a. = 1",
            "@ = 1",
            "a = 'x",
            "(a = 1",
            "a = 1)",
            "a = 1.",
            "a = -",
            "a = é",
            "a / b",
            "a = 1 |",
            "a =! 1",
            "1e5 = a",
        ] {
            assert!(parse(text).is_err(), "{text:?} should be invalid");
        }
        // a NUL reads as the end: after a text token it ends the input, inside a token it
        // ends only that token
        assert!(parse("a = 'x'\0 garbage").is_ok());
        assert!(parse("a = 1\0 garbage").is_err());
    }
}
