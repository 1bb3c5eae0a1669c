//! Smaller limits over real sockets (issue 9, item 9): a WebSocket Ping flood is closed on
//! Tether connections (4007), on the demo server and on the echo server (1008); the demo
//! server drops a client that never answers its pings (PongWait); the echo server closes a
//! client that does not read what it asked for (1008) instead of buffering it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A failure guard only: every wait ends as soon as its event arrives.
const GUARD: Duration = Duration::from_secs(20);

/// How many pings the flooding peer sends at most.
const FLOOD: usize = 100_000;

/// A raw WebSocket client over TCP: the upgrade by hand, then frames written and read as
/// bytes, so nothing answers the server's pings and a reset of the write side cannot hide a
/// close frame that already arrived.
async fn raw_upgrade(addr: std::net::SocketAddr, subprotocol: Option<&str>) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let protocol = subprotocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tcp.read(&mut byte).await.unwrap(), 1, "upgrade answer cut");
        head.push(byte[0]);
        assert!(head.len() < 4096);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    tcp
}

/// A masked client frame.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads server frames until a close frame; returns its code (`None` if it had none) and
/// the opcodes seen before it. Panics if the connection ends without one.
async fn read_until_close(read: &mut (impl AsyncReadExt + Unpin)) -> (Option<u16>, Vec<u8>) {
    let mut seen = Vec::new();
    loop {
        let mut head = [0u8; 2];
        read.read_exact(&mut head)
            .await
            .expect("connection ended without a close frame");
        let opcode = head[0] & 0x0f;
        let len = match head[1] & 0x7f {
            126 => u64::from(read.read_u16().await.unwrap()),
            127 => read.read_u64().await.unwrap(),
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).unwrap()];
        read.read_exact(&mut payload).await.unwrap();
        if opcode == 0x8 {
            let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            return (code, seen);
        }
        seen.push(opcode);
    }
}

/// Sends up to [`FLOOD`] pings while reading; returns the close code the server sent and the
/// number of pongs before it.
async fn flood_until_closed(tcp: TcpStream) -> (Option<u16>, usize) {
    let (mut read, mut write) = tcp.into_split();
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        let mut batch = Vec::new();
        for i in 0..FLOOD {
            batch.extend(client_frame(0x9, &(i as u64).to_be_bytes()));
            if i % 256 == 255 || i == FLOOD - 1 {
                if write.write_all(&batch).await.is_err() {
                    break;
                }
                sent = i + 1;
                batch.clear();
            }
        }
        sent
    });
    let (code, seen) = tokio::time::timeout(GUARD, read_until_close(&mut read))
        .await
        .expect("the flood was not closed");
    drop(read);
    writer.abort();
    let pongs = seen.iter().filter(|&&op| op == 0xa).count();
    (code, pongs)
}

#[tokio::test]
async fn a_ping_flood_on_a_tether_connection_is_closed_with_4007() {
    use tether_tokio::server::{Server, ServerConfig};

    let (server, _events) = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let tcp = raw_upgrade(server.local_addr(), Some("tether.v1")).await;
    let (code, pongs) = flood_until_closed(tcp).await;
    assert_eq!(code, Some(4007));
    assert!(pongs <= tether_proto::connection::DEFAULT_MAX_PROBES as usize);
    server.shutdown(GUARD).await.unwrap();
}
