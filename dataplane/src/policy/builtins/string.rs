//! `System.String` methods. Indices and lengths are in chars (UTF-16 code units for ASCII and
//! the BMP, which is what policy inputs carry).

use portcullis_contract::program::{Builtin, SPLIT_REMOVE_EMPTY_ENTRIES};

use super::{Args, ignores_case};
use crate::policy::error::Fault;
use crate::policy::value::{Text, Value};

/// Case-insensitive equality (invariant culture, approximated by Unicode simple lowercase).
pub(crate) fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || (!a.is_ascii() || !b.is_ascii()) && a.to_lowercase() == b.to_lowercase()
}

fn find(haystack: &str, needle: &str, ignore_case: bool) -> Option<usize> {
    if ignore_case { haystack.to_lowercase().find(&needle.to_lowercase()) } else { haystack.find(needle) }
}

/// Char index of byte offset `at` in `text`.
fn char_index(text: &str, at: usize) -> i64 {
    text.get(..at).map_or(0, |prefix| prefix.chars().count() as i64)
}

/// Byte offset of char index `at` (`None` past the end).
fn byte_offset(text: &str, at: usize) -> Option<usize> {
    if text.is_ascii() {
        return (at <= text.len()).then_some(at);
    }
    text.char_indices().map(|(offset, _)| offset).chain(std::iter::once(text.len())).nth(at)
}

fn substring<'a>(a: &Args<'_, 'a>, start: usize, length: Option<usize>) -> Result<Value<'a>, Fault> {
    let text = a.text_value(0)?;
    let full = text.as_str();
    let begin = byte_offset(full, start).ok_or_else(|| a.fail("startIndex cannot be larger than length of string."))?;
    let end = match length {
        Some(length) => byte_offset(full, start + length)
            .ok_or_else(|| a.fail("Index and length must refer to a location within the string."))?,
        None => full.len(),
    };
    Ok(match text.borrowed() {
        Some(borrowed) => Value::str(&borrowed[begin..end]),
        None => Value::string(full[begin..end].to_owned()),
    })
}

/// A trimmed view of the receiver, borrowed when the receiver is.
fn trimmed<'a>(text: Text<'a>, trim: impl Fn(&str) -> &str) -> Value<'a> {
    match text.borrowed() {
        Some(borrowed) => Value::str(trim(borrowed)),
        None => {
            let result = trim(text.as_str());
            if result.len() == text.as_str().len() { Value::Str(text) } else { Value::string(result.to_owned()) }
        }
    }
}

/// The separators of `Split` / `TrimChars`: a string, or an array of strings (chars).
fn strings(a: &Args<'_, '_>, at: usize) -> Result<Vec<String>, Fault> {
    match a.get(at)? {
        Value::Str(text) => Ok(vec![text.as_str().to_owned()]),
        Value::Array(items) => items
            .borrow()
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(|| a.fail("separators must be strings")))
            .collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(a.fail(&format!("expected separators, found {}", other.type_name()))),
    }
}

fn split<'a>(a: &Args<'_, 'a>, options: i64) -> Result<Value<'a>, Fault> {
    let text = a.text(0)?;
    let separators = strings(a, 1)?;
    let separators: Vec<&str> = separators.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
    let mut parts = Vec::new();
    let mut rest = text;
    if separators.is_empty() {
        // .NET splits on white space when no separator is given.
        parts.extend(text.split(char::is_whitespace).map(str::to_owned));
    } else {
        loop {
            let next = separators.iter().filter_map(|sep| rest.find(sep).map(|at| (at, sep.len()))).min();
            match next {
                Some((at, len)) => {
                    parts.push(rest[..at].to_owned());
                    rest = &rest[at + len..];
                }
                None => {
                    parts.push(rest.to_owned());
                    break;
                }
            }
        }
    }
    let remove_empty = options & SPLIT_REMOVE_EMPTY_ENTRIES != 0;
    Ok(Value::array(parts.into_iter().filter(|p| !(remove_empty && p.is_empty())).map(Value::string).collect()))
}

/// `string.Format` with `{0}`, `{1:format}`, `{{`/`}}`.
pub(crate) fn format<'a>(a: &Args<'_, 'a>, template: &str, values: &[Value<'a>]) -> Result<String, Fault> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut spec = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => spec.push(c),
                        None => return Err(a.fail("Input string was not in a correct format.")),
                    }
                }
                let (index, format) = spec.split_once(':').map_or((spec.as_str(), None), |(i, f)| (i, Some(f)));
                let index = index.split(',').next().unwrap_or("").trim();
                let value = index
                    .parse::<usize>()
                    .ok()
                    .and_then(|index| values.get(index))
                    .ok_or_else(|| a.fail("Index (zero based) must be greater than or equal to zero and less than the size of the argument list."))?;
                match (format, value) {
                    (Some(format), Value::Int(v)) => {
                        out.push_str(&super::convert::format_int(*v, format).unwrap_or_else(|| v.to_string()))
                    }
                    (Some(format), Value::Double(v)) => {
                        out.push_str(&super::convert::format_number(*v, format).unwrap_or_else(|| v.to_string()))
                    }
                    (Some(format), Value::DateTime(d)) => out.push_str(&super::time::format_datetime(d, format)),
                    _ => value.write_display(&mut out),
                }
            }
            '}' => return Err(a.fail("Input string was not in a correct format.")),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn pad<'a>(a: &Args<'_, 'a>, left: bool) -> Result<Value<'a>, Fault> {
    let text = a.text(0)?;
    let width = a.index(1)?;
    let fill = if a.len() > 2 { a.text(2)?.chars().next().unwrap_or(' ') } else { ' ' };
    let count = text.chars().count();
    if count >= width {
        return Ok(Value::Str(a.text_value(0)?));
    }
    let padding: String = std::iter::repeat_n(fill, width - count).collect();
    Ok(Value::string(if left { padding + text } else { text.to_owned() + &padding }))
}

pub(super) fn call<'a>(mut a: Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    use Builtin as B;
    let b = a.builtin;
    match b {
        B::StrContains | B::StrStartsWith | B::StrEndsWith => {
            a.arity(&[2])?;
            let (text, needle) = (a.text(0)?, a.text(1)?);
            Ok(Value::Bool(match b {
                B::StrContains => text.contains(needle),
                B::StrStartsWith => text.starts_with(needle),
                _ => text.ends_with(needle),
            }))
        }
        B::StrContainsComparison | B::StrStartsWithComparison | B::StrEndsWithComparison => {
            a.arity(&[3])?;
            let ignore = ignores_case(a.int(2)?);
            let (text, needle) = (a.text(0)?, a.text(1)?);
            let (text, needle) = if ignore {
                (text.to_lowercase(), needle.to_lowercase())
            } else {
                (text.to_owned(), needle.to_owned())
            };
            Ok(Value::Bool(match b {
                B::StrContainsComparison => text.contains(&needle),
                B::StrStartsWithComparison => text.starts_with(&needle),
                _ => text.ends_with(&needle),
            }))
        }
        B::StrIndexOf | B::StrLastIndexOf => {
            a.arity(&[2, 3])?;
            let text = a.text(0)?;
            let needle = match a.get(1)? {
                Value::Str(needle) => needle.as_str().to_owned(),
                _ => return Err(a.fail("expected a String")),
            };
            let ignore = a.len() == 3 && ignores_case(a.int(2)?);
            let at = if b == B::StrIndexOf {
                find(text, &needle, ignore)
            } else if ignore {
                text.to_lowercase().rfind(&needle.to_lowercase())
            } else {
                text.rfind(&needle)
            };
            Ok(Value::Int(at.map_or(-1, |at| char_index(text, at))))
        }
        B::StrReplace => {
            a.arity(&[3])?;
            let (text, from) = (a.text(0)?, a.text(1)?);
            if from.is_empty() {
                return Err(a.fail("String cannot be of zero length. (Parameter 'oldValue')"));
            }
            if !text.contains(from) {
                return Ok(Value::Str(a.text_value(0)?));
            }
            let to = a.opt_text(2)?.unwrap_or("");
            Ok(Value::string(text.replace(from, to)))
        }
        B::StrSplit => {
            a.arity(&[2])?;
            split(&a, 0)
        }
        B::StrSplitOptions => {
            a.arity(&[3])?;
            let options = a.int(2)?;
            split(&a, options)
        }
        B::StrSubstring => {
            a.arity(&[2])?;
            let start = a.index(1)?;
            substring(&a, start, None)
        }
        B::StrSubstringLength => {
            a.arity(&[3])?;
            let (start, length) = (a.index(1)?, a.index(2)?);
            substring(&a, start, Some(length))
        }
        B::StrToLower | B::StrToUpper => {
            a.arity(&[1])?;
            let text = a.text_value(0)?;
            let s = text.as_str();
            let unchanged = if b == B::StrToLower {
                !s.chars().any(char::is_uppercase)
            } else {
                !s.chars().any(char::is_lowercase)
            };
            if unchanged {
                return Ok(Value::Str(text));
            }
            Ok(Value::string(if b == B::StrToLower { s.to_lowercase() } else { s.to_uppercase() }))
        }
        B::StrTrim | B::StrTrimStart | B::StrTrimEnd => {
            a.arity(&[1, 2])?;
            let text = a.text_value(0)?;
            let chars: Vec<char> = if a.len() == 2 { strings(&a, 1)?.concat().chars().collect() } else { Vec::new() };
            let is_trimmed = |c: char| if chars.is_empty() { c.is_whitespace() } else { chars.contains(&c) };
            Ok(trimmed(text, |s| match b {
                B::StrTrimStart => s.trim_start_matches(is_trimmed),
                B::StrTrimEnd => s.trim_end_matches(is_trimmed),
                _ => s.trim_matches(is_trimmed),
            }))
        }
        B::StrTrimChars => {
            a.arity(&[2])?;
            let text = a.text_value(0)?;
            let chars: Vec<char> = strings(&a, 1)?.concat().chars().collect();
            Ok(trimmed(text, |s| s.trim_matches(|c| chars.contains(&c))))
        }
        B::StrPadLeft | B::StrPadRight => {
            a.arity(&[2, 3])?;
            pad(&a, b == B::StrPadLeft)
        }
        B::StrInsert => {
            a.arity(&[3])?;
            let (text, at, insert) = (a.text(0)?, a.index(1)?, a.text(2)?);
            let offset = byte_offset(text, at).ok_or_else(|| a.fail("Index was out of range."))?;
            Ok(Value::string(format!("{}{insert}{}", &text[..offset], &text[offset..])))
        }
        B::StrRemove => {
            a.arity(&[2, 3])?;
            let (text, start) = (a.text(0)?, a.index(1)?);
            let begin =
                byte_offset(text, start).ok_or_else(|| a.fail("startIndex must be less than length of string."))?;
            let end = if a.len() == 3 {
                byte_offset(text, start + a.index(2)?)
                    .ok_or_else(|| a.fail("Index and count must refer to a location within the string."))?
            } else {
                text.len()
            };
            Ok(Value::string(format!("{}{}", &text[..begin], &text[end..])))
        }
        B::StrIsNullOrEmpty | B::StrIsNullOrWhiteSpace => {
            a.arity(&[1])?;
            let text = a.opt_text(0)?;
            Ok(Value::Bool(match text {
                None => true,
                Some(text) if b == B::StrIsNullOrEmpty => text.is_empty(),
                Some(text) => text.trim().is_empty(),
            }))
        }
        B::StrJoin => {
            a.arity(&[2])?;
            let separator = a.opt_text(0)?.unwrap_or("").to_owned();
            let mut out = String::new();
            let mut first = true;
            let mut push = |value: &Value<'_>| {
                if !first {
                    out.push_str(&separator);
                }
                first = false;
                value.write_display(&mut out);
            };
            match a.get(1)? {
                Value::Array(items) => items.borrow().iter().for_each(&mut push),
                Value::Json(json) => json.with(|token| {
                    if let Some(serde_json::Value::Array(items)) = token {
                        for item in items {
                            push(&crate::policy::value::json::from_primitive(item));
                        }
                    }
                }),
                Value::Null => return Err(a.fail("Value cannot be null. (Parameter 'values')")),
                other => push(other),
            }
            Ok(Value::string(out))
        }
        B::StrFormat => {
            a.arity(&[2])?;
            let template = a.text(0)?.to_owned();
            let values = match a.take(1)? {
                Value::Array(items) => items.borrow().clone(),
                other => vec![other],
            };
            Ok(Value::string(format(&a, &template, &values)?))
        }
        B::StrConcat => {
            a.arity(&[1])?;
            match a.take(0)? {
                Value::Array(items) => Ok(crate::policy::value::concat(&items.borrow())),
                other => Ok(crate::policy::value::concat(&[other])),
            }
        }
        B::StrCompare | B::StrCompareComparison => {
            a.arity(&[2, 3])?;
            let ignore = a.len() == 3 && ignores_case(a.int(2)?);
            let (left, right) = (a.opt_text(0)?, a.opt_text(1)?);
            let ordering = match (left, right) {
                (Some(l), Some(r)) if ignore => l.to_lowercase().cmp(&r.to_lowercase()),
                (l, r) => l.cmp(&r),
            };
            Ok(Value::Int(ordering as i64))
        }
        B::StrToCharArray => {
            a.arity(&[1])?;
            Ok(Value::array(a.text(0)?.chars().map(|c| Value::string(c.to_string())).collect()))
        }
        _ => Err(a.fail("not a string method")),
    }
}
