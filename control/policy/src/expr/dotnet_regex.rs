//! .NET regular expression syntax → the `regex` crate's, checked at compile time.
//!
//! The two dialects agree on most of what policies use. The differences handled here:
//! named groups `(?<n>..)`/`(?'n'..)` → `(?P<n>..)`; a `{` that does not start a quantifier is
//! a literal in .NET; `[` and `&&`/`~~`/`--` are literals inside .NET classes but set
//! operators in the `regex` crate; `\Z` (approximated by `\z`); `\e`; `RegexOptions` become
//! inline flags. Constructs the `regex` crate cannot run (lookaround, backreferences, atomic
//! groups, conditionals, balancing groups) are refused with their name.

use portcullis_contract::program::{REGEX_IGNORE_CASE, REGEX_MULTILINE, REGEX_SINGLELINE};

/// `RegexOptions` bits beyond those the contract names (as .NET numbers them).
const EXPLICIT_CAPTURE: i64 = 4;
const COMPILED: i64 = 8;
const IGNORE_PATTERN_WHITESPACE: i64 = 32;
const RIGHT_TO_LEFT: i64 = 64;
const ECMA_SCRIPT: i64 = 256;
const CULTURE_INVARIANT: i64 = 512;
const NON_BACKTRACKING: i64 = 1024;
/// Options that need no translation.
const HARMLESS: i64 = COMPILED | CULTURE_INVARIANT | NON_BACKTRACKING;
/// .NET's `RegexOptions.*` values, by name.
pub(crate) const REGEX_OPTIONS: &[(&str, i64)] = &[
    ("None", 0),
    ("IgnoreCase", REGEX_IGNORE_CASE),
    ("Multiline", REGEX_MULTILINE),
    ("ExplicitCapture", EXPLICIT_CAPTURE),
    ("Compiled", COMPILED),
    ("Singleline", REGEX_SINGLELINE),
    ("IgnorePatternWhitespace", IGNORE_PATTERN_WHITESPACE),
    ("RightToLeft", RIGHT_TO_LEFT),
    ("ECMAScript", ECMA_SCRIPT),
    ("CultureInvariant", CULTURE_INVARIANT),
    ("NonBacktracking", NON_BACKTRACKING),
];

/// A translated, checked pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Translated {
    pub(crate) pattern: String,
    pub(crate) ignore_case: bool,
}

/// Translates `pattern` compiled with `options` (.NET `RegexOptions` bits).
pub(crate) fn translate(pattern: &str, options: i64) -> Result<Translated, String> {
    if options & RIGHT_TO_LEFT != 0 {
        return Err("RegexOptions.RightToLeft is not supported".to_owned());
    }
    if options & ECMA_SCRIPT != 0 {
        return Err("RegexOptions.ECMAScript is not supported".to_owned());
    }
    let known = REGEX_IGNORE_CASE
        | REGEX_MULTILINE
        | REGEX_SINGLELINE
        | EXPLICIT_CAPTURE
        | IGNORE_PATTERN_WHITESPACE
        | HARMLESS;
    if options & !known != 0 {
        return Err(format!("unknown RegexOptions value {options}"));
    }
    let mut flags = String::new();
    if options & REGEX_MULTILINE != 0 {
        flags.push('m');
    }
    if options & REGEX_SINGLELINE != 0 {
        flags.push('s');
    }
    if options & IGNORE_PATTERN_WHITESPACE != 0 {
        flags.push('x');
    }
    let mut out = if flags.is_empty() { String::new() } else { format!("(?{flags})") };
    let mut translator =
        Translator { chars: pattern.chars().collect(), at: 0, explicit_capture: options & EXPLICIT_CAPTURE != 0 };
    translator.run(&mut out)?;
    let ignore_case = options & REGEX_IGNORE_CASE != 0;
    match ::regex::RegexBuilder::new(&out).case_insensitive(ignore_case).build() {
        Ok(_) => Ok(Translated { pattern: out, ignore_case }),
        Err(e) => {
            let detail = e.to_string();
            let last = detail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("invalid pattern");
            Err(format!("invalid regular expression: {}", last.trim_start_matches("error: ")))
        }
    }
}

struct Translator {
    chars: Vec<char>,
    at: usize,
    explicit_capture: bool,
}

impl Translator {
    fn peek(&self, n: usize) -> Option<char> {
        self.chars.get(self.at + n).copied()
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars().enumerate().all(|(i, c)| self.peek(i) == Some(c))
    }

    fn run(&mut self, out: &mut String) -> Result<(), String> {
        while let Some(c) = self.peek(0) {
            match c {
                '\\' => self.escape(out, false)?,
                '(' => self.group(out)?,
                '[' => self.class(out)?,
                '{' => {
                    match self.quantifier_len() {
                        Some(len) => {
                            out.extend(self.chars.iter().skip(self.at).take(len));
                            self.at += len;
                        }
                        None => {
                            out.push_str("\\{");
                            self.at += 1;
                        }
                    }
                    continue;
                }
                '}' => {
                    out.push_str("\\}");
                    self.at += 1;
                }
                c => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
        Ok(())
    }

    /// Length of `{n}`, `{n,}` or `{n,m}` at the cursor, if it is one.
    fn quantifier_len(&self) -> Option<usize> {
        let mut i = 1;
        let digits = |i: &mut usize| {
            let start = *i;
            while self.peek(*i).is_some_and(|c| c.is_ascii_digit()) {
                *i += 1;
            }
            *i > start
        };
        if !digits(&mut i) {
            return None;
        }
        if self.peek(i) == Some(',') {
            i += 1;
            digits(&mut i);
        }
        (self.peek(i) == Some('}')).then_some(i + 1)
    }

    fn escape(&mut self, out: &mut String, in_class: bool) -> Result<(), String> {
        let Some(c) = self.peek(1) else { return Err("a pattern cannot end with `\\`".to_owned()) };
        self.at += 2;
        match c {
            '1'..='9' if !in_class => Err(format!("backreferences (`\\{c}`) are not supported in regular expressions")),
            'k' if matches!(self.peek(0), Some('<' | '\'')) => {
                Err("named backreferences (`\\k<name>`) are not supported in regular expressions".to_owned())
            }
            'G' => Err("`\\G` (contiguous match) is not supported in regular expressions".to_owned()),
            'c' => Err("control-character escapes (`\\cX`) are not supported in regular expressions".to_owned()),
            'Z' => {
                out.push_str("\\z");
                Ok(())
            }
            'e' => {
                out.push_str("\\x1B");
                Ok(())
            }
            '0' => {
                out.push_str("\\x00");
                Ok(())
            }
            'b' if in_class => {
                out.push_str("\\x08");
                Ok(())
            }
            c => {
                out.push('\\');
                out.push(c);
                Ok(())
            }
        }
    }

    fn group(&mut self, out: &mut String) -> Result<(), String> {
        let unsupported = |what: &str| Err(format!("{what} are not supported in regular expressions"));
        if self.starts_with("(?=") || self.starts_with("(?!") {
            return unsupported("lookahead assertions (`(?=...)`, `(?!...)`)");
        }
        if self.starts_with("(?<=") || self.starts_with("(?<!") {
            return unsupported("lookbehind assertions (`(?<=...)`, `(?<!...)`)");
        }
        if self.starts_with("(?>") {
            return unsupported("atomic groups (`(?>...)`)");
        }
        if self.starts_with("(?(") {
            return unsupported("conditional groups (`(?(...)`)");
        }
        if self.starts_with("(?#") {
            while let Some(c) = self.peek(0) {
                self.at += 1;
                if c == ')' {
                    return Ok(());
                }
            }
            return Err("unterminated comment group `(?#`".to_owned());
        }
        let named = if self.starts_with("(?<") {
            Some('>')
        } else if self.starts_with("(?'") {
            Some('\'')
        } else {
            None
        };
        if let Some(close) = named {
            self.at += 3;
            let mut name = String::new();
            loop {
                match self.peek(0) {
                    None => return Err("unterminated group name".to_owned()),
                    Some(c) if c == close => break,
                    Some('-') => return unsupported("balancing groups (`(?<a-b>...)`)"),
                    Some(c) => name.push(c),
                }
                self.at += 1;
            }
            self.at += 1;
            out.push_str("(?P<");
            out.push_str(&name);
            out.push('>');
            return Ok(());
        }
        if self.starts_with("(?") {
            // Inline flags `(?imsx-imsx)` / `(?i:...)`: the same letters, except .NET's `n`.
            let mut i = 2;
            while let Some(c) = self.peek(i) {
                if c == 'n' {
                    return unsupported("the inline `n` (explicit capture) flag and similar options");
                }
                if c == ')' || c == ':' || !(c.is_ascii_alphabetic() || c == '-') {
                    break;
                }
                i += 1;
            }
            out.push_str("(?");
            self.at += 2;
            return Ok(());
        }
        self.at += 1;
        out.push_str(if self.explicit_capture { "(?:" } else { "(" });
        Ok(())
    }

    /// A character class through its closing `]`.
    fn class(&mut self, out: &mut String) -> Result<(), String> {
        self.at += 1;
        out.push('[');
        if self.peek(0) == Some('^') {
            out.push('^');
            self.at += 1;
        }
        // A `]` first in a .NET class is a literal.
        if self.peek(0) == Some(']') {
            out.push_str("\\]");
            self.at += 1;
        }
        loop {
            match self.peek(0) {
                None => return Err("unterminated character class `[`".to_owned()),
                Some(']') => {
                    out.push(']');
                    self.at += 1;
                    return Ok(());
                }
                Some('\\') => self.escape(out, true)?,
                Some('-') if self.peek(1) == Some('[') => {
                    return Err(
                        "character class subtraction (`[a-z-[aeiou]]`) is not supported in regular expressions"
                            .to_owned(),
                    );
                }
                Some('[') => {
                    out.push_str("\\[");
                    self.at += 1;
                }
                // `&&`, `~~` and `--` are set operators in the `regex` crate, literals in .NET.
                Some(c @ ('&' | '~' | '-')) if self.peek(1) == Some(c) => {
                    for _ in 0..2 {
                        out.push('\\');
                        out.push(c);
                    }
                    self.at += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }
}
