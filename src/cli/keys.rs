//! `novart keys create|list|revoke`. `create` prints the secret alone on the
//! last line of stdout so scripts can take it with `tail -n1`.

use clap::Subcommand;
use serde_json::json;

use super::{fail, CliResult};
use crate::config::Config;
use crate::domain::accounts;
use crate::domain::apikeys::{self, ApiKey};
use crate::templates::format_time;
use crate::App;

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Create an API key for an account (any limits; no approval needed).
    Create {
        /// The account's e-mail address.
        email: String,
        /// A name for the key, shown in the developer center.
        #[arg(long)]
        name: String,
        /// Requests per minute (default: limits.key_rpm).
        #[arg(long)]
        rpm: Option<u32>,
        /// Tasks queued or running at once (default: limits.key_concurrency).
        #[arg(long)]
        concurrency: Option<u32>,
        /// Tasks per UTC day (default: limits.key_daily_cap).
        #[arg(long)]
        daily_cap: Option<u32>,
        /// Models the key may use, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Permissions, comma-separated: generate, read_tasks, read_account
        /// (default: all three).
        #[arg(long, value_delimiter = ',')]
        permissions: Vec<String>,
        /// How long the key works, e.g. 90d (default: until revoked).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List keys (prefixes only; secrets are not stored), of one account or all.
    List {
        /// Only this account's (by e-mail address).
        email: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its prefix; it answers 401 from the next request on.
    /// The owner gets a message with the reason.
    Revoke {
        /// The key's prefix (nva_<prefix>_...), as `keys list` shows it.
        prefix: String,
        /// Why, for the owner's message and the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
}

pub fn status(k: &ApiKey) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.expires_at.is_some_and(|e| e <= crate::domain::now()) {
        "expired"
    } else {
        "active"
    }
}

pub fn run(config: &Config, cmd: KeysCmd) -> CliResult {
    let app = App::new(config.clone())?;
    let mut conn = app.db.get()?;
    match cmd {
        KeysCmd::Create {
            email,
            name,
            rpm,
            concurrency,
            daily_cap,
            models,
            permissions,
            expires,
        } => {
            let user = accounts::find(&conn, &email)?;
            let mut spec = apikeys::KeySpec::defaults(config, &name);
            spec.rpm = rpm.unwrap_or(spec.rpm);
            spec.concurrency = concurrency.unwrap_or(spec.concurrency);
            spec.daily_cap = daily_cap.unwrap_or(spec.daily_cap);
            if !models.is_empty() {
                spec.models = Some(models);
            }
            if !permissions.is_empty() {
                spec.permissions = permissions;
            }
            if let Some(e) = expires {
                let secs = super::codes::parse_duration(&e).ok_or_else(|| {
                    fail(
                        2,
                        format!("--expires {e:?}: use a number and s, m, h or d, like 90d"),
                    )
                })?;
                spec.expires_at = Some(crate::domain::now() + secs);
            }
            let (key, secret) = apikeys::create(
                &mut conn,
                config,
                &app.engine.catalog,
                user.id,
                spec,
                apikeys::Authority::Admin,
            )?;
            super::audit(
                &mut conn,
                "keys.create",
                &format!("{} {}", user.email, key.prefix),
                "",
                None,
                Some(
                    json!({ "name": key.name, "rpm": key.rpm, "concurrency": key.concurrency, "daily_cap": key.daily_cap, "models": key.models, "permissions": key.permissions }),
                ),
            )?;
            println!(
                "created key {:?} ({}) for {}: {} rpm, {} concurrent, {} tasks/day",
                key.name, key.prefix, user.email, key.rpm, key.concurrency, key.daily_cap
            );
            println!("the secret is shown once; store it now:");
            println!("{secret}");
        }
        KeysCmd::List { email, json } => {
            let all = apikeys::all(&conn)?;
            let list: Vec<_> = match &email {
                Some(e) => {
                    let user = accounts::find(&conn, e)?;
                    all.into_iter()
                        .filter(|(k, _)| k.user_id == user.id)
                        .collect()
                }
                None => all,
            };
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|(k, email)| {
                        let mut v = json!(k);
                        v["email"] = json!(email);
                        v["status"] = json!(status(k));
                        v
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else if list.is_empty() {
                println!("no keys");
            } else {
                println!(
                    "{:<12} {:<20} {:<28} {:<8} {:>6} {:>5} {:>7} {:<17} LAST USED",
                    "PREFIX", "NAME", "OWNER", "STATUS", "RPM", "CONC", "DAY CAP", "CREATED"
                );
                for (k, email) in &list {
                    println!(
                        "{:<12} {:<20} {:<28} {:<8} {:>6} {:>5} {:>7} {:<17} {}",
                        k.prefix,
                        k.name,
                        email,
                        status(k),
                        k.rpm,
                        k.concurrency,
                        k.daily_cap,
                        format_time(k.created_at),
                        k.last_used_at
                            .map(format_time)
                            .unwrap_or_else(|| "never".into())
                    );
                }
            }
        }
        KeysCmd::Revoke { prefix, reason } => {
            let prefix = prefix
                .trim()
                .strip_prefix("nva_")
                .map(|p| p.split('_').next().unwrap_or(p))
                .unwrap_or(prefix.trim())
                .to_string();
            let key = apikeys::by_prefix(&conn, &prefix)?
                .ok_or_else(|| fail(1, format!("no key with prefix {prefix}")))?;
            apikeys::revoke_by_admin(
                &mut conn,
                &key,
                &crate::domain::audit::cli_actor(),
                reason.as_deref(),
            )?;
            println!(
                "revoked key {} ({:?}); its owner was told",
                key.prefix, key.name
            );
        }
    }
    Ok(())
}
