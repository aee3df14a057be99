//! `Regex.IsMatch`, `Match`, `Matches`, `Replace`, `Split`, `Escape`. The pattern is a compiled
//! constant (`Const::Regex`) or a string compiled per call (bounded in size).

use std::borrow::Cow;
use std::rc::Rc;

use portcullis_contract::program::{Builtin, REGEX_IGNORE_CASE, REGEX_MULTILINE, REGEX_SINGLELINE};

use super::Args;
use crate::policy::error::Fault;
use crate::policy::load::REGEX_SIZE_MAX_BYTES;
use crate::policy::value::{MatchData, Value};

/// Longest pattern compiled at run time (constants are compiled at load): bounds compile cost.
pub(crate) const RUNTIME_PATTERN_BYTES_MAX: usize = 4096;

fn pattern<'r>(a: &'r Args<'_, '_>) -> Result<Cow<'r, regex::Regex>, Fault> {
    let options = if a.len() > 2 && !matches!(a.builtin, Builtin::RegexReplace) || a.len() > 3 {
        match a.get(if matches!(a.builtin, Builtin::RegexReplace) { 3 } else { 2 })? {
            Value::Int(options) => *options,
            _ => 0,
        }
    } else {
        0
    };
    match a.get(1)? {
        Value::Regex(regex) if options == 0 => Ok(Cow::Borrowed(*regex)),
        Value::Regex(regex) => compile(a, regex.as_str(), options).map(Cow::Owned),
        Value::Str(text) => compile(a, text.as_str(), options).map(Cow::Owned),
        other => Err(a.fail(&format!("expected a pattern, found {}", other.type_name()))),
    }
}

fn compile(a: &Args<'_, '_>, pattern: &str, options: i64) -> Result<regex::Regex, Fault> {
    if pattern.len() > RUNTIME_PATTERN_BYTES_MAX {
        return Err(a.fail("pattern too long"));
    }
    regex::RegexBuilder::new(pattern)
        .case_insensitive(options & REGEX_IGNORE_CASE != 0)
        .multi_line(options & REGEX_MULTILINE != 0)
        .dot_matches_new_line(options & REGEX_SINGLELINE != 0)
        .size_limit(REGEX_SIZE_MAX_BYTES)
        .build()
        .map_err(|error| a.fail(&format!("Invalid pattern: {error}")))
}

fn match_data(regex: &regex::Regex, input: &str, captures: &regex::Captures<'_>) -> MatchData {
    let char_at = |offset: usize| input.get(..offset).map_or(0, |prefix| prefix.chars().count());
    MatchData {
        groups: captures.iter().map(|group| group.map(|g| (char_at(g.start()), Rc::from(g.as_str())))).collect(),
        names: regex.capture_names().map(|name| name.map(Rc::from)).collect(),
    }
}

/// Translates .NET replacement syntax (`$1`, `${name}`, `$$`) into the regex crate's.
fn replacement(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    let mut digits = String::new();
                    while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                        digits.push(*d);
                        chars.next();
                    }
                    out.push_str(&format!("${{{digits}}}"));
                    continue;
                }
                Some('{') | Some('$') => {}
                _ => {
                    out.push_str("$$");
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

pub(super) fn call<'a>(a: Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    use Builtin as B;
    match a.builtin {
        B::RegexIsMatch => {
            a.arity(&[2, 3, 4])?;
            let input = a.text(0)?;
            Ok(Value::Bool(pattern(&a)?.is_match(input)))
        }
        B::RegexMatch => {
            a.arity(&[2, 3, 4])?;
            let input = a.text(0)?;
            let regex = pattern(&a)?;
            let data = match regex.captures(input) {
                Some(captures) => match_data(&regex, input, &captures),
                None => MatchData::failed(),
            };
            Ok(Value::Match(Rc::new(data)))
        }
        B::RegexMatches => {
            a.arity(&[2, 3, 4])?;
            let input = a.text(0)?;
            let regex = pattern(&a)?;
            let matches =
                regex.captures_iter(input).map(|c| Value::Match(Rc::new(match_data(&regex, input, &c)))).collect();
            Ok(Value::array(matches))
        }
        B::RegexReplace => {
            a.arity(&[3, 4, 5])?;
            let input = a.text(0)?;
            let with = replacement(a.opt_text(2)?.unwrap_or(""));
            let regex = pattern(&a)?;
            Ok(match regex.replace_all(input, with.as_str()) {
                Cow::Borrowed(_) => Value::Str(a.text_value(0)?),
                Cow::Owned(text) => Value::string(text),
            })
        }
        B::RegexSplit => {
            a.arity(&[2, 3, 4])?;
            let input = a.text(0)?;
            let regex = pattern(&a)?;
            Ok(Value::array(regex.split(input).map(|part| Value::string(part.to_owned())).collect()))
        }
        B::RegexEscape => {
            a.arity(&[1])?;
            Ok(Value::string(regex::escape(a.text(0)?)))
        }
        _ => Err(a.fail("not a regex method")),
    }
}
