//! Tokens of the C# subset policy expressions are written in.
//!
//! The lexer works on the whole attribute value and records absolute byte offsets, so every
//! error points into the text the user wrote. Interpolated strings are lexed eagerly: each
//! `{expression}` hole becomes its own token list, which the parser parses separately.

use super::ExprError;

/// A half-open byte range `start..end` into the expression's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Span {
    pub(crate) fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }

    /// The smallest span covering both.
    pub(crate) fn to(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// One piece of an interpolated string.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    Text(String),
    /// A `{expression}` or `{expression:format}` hole: its tokens (ending in [`Tok::Eof`]).
    Hole {
        tokens: Vec<Token>,
        format: Option<String>,
        span: Span,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// Identifiers and keywords alike; the parser tells them apart.
    Ident(String),
    Int(i64),
    Double(f64),
    Char(char),
    Str(String),
    Interpolated(Vec<Part>),
    Punct(&'static str),
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) span: Span,
}

/// Punctuators, longest first so that the first match is the longest.
const PUNCTUATORS: &[&str] = &[
    "??=", "=>", "==", "!=", "<=", ">=", "&&", "||", "??", "?.", "++", "--", "+=", "-=", "*=", "/=", "%=", "&=", "|=",
    "^=", "(", ")", "[", "]", "{", "}", ".", ",", ";", ":", "?", "+", "-", "*", "/", "%", "!", "<", ">", "=", "&", "|",
    "^", "~",
];

/// Splits `source[start..end]` into tokens, ending with [`Tok::Eof`] at `end`.
pub(crate) fn tokenize(source: &str, start: usize, end: usize) -> Result<Vec<Token>, ExprError> {
    let mut lexer = Lexer { src: source, pos: start, end, holes: 0 };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token()?;
        let done = token.tok == Tok::Eof;
        tokens.push(token);
        if done {
            return Ok(tokens);
        }
    }
}

/// Interpolated strings nested inside interpolation holes: the lexer recurses per level.
const INTERPOLATION_NESTING_MAX: usize = 8;

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    /// Lexing stops here (exclusive).
    end: usize,
    /// Interpolation holes open around the cursor.
    holes: usize,
}

fn error(start: usize, end: usize, message: impl Into<String>) -> ExprError {
    ExprError { offset: start, len: end.saturating_sub(start).max(1), message: message.into() }
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.peek_at(0)
    }

    /// The character `n` characters ahead (within the lexed range).
    fn peek_at(&self, n: usize) -> Option<char> {
        self.src.get(self.pos..self.end)?.chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn rest(&self) -> &str {
        self.src.get(self.pos..self.end).unwrap_or("")
    }

    fn skip_trivia(&mut self) -> Result<(), ExprError> {
        loop {
            let rest = self.rest();
            if rest.starts_with("//") {
                while let Some(c) = self.peek() {
                    if c == '\n' {
                        break;
                    }
                    self.bump();
                }
            } else if rest.starts_with("/*") {
                let start = self.pos;
                match rest.find("*/") {
                    Some(at) => self.pos += at + 2,
                    None => return Err(error(start, start + 2, "unterminated comment")),
                }
            } else if self.peek().is_some_and(char::is_whitespace) {
                self.bump();
            } else {
                return Ok(());
            }
        }
    }

    fn next_token(&mut self) -> Result<Token, ExprError> {
        self.skip_trivia()?;
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Ok(Token { tok: Tok::Eof, span: Span::new(self.end, self.end) });
        };
        let tok = match c {
            '"' => {
                self.bump();
                Tok::Str(self.regular_string(start)?)
            }
            '@' if self.peek_at(1) == Some('"') => {
                self.pos += 2;
                Tok::Str(self.verbatim_string(start)?)
            }
            '$' | '@'
                if matches!((self.peek_at(1), self.peek_at(2)), (Some('"'), _) | (Some('@' | '$'), Some('"'))) =>
            {
                let verbatim = c == '@' || self.peek_at(1) == Some('@');
                self.pos += if self.peek_at(1) == Some('"') { 2 } else { 3 };
                Tok::Interpolated(self.interpolated(start, verbatim)?)
            }
            '\'' => {
                self.bump();
                Tok::Char(self.char_literal(start)?)
            }
            c if c.is_ascii_digit() || (c == '.' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit())) => {
                self.number(start)?
            }
            c if c == '_' || c.is_alphabetic() => {
                while self.peek().is_some_and(|c| c == '_' || c.is_alphanumeric()) {
                    self.bump();
                }
                Tok::Ident(self.src.get(start..self.pos).unwrap_or("").to_owned())
            }
            _ => self.punctuator(start)?,
        };
        Ok(Token { tok, span: Span::new(start, self.pos) })
    }

    fn punctuator(&mut self, start: usize) -> Result<Tok, ExprError> {
        let rest = self.rest();
        for &p in PUNCTUATORS {
            if rest.starts_with(p) {
                // `a?.5:b` is a conditional, not a null-conditional member access.
                if p == "?." && rest[2..].starts_with(|c: char| c.is_ascii_digit()) {
                    continue;
                }
                self.pos += p.len();
                return Ok(Tok::Punct(p));
            }
        }
        let c = self.peek().unwrap_or(' ');
        Err(error(start, start + c.len_utf8(), format!("unexpected character `{c}`")))
    }

    fn number(&mut self, start: usize) -> Result<Tok, ExprError> {
        if self.rest().starts_with("0x") || self.rest().starts_with("0X") {
            self.pos += 2;
            let digits = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                self.bump();
            }
            let text = self.src.get(digits..self.pos).unwrap_or("");
            let value =
                i64::from_str_radix(text, 16).map_err(|_| error(start, self.pos, "invalid hexadecimal literal"))?;
            self.integer_suffix();
            return Ok(Tok::Int(value));
        }
        let mut is_double = false;
        self.digits();
        if self.peek() == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            is_double = true;
            self.bump();
            self.digits();
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let save = self.pos;
            self.bump();
            if matches!(self.peek(), Some('+' | '-')) {
                self.bump();
            }
            if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                is_double = true;
                self.digits();
            } else {
                self.pos = save;
            }
        }
        let text: String = self.src.get(start..self.pos).unwrap_or("").chars().filter(|&c| c != '_').collect();
        if matches!(self.peek(), Some('d' | 'D' | 'f' | 'F' | 'm' | 'M')) {
            self.bump();
            is_double = true;
        } else if !is_double {
            self.integer_suffix();
        }
        if is_double {
            let value = text.parse::<f64>().map_err(|_| error(start, self.pos, "invalid number"))?;
            Ok(Tok::Double(value))
        } else {
            let value = text.parse::<i64>().map_err(|_| error(start, self.pos, "integer literal is too large"))?;
            Ok(Tok::Int(value))
        }
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '_') {
            self.bump();
        }
    }

    /// `L`, `U`, `UL`...: `int` and `long` are one 64-bit type in the VM.
    fn integer_suffix(&mut self) {
        while matches!(self.peek(), Some('l' | 'L' | 'u' | 'U')) {
            self.bump();
        }
    }

    /// After the opening quote of `"..."`.
    fn regular_string(&mut self, start: usize) -> Result<String, ExprError> {
        let mut out = String::new();
        loop {
            match self.peek() {
                None | Some('\n') => return Err(error(start, self.pos, "unterminated string literal")),
                Some('"') => {
                    self.bump();
                    return Ok(out);
                }
                Some('\\') => out.push(self.escape()?),
                Some(c) => {
                    self.bump();
                    out.push(c);
                }
            }
        }
    }

    /// After the opening `@"`.
    fn verbatim_string(&mut self, start: usize) -> Result<String, ExprError> {
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(error(start, self.pos, "unterminated verbatim string literal")),
                Some('"') if self.peek() == Some('"') => {
                    self.bump();
                    out.push('"');
                }
                Some('"') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn char_literal(&mut self, start: usize) -> Result<char, ExprError> {
        let c = match self.peek() {
            Some('\\') => self.escape()?,
            Some('\'') | Some('\n') | None => {
                return Err(error(start, self.pos, "empty or unterminated character literal"));
            }
            Some(c) => {
                self.bump();
                c
            }
        };
        if self.bump() != Some('\'') {
            return Err(error(start, self.pos, "unterminated character literal (a char literal holds one character)"));
        }
        Ok(c)
    }

    /// At a backslash in a regular string or char literal.
    fn escape(&mut self) -> Result<char, ExprError> {
        let start = self.pos;
        self.bump();
        let c = self.bump().ok_or_else(|| error(start, self.pos, "unterminated escape sequence"))?;
        let simple = match c {
            '\\' => Some('\\'),
            '"' => Some('"'),
            '\'' => Some('\''),
            '0' => Some('\0'),
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            _ => None,
        };
        if let Some(simple) = simple {
            return Ok(simple);
        }
        let (min, max) = match c {
            'u' => (4, 4),
            'U' => (8, 8),
            'x' => (1, 4),
            _ => return Err(error(start, self.pos, format!("unrecognized escape sequence `\\{c}`"))),
        };
        let digits = self.pos;
        while self.pos - digits < max && self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
            self.bump();
        }
        let text = self.src.get(digits..self.pos).unwrap_or("");
        let code = if text.len() >= min { u32::from_str_radix(text, 16).ok() } else { None };
        code.and_then(char::from_u32).ok_or_else(|| error(start, self.pos, "invalid escape sequence"))
    }

    /// After the opening `$"` or `$@"`.
    fn interpolated(&mut self, start: usize, verbatim: bool) -> Result<Vec<Part>, ExprError> {
        let mut parts = Vec::new();
        let mut text = String::new();
        loop {
            match self.peek() {
                None => return Err(error(start, self.pos, "unterminated interpolated string")),
                Some('\n') if !verbatim => return Err(error(start, self.pos, "unterminated interpolated string")),
                Some('"') if verbatim && self.peek_at(1) == Some('"') => {
                    self.pos += 2;
                    text.push('"');
                }
                Some('"') => {
                    self.bump();
                    if !text.is_empty() {
                        parts.push(Part::Text(text));
                    }
                    return Ok(parts);
                }
                Some('\\') if !verbatim => text.push(self.escape()?),
                Some('{') if self.peek_at(1) == Some('{') => {
                    self.pos += 2;
                    text.push('{');
                }
                Some('}') if self.peek_at(1) == Some('}') => {
                    self.pos += 2;
                    text.push('}');
                }
                Some('}') => {
                    return Err(error(
                        self.pos,
                        self.pos + 1,
                        "a `}` in an interpolated string must be doubled (`}}`)",
                    ));
                }
                Some('{') => {
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(self.hole(verbatim)?);
                }
                Some(c) => {
                    self.bump();
                    text.push(c);
                }
            }
        }
    }

    /// At the `{` of an interpolation hole: lexes the expression up to the `}` (or the `:` of a
    /// format specifier) that closes it at nesting depth 0.
    fn hole(&mut self, verbatim: bool) -> Result<Part, ExprError> {
        let open = self.pos;
        if self.holes >= INTERPOLATION_NESTING_MAX {
            return Err(error(open, open + 1, "interpolated strings are nested too deeply"));
        }
        self.holes += 1;
        let part = self.hole_tokens(open, verbatim);
        self.holes -= 1;
        part
    }

    fn hole_tokens(&mut self, open: usize, verbatim: bool) -> Result<Part, ExprError> {
        self.bump();
        let mut tokens = Vec::new();
        let mut depth = 0usize;
        loop {
            let token = self.next_token()?;
            match token.tok {
                Tok::Eof => return Err(error(open, self.pos, "unterminated interpolation hole (missing `}`)")),
                Tok::Punct("(" | "[" | "{") => depth += 1,
                Tok::Punct(")" | "]") => depth = depth.saturating_sub(1),
                Tok::Punct("}") if depth > 0 => depth -= 1,
                Tok::Punct("}") => {
                    let span = Span::new(open, self.pos);
                    tokens.push(Token { tok: Tok::Eof, span: Span::new(token.span.start, token.span.start) });
                    return Ok(Part::Hole { tokens, format: None, span });
                }
                Tok::Punct(",") if depth == 0 => {
                    return Err(error(
                        token.span.start,
                        token.span.end,
                        "alignment in interpolation holes (`{x,10}`) is not supported",
                    ));
                }
                Tok::Punct(":") if depth == 0 => {
                    let end = token.span.start;
                    let format = self.format_specifier(open, verbatim)?;
                    tokens.push(Token { tok: Tok::Eof, span: Span::new(end, end) });
                    return Ok(Part::Hole { tokens, format: Some(format), span: Span::new(open, self.pos) });
                }
                _ => {}
            }
            tokens.push(token);
        }
    }

    /// After the `:` of `{x:D2}`: the format text up to and including the closing `}`.
    fn format_specifier(&mut self, open: usize, verbatim: bool) -> Result<String, ExprError> {
        let mut format = String::new();
        loop {
            match self.bump() {
                None => return Err(error(open, self.pos, "unterminated interpolation hole (missing `}`)")),
                Some('"') | Some('\n') if !verbatim => {
                    return Err(error(open, self.pos, "unterminated interpolation hole (missing `}`)"));
                }
                Some('}') => return Ok(format),
                Some(c) => format.push(c),
            }
        }
    }
}
