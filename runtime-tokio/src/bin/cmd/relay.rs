//! A loopback TCP relay that can be cut or stalled on command: real transport faults for
//! demos and tests. `tether demo` cuts its client's TCP connection through one; the
//! integration tests include this file with `#[path]` (it is not part of the library API):
//! `Relay::start(server_addr)`, dial `relay.local_addr()` instead of the server, then
//! `relay.cut()` closes every relayed connection at once, `relay.stall_downstream(true)`
//! holds back the server's bytes.

// Shared by the binary and the tests, each of which uses a part of it.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Control {
    /// Bumped by every cut: pairs opened before it end.
    cuts: u64,
    /// Bytes from the upstream (server) to the client are held back.
    stall_downstream: bool,
    /// Bytes from the client to the upstream are held back.
    stall_upstream: bool,
}

/// A running relay; dropping it stops accepting and ends every relayed connection.
#[derive(Debug)]
pub struct Relay {
    local_addr: SocketAddr,
    control: watch::Sender<Control>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens on an ephemeral loopback port and relays every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Relay> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let local_addr = listener.local_addr()?;
        let (control, rx) = watch::channel(Control::default());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    pair(client, server, rx).await;
                });
            }
        });
        Ok(Relay {
            local_addr,
            control,
            task,
        })
    }

    /// The address to dial instead of the upstream.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Closes every relayed connection (both sockets); new connections are relayed again.
    pub fn cut(&self) {
        self.control.send_modify(|c| {
            c.cuts += 1;
            c.stall_downstream = false;
            c.stall_upstream = false;
        });
    }

    /// Stops (or resumes) forwarding from the upstream to clients: the clients' side of the
    /// connection goes silent while the sockets stay open, like a half-open TCP connection.
    pub fn stall_downstream(&self, stall: bool) {
        self.control.send_modify(|c| c.stall_downstream = stall);
    }

    /// Stops (or resumes) forwarding from clients to the upstream.
    pub fn stall_upstream(&self, stall: bool) {
        self.control.send_modify(|c| c.stall_upstream = stall);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn pair(client: TcpStream, server: TcpStream, mut control: watch::Receiver<Control>) {
    let cuts = control.borrow_and_update().cuts;
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, control.clone(), |c| c.stall_upstream);
    let down = pump(sr, cw, control.clone(), |c| c.stall_downstream);
    let cut = async {
        while control.changed().await.is_ok() {
            if control.borrow_and_update().cuts != cuts {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
        () = cut => {}
    }
    // Dropping the halves closes both sockets.
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut control: watch::Receiver<Control>,
    stalled: fn(&Control) -> bool,
) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while stalled(&control.borrow_and_update()) {
            if control.changed().await.is_err() {
                return Ok(());
            }
        }
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        // Stalled while reading: hold the bytes back until released (or cut).
        while stalled(&control.borrow_and_update()) {
            if control.changed().await.is_err() {
                return Ok(());
            }
        }
        to.write_all(&buf[..n]).await?;
    }
}
