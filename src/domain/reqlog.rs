//! The API request log. Rows are handed to a writer thread that inserts them
//! in batches (one transaction per batch), so logging costs a request a
//! channel send, not a commit. A crash can lose the last fraction of a second
//! of log rows; it never touches tasks or credits.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use crate::db::{self, api_requests::RequestRow, Db};

/// Longest summary kept per request.
pub const MAX_SUMMARY: usize = 200;

#[derive(Clone)]
pub struct RequestLog {
    tx: Sender<Msg>,
}

enum Msg {
    Row(Box<RequestRow>),
    Flush(Sender<()>),
}

impl RequestLog {
    /// Starts the writer thread for `db`.
    pub fn start(db: Db) -> RequestLog {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("request-log".into())
            .spawn(move || writer(db, rx))
            .expect("spawn request-log writer");
        RequestLog { tx }
    }

    pub fn record(&self, row: RequestRow) {
        let _ = self.tx.send(Msg::Row(Box::new(row)));
    }

    /// Waits until every row recorded so far is written (tests, shutdown).
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
    }
}

fn write_batch(db: &Db, batch: &mut Vec<RequestRow>) {
    if batch.is_empty() {
        return;
    }
    let result = db.get().and_then(|mut conn| {
        db::write(&mut conn, |tx| {
            for row in batch.iter() {
                db::api_requests::insert(tx, row)?;
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        tracing::error!(rows = batch.len(), "request log write failed: {e}");
    }
    batch.clear();
}

fn writer(db: Db, rx: Receiver<Msg>) {
    let mut batch = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Msg::Row(row)) => {
                batch.push(*row);
                if batch.len() >= 500 {
                    write_batch(&db, &mut batch);
                }
            }
            Ok(Msg::Flush(done)) => {
                write_batch(&db, &mut batch);
                let _ = done.send(());
            }
            Err(RecvTimeoutError::Timeout) => write_batch(&db, &mut batch),
            Err(RecvTimeoutError::Disconnected) => {
                write_batch(&db, &mut batch);
                return;
            }
        }
    }
}

/// "prompt…" shortened to `MAX_SUMMARY` characters.
pub fn clip(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= MAX_SUMMARY {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX_SUMMARY - 1).collect();
        out.push('…');
        out
    }
}
