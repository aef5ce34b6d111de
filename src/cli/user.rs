//! `novart user ...`: create, list, show, verify, set-role, reset-password.

use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::{fail, read_stdin_line, CliResult};
use crate::config::Config;
use crate::domain::{accounts, secrets};
use crate::model::{Role, User};
use crate::templates::format_time;
use crate::App;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    User,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create an account (prints a generated password unless --password-stdin).
    Create {
        /// The account's e-mail address.
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Display name (default: the part of the e-mail before @).
        #[arg(long)]
        name: Option<String>,
        /// Give the account the admin role.
        #[arg(long)]
        admin: bool,
        /// Mark the e-mail address as confirmed.
        #[arg(long)]
        verified: bool,
    },
    /// List all accounts.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one account.
    Show {
        /// The account's e-mail address.
        email: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Mark an account's e-mail address as confirmed.
    Verify {
        /// The account's e-mail address.
        email: String,
    },
    /// Make an account an admin or a regular user.
    SetRole {
        /// The account's e-mail address.
        email: String,
        /// admin or user.
        role: RoleArg,
    },
    /// Set a new password (generated and printed unless --password-stdin) and
    /// sign the account out everywhere; or, with --send-link, e-mail a reset link.
    ResetPassword {
        /// The account's e-mail address.
        email: String,
        /// Read the new password from the first line of standard input.
        #[arg(long, conflicts_with = "send_link")]
        password_stdin: bool,
        /// E-mail a reset link instead of setting a password.
        #[arg(long)]
        send_link: bool,
    },
    /// Delete an account: sessions, keys and queued work end, images and
    /// personal data are erased; ledger, redemption, audit and risk records
    /// stay without the e-mail.
    Delete {
        /// The account's e-mail address.
        email: String,
        /// Why: shown to the account where it concerns it, and kept in the audit log.
        #[arg(long)]
        reason: String,
    },
}

fn user_json(u: &User) -> serde_json::Value {
    json!({
        "id": u.id,
        "email": u.email,
        "display_name": u.display_name,
        "role": u.role,
        "verified": u.is_verified(),
        "email_verified_at": u.email_verified_at,
        "created_at": u.created_at,
        "last_sign_in_at": u.last_sign_in_at,
        "referral_code": u.referral_code,
    })
}

fn when(t: Option<i64>) -> String {
    t.map(format_time).unwrap_or_else(|| "never".into())
}

fn generated_password() -> String {
    secrets::random_token(15)
}

pub fn run(config: &Config, cmd: UserCmd) -> CliResult {
    let app = App::new(config.clone())?;
    let mut conn = app.db.get()?;
    match cmd {
        UserCmd::Create {
            email,
            password_stdin,
            name,
            admin,
            verified,
        } => {
            let (password, generated) = if password_stdin {
                (read_stdin_line()?, false)
            } else {
                (generated_password(), true)
            };
            let role = if admin { Role::Admin } else { Role::User };
            let user = accounts::create_by_admin(
                &mut conn,
                config,
                &email,
                &password,
                name.as_deref().unwrap_or(""),
                role,
                verified,
            )?;
            super::audit(
                &mut conn,
                "user.create",
                &user.email,
                "",
                None,
                Some(
                    serde_json::json!({ "role": user.role.as_str(), "verified": user.is_verified() }),
                ),
            )?;
            println!(
                "created {} account {} (id {}){}",
                user.role.as_str(),
                user.email,
                user.id,
                if user.is_verified() {
                    ", e-mail confirmed"
                } else {
                    ", e-mail not confirmed"
                }
            );
            if generated {
                println!("password (shown once):");
                println!("{password}");
            }
        }
        UserCmd::List { json } => {
            let users = accounts::list(&conn)?;
            if json {
                let list: Vec<_> = users.iter().map(user_json).collect();
                println!("{}", serde_json::Value::Array(list));
            } else if users.is_empty() {
                println!("no accounts yet; create one with: novart user create --email EMAIL --admin --verified");
            } else {
                println!(
                    "{:>5}  {:<32} {:<20} {:<6} {:<9} {:<21} LAST SIGN-IN",
                    "ID", "EMAIL", "NAME", "ROLE", "VERIFIED", "CREATED"
                );
                for u in &users {
                    println!(
                        "{:>5}  {:<32} {:<20} {:<6} {:<9} {:<21} {}",
                        u.id.0,
                        u.email,
                        u.display_name.chars().take(20).collect::<String>(),
                        u.role.as_str(),
                        if u.is_verified() { "yes" } else { "no" },
                        format_time(u.created_at),
                        when(u.last_sign_in_at)
                    );
                }
            }
        }
        UserCmd::Show { email, json } => {
            let u = accounts::find(&conn, &email).map_err(|_| no_account(&email))?;
            let restrictions = crate::domain::bans::restrictions(&conn, u.id)?;
            let ban = restrictions
                .iter()
                .find(|b| b.scope == crate::domain::bans::ALL);
            if json {
                let mut v = user_json(&u);
                v["ban"] = match ban {
                    Some(b) => {
                        json!({ "reason": b.reason, "ends_at": b.ends_at, "since": b.starts_at, "by": b.actor })
                    }
                    None => serde_json::Value::Null,
                };
                v["restrictions"] = json!(restrictions
                    .iter()
                    .map(|b| json!({ "id": b.id, "scope": b.scope, "reason": b.reason, "ends_at": b.ends_at, "since": b.starts_at, "by": b.actor }))
                    .collect::<Vec<_>>());
                println!("{v}");
            } else {
                println!("id:            {}", u.id);
                println!("email:         {}", u.email);
                println!("display name:  {}", u.display_name);
                println!("role:          {}", u.role.as_str());
                println!("verified:      {}", when(u.email_verified_at));
                println!("registered:    {}", format_time(u.created_at));
                println!("last sign-in:  {}", when(u.last_sign_in_at));
                println!("referral code: {}", u.referral_code);
                if restrictions.is_empty() {
                    println!("restrictions:  none");
                }
                for b in &restrictions {
                    println!(
                        "restricted:    {} {} (#{}: {})",
                        b.scope,
                        crate::domain::bans::until_text(b.ends_at),
                        b.id,
                        b.reason
                    );
                }
            }
        }
        UserCmd::Delete { email, reason } => {
            if reason.trim().is_empty() {
                return Err(super::fail(2, "--reason must not be empty"));
            }
            let u = accounts::find(&conn, &email).map_err(|_| no_account(&email))?;
            let actor = crate::domain::audit::cli_actor();
            let d = crate::domain::deletion::delete(
                &mut conn,
                config,
                u.id,
                &actor,
                reason.trim(),
                None,
            )?;
            println!(
                "account {} deleted: {} task(s) canceled, {} file(s) removed, {} credit(s) forfeited",
                u.id, d.tasks_canceled, d.files_removed, d.credits_forfeited
            );
        }
        UserCmd::Verify { email } => {
            let u = accounts::mark_verified(&mut conn, &email).map_err(|_| no_account(&email))?;
            super::audit(&mut conn, "user.verify", &u.email, "", None, None)?;
            println!("{} is confirmed", u.email);
        }
        UserCmd::SetRole { email, role } => {
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::User => Role::User,
            };
            let before = accounts::find(&conn, &email).map_err(|_| no_account(&email))?;
            let u = accounts::set_role(&mut conn, &email, role).map_err(|_| no_account(&email))?;
            super::audit(
                &mut conn,
                "user.set_role",
                &u.email,
                "",
                Some(serde_json::json!({ "role": before.role.as_str() })),
                Some(serde_json::json!({ "role": u.role.as_str() })),
            )?;
            println!("{} is now {}", u.email, u.role.as_str());
        }
        UserCmd::ResetPassword {
            email,
            password_stdin,
            send_link,
        } => {
            accounts::find(&conn, &email).map_err(|_| no_account(&email))?;
            if send_link {
                let u = accounts::send_reset_by_admin(&mut conn, config, &app.mailer, &email)?;
                super::audit(&mut conn, "user.send_reset_link", &u.email, "", None, None)?;
                println!("sent a password reset link to {}", u.email);
            } else {
                let (password, generated) = if password_stdin {
                    (read_stdin_line()?, false)
                } else {
                    (generated_password(), true)
                };
                let u = accounts::set_password_by_admin(
                    &mut conn,
                    config,
                    &app.mailer,
                    &email,
                    &password,
                )?;
                super::audit(&mut conn, "user.set_password", &u.email, "", None, None)?;
                println!(
                    "set a new password for {}; all of its sessions are signed out",
                    u.email
                );
                if generated {
                    println!("password (shown once):");
                    println!("{password}");
                }
            }
        }
    }
    Ok(())
}

fn no_account(email: &str) -> super::CliError {
    fail(1, format!("no account with e-mail {email}"))
}
