//! `novart codes create|list|revoke`. `create` prints one code per line on
//! stdout and nothing else there, so scripts can read them.

use clap::Subcommand;
use serde_json::json;

use super::{fail, CliResult};
use crate::config::Config;
use crate::domain::codes::{self, NewCodes};
use crate::templates::format_time;
use crate::App;

#[derive(Debug, Subcommand)]
pub enum CodesCmd {
    /// Create codes worth AMOUNT credits each.
    Create {
        /// Whole credits (1 to 1000000000).
        #[arg(long)]
        amount: i64,
        /// How many codes to make (1 to 100000).
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Credit the bonus bucket instead of the paid balance.
        #[arg(long)]
        bonus: bool,
        /// How long the codes work, e.g. 30d, 12h, 45m (default: no expiry).
        #[arg(long)]
        expires: Option<String>,
        /// How many accounts can redeem each code.
        #[arg(long, default_value_t = 1)]
        max_uses: i64,
        /// A name to list or revoke the codes together.
        #[arg(long)]
        batch: Option<String>,
    },
    /// List codes (their last 4 characters; the codes themselves are not stored).
    List {
        /// Only the codes of this batch.
        #[arg(long)]
        batch: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Withdraw a code, or every code of a batch.
    Revoke {
        /// The code (NVA-XXXX-XXXX-XXXX-XXXX).
        code: Option<String>,
        /// Every code of this batch instead.
        #[arg(long, conflicts_with = "code")]
        batch: Option<String>,
    },
}

pub use crate::config::parse_duration;

pub fn run(config: &Config, cmd: CodesCmd) -> CliResult {
    let app = App::new(config.clone())?;
    let mut conn = app.db.get()?;
    match cmd {
        CodesCmd::Create {
            amount,
            count,
            bonus,
            expires,
            max_uses,
            batch,
        } => {
            let expires_at = match expires {
                None => None,
                Some(e) => Some(
                    crate::domain::now()
                        + parse_duration(&e).ok_or_else(|| {
                            fail(
                                2,
                                format!("--expires {e:?}: use a number and s, m, h or d, like 30d"),
                            )
                        })?,
                ),
            };
            let actor = crate::domain::audit::cli_actor();
            let req = NewCodes {
                amount,
                count,
                bonus,
                max_uses,
                expires_at,
                batch: batch.as_deref(),
                actor: &actor,
            };
            let made = codes::create(&mut conn, &req)?;
            super::audit(
                &mut conn,
                "codes.create",
                batch.as_deref().unwrap_or(""),
                "",
                None,
                Some(
                    json!({ "count": made.len(), "amount": amount, "bonus": bonus, "max_uses": max_uses, "expires_at": expires_at }),
                ),
            )?;
            for code in made {
                println!("{code}");
            }
        }
        CodesCmd::List { batch, json } => {
            let list = codes::list(&conn, batch.as_deref())?;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|c| {
                        let mut v = json!(c);
                        v["status"] = json!(codes::status(c, crate::domain::now()));
                        v
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else if list.is_empty() {
                println!("no codes");
            } else {
                println!(
                    "{:<10} {:>7} {:<8} {:>9} {:<8} {:<16} {:<21} CREATED",
                    "CODE", "AMOUNT", "BUCKET", "USES", "STATUS", "BATCH", "EXPIRES"
                );
                for c in &list {
                    println!(
                        "…{:<9} {:>7} {:<8} {:>9} {:<8} {:<16} {:<21} {}",
                        c.hint,
                        c.amount,
                        c.bucket,
                        format!("{}/{}", c.uses, c.max_uses),
                        codes::status(c, crate::domain::now()),
                        c.batch.as_deref().unwrap_or("-"),
                        c.expires_at
                            .map(format_time)
                            .unwrap_or_else(|| "never".into()),
                        format_time(c.created_at)
                    );
                }
            }
        }
        CodesCmd::Revoke { code, batch } => {
            let (n, target) = match (code, batch) {
                (Some(code), None) => {
                    let hint: String = codes::normalize(&code)
                        .unwrap_or_default()
                        .chars()
                        .rev()
                        .take(4)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect();
                    (
                        codes::revoke_code(&mut conn, &code)?,
                        format!("code …{hint}"),
                    )
                }
                (None, Some(batch)) => (
                    codes::revoke_batch(&mut conn, &batch)?,
                    format!("batch {batch}"),
                ),
                _ => return Err(fail(2, "give a CODE or --batch NAME")),
            };
            if n == 0 {
                return Err(fail(1, "no active code matched"));
            }
            super::audit(
                &mut conn,
                "codes.revoke",
                &target,
                "",
                None,
                Some(json!({ "revoked": n })),
            )?;
            println!("revoked {n} code(s)");
        }
    }
    Ok(())
}
