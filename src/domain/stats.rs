//! What the database says about the instance right now: queue depth per
//! model, tasks by state, accounts, active sessions, the ledger's totals,
//! the webhook backlog and the database's size. `/metrics` exports it as
//! gauges; `novart stats` prints it.

use std::fmt::Write as _;

use crate::domain::Connection;
use serde::Serialize;

use crate::config::Config;
use crate::domain::db;
use crate::error::AppResult;

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// The node that answered (`server.node_id`, or the host name).
    pub node: String,
    /// (model, queued, running)
    pub queue: Vec<(String, i64, i64)>,
    /// (status, count) over the tasks still kept
    pub tasks: Vec<(String, i64)>,
    /// Tasks finished in the last 24 hours, and how many of them failed.
    pub finished_24h: i64,
    pub failed_24h: i64,
    pub users: i64,
    pub active_sessions: i64,
    /// Credits held: paid and bonus.
    pub balance: i64,
    pub bonus: i64,
    /// (ledger kind, sum of changes)
    pub ledger: Vec<(String, i64)>,
    pub webhooks_pending: i64,
    /// (scope, count) of restrictions in force.
    pub restrictions: Vec<(String, i64)>,
    /// Appeals waiting for an admin's decision (`novart appeals list --pending`).
    pub appeals_pending: i64,
    /// The database file plus its write-ahead log, in bytes.
    pub db_bytes: u64,
}

pub fn collect(conn: &Connection, config: &Config) -> AppResult<Stats> {
    let now = super::now();
    let wal = config.storage.data_dir.join("novart.db-wal");
    let (finished_24h, failed_24h) = db::stats::finished_since(conn, now - 86400)?;
    let (balance, bonus) = db::stats::credits_held(conn)?;
    Ok(Stats {
        node: config.node_id(),
        queue: db::stats::queue_depth(conn)?,
        tasks: db::stats::tasks_by_status(conn)?,
        finished_24h,
        failed_24h,
        users: db::stats::users(conn)?,
        active_sessions: db::stats::active_sessions(conn, now)?,
        balance,
        bonus,
        ledger: db::stats::ledger_by_kind(conn)?,
        webhooks_pending: db::stats::webhooks_pending(conn)?,
        restrictions: db::stats::restrictions_in_force(conn, now)?,
        appeals_pending: db::appeals::pending_count(conn)?,
        db_bytes: db::stats::file_bytes(conn)?.max(0) as u64
            + std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0),
    })
}

fn gauge(out: &mut String, name: &str, help: &str, rows: &[(String, i64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, v) in rows {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

impl Stats {
    /// The gauges in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        gauge(
            out,
            "novart_node_info",
            "The node that answered (server.node_id) and its version; always 1.",
            &[(
                format!(
                    "{{node=\"{}\",version=\"{}\"}}",
                    esc(&self.node),
                    env!("CARGO_PKG_VERSION")
                ),
                1,
            )],
        );
        let mut depth = Vec::new();
        for (model, queued, running) in &self.queue {
            depth.push((
                format!("{{model=\"{}\",state=\"queued\"}}", esc(model)),
                *queued,
            ));
            depth.push((
                format!("{{model=\"{}\",state=\"running\"}}", esc(model)),
                *running,
            ));
        }
        gauge(
            out,
            "novart_queue_depth",
            "Tasks waiting or running, by model.",
            &depth,
        );
        let tasks: Vec<_> = self
            .tasks
            .iter()
            .map(|(s, n)| (format!("{{status=\"{s}\"}}"), *n))
            .collect();
        gauge(
            out,
            "novart_tasks",
            "Tasks kept in the database, by status.",
            &tasks,
        );
        let ledger: Vec<_> = self
            .ledger
            .iter()
            .map(|(k, n)| (format!("{{kind=\"{k}\"}}"), *n))
            .collect();
        gauge(
            out,
            "novart_ledger_credits",
            "Sum of all ledger changes, by kind.",
            &ledger,
        );
        let plain = |v: i64| vec![(String::new(), v)];
        gauge(
            out,
            "novart_users",
            "Accounts (not deleted).",
            &plain(self.users),
        );
        gauge(
            out,
            "novart_sessions_active",
            "Sign-in sessions not expired.",
            &plain(self.active_sessions),
        );
        gauge(
            out,
            "novart_wallet_credits",
            "Credits held in wallets.",
            &[
                ("{kind=\"paid\"}".into(), self.balance),
                ("{kind=\"bonus\"}".into(), self.bonus),
            ],
        );
        gauge(
            out,
            "novart_webhooks_pending",
            "Webhook deliveries waiting to be sent.",
            &plain(self.webhooks_pending),
        );
        let restrictions: Vec<_> = self
            .restrictions
            .iter()
            .map(|(k, n)| (format!("{{scope=\"{k}\"}}"), *n))
            .collect();
        gauge(
            out,
            "novart_restrictions_active",
            "Restrictions in force, by scope (all is a full ban).",
            &restrictions,
        );
        gauge(
            out,
            "novart_appeals_pending",
            "Appeals waiting for a decision.",
            &plain(self.appeals_pending),
        );
        gauge(
            out,
            "novart_db_bytes",
            "Database file and write-ahead log, bytes.",
            &plain(self.db_bytes as i64),
        );
    }

    /// For people: `novart stats`.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "node               {}", self.node);
        let _ = writeln!(out, "accounts           {}", self.users);
        let _ = writeln!(out, "active sessions    {}", self.active_sessions);
        let _ = writeln!(
            out,
            "tasks, last 24 h   {} finished, {} failed",
            self.finished_24h, self.failed_24h
        );
        if self.queue.is_empty() {
            let _ = writeln!(out, "queue              empty");
        }
        for (model, q, r) in &self.queue {
            let _ = writeln!(out, "queue {model:<12} {q} waiting, {r} running");
        }
        let kept: Vec<String> = self.tasks.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let kept = if kept.is_empty() {
            "none".to_string()
        } else {
            kept.join(", ")
        };
        let _ = writeln!(out, "tasks kept         {kept}");
        let _ = writeln!(
            out,
            "credits held       {} paid + {} bonus",
            self.balance, self.bonus
        );
        for (k, n) in &self.ledger {
            let _ = writeln!(out, "ledger {k:<12} {n:+}");
        }
        let _ = writeln!(out, "webhooks pending   {}", self.webhooks_pending);
        let r: Vec<String> = self
            .restrictions
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        let _ = writeln!(
            out,
            "restrictions       {}",
            if r.is_empty() {
                "none".into()
            } else {
                r.join(", ")
            }
        );
        let _ = writeln!(out, "appeals pending    {}", self.appeals_pending);
        let _ = writeln!(
            out,
            "database           {:.1} MB",
            self.db_bytes as f64 / 1e6
        );
        out
    }
}
