//! `novart privacy list [--pending] [--json]` and
//! `novart privacy resolve ID --status accepted|rejected --reason TEXT`.

use clap::{Subcommand, ValueEnum};

use super::CliResult;
use crate::config::Config;
use crate::domain::{audit, privacy};
use crate::templates::format_time;
use crate::App;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Decision {
    Accepted,
    Rejected,
}

#[derive(Debug, Subcommand)]
pub enum PrivacyCmd {
    /// Users' privacy requests, newest first.
    List {
        /// Only those still waiting for a decision.
        #[arg(long)]
        pending: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Answer a request; the user gets the answer in their inbox.
    Resolve {
        /// The number shown by the list command.
        id: i64,
        /// accepted or rejected.
        #[arg(long, value_enum)]
        status: Decision,
        /// Why: shown to the account where it concerns it, and kept in the audit log.
        #[arg(long)]
        reason: String,
    },
}

pub fn run(config: &Config, cmd: PrivacyCmd) -> CliResult {
    let app = App::new(config.clone())?;
    let mut conn = app.db.get()?;
    match cmd {
        PrivacyCmd::List { pending, json } => {
            let list = privacy::list(&conn, pending)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
            } else if list.is_empty() {
                println!("no requests");
            } else {
                for r in list {
                    println!(
                        "#{:<5} {:<9} {:<10} {:<32} {}  {}",
                        r.id,
                        r.status,
                        r.kind,
                        r.email,
                        format_time(r.created_at),
                        r.details
                            .replace('\n', " ")
                            .chars()
                            .take(60)
                            .collect::<String>()
                    );
                }
            }
        }
        PrivacyCmd::Resolve { id, status, reason } => {
            let status = match status {
                Decision::Accepted => "accepted",
                Decision::Rejected => "rejected",
            };
            let r = privacy::resolve(&mut conn, id, status, &reason, &audit::cli_actor())?;
            println!(
                "request #{} {} ({} told in their inbox)",
                r.id, r.status, r.email
            );
        }
    }
    Ok(())
}
