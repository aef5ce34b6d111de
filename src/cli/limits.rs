//! `novart limits list|approve|deny`: creators' requests for higher key limits.

use clap::Subcommand;
use serde_json::json;

use super::CliResult;
use crate::config::Config;
use crate::domain::limits::{self, Ask};
use crate::templates::format_time;
use crate::App;

#[derive(Debug, Subcommand)]
pub enum LimitsCmd {
    /// List requests, newest first.
    List {
        /// Only those waiting for a decision.
        #[arg(long)]
        pending: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Approve a request; the options replace what was asked for.
    Approve {
        /// The number shown by the list command.
        id: i64,
        /// Requests per minute (default: what was asked for).
        #[arg(long)]
        rpm: Option<u32>,
        /// Tasks queued or running at once (default: what was asked for).
        #[arg(long)]
        concurrency: Option<u32>,
        /// Tasks per UTC day (default: what was asked for).
        #[arg(long)]
        daily_cap: Option<u32>,
        /// A note for the creator.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Deny a request with a reason the creator will read.
    Deny {
        /// The number shown by the list command.
        id: i64,
        /// Why: shown to the account where it concerns it, and kept in the audit log.
        #[arg(long)]
        reason: String,
    },
}

fn show(v: Option<u32>, cur: u32) -> String {
    match v {
        Some(n) if n != cur => format!("{cur}→{n}"),
        _ => cur.to_string(),
    }
}

pub fn run(config: &Config, cmd: LimitsCmd) -> CliResult {
    let app = App::new(config.clone())?;
    let mut conn = app.db.get()?;
    match cmd {
        LimitsCmd::List { pending, json } => {
            let list = limits::list(&conn, pending)?;
            if json {
                println!("{}", json!(list));
            } else if list.is_empty() {
                println!("no limit requests");
            } else {
                println!(
                    "{:>4} {:<9} {:<28} {:<12} {:<12} {:<10} {:<12} {:<17} REASON",
                    "ID", "STATUS", "OWNER", "KEY", "RPM", "AT ONCE", "PER DAY", "ASKED"
                );
                for r in &list {
                    println!(
                        "{:>4} {:<9} {:<28} {:<12} {:<12} {:<10} {:<12} {:<17} {}",
                        r.id,
                        r.status,
                        r.email,
                        r.key_prefix,
                        show(r.rpm, r.current.0),
                        show(r.concurrency, r.current.1),
                        show(r.daily_cap, r.current.2),
                        format_time(r.created_at),
                        r.reason.replace('\n', " ")
                    );
                }
            }
        }
        LimitsCmd::Approve {
            id,
            rpm,
            concurrency,
            daily_cap,
            reason,
        } => {
            let (rpm, conc, cap) = limits::approve(
                &mut conn,
                id,
                &Ask {
                    rpm,
                    concurrency,
                    daily_cap,
                    reason,
                },
                &crate::domain::audit::cli_actor(),
            )?;
            super::audit(
                &mut conn,
                "limits.approve",
                &format!("request {id}"),
                "",
                None,
                Some(json!({ "rpm": rpm, "concurrency": conc, "daily_cap": cap })),
            )?;
            println!("approved request {id}: {rpm} rpm, {conc} at once, {cap} per day; the creator was told");
        }
        LimitsCmd::Deny { id, reason } => {
            limits::deny(&mut conn, id, &reason, &crate::domain::audit::cli_actor())?;
            super::audit(
                &mut conn,
                "limits.deny",
                &format!("request {id}"),
                &reason,
                None,
                None,
            )?;
            println!("denied request {id}; the creator was told");
        }
    }
    Ok(())
}
