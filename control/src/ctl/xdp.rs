//! `portcullis ctl xdp status`, `ctl block IP|CIDR [--for DURATION]`, `ctl unblock IP|CIDR`.

use std::fmt::Write as _;

use portcullis_contract::layout::DataDir;
use portcullis_contract::xdp::{BLOCK_SECONDS_MAX, IpPrefix};
use serde_json::Value;

use super::{CtlError, request, succeeded};
use crate::admin::Request;

/// `ctl xdp status`: a table, or the data plane's status object as JSON.
pub fn status(data_dir: &DataDir, json: bool) -> Result<String, CtlError> {
    let response = succeeded(request(data_dir, &Request::XdpStatus)?)?;
    let status = response.xdp.unwrap_or(Value::Null);
    if json {
        return serde_json::to_string_pretty(&status).map_err(|error| CtlError::Protocol(error.to_string()));
    }
    Ok(render(&status))
}

/// `ctl block`: `blocked 192.0.2.0/24 for 600 s` (or `until unblocked`).
pub fn block(data_dir: &DataDir, target: &str, duration: Option<&str>) -> Result<String, CtlError> {
    let prefix = IpPrefix::parse(target).map_err(|error| CtlError::Failed(error.to_string()))?;
    let seconds = duration.map(parse_duration).transpose().map_err(CtlError::Failed)?;
    succeeded(request(data_dir, &Request::Block { prefix: prefix.to_string(), seconds })?)?;
    Ok(match seconds {
        Some(seconds) => format!("blocked {prefix} for {seconds} s"),
        None => format!("blocked {prefix} until unblocked"),
    })
}

/// `ctl unblock`: `unblocked 192.0.2.0/24` or `192.0.2.0/24 was not blocked`.
pub fn unblock(data_dir: &DataDir, target: &str) -> Result<String, CtlError> {
    let prefix = IpPrefix::parse(target).map_err(|error| CtlError::Failed(error.to_string()))?;
    let response = succeeded(request(data_dir, &Request::Unblock { prefix: prefix.to_string() })?)?;
    let removed = response.xdp.as_ref().and_then(|v| v.get("removed")).and_then(Value::as_bool).unwrap_or(false);
    Ok(if removed { format!("unblocked {prefix}") } else { format!("{prefix} was not blocked") })
}

/// `90`, `90s`, `15m`, `2h`, `1d` → seconds (1 s to one day).
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let multiplier = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("{text:?} is not a duration: use e.g. 90s, 15m, 2h or 1d")),
    };
    let seconds = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?} is not a duration: use e.g. 90s, 15m, 2h or 1d"))?;
    if seconds == 0 || seconds > u64::from(BLOCK_SECONDS_MAX) {
        return Err(format!("a block lasts 1 s to {BLOCK_SECONDS_MAX} s (1d)"));
    }
    Ok(seconds)
}

/// The status object as text.
fn render(status: &Value) -> String {
    let mut out = String::new();
    let kernel = status.get("kernel").and_then(Value::as_bool).unwrap_or(false);
    if kernel {
        let _ = writeln!(out, "XDP pre-filter: loaded (rules of generation {})", status["generation"]);
    } else {
        let reason = status.get("reason").and_then(Value::as_str).unwrap_or("unknown");
        let _ = writeln!(out, "XDP pre-filter: off ({reason}); rules enforced in user space");
    }
    match status.get("interfaces").and_then(Value::as_array) {
        Some(interfaces) if !interfaces.is_empty() => {
            for interface in interfaces {
                let _ = writeln!(out, "  interface {} ({})", text(&interface["name"]), text(&interface["mode"]));
            }
        }
        Some(_) => out.push_str("  attached to no interface\n"),
        None => {}
    }
    if let Some(maps) = status.get("maps") {
        let _ = writeln!(
            out,
            "maps: allow {} prefixes, deny {}, blocked {}, buckets {}",
            maps["allow"], maps["deny"], maps["blocked"], maps["buckets"]
        );
    }
    for (title, key) in
        [("packets by reason (XDP)", "counters"), ("connections refused in user space", "user_space_refusals")]
    {
        if let Some(counters) = status.get(key).and_then(Value::as_object) {
            let _ = writeln!(out, "{title}:");
            for (reason, count) in counters {
                let _ = writeln!(out, "  {reason:<18} {count}");
            }
        }
    }
    let blocks = status.get("blocks").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let _ = writeln!(out, "blocks: {}", blocks.len());
    for block in blocks {
        let until = block["until_unix_ms"]
            .as_u64()
            .map_or_else(|| "until unblocked".to_owned(), |ms| format!("until unix ms {ms}"));
        let _ = writeln!(out, "  {} {} ({})", text(&block["prefix"]), until, text(&block["origin"]));
    }
    out.trim_end().to_owned()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("2h"), Ok(7_200));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn renders_status() {
        let status = serde_json::json!({
            "kernel": true, "generation": 3,
            "interfaces": [{"name": "veth0", "mode": "native"}],
            "maps": {"allow": 0, "deny": 2, "blocked": 1, "buckets": 5},
            "counters": {"passed": 10, "denylisted": 4},
            "user_space_refusals": {"denylisted": 0},
            "blocks": [{"prefix": "192.0.2.7/32", "until_unix_ms": null, "origin": "operator"}],
        });
        let text = render(&status);
        assert!(text.contains("interface veth0 (native)"), "{text}");
        assert!(text.contains("maps: allow 0 prefixes, deny 2, blocked 1, buckets 5"), "{text}");
        assert!(text.contains("denylisted         4"), "{text}");
        assert!(text.contains("192.0.2.7/32 until unblocked (operator)"), "{text}");
        let off = render(&serde_json::json!({"kernel": false, "reason": "disabled by --xdp=off"}));
        assert!(off.starts_with("XDP pre-filter: off (disabled by --xdp=off)"), "{off}");
    }
}
