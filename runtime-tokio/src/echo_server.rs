//! A plain WebSocket echo server built on the [channel bindings](crate::bindings): text is
//! echoed as text, binary as binary, fragmented messages are reassembled before the echo, and
//! invalid UTF-8 (1007), protocol violations (1002) and oversize messages (1009) close the
//! connection with their RFC 6455 codes. Used for WebSocket conformance runs of the runtime.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::bindings::{Binding, BindingConfig, BindingServer, ConfigError, Raw};
use crate::upgrade::AllowedOrigins;

/// Default max message size of the echo server: 16 MiB, enough for the usual conformance cases.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// The binding options of the echo server: any origin, buffers of 16 messages, the given limit.
pub fn config(max_message_size: usize) -> Result<BindingConfig, ConfigError> {
    BindingConfig::builder()
        .max_message_size(max_message_size)
        .allowed_origins(AllowedOrigins::Any)
        .send_buffer(16)
        .recv_buffer(16)
        .write_timeout(Duration::from_secs(30))
        .build()
}

/// Starts an echo server on `addr`.
pub async fn start(addr: SocketAddr, config: BindingConfig) -> io::Result<BindingServer> {
    BindingServer::bind::<Raw, _, _>(addr, config, echo).await
}

async fn echo(mut binding: Binding<Raw>) {
    while let Some(data) = binding.receiver.recv().await {
        if binding.sender.send(data).await.is_err() {
            break;
        }
    }
}
