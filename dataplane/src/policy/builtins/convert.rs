//! Parsing and conversion: `int.Parse`, `Convert`, `Math`, `Encoding.UTF8`, `WebUtility`, `Uri`.

use base64::Engine as _;
use portcullis_contract::program::{Builtin, NARROW_CHECKED};

use super::Args;
use crate::http::url::{self, Coding};
use crate::policy::error::Fault;
use crate::policy::value::{Value, format_double};

/// `int.ToString(format)`: `D<n>`, `X<n>`/`x<n>`, `N<n>`, `F<n>`, `G`.
pub(crate) fn format_int(value: i64, format: &str) -> Option<String> {
    let (kind, digits) = format.split_at(format.len().min(1));
    let digits: usize = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    Some(match kind {
        "" | "G" | "g" => value.to_string(),
        "D" | "d" => {
            let text = format!("{:0>digits$}", value.unsigned_abs());
            if value < 0 { format!("-{text}") } else { text }
        }
        "X" => format!("{value:0>digits$X}"),
        "x" => format!("{value:0>digits$x}"),
        "N" | "n" | "F" | "f" => {
            return format_number(value as f64, &format!("{kind}{}", if format.len() > 1 { &format[1..] } else { "" }));
        }
        _ => return None,
    })
}

/// `double.ToString(format)`: `F<n>`, `N<n>` (with group separators), `G`/`R`.
pub(crate) fn format_number(value: f64, format: &str) -> Option<String> {
    let (kind, digits) = format.split_at(format.len().min(1));
    let parsed: Option<usize> = if digits.is_empty() { None } else { Some(digits.parse().ok()?) };
    Some(match kind {
        "" | "G" | "g" | "R" | "r" => {
            let mut out = String::new();
            format_double(value, &mut out);
            out
        }
        "F" | "f" => format!("{value:.prec$}", prec = parsed.unwrap_or(2)),
        "N" | "n" => {
            let text = format!("{:.prec$}", value.abs(), prec = parsed.unwrap_or(2));
            let (whole, fraction) = text.split_once('.').map_or((text.as_str(), None), |(w, f)| (w, Some(f)));
            let mut grouped = String::new();
            for (at, c) in whole.chars().enumerate() {
                if at > 0 && (whole.len() - at) % 3 == 0 {
                    grouped.push(',');
                }
                grouped.push(c);
            }
            let sign = if value < 0.0 { "-" } else { "" };
            match fraction {
                Some(fraction) => format!("{sign}{grouped}.{fraction}"),
                None => format!("{sign}{grouped}"),
            }
        }
        _ => return None,
    })
}

fn parse_int(a: &Args<'_, '_>, text: &str) -> Result<i64, Fault> {
    let value: i64 = text.trim().parse().map_err(|_| a.fail("Input string was not in a correct format."))?;
    i32::try_from(value).map(i64::from).or(if matches!(a.builtin, Builtin::IntParse) {
        Ok(value)
    } else {
        Err(a.fail("Value was either too large or too small for an Int32."))
    })
}

/// `WebUtility.UrlEncode` / `UrlDecode` are the form coding (`+` is a space, `~` is escaped);
/// `Uri.EscapeDataString` / `UnescapeDataString` are RFC 3986's.
fn coding_of(builtin: Builtin) -> Coding {
    match builtin {
        Builtin::WebUtilityUrlEncode | Builtin::WebUtilityUrlDecode => Coding::Form,
        _ => Coding::Rfc3986,
    }
}

fn html_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html_decode(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

pub(super) fn call<'a>(a: Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    use Builtin as B;
    let b = a.builtin;
    match b {
        B::IntParse => {
            a.arity(&[1])?;
            parse_int(&a, a.text(0)?).map(Value::Int)
        }
        B::IntTryParse => {
            a.arity(&[1])?;
            Ok(a.opt_text(0)?
                .and_then(|text| text.trim().parse::<i32>().ok())
                .map_or(Value::Null, |v| Value::Int(i64::from(v))))
        }
        B::DoubleParse => {
            a.arity(&[1])?;
            a.text(0)?
                .trim()
                .parse::<f64>()
                .map(Value::Double)
                .map_err(|_| a.fail("Input string was not in a correct format."))
        }
        B::BoolParse => {
            a.arity(&[1])?;
            let text = a.text(0)?.trim();
            if text.eq_ignore_ascii_case("true") {
                Ok(Value::Bool(true))
            } else if text.eq_ignore_ascii_case("false") {
                Ok(Value::Bool(false))
            } else {
                Err(a.fail("String was not recognized as a valid Boolean."))
            }
        }
        B::ConvertToInt32 => {
            a.arity(&[1])?;
            match a.get(0)? {
                Value::Null => Ok(Value::Int(0)),
                Value::Int(v) => i32::try_from(*v)
                    .map(|v| Value::Int(i64::from(v)))
                    .map_err(|_| a.fail("Value was either too large or too small for an Int32.")),
                // Convert rounds half to even, unlike a cast.
                Value::Double(v) => {
                    let rounded = v.round_ties_even();
                    if rounded.abs() <= f64::from(i32::MAX) {
                        Ok(Value::Int(rounded as i64))
                    } else {
                        Err(a.fail("Value was either too large or too small for an Int32."))
                    }
                }
                Value::Bool(v) => Ok(Value::Int(i64::from(*v))),
                Value::Str(text) => parse_int(&a, text.as_str()).map(Value::Int),
                other => Err(a.fail(&format!("cannot convert {}", other.type_name()))),
            }
        }
        B::ConvertToDouble => {
            a.arity(&[1])?;
            match a.get(0)? {
                Value::Null => Ok(Value::Double(0.0)),
                Value::Bool(v) => Ok(Value::Double(if *v { 1.0 } else { 0.0 })),
                Value::Str(text) => text
                    .as_str()
                    .trim()
                    .parse()
                    .map(Value::Double)
                    .map_err(|_| a.fail("Input string was not in a correct format.")),
                other => other
                    .as_f64()
                    .map(Value::Double)
                    .ok_or_else(|| a.fail(&format!("cannot convert {}", other.type_name()))),
            }
        }
        B::ConvertToBoolean => {
            a.arity(&[1])?;
            match a.get(0)? {
                Value::Null => Ok(Value::Bool(false)),
                Value::Bool(v) => Ok(Value::Bool(*v)),
                Value::Str(text) if text.as_str().trim().eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
                Value::Str(text) if text.as_str().trim().eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
                other => other
                    .as_f64()
                    .map(|v| Value::Bool(v != 0.0))
                    .ok_or_else(|| a.fail("String was not recognized as a valid Boolean.")),
            }
        }
        B::ConvertToString => {
            a.arity(&[1])?;
            Ok(match a.get(0)? {
                Value::Null => Value::str(""),
                Value::Str(text) => Value::Str(text.clone()),
                other => {
                    let mut out = String::new();
                    other.write_display(&mut out);
                    Value::string(out)
                }
            })
        }
        B::ConvertToBase64String => {
            a.arity(&[1])?;
            Ok(Value::string(base64::engine::general_purpose::STANDARD.encode(a.bytes(0)?)))
        }
        B::ConvertFromBase64String => {
            a.arity(&[1])?;
            let text: String = a.text(0)?.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(|bytes| Value::Bytes(bytes.into()))
                .map_err(|_| a.fail("The input is not a valid Base-64 string."))
        }
        B::MathMin | B::MathMax => {
            a.arity(&[2])?;
            match (a.get(0)?, a.get(1)?) {
                (Value::Int(x), Value::Int(y)) => Ok(Value::Int(if b == B::MathMin { *x.min(y) } else { *x.max(y) })),
                _ => {
                    let (x, y) = (a.number(0)?, a.number(1)?);
                    Ok(Value::Double(if b == B::MathMin { x.min(y) } else { x.max(y) }))
                }
            }
        }
        B::MathAbs => {
            a.arity(&[1])?;
            match a.get(0)? {
                Value::Int(x) => x
                    .checked_abs()
                    .map(Value::Int)
                    .ok_or_else(|| a.fail("Negating the minimum value of a twos complement number is invalid.")),
                _ => Ok(Value::Double(a.number(0)?.abs())),
            }
        }
        B::MathRound | B::MathFloor | B::MathCeiling => {
            a.arity(&[1, 2])?;
            if let Value::Int(x) = a.get(0)? {
                return Ok(Value::Int(*x));
            }
            let x = a.number(0)?;
            Ok(Value::Double(match b {
                B::MathFloor => x.floor(),
                B::MathCeiling => x.ceil(),
                _ if a.len() == 2 => {
                    let scale = 10f64.powi(a.int(1)?.clamp(0, 15) as i32);
                    (x * scale).round_ties_even() / scale
                }
                _ => x.round_ties_even(),
            }))
        }
        B::Utf8GetBytes => {
            a.arity(&[1])?;
            Ok(Value::Bytes(a.text(0)?.as_bytes().into()))
        }
        B::Utf8GetString => {
            a.arity(&[1])?;
            Ok(Value::string(String::from_utf8_lossy(a.bytes(0)?).into_owned()))
        }
        B::WebUtilityUrlEncode | B::UriEscapeDataString => {
            a.arity(&[1])?;
            match a.opt_text(0)? {
                None if b == B::WebUtilityUrlEncode => Ok(Value::Null),
                None => Err(a.fail("Value cannot be null. (Parameter 'stringToEscape')")),
                Some(text) => Ok(Value::string(url::percent_encode(text.as_bytes(), coding_of(b)).to_string())),
            }
        }
        B::WebUtilityUrlDecode | B::UriUnescapeDataString => {
            a.arity(&[1])?;
            match a.opt_text(0)? {
                None if b == B::WebUtilityUrlDecode => Ok(Value::Null),
                None => Err(a.fail("Value cannot be null.")),
                Some(text) => Ok(Value::string(url::percent_decode_str(text.as_bytes(), coding_of(b)).into_owned())),
            }
        }
        B::WebUtilityHtmlEncode | B::WebUtilityHtmlDecode => {
            a.arity(&[1])?;
            match a.opt_text(0)? {
                None => Ok(Value::Null),
                Some(text) => {
                    Ok(Value::string(if b == B::WebUtilityHtmlEncode { html_encode(text) } else { html_decode(text) }))
                }
            }
        }
        B::BitConverterToString => {
            a.arity(&[1])?;
            let hex: Vec<String> = a.bytes(0)?.iter().map(|b| format!("{b:02X}")).collect();
            Ok(Value::string(hex.join("-")))
        }
        B::BitConverterToInt32 => {
            a.arity(&[2])?;
            let bytes = a.bytes(0)?;
            let start = a.int(1)?;
            let word = usize::try_from(start)
                .ok()
                .and_then(|start| bytes.get(start..start.checked_add(4)?))
                .and_then(|word| <[u8; 4]>::try_from(word).ok())
                .ok_or_else(|| a.fail("Index was out of range: startIndex + 4 passes the end of the array."))?;
            Ok(Value::Int(i64::from(i32::from_le_bytes(word))))
        }
        B::BytesFromArray => {
            a.arity(&[1])?;
            let Value::Array(items) = a.receiver()? else { return Err(a.fail("expected an array")) };
            let bytes: Option<Vec<u8>> = items
                .borrow()
                .iter()
                .map(|item| match item {
                    Value::Int(v) => u8::try_from(*v).ok(),
                    _ => None,
                })
                .collect();
            let bytes = bytes.ok_or_else(|| a.fail("Value was either too large or too small for an unsigned byte."))?;
            Ok(Value::Bytes(bytes.into()))
        }
        _ => Err(a.fail("not a conversion")),
    }
}

/// The bitwise operators, the shifts and the narrowing integer conversions.
pub(super) fn bits<'a>(a: Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    use Builtin as B;
    if a.builtin == B::BitNot {
        a.arity(&[1])?;
        return Ok(Value::Int(!a.int(0)?));
    }
    a.arity(&[2])?;
    if let (Value::Bool(x), Value::Bool(y)) = (a.get(0)?, a.get(1)?) {
        return match a.builtin {
            B::BitAnd => Ok(Value::Bool(*x & *y)),
            B::BitOr => Ok(Value::Bool(*x | *y)),
            B::BitXor => Ok(Value::Bool(*x ^ *y)),
            _ => Err(a.fail("expected integers")),
        };
    }
    let x = a.int(0)?;
    let y = a.int(1)?;
    // A value within `int`'s range is a C# `int` (32-bit, the count mod 32); a larger one a `long`.
    let int = i32::try_from(x).ok();
    Ok(Value::Int(match a.builtin {
        B::BitAnd => x & y,
        B::BitOr => x | y,
        B::BitXor => x ^ y,
        B::ShiftLeft => match int {
            Some(x) => i64::from(x.wrapping_shl((y & 31) as u32)),
            None => x.wrapping_shl((y & 63) as u32),
        },
        B::ShiftRight => match int {
            Some(x) => i64::from(x.wrapping_shr((y & 31) as u32)),
            None => x.wrapping_shr((y & 63) as u32),
        },
        _ => return narrow(&a, x, y),
    }))
}

/// `(short)x` keeps the low 16 bits, sign-extended; `Convert.ToInt16(x)` fails out of range.
fn narrow<'a>(a: &Args<'_, 'a>, x: i64, kind: i64) -> Result<Value<'a>, Fault> {
    let checked = kind & NARROW_CHECKED != 0;
    let (narrowed, name) = match kind & !NARROW_CHECKED {
        0 => (i64::from(x as i8), "a signed byte"),
        1 => (i64::from(x as u8), "an unsigned byte"),
        2 => (i64::from(x as i16), "an Int16"),
        3 => (i64::from(x as u16), "a UInt16"),
        4 => (i64::from(x as u32), "a UInt32"),
        _ => return Err(a.fail("unknown integer type")),
    };
    if checked && narrowed != x {
        return Err(a.fail(&format!("Value was either too large or too small for {name}.")));
    }
    Ok(Value::Int(narrowed))
}
