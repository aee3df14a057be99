//! The `portcullis` command line as users type it: options after the verb, and output piped into
//! a reader that leaves early (`portcullis ctl status | head`), which must end the command quietly.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::os::fd::{FromRawFd as _, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use portcullis_tests::{Gateway, GatewayOptions, bins};

/// A pipe whose read end is already closed: every write to it fails with EPIPE, as once `head`
/// has printed its lines and exited.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 succeeded, so both descriptors are open and nothing else owns them.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

/// Runs `portcullis ARGS…` with stdout into a closed pipe.
fn into_closed_pipe(args: &[&str]) -> Output {
    Command::new(bins::portcullis()).args(args).stdout(closed_pipe()).output().expect("run portcullis")
}

/// Exited as a command whose reader left should: status 0 (or killed by SIGPIPE), nothing on
/// stderr (no panic, no "Broken pipe").
fn assert_quiet(args: &[&str], output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let by_sigpipe = std::os::unix::process::ExitStatusExt::signal(&output.status) == Some(libc::SIGPIPE);
    assert!(output.status.success() || by_sigpipe, "{args:?} into a closed pipe: {:?}\n{stderr}", output.status);
    assert!(stderr.is_empty(), "{args:?} into a closed pipe wrote to stderr:\n{stderr}");
}

fn quickstart() -> PathBuf {
    bins::repo_root().join("examples/quickstart")
}

#[test]
fn ctl_takes_its_options_after_the_verb_and_stops_quietly_when_the_reader_leaves() {
    // The command line does not depend on the data plane's I/O backend; epoll runs everywhere.
    let gateway = Gateway::start(GatewayOptions::new("epoll"));
    let data = gateway.data();
    let data = data.to_str().unwrap();

    let after = Command::new(bins::portcullis()).args(["ctl", "status", "--data-dir", data]).output().unwrap();
    assert!(after.status.success(), "ctl status --data-dir: {}", String::from_utf8_lossy(&after.stderr));
    assert!(String::from_utf8_lossy(&after.stdout).contains("generation"));
    let json = Command::new(bins::portcullis()).args(["ctl", "status", "--data-dir", data, "--json"]).output().unwrap();
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    let status: serde_json::Value = serde_json::from_slice(&json.stdout).expect("ctl status --json prints JSON");
    let before = gateway.status();
    assert_eq!(status["generation"], before["generation"], "the same gateway, before or after the verb");
    assert_eq!(status["dataplane"]["io_backend"], "epoll");
    let xdp = Command::new(bins::portcullis()).args(["ctl", "xdp", "status", "--json", "--data-dir", data]).output();
    let xdp = xdp.unwrap();
    assert!(xdp.status.success(), "ctl xdp status --data-dir: {}", String::from_utf8_lossy(&xdp.stderr));

    for args in [
        &["ctl", "--data-dir", data, "status"][..],
        &["ctl", "status", "--json", "--data-dir", data],
        &["ctl", "xdp", "status", "--data-dir", data],
        &["ctl", "xdp", "status", "--json", "--data-dir", data],
    ] {
        assert_quiet(args, &into_closed_pipe(args));
    }
}

#[test]
fn ctl_data_dir_after_the_verb_is_accepted_without_a_gateway_too() {
    let dir = portcullis_tests::TempDir::new("ctlafter");
    let output = Command::new(bins::portcullis()).args(["ctl", "status", "--data-dir"]).arg(dir.path()).output();
    let output = output.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Parsed (no usage error); it fails only because nothing runs there.
    assert!(stderr.contains("portcullis up") && !stderr.contains("unexpected argument"), "{stderr}");
}

#[test]
fn policy_and_config_commands_stop_quietly_when_the_reader_leaves() {
    let config = quickstart();
    let policy = config.join("apis/echo/policy.xml");
    let (config, policy) = (config.to_str().unwrap(), policy.to_str().unwrap());
    for args in [
        &["policy", "check", policy][..],
        &["policy", "explain", policy, "--config", config],
        &["config", "check", "--config", config],
    ] {
        let printed = Command::new(bins::portcullis()).args(args).output().unwrap();
        assert!(printed.status.success(), "{args:?}: {}", String::from_utf8_lossy(&printed.stderr));
        assert!(!printed.stdout.is_empty(), "{args:?} prints its result");
        assert_quiet(args, &into_closed_pipe(args));
    }
}
