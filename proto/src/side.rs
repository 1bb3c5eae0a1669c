//! Who is who: the two ends of a connection, and which of them did something.

/// Which end of the WebSocket an endpoint is (spec/protocol.md §1). It decides who sends
/// HELLO and the parity of the stream ids it opens (§3.2); it says nothing about who sends
/// HTTP requests: both ends do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Side {
    /// Opened the WebSocket; sends HELLO; opens odd stream ids.
    Client,
    /// Accepted the WebSocket; answers with WELCOME; opens even stream ids.
    Server,
}

/// Which end ended a connection or a stream, or caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Initiator {
    /// This end: the embedder asked, or the machine detected a fault and acted.
    Local,
    /// The other end: it sent a close frame or a RESET, or its transport went away.
    Peer,
}
