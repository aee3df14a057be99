use super::*;

fn plane(blocks_path: &std::path::Path) -> XdpPlane {
    let options = XdpOptions { disabled: true, interfaces: Vec::new() };
    XdpPlane::start(&options, blocks_path.to_path_buf(), &[]).unwrap()
}

#[test]
fn a_limited_source_is_refused_then_blocked_and_the_block_is_saved() {
    let dir = std::env::temp_dir().join(format!("portcullis-xdp-plane-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("xdp-blocks.json");
    let _ = std::fs::remove_file(&path);
    let plane = plane(&path);
    let rules = XdpRules { per_ip_requests_per_second: 1, per_ip_burst: 2, block_seconds: 30, ..XdpRules::default() };
    plane.apply(1, &rules);
    let peer: IpAddr = "192.0.2.9".parse().unwrap();
    assert_eq!(plane.limit_request(peer, &rules), None);
    assert_eq!(plane.limit_request(peer, &rules), None);
    assert_eq!(plane.limit_request(peer, &rules), Some(30));
    assert!(plane.admit(peer), "in the table only once xdp-sync applied it");
    assert_eq!(plane.limit_request(peer, &rules), Some(30), "the bucket refuses meanwhile");
    assert!(plane.limit_request("192.0.2.10".parse().unwrap(), &rules).is_none(), "another source is served");

    plane.apply_pending_blocks();
    assert!(!plane.admit(peer), "blocked at accept");
    assert_eq!(plane.limit_request(peer, &rules), Some(30));
    let status = plane.status();
    assert_eq!(status["blocks"].as_array().map(Vec::len), Some(1), "one block for the run of refusals: {status}");
    assert_eq!(status["blocks"][0]["origin"], "rate-limit");
    assert_eq!(status["user_space_refusals"]["blocked"], 1);
    plane.save_blocks();

    let restarted = self::plane(&path);
    assert!(!restarted.admit(peer), "the block survives a restart");
    assert!(restarted.unblock(IpPrefix::parse("192.0.2.9").unwrap()).unwrap());
    assert!(restarted.admit(peer), "unblock publishes at once");
    let _ = std::fs::remove_dir_all(&dir);
}
