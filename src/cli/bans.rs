//! `novart ban EMAIL --for 30m|12h|7d|permanent --reason TEXT` and
//! `novart unban EMAIL --reason TEXT`.

use super::CliResult;
use crate::config::Config;
use crate::domain::bans::{self, Actor};
use crate::domain::{accounts, audit};
use crate::App;

pub fn ban(config: &Config, email: &str, length: &str, reason: &str) -> CliResult {
    let length = bans::parse_length(length)?;
    let app = App::new(config.clone())?;
    let mut conn = app.db.get()?;
    let user = accounts::find(&conn, email)?;
    let actor = audit::cli_actor();
    let (ban, canceled) = bans::ban(
        &mut conn,
        user.id,
        length,
        reason,
        &Actor {
            name: &actor,
            ip: None,
        },
    )?;
    println!(
        "{} is banned {} (ban #{}); sessions ended, {canceled} queued task(s) canceled and refunded",
        user.email,
        bans::until_text(ban.ends_at),
        ban.id
    );
    Ok(())
}

pub fn unban(config: &Config, email: &str, reason: &str) -> CliResult {
    let app = App::new(config.clone())?;
    let mut conn = app.db.get()?;
    let user = accounts::find(&conn, email)?;
    let actor = audit::cli_actor();
    let ban = bans::unban(
        &mut conn,
        user.id,
        reason,
        &Actor {
            name: &actor,
            ip: None,
        },
    )?;
    println!(
        "{} is no longer banned (ban #{} lifted)",
        user.email, ban.id
    );
    Ok(())
}
