//! Operations: `novart backup PATH`, `novart restore PATH`, `novart stats`,
//! `novart providers`.

use std::path::Path;

use super::{fail, CliResult};
use crate::config::Config;
use crate::domain::backup;

pub fn backup(config: &Config, path: &Path) -> CliResult {
    if !config.db_path().exists() {
        return Err(fail(
            1,
            format!("there is no database at {}", config.db_path().display()),
        ));
    }
    let r = backup::create(config, path)?;
    println!(
        "backup written to {}: database {} bytes, {} file(s), {} bytes; {} account(s), {} task(s)",
        r.path.display(),
        r.db_bytes,
        r.files,
        r.file_bytes,
        r.users,
        r.tasks
    );
    if r.dropped_rows > 0 {
        println!(
            "{} image row(s) expired while the backup ran and were left out",
            r.dropped_rows
        );
    }
    if r.checks_ok {
        Ok(())
    } else {
        Err(fail(
            1,
            "the backup does not pass the checks (integrity, foreign keys, ledger, files); run novart doctor",
        ))
    }
}

pub fn restore(config: &Config, path: &Path) -> CliResult {
    let checks = backup::restore(config, path)?;
    let bad: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.details.join("; ")))
        .collect();
    if !bad.is_empty() {
        return Err(fail(
            1,
            format!(
                "the backup in {} fails its checks, nothing was restored: {}",
                path.display(),
                bad.join(" | ")
            ),
        ));
    }
    println!(
        "restored {} into {} (integrity, foreign keys, ledger and files checked); start the server",
        path.display(),
        config.storage.data_dir.display()
    );
    Ok(())
}

pub fn stats(config: &Config, json: bool) -> CliResult {
    let app = crate::App::new(config.clone())?;
    let conn = app.db.get()?;
    let s = crate::domain::stats::collect(&conn, config)?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&s).map_err(|e| fail(1, e.to_string()))?
        );
    } else {
        print!("{}", s.human());
    }
    Ok(())
}

/// A node's view older than this is from a node that stopped.
const STALE_SECS: i64 = 30;

pub fn providers(config: &Config, json: bool) -> CliResult {
    let app = crate::App::new(config.clone())?;
    let seen = crate::domain::fleet_status::list(&*app.db.get()?)?;
    let now = crate::domain::now();
    if json {
        let rows: Vec<serde_json::Value> = seen
            .iter()
            .map(|s| {
                let mut v = serde_json::json!(s);
                v["stale"] = (now - s.updated_at > STALE_SECS).into();
                v
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    let configured: Vec<&str> = config.providers.iter().map(|p| p.id.as_str()).collect();
    if seen.is_empty() {
        println!(
            "no server has recorded the providers' health yet (providers: {}); start novart serve",
            if configured.is_empty() {
                "builtin".to_string()
            } else {
                configured.join(", ")
            }
        );
        return Ok(());
    }
    println!(
        "{:<16} {:<24} {:<9} {:>7} {:>9} {:>7} {:>6}  {:<10} last error",
        "provider", "node", "health", "running", "latency", "calls", "errors", "seen"
    );
    for s in &seen {
        let p = &s.status;
        let age = now - s.updated_at;
        let latency = p
            .latency_ms
            .map(|l| format!("{:.1} s", l as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        let seen_ago = if age > STALE_SECS {
            format!("{age} s ago (stale)")
        } else {
            format!("{age} s ago")
        };
        println!(
            "{:<16} {:<24} {:<9} {:>7} {:>9} {:>7} {:>6}  {:<10} {}",
            p.id,
            s.node,
            p.health.as_str(),
            format!("{}/{}", p.running, p.concurrency),
            latency,
            p.calls,
            p.errors,
            seen_ago,
            p.last_error.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
