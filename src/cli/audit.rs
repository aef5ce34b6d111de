//! `novart audit [--limit N] [--json]`: the newest audit log entries.

use super::CliResult;
use crate::config::Config;
use crate::templates::format_time;
use crate::App;

pub fn run(config: &Config, limit: u32, json: bool) -> CliResult {
    let app = App::new(config.clone())?;
    let conn = app.db.get()?;
    let rows = crate::domain::audit::recent(&conn, limit)?;
    if json {
        println!("{}", serde_json::json!(rows));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no audit entries yet");
        return Ok(());
    }
    println!(
        "{:<17} {:<22} {:<18} {:<30} REASON / CHANGE",
        "TIME", "ACTOR", "ACTION", "TARGET"
    );
    for r in &rows {
        let change = match (&r.before, &r.after) {
            (Some(b), Some(a)) => format!("{b} -> {a}"),
            (None, Some(a)) => a.to_string(),
            (Some(b), None) => format!("was {b}"),
            (None, None) => String::new(),
        };
        let detail = match (r.reason.is_empty(), change.is_empty()) {
            (false, false) => format!("{}; {change}", r.reason),
            (false, true) => r.reason.clone(),
            _ => change,
        };
        println!(
            "{:<17} {:<22} {:<18} {:<30} {}",
            format_time(r.created_at),
            r.actor,
            r.action,
            r.target,
            detail
        );
    }
    Ok(())
}
