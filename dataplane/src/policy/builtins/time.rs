//! `DateTime`, `TimeSpan` and `Guid`. The clock is the view's (`View::now`): the VM reads none.

use chrono::{DateTime, Datelike as _, NaiveDateTime, TimeZone as _, Timelike as _, Utc};
use portcullis_contract::program::Builtin;

use super::Args;
use crate::policy::error::Fault;
use crate::policy::value::{TICKS_PER_MS, TICKS_PER_SECOND, Value};
use crate::policy::vm::Machine;

/// .NET ticks from 0001-01-01 to 1970-01-01.
const UNIX_EPOCH_TICKS: i64 = 621_355_968_000_000_000;

/// `DateTime.Ticks`.
pub(crate) fn ticks_of(date: &DateTime<Utc>) -> i64 {
    let micros = date.timestamp_micros();
    UNIX_EPOCH_TICKS.saturating_add(micros.saturating_mul(10))
}

/// The fraction of the second in 100 ns ticks: seven digits at most (chrono's leap-second
/// nanoseconds, 1e9 and above, have no .NET counterpart: they read as the last tick).
fn fraction_ticks(date: &DateTime<Utc>) -> u32 {
    (date.nanosecond() / 100).min(9_999_999)
}

/// `DateTime.ToString(format)` for the standard formats `o`, `s`, `u`, `r`, and custom
/// patterns built of `yyyy MM dd HH hh mm ss fff… tt` and literals.
pub(crate) fn format_datetime(date: &DateTime<Utc>, format: &str) -> String {
    match format {
        // Seven fraction digits (100 ns ticks), which chrono has no specifier for: its `%.7f` is
        // not one, and formatting with it fails (a panic in `to_string`).
        "o" | "O" => return format!("{}.{:07}Z", date.format("%Y-%m-%dT%H:%M:%S"), fraction_ticks(date)),
        "s" => return date.format("%Y-%m-%dT%H:%M:%S").to_string(),
        "u" => return date.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        "r" | "R" => return date.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        "d" => return date.format("%m/%d/%Y").to_string(),
        _ => {}
    }
    let chars: Vec<char> = format.chars().collect();
    let mut out = String::new();
    let mut at = 0;
    while let Some(&c) = chars.get(at) {
        let run = chars[at..].iter().take_while(|&&d| d == c).count();
        match c {
            'y' => out.push_str(&if run <= 2 {
                format!("{:02}", date.year() % 100)
            } else {
                format!("{:0run$}", date.year())
            }),
            'M' => out.push_str(&match run {
                1 => date.month().to_string(),
                2 => format!("{:02}", date.month()),
                3 => date.format("%b").to_string(),
                _ => date.format("%B").to_string(),
            }),
            'd' => out.push_str(&match run {
                1 => date.day().to_string(),
                2 => format!("{:02}", date.day()),
                3 => date.format("%a").to_string(),
                _ => date.format("%A").to_string(),
            }),
            'H' => out.push_str(&if run == 1 { date.hour().to_string() } else { format!("{:02}", date.hour()) }),
            'h' => {
                let hour = (date.hour() + 11) % 12 + 1;
                out.push_str(&if run == 1 { hour.to_string() } else { format!("{hour:02}") });
            }
            'm' => out.push_str(&if run == 1 { date.minute().to_string() } else { format!("{:02}", date.minute()) }),
            's' => out.push_str(&if run == 1 { date.second().to_string() } else { format!("{:02}", date.second()) }),
            'f' | 'F' => {
                let fraction = format!("{:07}", fraction_ticks(date));
                out.push_str(&fraction[..run.min(7)]);
            }
            't' => out.push_str(if date.hour() < 12 { "AM" } else { "PM" }),
            'K' | 'Z' if c == 'K' => out.push('Z'),
            '\'' | '"' => {
                let end = chars[at + 1..].iter().position(|&d| d == c).map_or(chars.len(), |p| at + 1 + p);
                out.extend(&chars[at + 1..end]);
                at = end + 1;
                continue;
            }
            '\\' => {
                if let Some(&next) = chars.get(at + 1) {
                    out.push(next);
                }
                at += 2;
                continue;
            }
            other => {
                for _ in 0..run {
                    out.push(other);
                }
            }
        }
        at += run;
    }
    out
}

/// `DateTime.Parse` (invariant culture): ISO 8601 / RFC 3339, RFC 1123, and `MM/dd/yyyy[ HH:mm:ss]`.
fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(date) = DateTime::parse_from_rfc3339(text) {
        return Some(date.with_timezone(&Utc));
    }
    if let Ok(date) = DateTime::parse_from_rfc2822(text) {
        return Some(date.with_timezone(&Utc));
    }
    for format in
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%m/%d/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%SZ"]
    {
        if let Ok(date) = NaiveDateTime::parse_from_str(text, format) {
            return Some(Utc.from_utc_datetime(&date));
        }
    }
    for format in ["%Y-%m-%d", "%m/%d/%Y"] {
        if let Ok(date) = chrono::NaiveDate::parse_from_str(text, format) {
            return date.and_hms_opt(0, 0, 0).map(|date| Utc.from_utc_datetime(&date));
        }
    }
    None
}

fn parse_guid(text: &str) -> Option<u128> {
    let hex: String = text
        .trim()
        .trim_matches(|c| c == '{' || c == '}' || c == '(' || c == ')')
        .chars()
        .filter(|&c| c != '-')
        .collect();
    if hex.len() != 32 {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok()
}

/// A random version-4 GUID (from the OS; falls back to the request id mixed with the clock).
fn new_guid(m: &Machine<'_, '_>) -> u128 {
    let mut bytes = [0u8; 16];
    let random = match getrandom::fill(&mut bytes) {
        Ok(()) => u128::from_be_bytes(bytes),
        Err(_) => m.view.request_id ^ (m.view.now.timestamp_nanos_opt().unwrap_or(0) as u128).rotate_left(64),
    };
    (random & !(0xF000u128 << 64) | (0x4000u128 << 64)) & !(0xC000u128 << 48) | (0x8000u128 << 48)
}

fn add<'a>(a: &Args<'_, 'a>, ticks_per_unit: i64) -> Result<Value<'a>, Fault> {
    let Value::DateTime(date) = *a.receiver()? else { return Err(a.fail("expected a DateTime")) };
    let ticks = (a.number(1)? * ticks_per_unit as f64).round();
    if !ticks.is_finite() || ticks.abs() > 3.2e18 {
        return Err(a.fail("The added or subtracted value results in an un-representable DateTime."));
    }
    date.checked_add_signed(chrono::Duration::microseconds(ticks as i64 / 10))
        .map(Value::DateTime)
        .ok_or_else(|| a.fail("The added or subtracted value results in an un-representable DateTime."))
}

fn span<'a>(a: &Args<'_, 'a>, ticks_per_unit: i64) -> Result<Value<'a>, Fault> {
    let ticks = (a.number(0)? * ticks_per_unit as f64).round();
    if !ticks.is_finite() || ticks.abs() > 9.2e18 {
        return Err(a.fail("TimeSpan overflowed because the duration is too long."));
    }
    Ok(Value::TimeSpan(ticks as i64))
}

pub(super) fn call<'a>(m: &mut Machine<'_, 'a>, a: Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    use Builtin as B;
    const MINUTE: i64 = 60 * TICKS_PER_SECOND;
    match a.builtin {
        B::DateTimeUtcNow | B::DateTimeNow => {
            a.arity(&[0])?;
            Ok(Value::DateTime(m.view.now))
        }
        B::DateTimeParse => {
            a.arity(&[1])?;
            parse_datetime(a.text(0)?)
                .map(Value::DateTime)
                .ok_or_else(|| a.fail("String was not recognized as a valid DateTime."))
        }
        B::DateTimeAddSeconds => add(&a, TICKS_PER_SECOND),
        B::DateTimeAddMinutes => add(&a, MINUTE),
        B::DateTimeAddHours => add(&a, 60 * MINUTE),
        B::DateTimeAddDays => add(&a, 24 * 60 * MINUTE),
        B::DateTimeAddMilliseconds => add(&a, TICKS_PER_MS),
        B::DateTimeSubtract => {
            a.arity(&[2])?;
            let left = a.receiver()?.clone();
            let right = a.get(1)?.clone();
            crate::policy::value::arith(crate::policy::value::Arith::Sub, left, right)
        }
        B::TimeSpanFromSeconds => span(&a, TICKS_PER_SECOND),
        B::TimeSpanFromMilliseconds => span(&a, TICKS_PER_MS),
        B::TimeSpanFromMinutes => span(&a, MINUTE),
        B::TimeSpanFromHours => span(&a, 60 * MINUTE),
        B::TimeSpanFromDays => span(&a, 24 * 60 * MINUTE),
        B::GuidNewGuid => {
            a.arity(&[0])?;
            Ok(Value::Guid(new_guid(m)))
        }
        B::GuidParse => {
            a.arity(&[1])?;
            parse_guid(a.text(0)?).map(Value::Guid).ok_or_else(|| a.fail("Unrecognized Guid format."))
        }
        _ => Err(a.fail("not a time method")),
    }
}
