//! The queue survives a kill -9 of the server, and the per-task timeout of
//! the real workers, both through the built binary.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use figment::providers::Format;
use novart::domain::tasks::{self, NewTaskInput};

fn start(dir: &Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_novart"))
        .arg("serve")
        .current_dir(dir)
        .env_remove("NOVART_CONFIG")
        .env("NOVART_SERVER__PORT", port.to_string())
        .env("NOVART_STORAGE__DATA_DIR", dir.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn counts(db: &rusqlite::Connection) -> (i64, i64, i64, i64) {
    db.query_row(
        "SELECT sum(status = 'queued'), sum(status = 'running'), sum(status = 'succeeded'), sum(status = 'failed') FROM tasks",
        [],
        |r| Ok((r.get::<_, Option<i64>>(0)?.unwrap_or(0), r.get::<_, Option<i64>>(1)?.unwrap_or(0), r.get::<_, Option<i64>>(2)?.unwrap_or(0), r.get::<_, Option<i64>>(3)?.unwrap_or(0))),
    )
    .unwrap()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn kill_9_while_tasks_run_then_every_task_ends() {
    let dir = tempfile::tempdir().unwrap();
    let config = novart::Config::for_data_dir(&dir.path().join("data"));
    {
        let (app, user) = common::app_with_user(&config, "crash@example.com");
        let mut conn = app.db.get().unwrap();
        for i in 0..6 {
            let input = NewTaskInput {
                prompt: format!("mountains at dawn {i}"),
                model: "novart-builtin".into(),
                size: Some("1024x1024".into()),
                n: Some(2),
                ..Default::default()
            };
            tasks::submit(&mut conn, &app.engine.catalog, user, &input).unwrap();
        }
    }
    let db = rusqlite::Connection::open(config.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();

    let mut server = start(dir.path(), free_port());
    wait_until("a task to be running", Duration::from_secs(60), || {
        counts(&db).1 >= 1
    });
    server.kill().unwrap(); // SIGKILL: no shutdown, no cleanup
    server.wait().unwrap();
    let (_, running, _, _) = counts(&db);
    assert!(running >= 1, "the kill left a running task behind");

    let mut server = start(dir.path(), free_port());
    wait_until("every task to end", Duration::from_secs(240), || {
        let (q, r, s, f) = counts(&db);
        q == 0 && r == 0 && s + f == 6
    });
    server.kill().unwrap();
    server.wait().unwrap();

    let (_, _, succeeded, _) = counts(&db);
    assert_eq!(
        succeeded, 6,
        "the built-in renderer does not fail; interrupted tasks were retried"
    );
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    // Every stored image has its file; 2 per task.
    let paths: Vec<String> = db
        .prepare("SELECT path FROM assets WHERE kind = 'result'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(paths.len(), 12);
    for p in paths {
        assert!(config.storage.data_dir.join(&p).exists(), "{p} missing");
    }
}

#[test]
fn a_task_that_runs_too_long_is_stopped_and_failed() {
    let fake = common::fake_http::serve(|_| {
        common::fake_http::Resp::json(200, serde_json::json!({"created": 1, "data": []}))
            .slow(Duration::from_secs(6))
    });
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[queue]
task_timeout_secs = 1
[[providers]]
id = "slow"
kind = "openai"
base_url = "{}/v1"
timeout_secs = 30
[[models]]
id = "slow-model"
name = "Slow"
providers = ["slow"]
sizes = ["512x512"]
"#,
        fake.url()
    );
    std::fs::write(dir.path().join("novart.toml"), &toml).unwrap();
    let figment = figment::Figment::from(figment::providers::Serialized::defaults(
        novart::Config::default(),
    ))
    .merge(figment::providers::Toml::string(&toml))
    .merge(("storage.data_dir", dir.path().join("data")));
    let config = novart::Config::from_figment(figment).unwrap();
    let id = {
        let (app, user) = common::app_with_user(&config, "slow@example.com");
        let mut conn = app.db.get().unwrap();
        let input = NewTaskInput {
            prompt: "take your time".into(),
            model: "slow-model".into(),
            ..Default::default()
        };
        tasks::submit(&mut conn, &app.engine.catalog, user, &input)
            .unwrap()
            .public_id
    };
    let mut server = start(dir.path(), free_port());
    let db = rusqlite::Connection::open(config.db_path()).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let status = || -> (String, Option<String>) {
        db.query_row(
            "SELECT status, error FROM tasks WHERE public_id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    wait_until("the task to fail", Duration::from_secs(30), || {
        status().0 == "failed"
    });
    server.kill().unwrap();
    server.wait().unwrap();
    let (_, error) = status();
    assert_eq!(
        error.as_deref(),
        Some("The image took longer than 1 seconds and was stopped.")
    );
}
