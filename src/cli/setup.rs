//! `serve`, `init`, `migrate`.

use std::path::PathBuf;

use rocket::fairing::AdHoc;
use rocket::figment::providers::Format;

use super::{fail, CliResult};
use crate::config::Config;

pub const EXAMPLE_CONFIG: &str = include_str!("../../novart.example.toml");

pub fn serve(config: Config) -> CliResult {
    let url = config.public_url();
    let data_dir = config.storage.data_dir.clone();
    let node = config.node_id();
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| fail(1, format!("cannot create {}: {e}", data_dir.display())))?;
    // Held until the process ends: one server per SQLite database. On
    // PostgreSQL several nodes share the database (and the queue).
    let _lock = if config.database.is_postgres() {
        None
    } else {
        Some(crate::domain::backup::lock_data_dir(&config)?)
    };
    check_address_free(&config)?;
    let rocket = crate::build_rocket(config)?;
    let rocket = rocket.attach(AdHoc::on_liftoff("announce", move |r| {
        Box::pin(async move {
            tracing::info!(
                address = %r.config().address,
                port = r.config().port,
                data_dir = %data_dir.display(),
                node = %node,
                "Novart Studio {} is running at {url}",
                env!("CARGO_PKG_VERSION")
            );
        })
    }));
    rocket::execute(rocket.launch()).map_err(|e| fail(1, format!("server: {e}")))?;
    tracing::info!("stopped");
    Ok(())
}

/// A port another program holds stops start-up with the address and the
/// keys that change it, before anything else starts.
fn check_address_free(config: &Config) -> CliResult {
    let (bind, port) = (config.server.bind.as_str(), config.server.port);
    match std::net::TcpListener::bind((bind, port)) {
        Ok(_) => Ok(()),
        Err(e) => {
            let addr = if bind.contains(':') {
                format!("[{bind}]:{port}")
            } else {
                format!("{bind}:{port}")
            };
            let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                "the address is already in use (another Novart or another program is listening there)".to_string()
            } else {
                e.to_string()
            };
            Err(fail(
                1,
                format!(
                    "cannot listen on {addr}: {why}; choose another port with server.port in novart.toml or NOVART_SERVER__PORT (the address is server.bind)"
                ),
            ))
        }
    }
}

pub fn migrate(config: &Config) -> CliResult {
    std::fs::create_dir_all(&config.storage.data_dir).map_err(|e| {
        fail(
            1,
            format!("cannot create {}: {e}", config.storage.data_dir.display()),
        )
    })?;
    let db = if config.database.is_postgres() {
        crate::domain::Db::open_postgres(&config.database.url, 2)?
    } else {
        crate::domain::Db::open_path(&config.db_path(), config.storage.synchronous)?
    };
    let mut conn = db.get()?;
    let applied = crate::domain::schema::migrate(&mut conn)?;
    let version = crate::domain::schema::current_version(&conn)?;
    let name = config.database_label();
    if applied.is_empty() {
        println!("database {name} is up to date (schema version {version})");
    } else {
        println!(
            "applied {} migration(s) to {name}; schema version is now {version}",
            applied.len()
        );
    }
    Ok(())
}

/// A value from a flag, or asked for on a terminal (empty: keep the default).
fn flag_or_ask(flag: Option<String>, question: &str) -> Result<Option<String>, super::CliError> {
    use std::io::{BufRead, IsTerminal, Write};
    if let Some(v) = flag {
        return Ok(Some(v.trim().to_string()).filter(|v| !v.is_empty()));
    }
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    print!("{question} ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| fail(1, format!("cannot read the answer: {e}")))?;
    Ok(Some(line.trim().to_string()).filter(|v| !v.is_empty()))
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

pub fn init(
    dir: Option<PathBuf>,
    force: bool,
    operator: Option<String>,
    contact: Option<String>,
) -> CliResult {
    let dir = dir.unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir)
        .map_err(|e| fail(1, format!("cannot create {}: {e}", dir.display())))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| fail(1, format!("{}: {e}", dir.display())))?;
    let path = dir.join("novart.toml");
    if path.exists() && !force {
        return Err(fail(
            1,
            format!(
                "{} already exists; pass --force to overwrite it",
                path.display()
            ),
        ));
    }
    let data_dir = dir.join("data");
    let operator = flag_or_ask(
        operator,
        "Who runs this studio (named on /privacy and /terms)? [leave empty to set later]",
    )?;
    let contact = flag_or_ask(
        contact,
        "How do people reach you (an e-mail address or a URL)? [leave empty to set later]",
    )?;
    let mut text = EXAMPLE_CONFIG.replacen(
        "data_dir = \"./data\"",
        &format!("data_dir = {:?}", data_dir.display().to_string()),
        1,
    );
    if let Some(name) = &operator {
        text = text.replacen(
            "operator_name = \"The operator of this Novart Studio instance\"",
            &format!("operator_name = {}", toml_string(name)),
            1,
        );
    }
    if let Some(c) = &contact {
        text = text.replacen(
            "contact = \"\"",
            &format!("contact = {}", toml_string(c)),
            1,
        );
    }
    std::fs::write(&path, text)
        .map_err(|e| fail(1, format!("cannot write {}: {e}", path.display())))?;
    let figment = rocket::figment::Figment::from(rocket::figment::providers::Serialized::defaults(
        Config::default(),
    ))
    .merge(rocket::figment::providers::Toml::file_exact(&path));
    let config = Config::from_figment(figment)?;
    crate::domain::Db::open(&config)?;
    println!("wrote {}", path.display());
    println!("created database {}", config.db_path().display());
    if operator.is_none() || contact.is_none() {
        println!(
            "set legal.operator_name and legal.contact in {} before you open the studio to others (novart doctor reminds you)",
            path.display()
        );
    }
    println!(
        "next: novart --config {} user create --email you@example.com --admin --verified",
        path.display()
    );
    Ok(())
}

pub fn doctor(config: &Config, json: bool) -> CliResult {
    let app = crate::App::new(config.clone())?;
    let conn = app.db.get()?;
    let checks = crate::domain::doctor::run(&conn, config)?;
    let ok = checks.iter().all(|c| c.ok);
    if json {
        println!("{}", serde_json::json!({ "ok": ok, "checks": checks }));
    } else {
        for c in &checks {
            let mark = match (c.ok, c.details.is_empty()) {
                (false, _) => "PROBLEM",
                (true, false) => "warning",
                (true, true) => "ok     ",
            };
            println!("{mark} {}", c.name);
            for d in &c.details {
                println!("        {d}");
            }
        }
        println!(
            "{}",
            if ok {
                "everything adds up"
            } else {
                "problems found"
            }
        );
    }
    if ok {
        Ok(())
    } else {
        Err(fail(1, "doctor found problems (see above)"))
    }
}
