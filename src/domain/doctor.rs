//! `novart doctor`: checks that the database is sound and that the money and
//! the queue add up. Each check reports what it found; any finding is a
//! problem.

use crate::domain::Connection;
use serde::Serialize;

use crate::config::Config;
use crate::domain::db;
use crate::error::AppResult;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// "problem" (fails the doctor) or "warning" (reported only).
    pub level: &'static str,
    pub details: Vec<String>,
}

fn check(name: &'static str, details: Vec<String>) -> Check {
    Check {
        name,
        ok: details.is_empty(),
        level: "problem",
        details,
    }
}

fn warning(name: &'static str, details: Vec<String>) -> Check {
    Check {
        name,
        ok: true,
        level: "warning",
        details,
    }
}

/// (rows without a file, files without a row), or why the store was not
/// read.
type FileCheck = Result<(Vec<String>, Vec<String>), String>;

/// Rows whose stored file is missing, and stored files with no row (older
/// than the sweep's grace), by the retention sweep's own comparison. Err
/// when the store does not answer.
fn stored_files(conn: &Connection, config: &Config) -> AppResult<FileCheck> {
    let rows = db::assets::all(conn)?;
    let listed = match super::stored::list(config, "assets/") {
        Ok(l) => l,
        Err(e) => {
            return Ok(Err(format!(
                "{} did not list its files: {e}",
                super::stored::describe(config)
            )))
        }
    };
    let (dangling, orphans) = super::retention::compare(&rows, &listed, super::now());
    Ok(Ok((
        dangling
            .iter()
            .map(|a| format!("{} ({}) has no file", a.public_id, a.path))
            .collect(),
        orphans
            .iter()
            .map(|l| format!("{} has no row", l.key))
            .collect(),
    )))
}

/// Settings that work but are probably not what a public instance wants.
pub fn config_warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let public = !matches!(config.server.bind.as_str(), "127.0.0.1" | "::1");
    if config.server.public_url.is_empty() {
        out.push("server.public_url is empty: links in e-mails point to the bind address".into());
    }
    if public && !config.is_https() {
        out.push("the server listens on all interfaces without an https public_url: cookies are sent without Secure".into());
    }
    if config.mail.transport == crate::config::MailTransport::Outbox
        && config.registration.require_email_verification
    {
        out.push("mail.transport = \"outbox\": confirmation and reset links are only written to the outbox folder".into());
    }
    if config.webhooks.allow_private_targets {
        out.push(
            "webhooks.allow_private_targets = true lets users make the server call internal hosts"
                .into(),
        );
    }
    if config.backup.dir.as_os_str().is_empty() {
        out.push("backup.dir is empty: no scheduled backups".into());
    }
    if config.registration.open && config.server.public_url.starts_with("http://") {
        out.push(format!(
            "server.public_url is {} and registration is open: passwords and session cookies cross the network unencrypted; put the studio behind https",
            config.server.public_url
        ));
    }
    if config.legal.operator_name == crate::config::Config::default().legal.operator_name {
        out.push("legal.operator_name is still the default: /privacy and /terms name no one; set who runs this studio".into());
    }
    if config.legal.contact.trim().is_empty() {
        out.push(
            "legal.contact is empty: /privacy and /terms give no way to reach the operator".into(),
        );
    }
    out
}

/// The configured image services that do not accept a connection now (a
/// TCP connect to each, at most `timeout`, all at once).
pub fn unreachable_providers(config: &Config, timeout: std::time::Duration) -> Vec<String> {
    let (providers, _) = config.catalogue();
    // The URL read and resolved as the webhook guard does (private
    // addresses allowed: image servers usually are), then one connect.
    let probe = |url: &str| -> Result<(), String> {
        let target = super::ssrf::resolve(
            super::ssrf::check_form(url)?,
            &super::ssrf::SystemResolver,
            true,
        )?;
        let addr = target.addrs.first().ok_or("no address")?;
        std::net::TcpStream::connect_timeout(addr, timeout)
            .map(|_| ())
            .map_err(|e| format!("{addr}: {e}"))
    };
    std::thread::scope(|s| {
        let probes: Vec<_> = providers
            .iter()
            .filter(|p| !p.base_url.trim().is_empty())
            .map(|p| (p, s.spawn(move || probe(p.base_url.trim()))))
            .collect();
        probes
            .into_iter()
            .filter_map(|(p, h)| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!(
                    "provider {} ({}) cannot be reached: {e}",
                    p.id, p.base_url
                )),
                Err(_) => Some(format!("provider {}: the probe failed", p.id)),
            })
            .collect()
    })
}

/// What a database must pass to be trusted at all (a backup before it is
/// restored, too): integrity, foreign keys, every wallet equal to its
/// ledger, every stored file present.
pub fn essentials(conn: &Connection, config: &Config) -> AppResult<Vec<Check>> {
    let mut out = Vec::new();
    out.push(check("integrity", db::checks::integrity(conn)?));
    out.push(check("foreign keys", db::checks::foreign_keys(conn)?));
    out.push(check(
        "amounts in bounds",
        db::ledger::out_of_bounds(conn, super::wallet::MAX_AMOUNT, super::wallet::MAX_BUCKET)?,
    ));
    // A sum past 64 bits (amounts from before the bounds) is a finding too.
    let ledger: Vec<String> = match db::ledger::mismatches(conn) {
        Ok(found) => found
            .into_iter()
            .map(|(u, w, s)| {
                format!(
                    "user {u}: wallet {} paid + {} bonus, ledger sums {} + {}",
                    w.balance, w.bonus, s.balance, s.bonus
                )
            })
            .collect(),
        Err(e) => vec![format!("the ledger cannot be summed: {e}")],
    };
    out.push(check("ledger reconciliation", ledger));
    let missing = match stored_files(conn, config)? {
        Ok((missing, _)) => missing,
        Err(e) => vec![e],
    };
    out.push(check("stored files", missing));
    Ok(out)
}

pub fn run(conn: &Connection, config: &Config) -> AppResult<Vec<Check>> {
    let mut out = essentials(conn, config)?;
    out.push(check(
        "charges and refunds",
        db::checks::double_charges(conn)?,
    ));
    out.push(check("queue counts", db::checks::queue_counts(conn)?));
    let stuck = db::checks::stuck_tasks(conn, super::now() - 300, super::now())?;
    out.push(check("stuck tasks", stuck));
    // Files with no row (a crash between writing a file and recording it,
    // or a delete the store refused; the retention sweep removes them).
    let orphans = match stored_files(conn, config)? {
        Ok((_, orphans)) => orphans,
        Err(e) => vec![e],
    };
    out.push(check("orphan files", orphans));
    out.push(check("orphan rows", db::checks::unowned_results(conn)?));
    out.push(check(
        "webhook backlog",
        db::checks::overdue_deliveries(conn, super::now() - 600)?,
    ));
    out.push(warning("configuration", config_warnings(config)));
    out.push(warning(
        "image services",
        unreachable_providers(config, std::time::Duration::from_secs(3)),
    ));
    Ok(out)
}
