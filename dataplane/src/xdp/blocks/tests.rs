use std::net::IpAddr;

use super::*;

fn prefix(text: &str) -> IpPrefix {
    IpPrefix::parse(text).unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn block(until_unix_ms: Option<u64>, origin: BlockOrigin) -> Block {
    Block { until_unix_ms, origin }
}

#[test]
fn covers_expires_and_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("portcullis-blocks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("blocks.json");
    let mut blocks = Blocks::default();
    blocks.insert(prefix("10.0.0.0/8"), block(None, BlockOrigin::Operator)).unwrap();
    blocks.insert(prefix("192.0.2.7"), block(Some(2_000), BlockOrigin::RateLimit)).unwrap();
    blocks.insert(prefix("192.0.2.8"), block(Some(500), BlockOrigin::RateLimit)).unwrap();
    let lookup = BlockLookup::new(blocks.iter());
    assert!(lookup.is_blocked(ip("10.9.9.9"), 1_000));
    assert!(lookup.is_blocked(ip("192.0.2.7"), 1_000));
    assert!(!lookup.is_blocked(ip("192.0.2.8"), 1_000));
    assert!(blocks.is_dirty());
    blocks.persist(&path).unwrap();
    assert!(!blocks.is_dirty());

    let restored = Blocks::restore(&path, 1_000).unwrap();
    assert_eq!(restored.len(), 2, "the expired block is not restored");
    let lookup = BlockLookup::new(restored.iter());
    assert_eq!(lookup.covering(ip("192.0.2.7"), 1_000).unwrap().1.origin, BlockOrigin::RateLimit);

    let mut restored = restored;
    assert_eq!(restored.expire(3_000), vec![prefix("192.0.2.7")]);
    assert!(restored.remove(&prefix("10.0.0.0/8")));
    assert!(restored.is_empty());
    assert!(Blocks::restore(&dir.join("missing.json"), 0).unwrap().is_empty());
    std::fs::write(&path, "{").unwrap();
    assert!(matches!(Blocks::restore(&path, 0), Err(BlockError::Restore { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_save_is_taken_once_and_retaken_after_a_failure() {
    let mut blocks = Blocks::default();
    assert!(blocks.take_unsaved().is_none(), "nothing changed");
    blocks.insert(prefix("192.0.2.1"), block(None, BlockOrigin::Operator)).unwrap();
    let bytes = blocks.take_unsaved().expect("changed");
    assert!(String::from_utf8(bytes).unwrap().contains("192.0.2.1"));
    assert!(blocks.take_unsaved().is_none(), "taken");
    let missing = std::env::temp_dir().join(format!("portcullis-no-such-dir-{}", std::process::id())).join("b.json");
    assert!(matches!(write_file(&missing, b"[]"), Err(BlockError::Persist { .. })));
    blocks.mark_unsaved();
    assert!(blocks.persist(&missing).is_err());
    assert!(blocks.is_dirty(), "a failed save is retried at the next one");
}

#[test]
fn lookups_find_v4_v6_and_mapped_sources_by_prefix() {
    let mut blocks = Blocks::default();
    blocks.insert(prefix("198.51.100.0/24"), block(None, BlockOrigin::Operator)).unwrap();
    blocks.insert(prefix("2001:db8:bad::/48"), block(Some(5_000), BlockOrigin::Operator)).unwrap();
    blocks.insert(prefix("2001:db8:bad::7"), block(Some(9_000), BlockOrigin::RateLimit)).unwrap();
    blocks.insert(prefix("0.0.0.0/0"), block(Some(100), BlockOrigin::Operator)).unwrap();
    let lookup = BlockLookup::new(blocks.iter());
    assert_eq!(lookup.len(), 4);
    assert!(lookup.is_blocked(ip("198.51.100.200"), 1_000));
    assert!(lookup.is_blocked(ip("::ffff:198.51.100.200"), 1_000), "a v4-mapped v6 address is its v4 address");
    assert!(!lookup.is_blocked(ip("198.51.101.1"), 1_000), "outside the /24; the /0 has expired");
    assert!(lookup.is_blocked(ip("198.51.101.1"), 50), "the /0 before it expired");
    assert!(lookup.is_blocked(ip("2001:db8:bad:ffff::1"), 1_000));
    assert!(!lookup.is_blocked(ip("2001:db8:bae::1"), 1_000));
    let (covering, lasting) = lookup.covering(ip("2001:db8:bad::7"), 1_000).unwrap();
    assert_eq!(
        (covering, lasting.until_unix_ms),
        (prefix("2001:db8:bad::7"), Some(9_000)),
        "the longest-lasting block"
    );
    assert!(lookup.covering(ip("2001:db8:bad::7"), 9_500).is_none(), "both expired by 9.5 s");
    assert!(BlockLookup::default().covering(ip("192.0.2.1"), 0).is_none());
}
