//! More of APIM's allowed .NET members, for real-world documents: `new DateTime(..)`,
//! `Guid.ToByteArray()`, `Split` with a count, `Single`/`Min`/`Max`/`Average`, `JToken.Type` and
//! `HasValues`, `Uri`, `Random`, sized arrays, element assignment and `StringBuilder.Append`.

use chrono::{NaiveDate, TimeZone as _, Utc};
use portcullis_contract::program::{Builtin, SPLIT_REMOVE_EMPTY_ENTRIES};
use serde_json::Value as Json;

use super::Args;
use crate::policy::error::Fault;
use crate::policy::value::Value;
use crate::policy::vm::Machine;

/// The most elements `new T[n]` may allocate: bounds memory per expression.
pub(crate) const ARRAY_NEW_ELEMENTS_MAX: i64 = 65_536;

pub(crate) fn call<'a>(m: &mut Machine<'_, 'a>, mut a: Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    use Builtin as B;
    match a.builtin {
        B::DateTimeNew => {
            a.arity(&[7])?;
            date_time_new(&a)
        }
        B::GuidToByteArray => {
            a.arity(&[1])?;
            match a.receiver()? {
                Value::Guid(value) => Ok(Value::Bytes(guid_bytes(*value).to_vec().into())),
                other => Err(a.fail(&format!("ToByteArray is not defined on {}", other.type_name()))),
            }
        }
        B::GuidHashCode => {
            a.arity(&[1])?;
            match a.receiver()? {
                Value::Guid(value) => {
                    let bytes = guid_bytes(*value);
                    let word = |at: usize| i32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
                    Ok(Value::Int(i64::from(word(0) ^ word(4) ^ word(8) ^ word(12))))
                }
                other => Err(a.fail(&format!("GetHashCode is not defined on {}", other.type_name()))),
            }
        }
        B::StrSplitCount => {
            a.arity(&[4])?;
            split_count(&a)
        }
        B::SeqSingle | B::SeqSingleOrDefault | B::SeqMin | B::SeqMax | B::SeqAverage => {
            a.arity(&[1])?;
            let source = a.take(0)?;
            let items = m.elements(source)?;
            sequence(&a, items)
        }
        B::JTokenType => {
            a.arity(&[1])?;
            Ok(Value::Int(token_type(a.get(0)?)))
        }
        B::JTokenHasValues => {
            a.arity(&[1])?;
            Ok(Value::Bool(match a.receiver()? {
                Value::Json(json) => json.with(|token| match token {
                    Some(Json::Object(map)) => !map.is_empty(),
                    Some(Json::Array(items)) => !items.is_empty(),
                    _ => false,
                }),
                Value::JProperty(_) => true,
                _ => false,
            }))
        }
        B::UriNew => {
            a.arity(&[1])?;
            let text = a.text(0)?;
            let uri =
                parse_uri(text).ok_or_else(|| a.fail("Invalid URI: The format of the URI could not be determined."))?;
            Ok(Value::string(uri.absolute()))
        }
        B::UriPart => {
            a.arity(&[2])?;
            let text = a.text(0)?;
            let uri =
                parse_uri(text).ok_or_else(|| a.fail("Invalid URI: The format of the URI could not be determined."))?;
            uri_part(&a, &uri, a.int(1)?)
        }
        B::RandomNext => {
            a.arity(&[2])?;
            let (min, max) = (a.int(0)?, a.int(1)?);
            if min > max {
                return Err(a.fail("'minValue' cannot be greater than maxValue."));
            }
            let span = (max - min) as u64;
            Ok(Value::Int(if span == 0 { min } else { min + (random_u64(m) % span) as i64 }))
        }
        B::RandomNextDouble => {
            a.arity(&[0])?;
            Ok(Value::Double((random_u64(m) >> 11) as f64 / (1u64 << 53) as f64))
        }
        B::ArrayNew => {
            a.arity(&[2])?;
            let n = a.int(0)?;
            if !(0..=ARRAY_NEW_ELEMENTS_MAX).contains(&n) {
                return Err(a.fail("Arithmetic operation resulted in an overflow (array size out of range)."));
            }
            let default = a.take(1)?;
            Ok(Value::array(vec![default; n as usize]))
        }
        B::ElementSet => {
            a.arity(&[3])?;
            element_set(&mut a)
        }
        B::BuilderAppend => {
            a.arity(&[2])?;
            let mut text = String::new();
            a.get(1)?.write_display(&mut text);
            match a.receiver()? {
                Value::Array(items) => {
                    items.borrow_mut().push(Value::string(text));
                    Ok(a.take(0)?)
                }
                other => Err(a.fail(&format!("Append is not defined on {}", other.type_name()))),
            }
        }
        B::SeqOrderByKeys => {
            a.arity(&[2])?;
            let (items, keys) = (a.take(0)?, a.take(1)?);
            let (items, keys) = (m.elements(items)?, m.elements(keys)?);
            if items.len() != keys.len() {
                return Err(a.fail("keys and items differ in number"));
            }
            let mut pairs: Vec<(Value<'a>, Value<'a>)> = keys.into_iter().zip(items).collect();
            pairs.sort_by(|x, y| super::collections::sort_key_cmp(&x.0, &y.0));
            Ok(Value::array(pairs.into_iter().map(|(_, item)| item).collect()))
        }
        _ => Err(a.fail("not one of the added members")),
    }
}

fn date_time_new<'a>(a: &Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    let part = |at: usize| -> Result<u32, Fault> {
        u32::try_from(a.int(at)?)
            .map_err(|_| a.fail("Year, Month, and Day parameters describe an un-representable DateTime."))
    };
    let (year, month, day) = (part(0)?, part(1)?, part(2)?);
    let (hour, minute, second, milli) = (part(3)?, part(4)?, part(5)?, part(6)?);
    let date = i32::try_from(year)
        .ok()
        .filter(|year| (1..=9999).contains(year))
        .and_then(|year| NaiveDate::from_ymd_opt(year, month, day))
        .ok_or_else(|| a.fail("Year, Month, and Day parameters describe an un-representable DateTime."))?;
    let time = date
        .and_hms_milli_opt(hour, minute, second, milli)
        .filter(|_| milli < 1000)
        .ok_or_else(|| a.fail("Hour, Minute, and Second parameters describe an un-representable DateTime."))?;
    Ok(Value::DateTime(Utc.from_utc_datetime(&time)))
}

/// .NET's byte order of a GUID: the first three fields little-endian, the rest as written.
pub(crate) fn guid_bytes(value: u128) -> [u8; 16] {
    let b = value.to_be_bytes();
    [b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]
}

/// `s.Split(separators, count, options)`: at most `count` parts, the last holding the rest.
fn split_count<'a>(a: &Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    let text = a.text(0)?;
    let separators: Vec<String> = match a.get(1)? {
        Value::Str(s) => vec![s.as_str().to_owned()],
        Value::Array(items) => items.borrow().iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    let count = a.int(2)?;
    if count < 0 {
        return Err(a.fail("Count cannot be less than zero."));
    }
    let remove_empty = a.int(3)? & SPLIT_REMOVE_EMPTY_ENTRIES != 0;
    let separators: Vec<&str> = separators.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
    let mut parts: Vec<String> = Vec::new();
    let mut rest = text;
    while (parts.len() as i64) < count - 1 {
        let next = if separators.is_empty() {
            rest.char_indices().find(|(_, c)| c.is_whitespace()).map(|(at, c)| (at, c.len_utf8()))
        } else {
            separators.iter().filter_map(|sep| rest.find(sep).map(|at| (at, sep.len()))).min()
        };
        let Some((at, len)) = next else { break };
        if !(remove_empty && at == 0) {
            parts.push(rest[..at].to_owned());
        }
        rest = &rest[at + len..];
    }
    if count > 0 && !(remove_empty && rest.is_empty()) {
        parts.push(rest.to_owned());
    }
    Ok(Value::array(parts.into_iter().map(Value::string).collect()))
}

fn sequence<'a>(a: &Args<'_, 'a>, items: Vec<Value<'a>>) -> Result<Value<'a>, Fault> {
    use Builtin as B;
    let b = a.builtin;
    match b {
        B::SeqSingle | B::SeqSingleOrDefault => match items.len() {
            0 if b == B::SeqSingle => Err(a.fail("Sequence contains no elements")),
            0 => Ok(Value::Null),
            1 => Ok(items.into_iter().next().unwrap_or_default()),
            _ => Err(a.fail("Sequence contains more than one element")),
        },
        B::SeqAverage => {
            if items.is_empty() {
                return Err(a.fail("Sequence contains no elements"));
            }
            let mut sum = 0.0;
            for item in &items {
                sum += item.as_f64().ok_or_else(|| a.fail("Average needs numbers"))?;
            }
            Ok(Value::Double(sum / items.len() as f64))
        }
        _ => {
            let mut best: Option<Value<'a>> = None;
            for item in items {
                let better = match &best {
                    None => true,
                    Some(current) => {
                        let order = item.compare(current)?;
                        if b == B::SeqMin { order.is_lt() } else { order.is_gt() }
                    }
                };
                if better {
                    best = Some(item);
                }
            }
            best.ok_or_else(|| a.fail("Sequence contains no elements"))
        }
    }
}

/// Newtonsoft's `JTokenType` of a value read from JSON (primitives are plain values here).
fn token_type(value: &Value<'_>) -> i64 {
    let name = match value {
        Value::Json(json) => json.with(|token| match token {
            Some(Json::Object(_)) => "Object",
            Some(Json::Array(_)) => "Array",
            _ => "Null",
        }),
        Value::JProperty(_) => "Property",
        Value::Int(_) => "Integer",
        Value::Double(_) => "Float",
        Value::Str(_) => "String",
        Value::Bool(_) => "Boolean",
        Value::DateTime(_) => "Date",
        Value::Guid(_) => "Guid",
        Value::TimeSpan(_) => "TimeSpan",
        Value::Bytes(_) => "Bytes",
        _ => "Null",
    };
    portcullis_contract::program::JTOKEN_TYPES.iter().position(|n| *n == name).unwrap_or(0) as i64
}

/// An absolute URI, split as `System.Uri` reads it.
struct Uri<'t> {
    scheme: String,
    host: String,
    port: Option<u16>,
    path: &'t str,
    query: &'t str,
    fragment: &'t str,
    original: &'t str,
}

impl Uri<'_> {
    fn default_port(&self) -> i64 {
        match self.scheme.as_str() {
            "http" | "ws" => 80,
            "https" | "wss" => 443,
            "ftp" => 21,
            _ => -1,
        }
    }

    fn port(&self) -> i64 {
        self.port.map_or(self.default_port(), i64::from)
    }

    fn authority(&self) -> String {
        match self.port {
            Some(port) if i64::from(port) != self.default_port() => format!("{}:{port}", self.host),
            _ => self.host.clone(),
        }
    }

    fn absolute(&self) -> String {
        format!("{}://{}{}{}{}", self.scheme, self.authority(), self.path, self.query, self.fragment)
    }
}

/// Parses `scheme://host[:port][/path][?query][#fragment]`; `None` for anything else (a
/// relative reference fails in `new Uri(s)` as .NET's `UriFormatException`).
fn parse_uri(text: &str) -> Option<Uri<'_>> {
    let text = text.trim();
    let (scheme, rest) = text.split_once("://")?;
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
        return None;
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') && !port.contains(']') => {
            (host, Some(port.parse::<u16>().ok()?))
        }
        _ => (authority, None),
    };
    if host.is_empty() {
        return None;
    }
    let tail = &rest[authority_end..];
    let fragment_at = tail.find('#').unwrap_or(tail.len());
    let query_at = tail[..fragment_at].find('?').unwrap_or(fragment_at);
    let path = &tail[..query_at];
    Some(Uri {
        scheme: scheme.to_ascii_lowercase(),
        host: host.to_ascii_lowercase(),
        port,
        path: if path.is_empty() { "/" } else { path },
        query: &tail[query_at..fragment_at],
        fragment: &tail[fragment_at..],
        original: text,
    })
}

fn uri_part<'a>(a: &Args<'_, 'a>, uri: &Uri<'_>, part: i64) -> Result<Value<'a>, Fault> {
    let name = usize::try_from(part)
        .ok()
        .and_then(|part| portcullis_contract::program::URI_PARTS.get(part))
        .ok_or_else(|| a.fail("unknown Uri member"))?;
    Ok(match *name {
        "AbsoluteUri" => Value::string(uri.absolute()),
        "Scheme" => Value::string(uri.scheme.clone()),
        "Host" => Value::string(uri.host.clone()),
        "Port" => Value::Int(uri.port()),
        "AbsolutePath" => Value::string(uri.path.to_owned()),
        "Query" => Value::string(uri.query.to_owned()),
        "PathAndQuery" => Value::string(format!("{}{}", uri.path, uri.query)),
        "Fragment" => Value::string(uri.fragment.to_owned()),
        "Authority" => Value::string(uri.authority()),
        "Segments" => {
            let mut segments = Vec::new();
            let mut rest = uri.path;
            while !rest.is_empty() {
                let end = rest.find('/').map_or(rest.len(), |at| at + 1);
                segments.push(Value::string(rest[..end].to_owned()));
                rest = &rest[end..];
            }
            Value::array(segments)
        }
        _ => Value::string(uri.original.to_owned()),
    })
}

/// A random number from the OS (falling back to the request id mixed with the step count).
fn random_u64(m: &Machine<'_, '_>) -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => (m.view.request_id as u64) ^ (m.view.now.timestamp_nanos_opt().unwrap_or(0) as u64).rotate_left(17),
    }
}

/// `array[i] = v`, `list[i] = v`, `dict[key] = v`.
fn element_set<'a>(a: &mut Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    let value = a.take(2)?;
    match a.receiver()? {
        Value::Array(items) => {
            let index = a.index(1)?;
            let mut items = items.borrow_mut();
            let slot = items.get_mut(index).ok_or_else(|| a.fail("Index was outside the bounds of the array."))?;
            *slot = value;
            Ok(Value::Null)
        }
        Value::Dict(entries) => {
            let key = a.text_value(1)?;
            let mut entries = entries.borrow_mut();
            match entries.iter_mut().find(|(name, _)| name.as_ref() == key.as_str()) {
                Some((_, slot)) => *slot = value,
                None => entries.push((key.as_str().into(), value)),
            }
            Ok(Value::Null)
        }
        other => Err(a.fail(&format!("cannot assign an element of {}", other.type_name()))),
    }
}
