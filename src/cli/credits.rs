//! `novart credits grant|deduct|show`. Every change is a ledger row that
//! records the admin (the operating-system user running the command) and the
//! reason.

use clap::Subcommand;
use serde_json::json;

use super::{fail, CliResult};
use crate::config::Config;
use crate::domain::audit::cli_actor as actor;
use crate::domain::{accounts, wallet};
use crate::templates::format_time;
use crate::App;

#[derive(Debug, Subcommand)]
pub enum CreditsCmd {
    /// Add credits to an account (paid balance, or bonus with --bonus).
    Grant {
        /// The account's e-mail address.
        email: String,
        /// Whole credits (1 to 1000000000).
        amount: i64,
        /// Into the bonus bucket instead of the paid balance.
        #[arg(long)]
        bonus: bool,
        /// Why: shown to the account where it concerns it, and kept in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Remove credits (paid balance first, then bonus; never below zero).
    Deduct {
        /// The account's e-mail address.
        email: String,
        /// Whole credits (1 to 1000000000).
        amount: i64,
        /// Why: shown to the account where it concerns it, and kept in the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Show an account's wallet and its latest ledger entries.
    Show {
        /// The account's e-mail address.
        email: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: &Config, cmd: CreditsCmd) -> CliResult {
    let app = App::new(config.clone())?;
    let mut conn = app.db.get()?;
    let user_of = |conn: &crate::domain::Connection, email: &str| {
        accounts::find(conn, email).map_err(|_| fail(1, format!("no account with e-mail {email}")))
    };
    let print = |email: &str, w: wallet::Wallet| {
        println!(
            "{email}: balance {} + bonus {} = {} credits",
            w.balance,
            w.bonus,
            w.total()
        )
    };
    let reason_of = |reason: &str| {
        let r = reason.trim().to_string();
        if r.is_empty() {
            Err(fail(2, "--reason must say why"))
        } else {
            Ok(r)
        }
    };
    match cmd {
        CreditsCmd::Grant {
            email,
            amount,
            bonus,
            reason,
        } => {
            let reason = reason_of(&reason)?;
            let user = user_of(&conn, &email)?;
            let before = wallet::get(&conn, user.id)?;
            let after = wallet::grant(&mut conn, user.id, amount, bonus, &actor(), &reason)?;
            super::audit(
                &mut conn,
                "credits.grant",
                &user.email,
                &reason,
                Some(serde_json::json!({ "balance": before.balance, "bonus": before.bonus })),
                Some(serde_json::json!({ "balance": after.balance, "bonus": after.bonus })),
            )?;
            print(&user.email, after);
        }
        CreditsCmd::Deduct {
            email,
            amount,
            reason,
        } => {
            let reason = reason_of(&reason)?;
            let user = user_of(&conn, &email)?;
            let before = wallet::get(&conn, user.id)?;
            let w =
                wallet::deduct(&mut conn, user.id, amount, &actor(), &reason).map_err(
                    |e| match e {
                        crate::AppError::InsufficientBalance(m) => fail(1, m),
                        other => other.into(),
                    },
                )?;
            super::audit(
                &mut conn,
                "credits.deduct",
                &user.email,
                &reason,
                Some(serde_json::json!({ "balance": before.balance, "bonus": before.bonus })),
                Some(serde_json::json!({ "balance": w.balance, "bonus": w.bonus })),
            )?;
            print(&user.email, w);
        }
        CreditsCmd::Show { email, json } => {
            let user = user_of(&conn, &email)?;
            let w = wallet::get(&conn, user.id)?;
            let entries = wallet::entries(&conn, user.id, None, None, 20)?;
            if json {
                println!(
                    "{}",
                    json!({ "email": user.email, "balance": w.balance, "bonus": w.bonus, "ledger": entries })
                );
            } else {
                println!(
                    "{}: balance {} + bonus {} = {} credits",
                    user.email,
                    w.balance,
                    w.bonus,
                    w.total()
                );
                for e in entries {
                    println!(
                        "  {}  {:<15} {:>+6} paid {:>+6} bonus  → {} + {}  {} {}",
                        format_time(e.created_at),
                        e.kind,
                        e.delta_balance,
                        e.delta_bonus,
                        e.balance_after,
                        e.bonus_after,
                        e.actor,
                        e.reason
                    );
                }
            }
        }
    }
    Ok(())
}
