//! PostgreSQL for the tests: with TEST_DATABASE_URL set (a server
//! where that user may create databases, e.g.
//! `postgres://novart@127.0.0.1:55432/postgres`), every app a test makes gets
//! a database of its own on that server, so tests still run in parallel.
//! `.ci/run` starts Debian's PostgreSQL and runs the suite a second time
//! this way. Without the variable, tests use SQLite as `cargo test` always
//! has.
//!
//! A database is named after this test process and the app's data directory
//! (`nt_<pid>_<digest>`), so the CLI and a second app on the same directory
//! find the same one. Databases of test processes that have ended are
//! dropped the first time a process asks for one.

use std::path::Path;
use std::sync::Once;

use novart::config::Config;

const VAR: &str = "TEST_DATABASE_URL";

/// The server's URL when this run tests PostgreSQL.
pub fn admin_url() -> Option<String> {
    std::env::var(VAR).ok().filter(|v| !v.is_empty())
}

pub fn chosen() -> bool {
    admin_url().is_some()
}

/// The server for a test that needs PostgreSQL whatever the run: `None`
/// (with a loud line) when there is none, a failure under CI.
pub fn required(test: &str) -> Option<String> {
    let url = admin_url();
    if url.is_none() {
        // .ci/run sets TEST_POSTGRES_RUN_FOLLOWS in the runs before the
        // PostgreSQL one, where these tests do run.
        let later = std::env::var("TEST_POSTGRES_RUN_FOLLOWS").is_ok_and(|v| v == "1");
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") && !later {
            panic!("CI=true but {VAR} is not set (.ci/run starts PostgreSQL and sets it)");
        }
        let when = if later {
            "it runs in the PostgreSQL run"
        } else {
            "no PostgreSQL"
        };
        eprintln!("\n*** SKIPPED {test}: {when} ({VAR} is not set) ***\n");
    }
    url
}

fn admin() -> postgres::Client {
    let url = admin_url().expect("TEST_DATABASE_URL");
    postgres::Client::connect(&url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// The URL of `name` on the test server.
fn url_of(name: &str) -> String {
    let admin = admin_url().expect("TEST_DATABASE_URL");
    let mut u = url::Url::parse(&admin).expect("TEST_DATABASE_URL is a URL");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

fn sweep_ended_processes(client: &mut postgres::Client) {
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'nt\\_%'",
            &[],
        )
        .unwrap();
    for row in rows {
        let name: String = row.get(0);
        let pid: Option<u32> = name.split('_').nth(1).and_then(|p| p.parse().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ =
                client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        }
    }
}

/// A fresh (or this directory's existing) database; its URL.
pub fn database_for(data_dir: &Path) -> String {
    static SWEEP: Once = Once::new();
    let mut client = admin();
    SWEEP.call_once(|| sweep_ended_processes(&mut client));
    use sha2::Digest;
    let digest = hex::encode(&sha2::Sha256::digest(data_dir.to_string_lossy().as_bytes())[..8]);
    let name = format!("nt_{}_{digest}", std::process::id());
    let exists = !client
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .unwrap()
        .is_empty();
    if !exists {
        if let Err(e) = client.batch_execute(&format!("CREATE DATABASE \"{name}\"")) {
            // Another thread made it first.
            if e.code() != Some(&postgres::error::SqlState::DUPLICATE_DATABASE) {
                panic!("creating database {name}: {e}");
            }
        }
    }
    url_of(&name)
}

/// Points `config` at this run's database engine: its own PostgreSQL
/// database when the run tests PostgreSQL, else SQLite (unchanged).
pub fn apply(config: &mut Config) {
    if chosen() {
        config.database.url = database_for(&config.storage.data_dir);
    }
}

/// The environment a `novart` process on `data_dir` needs to use the same
/// database as the test's apps.
pub fn env_for(data_dir: &Path) -> Vec<(String, String)> {
    if !chosen() {
        return Vec::new();
    }
    vec![("NOVART_DATABASE__URL".into(), database_for(data_dir))]
}
