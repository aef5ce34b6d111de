//! The API request log. Rows are handed to a writer thread that inserts them
//! in batches (one transaction per batch), so logging costs a request a
//! channel send, not a commit. A crash can lose the last fraction of a second
//! of log rows; it never touches tasks or credits.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub use crate::domain::db::api_requests::{Filter, RequestRow, Source};
use crate::domain::db::{self, Db};

/// Longest summary kept per request.
pub const MAX_SUMMARY: usize = 200;

/// Rows written per batch at most; a full buffer wakes the writer early.
const BATCH: usize = 500;
/// How long rows wait in memory at most.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

#[derive(Default)]
struct State {
    pending: Vec<RequestRow>,
    /// Batches committed so far.
    written: u64,
    /// A batch is being written now.
    in_flight: bool,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    rows: Mutex<State>,
    wake: Condvar,
    written: Condvar,
}

/// A handle to the request log; requests append to a buffer (no thread
/// wake-up per request), a writer thread commits it every 200 ms.
#[derive(Clone)]
pub struct RequestLog {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

/// Closes the buffer when the last handle goes, so the writer ends.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        let mut g = self.0.rows.lock().unwrap_or_else(|e| e.into_inner());
        g.closed = true;
        self.0.wake.notify_all();
    }
}

impl RequestLog {
    /// Starts the writer thread for `db`.
    pub fn start(db: Db) -> RequestLog {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::Builder::new()
            .name("request-log".into())
            .spawn(move || writer(db, s))
            .expect("spawn request-log writer");
        RequestLog {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        }
    }

    pub fn record(&self, row: RequestRow) {
        let mut g = self.shared.rows.lock().unwrap_or_else(|e| e.into_inner());
        g.pending.push(row);
        if g.pending.len() >= BATCH {
            self.shared.wake.notify_one();
        }
    }

    /// Waits until every row recorded so far is written (tests, shutdown).
    pub fn flush(&self) {
        let mut g = self.shared.rows.lock().unwrap_or_else(|e| e.into_inner());
        let target = g.written + g.in_flight as u64 + !g.pending.is_empty() as u64;
        self.shared.wake.notify_one();
        while g.written < target && !g.closed {
            let (ng, timeout) = self
                .shared
                .written
                .wait_timeout(g, Duration::from_secs(10))
                .unwrap_or_else(|e| e.into_inner());
            g = ng;
            if timeout.timed_out() {
                break;
            }
        }
    }
}

fn write_batch(db: &Db, batch: &[RequestRow]) {
    if batch.is_empty() {
        return;
    }
    let result = db.get().and_then(|mut conn| {
        db::write(&mut conn, |tx| {
            for row in batch {
                db::api_requests::insert(tx, row)?;
            }
            Ok(())
        })
    });
    if let Err(e) = result {
        tracing::error!(rows = batch.len(), "request log write failed: {e}");
    }
}

fn writer(db: Db, shared: Arc<Shared>) {
    loop {
        let (batch, closed) = {
            let mut g = shared.rows.lock().unwrap_or_else(|e| e.into_inner());
            if g.pending.is_empty() && !g.closed {
                g = shared
                    .wake
                    .wait_timeout(g, FLUSH_EVERY)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            g.in_flight = !g.pending.is_empty();
            (std::mem::take(&mut g.pending), g.closed)
        };
        write_batch(&db, &batch);
        {
            let mut g = shared.rows.lock().unwrap_or_else(|e| e.into_inner());
            if !batch.is_empty() {
                g.written += 1;
            }
            g.in_flight = false;
            shared.written.notify_all();
        }
        if closed {
            return;
        }
        if batch.len() < BATCH {
            std::thread::sleep(FLUSH_EVERY.min(Duration::from_millis(100)));
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

/// A creator's logged API requests matching `f`, and whether an empty
/// default view only hides the studio's own calls.
pub fn list(
    conn: &crate::domain::Connection,
    user: crate::model::UserId,
    f: &Filter,
) -> crate::AppResult<Vec<RequestRow>> {
    db::api_requests::list(conn, user, f)
}

/// True when the creator has requests made by the studio itself (hidden
/// from the default view, which shows API-key calls).
pub fn has_studio_calls(
    conn: &crate::domain::Connection,
    user: crate::model::UserId,
) -> crate::AppResult<bool> {
    db::api_requests::has_studio_calls(conn, user)
}
