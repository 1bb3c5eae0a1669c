//! Helpers shared by the tests that run the `tether` binary as a process.
#![allow(dead_code)] // each test file uses its own subset

use std::process::Stdio;
use std::time::Duration;

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
