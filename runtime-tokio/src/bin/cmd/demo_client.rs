//! `tether demo-client`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use tether_tokio::compat::engine::{
    CloseInfo, Control, Engine, EngineConfig, EngineConnection, EngineError, Handler, Message,
    WsError,
};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::common::{block_on, parse_duration, shutdown_signal};

/// Arguments of `tether demo-client` (documented on the subcommand).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// WebSocket URL of the demo server.
    #[arg(default_value = "ws://127.0.0.1:8080/")]
    url: String,
    /// Text of the echo request sent after each (re)connection.
    #[arg(long, default_value = "Hello")]
    echo: String,
    /// Time allowed for dial + handshake of each connection attempt.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    open_timeout: Duration,
    /// Longest delay between reconnect attempts.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    max_reconnect_delay: Duration,
}

struct Printer {
    echo: String,
    opens: u64,
}

impl Handler for Printer {
    fn on_open(&mut self, conn: &EngineConnection, restarting: bool) -> Result<(), String> {
        self.opens += 1;
        eprintln!(
            "{}",
            if restarting {
                "reconnected"
            } else {
                "connected"
            }
        );
        let n = self.opens;
        let subscribe = serde_json::json!({
            "type": "subscribe_request", "reqId": format!("sub-{n}"), "topic": "heartbeat"
        });
        let echo = serde_json::json!({
            "type": "echo_request", "reqId": format!("echo-{n}"), "echo": self.echo
        });
        for request in [subscribe, echo] {
            conn.send_text(request.to_string())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn on_message(&mut self, _: &EngineConnection, message: Message) -> Control {
        let mut out = std::io::stdout().lock();
        let written = match &message {
            Message::Text(t) => writeln!(out, "{}", t.as_str()),
            Message::Binary(b) => writeln!(out, "<binary message of {} bytes>", b.len()),
            _ => Ok(()),
        };
        // stdout closed (e.g. piped into `head`): nothing left to do.
        if written.and_then(|()| out.flush()).is_err() {
            return Control::Exit;
        }
        Control::Continue
    }

    fn on_read_error(&mut self, _: &EngineConnection, error: &WsError) -> Control {
        eprintln!("read error: {error}");
        Control::Restart
    }

    fn on_close(&mut self, _: &EngineConnection, info: &CloseInfo) -> Option<CloseFrame> {
        match &info.frame {
            Some(f) => eprintln!(
                "closed by {:?}: {} {}",
                info.initiator,
                u16::from(f.code),
                f.reason
            ),
            None => eprintln!("closed by {:?}", info.initiator),
        }
        None
    }

    fn on_close_error(&mut self, error: &WsError) {
        eprintln!("close error: {error}");
    }

    fn on_restart_error(&mut self, error: &EngineError, attempt: u32) -> Control {
        eprintln!("reconnect attempt {attempt} failed: {error}");
        Control::Continue
    }
}

pub(crate) fn run(args: Args) -> ExitCode {
    block_on(async move {
        let mut config = EngineConfig::new(args.url.clone());
        config.open_timeout = args.open_timeout;
        config.backoff.max_delay = args.max_reconnect_delay;
        let handler = Printer {
            echo: args.echo,
            opens: 0,
        };
        let mut engine = match Engine::start(config, handler).await {
            Ok(engine) => engine,
            Err(e) => {
                eprintln!("error: cannot connect to {}: {e}", args.url);
                return ExitCode::FAILURE;
            }
        };
        tokio::select! {
            () = shutdown_signal() => {
                if let Err(e) = engine.stop(Duration::from_secs(5)).await {
                    eprintln!("warning: {e}");
                }
            }
            () = engine.closed() => {}
        }
        ExitCode::SUCCESS
    })
}
