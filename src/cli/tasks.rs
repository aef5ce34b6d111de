//! `novart tasks list|cancel` and `novart cleanup`.

use clap::Subcommand;
use serde_json::json;

use super::{fail, CliResult};
use crate::config::Config;
use crate::domain::tasks;
use crate::model::TaskStatus;
use crate::templates::format_time;
use crate::App;

#[derive(Debug, Subcommand)]
pub enum TasksCmd {
    /// List recent tasks of every user, newest first.
    List {
        /// queued, running, succeeded, failed or canceled.
        #[arg(long)]
        status: Option<String>,
        /// How many rows at most.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a queued or running task (its result is discarded).
    Cancel {
        /// The task's id (tsk_...).
        id: String,
    },
}

pub fn run(config: &Config, cmd: TasksCmd) -> CliResult {
    let app = App::new(config.clone())?;
    let mut conn = app.db.get()?;
    match cmd {
        TasksCmd::List {
            status,
            limit,
            json,
        } => {
            let status = match status {
                None => None,
                Some(s) => Some(TaskStatus::parse(&s).ok_or_else(|| {
                    fail(2, format!("unknown status {s:?}; use queued, running, succeeded, failed or canceled"))
                })?),
            };
            let rows = tasks::list_all(&conn, status, limit)?;
            if json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(t, email)| {
                        let mut v = json!(t);
                        v["user"] = json!(email);
                        v["provider"] = json!(t.provider);
                        v["error_raw"] = json!(t.error_raw);
                        v
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else if rows.is_empty() {
                println!("no tasks");
            } else {
                println!(
                    "{:<22} {:<10} {:<28} {:<16} {:>9} {:<21} PROMPT",
                    "ID", "STATUS", "USER", "MODEL", "SIZE", "CREATED"
                );
                for (t, email) in &rows {
                    let prompt: String = t.prompt.chars().take(40).collect();
                    println!(
                        "{:<22} {:<10} {:<28} {:<16} {:>9} {:<21} {}",
                        t.public_id,
                        t.status.as_str(),
                        email,
                        t.model,
                        format!("{}x{}", t.width, t.height),
                        format_time(t.created_at),
                        prompt
                    );
                    if let Some(raw) = &t.error_raw {
                        if t.status == TaskStatus::Failed {
                            println!("{:<22} error: {}", "", raw);
                        }
                    }
                }
            }
        }
        TasksCmd::Cancel { id } => {
            let v = tasks::cancel_by_admin(&mut conn, &id).map_err(|e| match e {
                crate::AppError::NotFound => fail(1, format!("no task {id}")),
                other => other.into(),
            })?;
            super::audit(
                &mut conn,
                "tasks.cancel",
                &v.task.public_id,
                "",
                None,
                Some(serde_json::json!({ "status": v.task.status.as_str() })),
            )?;
            println!("{} is {}", v.task.public_id, v.task.status.as_str());
        }
    }
    Ok(())
}

pub fn cleanup(config: &Config) -> CliResult {
    let app = App::new(config.clone())?;
    let report = crate::jobs::cleanup(&app.db, config)?;
    let sessions = crate::jobs::sweep(&app.db, config)?;
    println!(
        "deleted {} result image(s), {} reference image(s), {} row(s) without a file, {} file(s) without a row, {} expired session(s), {} API request log row(s), {} idempotency key(s), {} webhook delivery(ies)",
        report.results_deleted, report.references_deleted, report.dangling_rows_deleted, report.orphan_files_deleted, sessions,
        report.request_logs_deleted, report.idempotency_keys_deleted, report.webhook_deliveries_deleted
    );
    Ok(())
}
