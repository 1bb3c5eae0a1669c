//! Helpers shared by the subcommands.

use std::time::Duration;

/// Parses a human duration such as `500ms`, `2s` or `1m 30s`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 2s, 1m)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A tokio runtime for a subcommand.
/// Runs a subcommand's future on a new multi-threaded tokio runtime; a runtime that cannot
/// start is reported and fails the command.
pub(crate) fn block_on(
    run: impl std::future::Future<Output = std::process::ExitCode>,
) -> std::process::ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Parses a size in bytes, greater than zero: a number, optionally followed by KiB, MiB or
/// GiB (or K, M, G, same meaning), e.g. `65536`, `512KiB`, `64MiB`.
pub(crate) fn parse_byte_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} (examples: 65536, 512KiB, 64MiB)"
            ))
        }
    };
    let n: usize = digits
        .parse()
        .map_err(|e| format!("{e} (examples: 65536, 512KiB, 64MiB)"))?;
    match n.checked_mul(1 << shift) {
        Some(0) => Err("must be greater than zero".into()),
        Some(n) => Ok(n),
        None => Err("too large".into()),
    }
}

/// Parses a size in bytes, greater than zero.
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be greater than zero".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}: expected a number of bytes, e.g. 1048576")),
    }
}

/// Serves `metrics` at `http://ADDR/metrics` when `--metrics ADDR` was given, and says where.
pub(crate) async fn serve_metrics(
    addr: Option<std::net::SocketAddr>,
    metrics: tether_tokio::metrics::Metrics,
) -> Result<Option<tether_tokio::metrics::MetricsServer>, std::process::ExitCode> {
    let Some(addr) = addr else { return Ok(None) };
    match tether_tokio::metrics::MetricsServer::bind(addr, metrics).await {
        Ok(server) => {
            println!("metrics on http://{}/metrics", server.local_addr());
            Ok(Some(server))
        }
        Err(e) => {
            eprintln!("error: cannot serve metrics on {addr}: {e}");
            Err(std::process::ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_byte_size;

    #[test]
    fn byte_sizes_take_binary_units() {
        assert_eq!(parse_byte_size("65536"), Ok(65536));
        assert_eq!(parse_byte_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_byte_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_byte_size("2g"), Ok(2 << 30));
        assert!(parse_byte_size("0MiB").is_err());
        assert!(
            parse_byte_size("64MB").is_err(),
            "decimal units are not guessed"
        );
        assert!(parse_byte_size("MiB").is_err());
        assert!(parse_byte_size("99999999999999999999G").is_err());
    }
}
