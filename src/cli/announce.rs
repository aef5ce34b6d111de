//! `novart announce --title T --body B [--to EMAIL]`: a message in the inbox
//! of every account, or of one.

use super::CliResult;
use crate::config::Config;
use crate::domain::{accounts, messages};
use crate::App;

pub fn run(config: &Config, title: &str, body: &str, to: Option<&str>) -> CliResult {
    let app = App::new(config.clone())?;
    let mut conn = app.db.get()?;
    let user = match to {
        Some(email) => Some(accounts::find(&conn, email)?),
        None => None,
    };
    let n = messages::announce(&mut conn, title, body, user.as_ref().map(|u| u.id))?;
    super::audit(
        &mut conn,
        "messages.announce",
        user.as_ref()
            .map(|u| u.email.as_str())
            .unwrap_or("all accounts"),
        "",
        None,
        Some(serde_json::json!({ "title": title.trim(), "recipients": n })),
    )?;
    println!("sent to {n} account(s)");
    Ok(())
}
