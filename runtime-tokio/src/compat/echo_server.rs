//! A plain WebSocket echo server built on the [channel bindings](crate::compat::bindings): text is
//! echoed as text, binary as binary, fragmented messages are reassembled before the echo, and
//! invalid UTF-8 (1007), protocol violations (1002) and oversize messages (1009) close the
//! connection with their RFC 6455 codes. Used for WebSocket conformance runs of the runtime.
//!
//! Memory: a connection holds at most one message being read, one being written, one in each
//! channel and one in the handler (each at most `max_message_size`), and across all clients
//! the bytes of messages being read (counted as they arrive, frame headers included),
//! received messages not yet echoed and echoes being written stay within the buffer budget
//! (default 64 MiB, at least `max_message_size`). A complete message that finds no room in
//! it closes its connection with 1013 (try again later); while the budget is full the server
//! stops reading (TCP holds the clients back), and a connection holding part of a message
//! that finds no room for the budget wait (10 s) is closed with 1013, so clients each
//! sending half a message cannot wait on each other for ever; an idle client is not closed
//! for it. A client that does not read is dropped when its write times out (10 s). A client
//! sending more than 1,000 pings per 10 s is closed with 1008. Not covered: tungstenite keeps
//! the read and write buffers a large message grew to until the connection closes (see
//! `upgrade::ws_config`), so a client that was echoed one 16 MiB message and then stays idle
//! still costs about twice that, outside the budget.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::compat::bindings::{
    Binding, BindingConfig, BindingConfigBuilder, BindingServer, BindingsConfigError, Raw,
};
use crate::transport::upgrade::AllowedOrigins;

/// Default max message size of the echo server: 16 MiB, enough for the usual conformance cases.
pub const DEFAULT_ECHO_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Default time a write to a client may take before the client is dropped as a slow reader.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The binding options of the echo server: any origin, buffers of one message, one message per
/// write burst, the default buffer budget and budget wait, the given message limit.
pub fn builder(max_message_size: usize) -> BindingConfigBuilder {
    BindingConfig::builder()
        .max_message_size(max_message_size)
        .max_buffered_bytes(max_message_size)
        .allowed_origins(AllowedOrigins::Any)
        .send_buffer(1)
        .recv_buffer(1)
        .write_timeout(DEFAULT_WRITE_TIMEOUT)
}

/// [`builder`] with its defaults, built.
pub fn config(max_message_size: usize) -> Result<BindingConfig, BindingsConfigError> {
    builder(max_message_size).build()
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
