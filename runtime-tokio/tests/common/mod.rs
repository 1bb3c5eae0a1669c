//! Helpers shared by the tests: running the `tether` binary as a process, and running one
//! test in a process of its own.
#![allow(dead_code)] // each test file uses its own subset

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tether_proto::connection::Config;
use tether_proto::streams::StreamsConfig;

use tokio::process::{Child, Command};

/// How long any single expectation may take before the test fails.
pub const GUARD: Duration = Duration::from_secs(15);

/// Starts `tether ARGS` with stdout piped and stderr as given.
pub fn tether(args: &[&str], stderr: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tether")
}

/// Sends SIGTERM to a running child.
pub fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The variable that tells a re-executed test binary which test is the one it runs alone.
const ALONE: &str = "TETHER_TEST_ALONE";

/// For a test that measures the whole process (its peak resident memory): `cargo test` runs
/// the tests of a binary as threads of one process, so the test re-executes its own binary
/// with `--exact name` and runs the measured part there, with no other test beside it.
///
/// Returns `true` in that child, where the caller runs the measured part; in the test
/// runner's process it runs the child, checks that the child ran exactly that one test and
/// passed, and returns `false`.
pub fn in_a_process_of_its_own(name: &str) -> bool {
    if std::env::var_os(ALONE).is_some_and(|v| v == name) {
        return true;
    }
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(ALONE, name)
        .stdin(Stdio::null())
        .output()
        .expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("--- {name}, in a process of its own ---\n{stdout}{stderr}---");
    assert!(
        output.status.success(),
        "{name} failed in its own process ({})",
        output.status
    );
    assert!(
        stdout.contains("test result: ok. 1 passed;"),
        "the child process did not run {name}"
    );
    false
}

/// A protocol config whose receive windows never grow, and how far the writer of a body
/// sent in `chunk`-byte chunks can then be ahead of its reader. A window grows when its
/// reader consumes it within two round trips (spec/protocol.md §10.3.1), which a fast
/// reader may do on a loaded machine; a test that checks the bound the windows set fixes
/// them (growth has its own test, window_growth.rs).
///
/// The bound: the stream's window (in flight, or received and not yet read: credit comes
/// back only as the reader reads, §10.3), the sender's queue for the stream (it takes more
/// only while the queue is below its send buffer), the chunk pulled from the body last,
/// and the DATA frame the reader took (its credit already sent back) but has not counted.
pub fn fixed_windows(chunk: usize) -> (Arc<Config>, u64) {
    let streams = StreamsConfig {
        max_stream_window: 0,
        max_connection_window: 0,
        ..StreamsConfig::default()
    };
    let max_ahead = u64::from(streams.initial_stream_window)
        + streams.max_send_buffer as u64
        + chunk as u64
        + u64::from(tether_proto::Limits::default().max_frame_payload);
    let config = Config::builder().streams(streams).build().unwrap();
    (Arc::new(config), max_ahead)
}
