//! A parser for the small subset of Rust the code form of a scenario is
//! written in: paths, calls, method calls, struct literals (with `..base`),
//! arrays, tuples, `vec![..]`, integer, float and string literals, and the
//! `|c| { c.field = value; }` closure `config_with` takes. Comments are skipped.

use super::CodeError;

/// One parsed expression; the typed readers in the parent module turn it into
/// a value.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Expr {
    Int(u64),
    Float(f64),
    Str(String),
    /// `a::b::C`, `true`, `None`.
    Path(Vec<String>),
    /// `a::f(args)`.
    Call(Vec<String>, Vec<Expr>),
    /// `receiver.name(args)`.
    Method(Box<Expr>, String, Vec<Expr>),
    /// `a::S { field: value, ..base }`.
    Struct(Vec<String>, Vec<(String, Expr)>, Option<Box<Expr>>),
    /// `[..]` and `vec![..]`.
    Array(Vec<Expr>),
    /// `(a, b)`.
    Tuple(Vec<Expr>),
    /// `|c| { c.field = value; ... }`: the assignments.
    Closure(Vec<(String, Expr)>),
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Int(u64),
    Float(f64),
    Str(String),
    Punct(&'static str),
}

const PUNCTS: [&str; 16] = [
    "::", "..", "(", ")", "[", "]", "{", "}", ",", ".", ":", ";", "=", "|", "!", "&",
];

fn error(at: usize, message: impl Into<String>) -> CodeError {
    CodeError(format!("at byte {at}: {}", message.into()))
}

fn tokens(text: &str) -> Result<Vec<(usize, Token)>, CodeError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let rest = &text[i..];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if let Some(comment) = rest.strip_prefix("/*") {
            let end = comment
                .find("*/")
                .ok_or_else(|| error(i, "unclosed comment"))?;
            i += end + 4;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let len = rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .unwrap_or(rest.len());
            out.push((i, Token::Ident(rest[..len].to_string())));
            i += len;
        } else if c.is_ascii_digit() {
            let (token, len) = number(rest).ok_or_else(|| error(i, "a malformed number"))?;
            out.push((i, token));
            i += len;
        } else if c == b'"' {
            let (s, len) = string(rest).ok_or_else(|| error(i, "a malformed string"))?;
            out.push((i, Token::Str(s)));
            i += len;
        } else if let Some(p) = PUNCTS.iter().find(|p| rest.starts_with(**p)) {
            out.push((i, Token::Punct(p)));
            i += p.len();
        } else {
            return Err(error(i, format!("unexpected {:?}", rest.chars().next())));
        }
    }
    Ok(out)
}

/// An integer (`1_000`) or a float (`0.25`, `1e-7`, `2.5e3`) at the start of `text`.
fn number(text: &str) -> Option<(Token, usize)> {
    let b = text.as_bytes();
    let digits = |from: usize| {
        b[from..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || **c == b'_')
            .count()
    };
    let mut len = digits(0);
    let mut float = false;
    if b.get(len) == Some(&b'.') && b.get(len + 1).is_some_and(u8::is_ascii_digit) {
        len += 1 + digits(len + 1);
        float = true;
    }
    if matches!(b.get(len), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(len + 1), Some(b'+' | b'-')));
        let exp = digits(len + 1 + sign);
        if exp > 0 {
            len += 1 + sign + exp;
            float = true;
        }
    }
    let literal: String = text[..len].chars().filter(|c| *c != '_').collect();
    let token = if float {
        Token::Float(literal.parse().ok()?)
    } else {
        Token::Int(literal.parse().ok()?)
    };
    Some((token, len))
}

/// A string literal with Rust's escapes at the start of `text` (which starts
/// with `"`): its value and its length in the text.
fn string(text: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => {
                let (_, escape) = chars.next()?;
                out.push(match escape {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    '\\' | '"' | '\'' => escape,
                    'u' => {
                        let (open, _) = chars.next().filter(|(_, c)| *c == '{')?;
                        let close = open + text[open..].find('}')?;
                        let hex = &text[open + 1..close];
                        while chars.next().is_some_and(|(j, _)| j < close) {}
                        char::from_u32(u32::from_str_radix(hex, 16).ok()?)?
                    }
                    _ => return None,
                });
            }
            c => out.push(c),
        }
    }
    None
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(at, _)| *at)
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn eat(&mut self, punct: &str) -> bool {
        if matches!(self.peek(), Some(Token::Punct(p)) if *p == punct) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, punct: &str) -> Result<(), CodeError> {
        if self.eat(punct) {
            Ok(())
        } else {
            Err(error(self.at(), format!("expected `{punct}`")))
        }
    }

    fn ident(&mut self) -> Result<String, CodeError> {
        match self.peek() {
            Some(Token::Ident(name)) => {
                let name = name.clone();
                self.pos += 1;
                Ok(name)
            }
            _ => Err(error(self.at(), "expected a name")),
        }
    }

    fn expr(&mut self) -> Result<Expr, CodeError> {
        let mut expr = self.primary()?;
        while self.eat(".") {
            let name = self.ident()?;
            self.expect("(")?;
            let args = self.list(")")?;
            expr = Expr::Method(Box::new(expr), name, args);
        }
        Ok(expr)
    }

    fn primary(&mut self) -> Result<Expr, CodeError> {
        let at = self.at();
        let Some(token) = self.peek().cloned() else {
            return Err(error(at, "unexpected end"));
        };
        self.pos += 1;
        match token {
            Token::Int(n) => Ok(Expr::Int(n)),
            Token::Float(x) => Ok(Expr::Float(x)),
            Token::Str(s) => Ok(Expr::Str(s)),
            Token::Punct("[") => Ok(Expr::Array(self.list("]")?)),
            Token::Punct("&") => self.primary(),
            Token::Punct("(") => {
                let mut items = self.list(")")?;
                Ok(if items.len() == 1 {
                    items.remove(0)
                } else {
                    Expr::Tuple(items)
                })
            }
            Token::Punct("|") => self.closure(),
            Token::Ident(first) => self.path(first),
            Token::Punct(p) => Err(error(at, format!("unexpected `{p}`"))),
        }
    }

    fn path(&mut self, first: String) -> Result<Expr, CodeError> {
        let mut path = vec![first];
        while self.eat("::") {
            path.push(self.ident()?);
        }
        if self.eat("!") {
            self.expect("[")?;
            return Ok(Expr::Array(self.list("]")?));
        }
        if self.eat("(") {
            return Ok(Expr::Call(path, self.list(")")?));
        }
        if !self.eat("{") {
            return Ok(Expr::Path(path));
        }
        let mut fields = Vec::new();
        let mut base = None;
        loop {
            if self.eat("}") {
                break;
            }
            if self.eat("..") {
                base = Some(Box::new(self.expr()?));
                self.expect("}")?;
                break;
            }
            let name = self.ident()?;
            self.expect(":")?;
            fields.push((name, self.expr()?));
            if !self.eat(",") {
                self.expect("}")?;
                break;
            }
        }
        Ok(Expr::Struct(path, fields, base))
    }

    /// `|c| { c.field = value; ... }` (after the first `|`).
    fn closure(&mut self) -> Result<Expr, CodeError> {
        let var = self.ident()?;
        self.expect("|")?;
        self.expect("{")?;
        let mut assignments = Vec::new();
        while !self.eat("}") {
            let at = self.at();
            if self.ident()? != var {
                return Err(error(at, format!("expected `{var}.field = value;`")));
            }
            self.expect(".")?;
            let field = self.ident()?;
            self.expect("=")?;
            assignments.push((field, self.expr()?));
            if !self.eat(";") {
                self.expect("}")?;
                break;
            }
        }
        Ok(Expr::Closure(assignments))
    }

    /// Comma-separated expressions up to `close` (a trailing comma allowed).
    fn list(&mut self, close: &str) -> Result<Vec<Expr>, CodeError> {
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                break;
            }
            items.push(self.expr()?);
            if !self.eat(",") {
                self.expect(close)?;
                break;
            }
        }
        Ok(items)
    }
}

/// Parses one expression (a trailing `;` allowed).
pub(super) fn parse(text: &str) -> Result<Expr, CodeError> {
    let mut parser = Parser {
        tokens: tokens(text)?,
        pos: 0,
        end: text.len(),
    };
    let expr = parser.expr()?;
    parser.eat(";");
    if parser.pos < parser.tokens.len() {
        return Err(error(parser.at(), "unexpected text after the expression"));
    }
    Ok(expr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(segments: &[&str]) -> Vec<String> {
        segments.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn numbers_strings_and_comments_are_read_as_rust_writes_them() {
        let expr = parse(r#"f(1_000, 0.25, 1e-7, "a\"b\u{e9}\n") /* note */ // end"#);
        assert_eq!(
            expr,
            Ok(Expr::Call(
                path(&["f"]),
                vec![
                    Expr::Int(1000),
                    Expr::Float(0.25),
                    Expr::Float(1e-7),
                    Expr::Str("a\"b\u{e9}\n".into()),
                ]
            ))
        );
    }

    #[test]
    fn chains_struct_literals_and_closures_parse() {
        let expr = parse("S::new(4).m(T::V { a: vec![[0]], ..T::d() }).c(|c| { c.x = None; })")
            .expect("parses");
        let Expr::Method(receiver, name, args) = expr else {
            panic!("a method call");
        };
        assert_eq!(name, "c");
        assert_eq!(
            args,
            vec![Expr::Closure(vec![(
                "x".into(),
                Expr::Path(path(&["None"]))
            )])]
        );
        let Expr::Method(_, _, args) = *receiver else {
            panic!("a chain");
        };
        assert_eq!(
            args,
            vec![Expr::Struct(
                path(&["T", "V"]),
                vec![(
                    "a".into(),
                    Expr::Array(vec![Expr::Array(vec![Expr::Int(0)])])
                )],
                Some(Box::new(Expr::Call(path(&["T", "d"]), vec![])))
            )]
        );
    }

    #[test]
    fn malformed_text_is_an_error_with_its_place() {
        let error = parse("Scenario::new(4).seed(").expect_err("unclosed");
        assert!(error.to_string().contains("byte 22"), "{error}");
        assert!(parse("f(1) g").is_err());
        assert!(parse("\"open").is_err());
    }
}
