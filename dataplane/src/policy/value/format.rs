//! `ToString()` of numbers, dates, time spans and GUIDs, as .NET's invariant culture writes them.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike as _, Timelike as _, Utc};

use super::TICKS_PER_SECOND;

/// `double.ToString()` (shortest round-trip; scientific notation past 1E+15 and below 1E-05,
/// exponent with a sign and at least two digits, as .NET Core 3.0+).
pub fn format_double(value: f64, out: &mut String) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "∞" } else { "-∞" });
    } else if value != 0.0 && (value.abs() >= 1e15 || value.abs() < 1e-5) {
        let scientific = format!("{value:e}");
        let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
        let (sign, digits) = match exponent.strip_prefix('-') {
            Some(digits) => ('-', digits),
            None => ('+', exponent),
        };
        let _ = write!(out, "{mantissa}E{sign}{digits:0>2}");
    } else {
        let _ = write!(out, "{value}");
    }
}

/// `DateTime.ToString()` in the invariant culture: `MM/dd/yyyy HH:mm:ss`.
pub fn write_datetime_default(value: &DateTime<Utc>, out: &mut String) {
    let _ = write!(
        out,
        "{:02}/{:02}/{:04} {:02}:{:02}:{:02}",
        value.month(),
        value.day(),
        value.year(),
        value.hour(),
        value.minute(),
        value.second()
    );
}

/// `TimeSpan.ToString()`: `[-][d.]hh:mm:ss[.fffffff]`.
pub(crate) fn write_timespan(ticks: i64, out: &mut String) {
    if ticks < 0 {
        out.push('-');
    }
    let ticks = ticks.unsigned_abs();
    let per_second = TICKS_PER_SECOND as u64;
    let seconds = ticks / per_second;
    let fraction = ticks % per_second;
    let days = seconds / 86_400;
    if days > 0 {
        let _ = write!(out, "{days}.");
    }
    let _ = write!(out, "{:02}:{:02}:{:02}", seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    if fraction > 0 {
        let _ = write!(out, ".{fraction:07}");
    }
}

/// `Guid.ToString()`: lower-case `D` format.
pub(crate) fn write_guid(value: u128, out: &mut String) {
    let hex = format!("{value:032x}");
    for (at, c) in hex.chars().enumerate() {
        if matches!(at, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(c);
    }
}
