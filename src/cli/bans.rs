//! Account-level admin commands: `novart ban EMAIL [--scope S] --for
//! 30m|12h|7d|permanent --reason TEXT`, `novart unban EMAIL [--scope S]
//! --reason TEXT`, `novart bans`, `novart appeals ...` and
//! `novart export-user EMAIL --out FILE`.

use super::CliResult;
use crate::config::Config;
use crate::domain::bans::{self, Actor};
use crate::domain::{accounts, audit};
use crate::App;

pub fn ban(config: &Config, email: &str, scope: &str, length: &str, reason: &str) -> CliResult {
    let scope = bans::parse_scope(scope)?;
    let length = bans::parse_length(length)?;
    let app = App::new(config.clone())?;
    let mut conn = app.db.get()?;
    let user = accounts::find(&conn, email)?;
    let actor = audit::cli_actor();
    let (ban, canceled) = bans::ban(
        &mut conn,
        user.id,
        scope,
        length,
        reason,
        &Actor {
            name: &actor,
            ip: None,
        },
    )?;
    let effect = match scope {
        bans::ALL => format!(
            "is banned {}; sessions ended, {canceled} queued task(s) canceled and refunded",
            bans::until_text(ban.ends_at)
        ),
        "generate" => format!(
            "may not start tasks {}; {canceled} queued task(s) canceled and refunded",
            bans::until_text(ban.ends_at)
        ),
        "api" => format!("has API keys refused {}", bans::until_text(ban.ends_at)),
        _ => format!(
            "may not upload reference images {}",
            bans::until_text(ban.ends_at)
        ),
    };
    println!("{} {effect} (restriction #{})", user.email, ban.id);
    Ok(())
}

pub fn list(config: &Config, active: bool, limit: u32, json: bool) -> CliResult {
    let app = App::new(config.clone())?;
    let conn = app.db.get()?;
    let list = bans::list(&conn, active, limit)?;
    if json {
        let v: Vec<_> = list
            .iter()
            .map(|(b, email)| serde_json::json!({ "email": email, "ban": b }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    if list.is_empty() {
        println!("no bans or restrictions");
    }
    for (b, email) in list {
        let state = match (b.lifted_at, b.ends_at) {
            (Some(t), _) => format!(
                "lifted {} ({})",
                crate::domain::format_time(t),
                b.lift_reason.unwrap_or_default()
            ),
            (None, Some(e)) if e <= crate::domain::now() => "ended".to_string(),
            (None, e) => format!("in force {}", bans::until_text(e)),
        };
        println!(
            "#{:<5} {:<32} {:<8} {:<10} since {}  {}  — {}",
            b.id,
            email,
            b.scope,
            b.source,
            crate::domain::format_time(b.starts_at),
            state,
            b.reason
        );
    }
    Ok(())
}

pub fn unban(config: &Config, email: &str, scope: Option<&str>, reason: &str) -> CliResult {
    let scope = scope.map(bans::parse_scope).transpose()?;
    let app = App::new(config.clone())?;
    let mut conn = app.db.get()?;
    let user = accounts::find(&conn, email)?;
    let actor = audit::cli_actor();
    let lifted = bans::unban(
        &mut conn,
        user.id,
        scope,
        reason,
        &Actor {
            name: &actor,
            ip: None,
        },
    )?;
    for b in lifted {
        println!("{}: restriction #{} ({}) lifted", user.email, b.id, b.scope);
    }
    Ok(())
}

pub fn export_user(config: &Config, email: &str, out: &std::path::Path) -> CliResult {
    let app = App::new(config.clone())?;
    let mut conn = app.db.get()?;
    let user = accounts::find(&conn, email)?;
    let file = std::fs::File::create(out)
        .map_err(|e| super::fail(1, format!("cannot write {}: {e}", out.display())))?;
    let n =
        crate::domain::export::write_zip(&conn, config, user.id, std::io::BufWriter::new(file))?;
    super::audit(
        &mut conn,
        "user.export",
        &user.email,
        "",
        None,
        Some(serde_json::json!({ "files": n, "out": out.display().to_string() })),
    )?;
    println!("wrote {} ({n} files)", out.display());
    Ok(())
}
