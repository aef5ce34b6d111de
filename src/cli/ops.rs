//! Operations: `novart backup PATH`, `novart restore PATH`, `novart stats`.

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
