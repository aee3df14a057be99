//! The `[xdp]` section of `gateway.toml`: source allow/deny lists, per-source buckets for the
//! XDP pre-filter, and the per-IP request limit whose offenders the data plane blocks at the NIC.
//!
//! It compiles into `contract::xdp::XdpRules`; a global `ip-filter` that every operation runs adds
//! its prefixes to the same lists ([`add_global_ip_filters`]).

use portcullis_contract::model::Api;
use portcullis_contract::program::{IpFilter, IpRange, Op, Program, ScopeKind, Site};
use portcullis_contract::xdp::{
    self, BLOCK_SECONDS_DEFAULT, BLOCK_SECONDS_MAX, IpPrefix, RATE_MAX_PER_SECOND, XdpRules,
};
use serde::Deserialize;
use toml::Spanned;

use super::{Diagnostics, SourceFile};

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const INTERFACE_NAME_BYTES_MAX: usize = 15;

/// `[xdp]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct XdpTable {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
    syn_rate: Option<Spanned<u32>>,
    syn_burst: Option<Spanned<u32>>,
    packet_rate: Option<Spanned<u32>>,
    packet_burst: Option<Spanned<u32>>,
    per_ip_requests_per_second: Option<Spanned<u32>>,
    per_ip_burst: Option<Spanned<u32>>,
    block_seconds: Option<Spanned<u32>>,
    #[serde(default)]
    interfaces: Vec<Spanned<String>>,
}

/// Compiles the table; problems go to `diagnostics` with their position.
pub(crate) fn compile(table: &XdpTable, source: &SourceFile, diagnostics: &mut Diagnostics) -> XdpRules {
    let mut rules = XdpRules {
        allow: prefixes(&table.allow, source, diagnostics),
        deny: prefixes(&table.deny, source, diagnostics),
        block_seconds: BLOCK_SECONDS_DEFAULT,
        ..XdpRules::default()
    };
    let mut rate = |rate: &Option<Spanned<u32>>, burst: &Option<Spanned<u32>>, name: &str| -> (u32, u32) {
        let Some(rate) = rate else {
            if let Some(burst) = burst {
                diagnostics.push(source.error(burst.span(), format!("a burst needs its rate: set {name}")));
            }
            return (0, 0);
        };
        let value = *rate.get_ref();
        if value > RATE_MAX_PER_SECOND {
            diagnostics.push(source.error(rate.span(), format!("at most {RATE_MAX_PER_SECOND} per second")));
        }
        // The default burst is one second's worth.
        let burst_value = burst.as_ref().map_or(value, |b| *b.get_ref());
        if value > 0 && burst_value == 0 {
            if let Some(burst) = burst {
                diagnostics.push(source.error(burst.span(), "a burst must be at least 1"));
            }
        }
        (value, burst_value)
    };
    (rules.syn_rate_per_second, rules.syn_burst) = rate(&table.syn_rate, &table.syn_burst, "syn-rate");
    (rules.packet_rate_per_second, rules.packet_burst) = rate(&table.packet_rate, &table.packet_burst, "packet-rate");
    (rules.per_ip_requests_per_second, rules.per_ip_burst) =
        rate(&table.per_ip_requests_per_second, &table.per_ip_burst, "per-ip-requests-per-second");
    if let Some(block) = &table.block_seconds {
        if *block.get_ref() == 0 || *block.get_ref() > BLOCK_SECONDS_MAX {
            diagnostics.push(source.error(block.span(), format!("block-seconds must be 1 to {BLOCK_SECONDS_MAX}")));
        } else {
            rules.block_seconds = *block.get_ref();
        }
    }
    for name in &table.interfaces {
        let text = name.get_ref();
        if text.is_empty() || text.len() > INTERFACE_NAME_BYTES_MAX || text.contains(['/', ' ', '\0']) {
            diagnostics.push(source.error(name.span(), "not an interface name (1 to 15 bytes, no '/' or space)"));
        } else {
            rules.interfaces.push(text.clone());
        }
    }
    rules
}

fn prefixes(entries: &[Spanned<String>], source: &SourceFile, diagnostics: &mut Diagnostics) -> Vec<IpPrefix> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        match xdp::parse_entry(entry.get_ref()) {
            Ok(prefixes) => out.extend(prefixes),
            Err(error) => diagnostics.push(source.error(entry.span(), error.to_string())),
        }
    }
    out.sort_unstable();
    out.dedup();
    let per_family = |v4: bool| out.iter().filter(|p| p.addr.is_ipv4() == v4).count();
    if per_family(true) > xdp::PREFIXES_MAX || per_family(false) > xdp::PREFIXES_MAX {
        if let Some(first) = entries.first() {
            diagnostics.push(source.error(first.span(), format!("at most {} prefixes per family", xdp::PREFIXES_MAX)));
        }
    }
    out
}

/// Adds the global `ip-filter`s to the XDP lists, so that what they refuse dies at the NIC.
///
/// A global filter counts only where it is unconditional for every request: a top-level statement
/// of the global inbound section that every operation's merged inbound section runs (an API or
/// operation without `<base/>` in its inbound section drops it, and then so does XDP). `forbid`
/// ranges join the deny list. An `allow` filter becomes the allowlist only when `[xdp] allow` is
/// empty and it is the only global allow filter (XDP cannot intersect lists; the data plane still
/// enforces every filter at L7). The pre-filter may pass what L7 refuses, never the reverse.
pub(crate) fn add_global_ip_filters(rules: &mut XdpRules, apis: &[Api], programs: &[Program]) {
    let mut universal: Option<Vec<&IpFilter>> = None;
    for operation in apis.iter().flat_map(|api| &api.operations) {
        let Some(program) = programs.get(operation.policies.inbound as usize) else { return };
        let here = global_filters(program);
        universal = Some(match universal {
            None => here,
            Some(seen) => seen.into_iter().filter(|filter| here.contains(filter)).collect(),
        });
    }
    let filters = universal.unwrap_or_default();
    for filter in filters.iter().filter(|filter| !filter.allow) {
        rules.deny.extend(filter.ranges.iter().flat_map(range_prefixes));
    }
    let allows: Vec<&&IpFilter> = filters.iter().filter(|filter| filter.allow).collect();
    if let [only] = allows.as_slice() {
        if rules.allow.is_empty() {
            rules.allow = only.ranges.iter().flat_map(range_prefixes).collect();
        }
    }
    rules.deny.sort_unstable();
    rules.deny.dedup();
}

/// The top-level global `ip-filter`s a program runs.
fn global_filters(program: &Program) -> Vec<&IpFilter> {
    let mut filters = Vec::new();
    let mut site: Option<&Site> = None;
    for op in &program.ops {
        match *op {
            Op::Site(index) => site = program.sites.get(index as usize),
            Op::IpFilter(index) => {
                let top_level_global =
                    site.is_some_and(|site| site.scope == ScopeKind::Global && !site.path.contains('/'));
                if let (true, Some(filter)) = (top_level_global, program.ip_filters.get(index as usize)) {
                    filters.push(filter);
                }
            }
            _ => {}
        }
    }
    filters
}

/// The prefixes covering an inclusive range of the policy engine (IPv4 as IPv4-mapped IPv6).
fn range_prefixes(range: &IpRange) -> Vec<IpPrefix> {
    let address = |bits: u128| {
        let v6 = std::net::Ipv6Addr::from(bits);
        v6.to_ipv4_mapped().map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4)
    };
    xdp::prefixes_of_range(address(range.first), address(range.last)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_text(text: &str) -> (XdpRules, Diagnostics) {
        #[derive(Deserialize)]
        struct File {
            xdp: XdpTable,
        }
        let file: File = toml::from_str(text).unwrap();
        let source = SourceFile::new("gateway.toml", text);
        let mut diagnostics = Diagnostics::default();
        (compile(&file.xdp, &source, &mut diagnostics), diagnostics)
    }

    #[test]
    fn compiles_lists_rates_and_ranges() {
        let (rules, diagnostics) = compile_text(
            "[xdp]\nallow = [\"10.0.0.0/8\", \"10.0.0.1-10.0.0.2\"]\ndeny = [\"2001:db8::/32\"]\n\
             syn-rate = 100\npacket-rate = 1000\npacket-burst = 50\nper-ip-requests-per-second = 5\nblock-seconds = 30\n",
        );
        assert!(diagnostics.is_empty(), "{diagnostics}");
        assert_eq!(rules.allow.len(), 3);
        assert_eq!(rules.deny[0].to_string(), "2001:db8::/32");
        assert_eq!((rules.syn_rate_per_second, rules.syn_burst), (100, 100));
        assert_eq!((rules.packet_rate_per_second, rules.packet_burst), (1000, 50));
        assert_eq!((rules.per_ip_requests_per_second, rules.per_ip_burst, rules.block_seconds), (5, 5, 30));
    }

    #[test]
    fn reports_each_problem_with_its_position() {
        let (_, diagnostics) = compile_text(
            "[xdp]\ndeny = [\"10.0.0.1/8\", \"nope\"]\nsyn-burst = 3\nblock-seconds = 0\ninterfaces = [\"a/b\"]\n",
        );
        let text = diagnostics.to_string();
        assert_eq!(diagnostics.len(), 5, "{text}");
        assert!(text.contains("host bits set; did you mean 10.0.0.0/8"), "{text}");
        assert!(text.contains("a burst needs its rate: set syn-rate"), "{text}");
        assert!(text.contains("gateway.toml:2:"), "{text}");
    }
}
