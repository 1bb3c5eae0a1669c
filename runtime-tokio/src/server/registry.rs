//! The live connections of a server, by id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tether_proto::CloseCode;
use uuid::Uuid;

use crate::rest::{LinkHandle, Links};
use crate::transport::queue;

/// A command to one connection task.
#[derive(Debug, Clone)]
pub(crate) enum Command {
    /// Close (gracefully for 1000 and 1001) with this code and reason (boxed: the command
    /// is then one pointer, and so is each slot of the task's command queue).
    Close(Box<(CloseCode, String)>),
    /// The connection's session was resumed on a new connection (spec/protocol.md §9.3).
    Replaced,
}

#[derive(Debug)]
struct Entry {
    /// Which task holds the id (a resumed session's new task replaces the old one).
    serial: u64,
    metadata: Bytes,
    metadata_json: serde_json::Value,
    remote_addr: SocketAddr,
    commands: queue::Sender<Command>,
    /// The way in for requests to this client.
    link: LinkHandle,
}

/// Established connections, shared by the server handle and the connection tasks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Registry {
    inner: Arc<Entries>,
}

/// The established connections by id.
#[derive(Debug, Default)]
struct Entries(Mutex<HashMap<Uuid, Entry>>);

impl Entries {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent (every update
        // is one insert or remove): keep using it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Links for Entries {
    fn link(&self, id: &Uuid) -> Option<LinkHandle> {
        self.lock().get(id).map(|e| e.link.clone())
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Entry>> {
        self.inner.lock()
    }

    /// The registry as a [`Peer`](crate::rest::Peer) looks its connection up, without an
    /// allocation of its own (a server's peer is made for each request a gateway forwards).
    pub(crate) fn links(&self) -> Arc<dyn Links> {
        self.inner.clone()
    }

    /// Registers the task `serial` under `id`; returns the commands of the task it
    /// replaces (a live connection whose session was resumed elsewhere).
    pub(crate) fn insert(
        &self,
        id: Uuid,
        serial: u64,
        metadata: Bytes,
        remote_addr: SocketAddr,
        commands: queue::Sender<Command>,
        link: LinkHandle,
    ) -> Option<queue::Sender<Command>> {
        let metadata_json = if metadata.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&metadata).unwrap_or(serde_json::Value::Null)
        };
        let entry = Entry {
            serial,
            metadata,
            metadata_json,
            remote_addr,
            commands,
            link,
        };
        self.lock().insert(id, entry).map(|old| old.commands)
    }

    /// Removes `id` if task `serial` still holds it; false when another task (a resume)
    /// took the id over.
    pub(crate) fn remove(&self, id: Uuid, serial: u64) -> bool {
        let mut map = self.lock();
        if map.get(&id).is_some_and(|e| e.serial == serial) {
            map.remove(&id);
            true
        } else {
            false
        }
    }

    pub(crate) fn contains(&self, id: &Uuid) -> bool {
        self.lock().contains_key(id)
    }

    pub(crate) fn ids(&self) -> Vec<Uuid> {
        self.lock().keys().copied().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The one established connection, or how many there are when not one (the choice a
    /// gateway makes for a request that names none, without collecting the ids).
    pub(crate) fn sole(&self) -> Result<Uuid, usize> {
        let map = self.lock();
        let mut ids = map.keys();
        match (ids.next(), ids.next()) {
            (Some(id), None) => Ok(*id),
            _ => Err(map.len()),
        }
    }

    pub(crate) fn metadata(&self, id: &Uuid) -> Option<Bytes> {
        self.lock().get(id).map(|e| e.metadata.clone())
    }

    pub(crate) fn remote_addr(&self, id: &Uuid) -> Option<SocketAddr> {
        self.lock().get(id).map(|e| e.remote_addr)
    }

    pub(crate) fn find(&self, mut pred: impl FnMut(&serde_json::Value) -> bool) -> Vec<Uuid> {
        self.lock()
            .iter()
            .filter(|(_, e)| pred(&e.metadata_json))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Sends `command` to `id`; false for an unknown id.
    pub(crate) fn send(&self, id: &Uuid, command: Command) -> bool {
        let tx = self.lock().get(id).map(|e| e.commands.clone());
        match tx {
            Some(tx) => {
                // A full queue means a close is already pending: that one wins.
                let _ = tx.send(command);
                true
            }
            None => false,
        }
    }

    /// Sends `command` to every connection; returns how many.
    pub(crate) fn send_all(&self, command: &Command) -> usize {
        let txs: Vec<_> = self.lock().values().map(|e| e.commands.clone()).collect();
        for tx in &txs {
            let _ = tx.send(command.clone());
        }
        txs.len()
    }
}
