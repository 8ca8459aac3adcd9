//! A TCP proxy between paysync and its PostgreSQL, to take the database away under a running
//! daemon and give it back, the two ways a network does it:
//!
//! - [`TcpProxy::partition`]: nothing gets through, nothing is closed (a switch or a firewall
//!   dropping packets): requests hang, connecting hangs; bytes already read are held, and
//!   delivered when the partition heals, as TCP would retransmit them.
//! - [`TcpProxy::cut`]: every connection is closed and new ones are closed at once (a server
//!   restart, a failover).
//!
//! [`TcpProxy::restore`] ends either.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Open,
    Partitioned,
    Cut,
}

pub(crate) struct TcpProxy {
    pub(crate) addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub(crate) async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Open);
        let modes = mode.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *modes.borrow() == Mode::Cut {
                    drop(client);
                    continue;
                }
                tokio::spawn(relay(client, upstream, modes.subscribe()));
            }
        });
        TcpProxy { addr, mode, accept }
    }

    pub(crate) fn partition(&self) {
        self.mode.send_replace(Mode::Partitioned);
    }

    pub(crate) fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    pub(crate) fn restore(&self) {
        self.mode.send_replace(Mode::Open);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Cut);
        self.accept.abort();
    }
}

/// One connection: both directions, until either side closes or the proxy is cut.
async fn relay(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    // Connecting upstream waits out a partition too: to the client, the connect hangs.
    if !passable(&mut mode).await {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pipe(cr, sw, mode.clone());
    let down = pipe(sr, cw, mode.clone());
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = mode.wait_for(|m| *m == Mode::Cut) => {}
    }
    // Returning drops all four halves: both sockets close.
}

/// Copy `from` to `to`, holding what was read while the network is partitioned.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !passable(&mut mode).await {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Wait out a partition: `true` once open again, `false` when cut (or the proxy is gone).
async fn passable(mode: &mut watch::Receiver<Mode>) -> bool {
    let now = mode.wait_for(|m| *m != Mode::Partitioned).await.map(|m| *m);
    matches!(now, Ok(Mode::Open))
}
