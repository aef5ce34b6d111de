//! Two real `novart serve` nodes on one PostgreSQL database and one
//! S3-compatible bucket: 500 tasks submitted alternately to both, one node
//! killed with SIGKILL three times during the run and started again. Every
//! acknowledged task finishes exactly once, is charged once and gets one
//! webhook; every wallet equals its ledger; a live stream on node A sees the
//! tasks node B finished; `novart doctor` is clean.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const TASKS: usize = 500;

struct Node {
    name: &'static str,
    dir: PathBuf,
    port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Node {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_novart"))
            .arg("serve")
            .current_dir(&self.dir)
            .env_remove("NOVART_CONFIG")
            .envs(self.env.iter().cloned())
            .env("NOVART_SERVER__PORT", self.port.to_string())
            .env("NOVART_SERVER__NODE_ID", self.name)
            .env("NOVART_STORAGE__DATA_DIR", self.dir.join("data"))
            .stdout(Stdio::null())
            .stderr(self.log())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if common::http()
                .get(&format!("{}/healthz", self.base()))
                .call()
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("node {} did not start", self.name);
    }

    /// The node's log (every start appends to it).
    fn log(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Submits one task to `base`; the task's id when the node acknowledged it.
fn submit(base: &str, key: &str, i: usize, hook: &str) -> Option<String> {
    let r = common::http()
        .post(&format!("{base}/api/v1/tasks"))
        .header("Authorization", &format!("Bearer {key}"))
        .header("Idempotency-Key", &format!("cluster-{i}"))
        .config()
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .send_json(json!({
            "prompt": format!("a lighthouse number {i}"),
            "webhook_url": hook,
        }));
    let mut r = r.ok()?;
    if r.status() != 201 && r.status() != 200 {
        return None;
    }
    let v: Value = r.body_mut().read_json().ok()?;
    v["id"].as_str().map(str::to_string)
}

/// Reads `task` events from node A's live stream into `seen` until the
/// stream ends.
fn watch(base: String, cookie: String, csrf: String, seen: Arc<Mutex<HashSet<String>>>) {
    let addr = base.trim_start_matches("http://").to_string();
    let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
        return;
    };
    write!(
        s,
        "GET /api/v1/events?csrf_token={csrf} HTTP/1.0\r\nHost: {addr}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut event = String::new();
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { return };
        if let Some(e) = line.strip_prefix("event:") {
            event = e.trim().to_string();
        } else if let Some(d) = line.strip_prefix("data:") {
            if event == "task" {
                if let Ok(v) = serde_json::from_str::<Value>(d.trim()) {
                    if v["status"] == "succeeded" {
                        if let Some(id) = v["id"].as_str() {
                            seen.lock().unwrap().insert(id.to_string());
                        }
                    }
                }
            }
        }
    }
}

fn node_env(url: &str, s3: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("NOVART_DATABASE__URL".to_string(), url.to_string()),
        ("NOVART_STORAGE__BACKEND".into(), "s3".into()),
        (
            "NOVART_WEBHOOKS__ALLOW_PRIVATE_TARGETS".into(),
            "true".into(),
        ),
        ("NOVART_QUEUE__WORKERS".into(), "2".into()),
        // One creator sends everything: let all four workers run their
        // tasks at once (the default per-creator limit would leave the
        // queue to whichever node's two workers got there first).
        ("NOVART_QUEUE__PER_USER_CONCURRENCY".into(), "100".into()),
        ("NOVART_LIMITS__KEY_RPM".into(), "10000".into()),
        ("NOVART_LIMITS__KEY_CONCURRENCY".into(), "1000".into()),
        ("NOVART_LIMITS__KEY_DAILY_CAP".into(), "10000".into()),
    ];
    env.extend(s3.iter().cloned());
    env
}

fn doctor(dir: &Path, env: &[(String, String)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_novart"))
        .args(["doctor", "--json"])
        .current_dir(dir)
        .env_remove("NOVART_CONFIG")
        .envs(env.iter().cloned())
        .env("NOVART_STORAGE__DATA_DIR", dir.join("data"))
        .output()
        .unwrap()
}

#[test]
fn two_nodes_share_the_queue_and_lose_nothing_when_one_is_killed() {
    let name = "two_nodes_share_the_queue_and_lose_nothing_when_one_is_killed";
    if common::pg::required(name).is_none() {
        return;
    }
    let Some(s3) = common::s3::required(name) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let mut config = novart::Config::for_data_dir(&dir_a.join("data"));
    common::s3::use_s3(&mut config, s3);
    config.database.url = common::pg::database_for(root.path());
    config.webhooks.allow_private_targets = true;
    // The key may queue all 500 at once.
    config.limits.key_rpm = 10_000;
    config.limits.key_concurrency = 1_000;
    config.limits.key_daily_cap = 10_000;
    config.queue.per_user_concurrency = 100;
    let env = node_env(&config.database.url, &common::s3::bucket_env(&config));

    // A creator with enough credits and a key, and a webhook receiver.
    let hooks = common::fake_http::serve(|_| common::fake_http::Resp::json(200, json!({})));
    let hook = format!("{}/hook", hooks.url());
    let (app, user, key) = {
        let app = novart::App::new(config.clone()).unwrap();
        let (user, key) = common::user_with_key(&app, "cluster@example.com", 2 * TASKS as i64);
        (app, user, key)
    };

    let mut a = Node {
        name: "a",
        dir: dir_a.clone(),
        port: free_port(),
        env: env.clone(),
        child: None,
    };
    let mut b = Node {
        name: "b",
        dir: dir_b.clone(),
        port: free_port(),
        env: env.clone(),
        child: None,
    };
    a.start();
    b.start();

    // A browser session on node A, watching its live stream.
    let common::LiveSession { cookie, csrf, .. } = common::session_on(&a.base(), &app, user);
    let seen_on_a = Arc::new(Mutex::new(HashSet::new()));
    {
        let (base, seen) = (a.base(), seen_on_a.clone());
        std::thread::spawn(move || watch(base, cookie, csrf, seen));
    }

    // 500 tasks, alternately to A and B; B is killed three times and
    // started again. A request a dead node did not answer goes to the other
    // node with the same Idempotency-Key.
    let mut acknowledged = Vec::new();
    let kills = [100, 250, 400];
    for i in 0..TASKS {
        if kills.contains(&i) {
            b.kill();
            std::thread::sleep(Duration::from_millis(300));
            b.start();
        }
        let (first, second) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let id = submit(&first.base(), &key, i, &hook)
            .or_else(|| submit(&second.base(), &key, i, &hook))
            .unwrap_or_else(|| panic!("task {i} was acknowledged by neither node"));
        acknowledged.push(id);
    }
    let unique: HashSet<&String> = acknowledged.iter().collect();
    assert_eq!(unique.len(), TASKS, "one task per Idempotency-Key");

    // Every task ends (tasks of a killed node come back when it starts).
    let db = novart::domain::Db::connect(&config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done: i64 = db
            .query_row(
                "SELECT count(*) FROM tasks WHERE status IN ('succeeded', 'failed', 'canceled')",
                (),
                |r| r.get(0),
            )
            .unwrap();
        if done as usize == TASKS {
            break;
        }
        assert!(Instant::now() < deadline, "{done} of {TASKS} tasks ended");
        std::thread::sleep(Duration::from_millis(500));
    }
    let succeeded: i64 = db
        .query_row(
            "SELECT count(*) FROM tasks WHERE status = 'succeeded'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        succeeded as usize, TASKS,
        "the built-in renderer never fails"
    );

    // Charged once each, nothing refunded, one image each in the bucket.
    let charges: Vec<(i64, i64)> = db
        .prepare("SELECT task_id, count(*) FROM ledger WHERE kind = 'task_charge' GROUP BY task_id")
        .unwrap()
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(charges.len(), TASKS);
    assert!(
        charges.iter().all(|(_, n)| *n == 1),
        "each task charged once"
    );
    let refunds: i64 = db
        .query_row(
            "SELECT count(*) FROM ledger WHERE kind = 'task_refund'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(refunds, 0);
    let images: i64 = db
        .query_row(
            "SELECT count(*) FROM assets WHERE kind = 'result'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(images as usize, TASKS);
    let by_node: Vec<(String, i64)> = db
        .prepare(
            "SELECT substr(worker, 1, 1), count(*) FROM tasks GROUP BY substr(worker, 1, 1) ORDER BY 1",
        )
        .unwrap()
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    eprintln!("tasks finished per node: {by_node:?}");
    assert_eq!(by_node.len(), 2, "both nodes ran tasks: {by_node:?}");

    // One webhook per task: every task's deliveries carry one webhook-id
    // (a redelivery after a kill repeats the same id, which receivers
    // de-duplicate).
    let deadline = Instant::now() + Duration::from_secs(120);
    let per_task = loop {
        let mut per_task: HashMap<String, HashSet<String>> = HashMap::new();
        for r in hooks.requests_to("/hook") {
            let v = r.json();
            let task = v["data"]["id"].as_str().unwrap_or_default().to_string();
            let id = r.header("webhook-id").unwrap_or_default().to_string();
            per_task.entry(task).or_default().insert(id);
        }
        if per_task.len() >= TASKS || Instant::now() > deadline {
            break per_task;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(per_task.len(), TASKS, "every task's webhook arrived");
    assert!(
        per_task.values().all(|ids| ids.len() == 1),
        "one webhook per task"
    );

    // Node A's live stream saw the tasks node B finished.
    let finished_on_b: Vec<String> = db
        .prepare("SELECT public_id FROM tasks WHERE substr(worker, 1, 2) = 'b/'")
        .unwrap()
        .query_map((), |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let seen = seen_on_a.lock().unwrap().clone();
    let seen_of_b = finished_on_b.iter().filter(|t| seen.contains(*t)).count();
    eprintln!(
        "node A's stream saw {seen_of_b} of the {} tasks node B finished",
        finished_on_b.len()
    );
    assert!(!finished_on_b.is_empty());
    assert!(
        seen_of_b * 10 >= finished_on_b.len() * 9,
        "node A's stream saw {seen_of_b} of {} tasks node B finished",
        finished_on_b.len()
    );

    a.kill();
    b.kill();
    let o = doctor(&dir_a, &env);
    let report: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&o.stderr)));
    assert!(
        o.status.success(),
        "doctor is clean: {}",
        serde_json::to_string_pretty(&report).unwrap()
    );
}
