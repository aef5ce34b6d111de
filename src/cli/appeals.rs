//! `novart appeals list|accept|reject`: users' appeals against restrictions.

use clap::Subcommand;
use serde_json::json;

use super::CliResult;
use crate::config::Config;
use crate::domain::appeals;
use crate::domain::bans::Actor;
use crate::templates::format_time;
use crate::App;

#[derive(Debug, Subcommand)]
pub enum AppealsCmd {
    /// List appeals, newest first, with the restriction each is about.
    List {
        /// Only those waiting for a decision.
        #[arg(long)]
        pending: bool,
        /// How many rows at most.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Accept an appeal: the restriction is lifted and the user told why.
    Accept {
        /// The number shown by the list command.
        id: i64,
        /// Why: shown to the account where it concerns it, and kept in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Reject an appeal: the restriction stays; the user is told why.
    Reject {
        /// The number shown by the list command.
        id: i64,
        /// Why: shown to the account where it concerns it, and kept in the audit log.
        #[arg(long)]
        reason: String,
    },
}

pub fn run(config: &Config, cmd: AppealsCmd) -> CliResult {
    let app = App::new(config.clone())?;
    let mut conn = app.db.get()?;
    let actor = crate::domain::audit::cli_actor();
    let actor = Actor {
        name: &actor,
        ip: None,
    };
    match cmd {
        AppealsCmd::List {
            pending,
            limit,
            json,
        } => {
            let list = appeals::list(&conn, pending, limit)?;
            let mut rows = Vec::new();
            for (a, email) in list {
                let ban = crate::domain::bans::by_id(&conn, a.ban_id)?;
                rows.push((a, email, ban));
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(a, email, ban)| json!({ "email": email, "appeal": a, "restriction": ban }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return Ok(());
            }
            if rows.is_empty() {
                println!("no appeals");
            }
            for (a, email, ban) in rows {
                let about = ban
                    .map(|b| {
                        format!(
                            "#{} {} {} — {}",
                            b.id,
                            b.scope,
                            crate::domain::bans::until_text(b.ends_at),
                            b.reason
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "appeal #{:<5} {:<9} {:<32} filed {}  restriction {about}",
                    a.id,
                    a.status,
                    email,
                    format_time(a.created_at)
                );
                println!("    {}", a.body.replace('\n', "\n    "));
                if let Some(r) = &a.decision_reason {
                    println!("    decision: {r}");
                }
            }
        }
        AppealsCmd::Accept { id, reason } => {
            let a = appeals::decide(&mut conn, id, true, &reason, &actor)?;
            println!(
                "appeal #{} accepted; restriction #{} lifted; the user was told",
                a.id, a.ban_id
            );
        }
        AppealsCmd::Reject { id, reason } => {
            let a = appeals::decide(&mut conn, id, false, &reason, &actor)?;
            println!(
                "appeal #{} rejected; restriction #{} stays; the user was told",
                a.id, a.ban_id
            );
        }
    }
    Ok(())
}
