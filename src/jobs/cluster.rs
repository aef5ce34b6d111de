//! The nodes of a cluster tell each other what happened (on PostgreSQL's
//! LISTEN/NOTIFY): a task changed (a browser connected to another node sees
//! it), a task was canceled (the node running it stops at once), a task was
//! queued (an idle worker anywhere takes it).

use std::sync::mpsc;
use std::time::Duration;

use super::hub::{Hub, Relayed, WeakHub};
use crate::config::Config;
use crate::domain::{self, Db};

/// How long the listener waits before looking whether it should stop.
const WAIT: Duration = Duration::from_secs(1);

/// Starts relaying `hub`'s events to the other nodes and theirs to it, when
/// the database is shared; nothing on SQLite.
pub fn start(db: &Db, config: &Config, hub: &Hub) {
    if !config.database.is_postgres() {
        return;
    }
    let node = config.node_id();
    let (tx, rx) = mpsc::channel::<Relayed>();
    hub.relay_to(tx);
    let (sender_db, sender_node) = (db.clone(), node.clone());
    let _ = std::thread::Builder::new()
        .name("cluster-send".into())
        .spawn(move || send(&sender_db, &sender_node, rx));
    let (config, hub) = (config.clone(), hub.downgrade());
    let _ = std::thread::Builder::new()
        .name("cluster-listen".into())
        .spawn(move || listen(&config, &node, &hub));
}

/// Sends what this node's hub relays, a batch at a time.
fn send(db: &Db, node: &str, rx: mpsc::Receiver<Relayed>) {
    while let Ok(first) = rx.recv() {
        let mut lines = vec![format!("{node} {}", first.encode())];
        lines.extend(
            rx.try_iter()
                .take(500)
                .map(|e| format!("{node} {}", e.encode())),
        );
        lines.dedup();
        if let Err(e) = domain::cluster::relay(db, &lines) {
            tracing::warn!("telling the other nodes failed: {e}");
        }
    }
}

/// Hears the other nodes (not this one's own lines), reconnecting after a
/// lost connection, until the server stops.
fn listen(config: &Config, node: &str, hub: &WeakHub) {
    while hub.upgrade().is_some() {
        let listener = match domain::cluster::Listener::open(config) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("listening to the other nodes failed: {e}");
                std::thread::sleep(WAIT * 5);
                continue;
            }
        };
        while let Some(hub) = hub.upgrade() {
            match listener.next(WAIT) {
                Ok(lines) => {
                    for line in lines {
                        let Some((from, event)) = line.split_once(' ') else {
                            continue;
                        };
                        if from == node {
                            continue;
                        }
                        if let Some(event) = Relayed::decode(event) {
                            hub.deliver(event);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!("the connection to the other nodes dropped: {e}");
                    break;
                }
            }
        }
    }
}

/// The start of the names of this node's workers (`<node_id>/`), which
/// the tasks they run record: a node that restarts finds its own.
pub fn worker_prefix(config: &crate::config::Config) -> String {
    format!("{}/", config.node_id())
}
