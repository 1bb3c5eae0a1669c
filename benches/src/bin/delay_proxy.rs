//! A TCP relay that makes loopback look like a long path: every byte is written out a
//! fixed delay after it was read, in each direction, and at most `--in-flight-kib` bytes
//! are on their way per direction at once (what a path of that bandwidth-delay product,
//! or a TCP window of that size, lets through). Used by `benches/long_path.sh` to compare
//! the receive-window growth of spec/protocol.md §10.3.1 with fixed windows, HTTP/1.1 and
//! h2 over a path of tens of milliseconds; not a network emulator (no loss, no jitter).
//!
//! ```sh
//! delay_proxy --listen 127.0.0.1:9001 --target 127.0.0.1:9000 --delay-ms 10
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A TCP relay that delays every byte by a fixed time each way (a long path over loopback).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to accept connections on.
    #[arg(long)]
    listen: SocketAddr,
    /// Address each accepted connection is relayed to.
    #[arg(long)]
    target: SocketAddr,
    /// One-way delay, in milliseconds (the round trip through the relay is twice this).
    #[arg(long, default_value_t = 10)]
    delay_ms: u64,
    /// Most bytes on their way per direction and connection, in KiB: the path's
    /// bandwidth-delay product (a reader of the relay sees at most this per delay).
    #[arg(long, default_value_t = 16 * 1024, value_parser = clap::value_parser!(u32).range(64..=4 * 1024 * 1024))]
    in_flight_kib: u32,
}

/// Bytes read at once.
const READ: usize = 64 * 1024;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen).await?;
    let delay = Duration::from_millis(args.delay_ms);
    let in_flight = args.in_flight_kib as usize * 1024;
    loop {
        let (inbound, _) = listener.accept().await?;
        let target = args.target;
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            tokio::join!(
                relay(ir, ow, delay, in_flight),
                relay(or, iw, delay, in_flight)
            );
        });
    }
}

/// One direction: read as the in-flight bound allows, write each chunk `delay` later.
async fn relay(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration, in_flight: usize) {
    let room = Arc::new(Semaphore::new(in_flight));
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>, OwnedSemaphorePermit)>();
    let reader = async move {
        loop {
            let Ok(permit) = room.clone().acquire_many_owned(READ as u32).await else {
                return;
            };
            let mut buf = vec![0; READ];
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.truncate(n);
                    let mut permit = permit;
                    // Keep only the room the chunk takes.
                    drop(permit.split(READ - n));
                    if tx.send((Instant::now() + delay, buf, permit)).is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk, permit)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            drop(permit);
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
