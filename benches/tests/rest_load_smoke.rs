//! `rest_load` as a user runs it, cut small: every measurement runs once over real
//! loopback sockets, and the JSON carries the keys issue 11 asks for (and the floors'),
//! as numbers. It checks that the load run works, not how fast anything is.

use std::process::Command;

#[test]
fn rest_load_runs_every_measurement_and_prints_the_keys() {
    let out = Command::new(env!("CARGO_BIN_EXE_rest_load"))
        .args([
            "--json",
            "--rounds",
            "1",
            "--requests",
            "256",
            "--body-mib",
            "2",
        ])
        .output()
        .expect("rest_load starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rest_load failed:\n{stderr}");
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    for key in [
        "small_c1_vs_http1",
        "small_c128_vs_h2",
        "large_vs_http1",
        "large_vs_h2",
        "hol_p99_ms",
        "floor_ws_rtt_us",
        "floor_large_mibps",
        "large_vs_floor",
        "floor_large_vs_http1",
    ] {
        let value = json[key].as_f64();
        assert!(
            value.is_some_and(|v| v.is_finite() && v > 0.0),
            "{key} = {} in {json}",
            json[key]
        );
    }
    // Linux names its congestion control; elsewhere the key is null.
    if cfg!(target_os = "linux") {
        assert!(json["tcp_congestion_control"].is_string(), "{json}");
    }
    assert!(stderr.contains("TCP congestion control"), "{stderr}");
}
