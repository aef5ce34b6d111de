//! The benchmark report, in one run: `cargo bench --bench report` (builds
//! release). It starts the real `novart` binary on a temporary data
//! directory and measures
//!
//! - binary size, start-up time (to the first 200 from /healthz, fresh and
//!   with an existing database) and resident memory idle and under load;
//! - API task submission (`POST /api/v1/tasks` with a key: key check, rate
//!   limits, moderation, wallet charge, insert) with `queue.workers = 0`, so
//!   submission alone, against a bare Rocket + one-SQLite-insert handler
//!   built from the same dependency versions: the ratio;
//! - studio and library page latency at 32 connections (signed in, 24
//!   images in the library);
//! - the queue with an instant upstream (in-process, see common/queue.rs),
//!   with tiny images (the queue's own work) and with 1024² PNG results
//!   (what decoding, previews and writes of real output add).
//!
//! BENCH_SECS (default 5) per load run, BENCH_CLIENTS (16) for the API runs.
//! BENCH_SYNC (normal, or full) is the durability of both Novart and the
//! bare baseline, so the ratio compares like with like. BENCH_DATABASE_URL
//! (a PostgreSQL server where the user may create databases) runs it all on
//! PostgreSQL, the baseline too, and adds a run with two nodes.
//! Targets from the operations issue are printed next to each number.

mod common;

use std::time::Duration;

use common::{free_port, load, peak_rss, rss_kb, start, stop, Req, Run};
use novart::domain::apikeys::{self, Authority, KeySpec};
use novart::domain::tasks::{self, NewTaskInput};
use novart::model::Role;

fn line(what: &str, r: &Run, target: &str) {
    println!(
        "{what:<44} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}  {target}",
        r.rate, r.p50_ms, r.p99_ms, r.errors
    );
}

fn main() {
    let secs: u64 = common::env_or("BENCH_SECS", 5);
    let clients: usize = common::env_or("BENCH_CLIENTS", 16);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("novart");
    let bin = std::fs::metadata(env!("CARGO_BIN_EXE_novart"))
        .unwrap()
        .len();
    let sync: String = common::env_or("BENCH_SYNC", "normal".to_string());
    let normal = sync == "normal";
    let pg = common::pg::admin_url().is_some();
    // The environment every server of this report gets: its durability and,
    // on PostgreSQL, a database of its own.
    let server_env = |db: Option<&str>| -> Vec<(String, String)> {
        let mut env = vec![("NOVART_STORAGE__SYNCHRONOUS".to_string(), sync.clone())];
        if let Some(url) = db {
            env.push(("NOVART_DATABASE__URL".into(), url.to_string()));
        }
        env
    };

    let main_db = common::pg::fresh("report");
    // Start-up on an empty directory (creates and migrates the database:
    // one fsync per migration, so this VM's disk shows through; one run in
    // three or so takes ~0.4 s): the median of three, each on a new
    // directory, all three printed; the last directory is kept.
    let mut starts: Vec<Duration> = (0..3)
        .map(|i| {
            let d = dir.path().join(format!("fresh-{i}"));
            let url = if i == 2 {
                main_db.clone()
            } else {
                common::pg::fresh(&format!("start{i}"))
            };
            let env = server_env(url.as_deref());
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (child, took) = start(if i == 2 { &data } else { &d }, free_port(), &env);
            stop(child);
            took
        })
        .collect();
    let each: Vec<String> = starts
        .iter()
        .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
        .collect();
    starts.sort();
    let fresh = starts[1];

    // An account with credits, a key, a session and 24 images.
    let mut config = novart::Config::for_data_dir(&data);
    config.queue.workers = 0;
    if let Some(url) = &main_db {
        config.database.url = url.clone();
    }
    let (key, cookie) = {
        let app = novart::App::new(config.clone()).unwrap();
        let mut conn = app.db.get().unwrap();
        let user = novart::domain::accounts::create_by_admin(
            &mut conn,
            &config,
            "bench@example.com",
            "benchmark password",
            "Bench",
            Role::User,
            true,
        )
        .unwrap()
        .id;
        novart::domain::wallet::grant(&mut conn, user, 100_000_000, false, "bench", "bench")
            .unwrap();
        let mut spec = KeySpec::defaults(&config, "bench");
        (spec.rpm, spec.concurrency, spec.daily_cap) = (1_000_000, 1_000_000, 1_000_000);
        let key = apikeys::create(
            &mut conn,
            &config,
            &app.engine.catalog,
            user,
            spec,
            Authority::Admin,
        )
        .unwrap()
        .1;
        for i in 0..24 {
            let input = NewTaskInput {
                prompt: format!("a lighthouse at dusk {i}"),
                model: "novart-builtin".into(),
                size: Some("512x512".into()),
                ..Default::default()
            };
            tasks::submit(
                &mut conn,
                &app.engine.config,
                &app.engine.catalog,
                user,
                &input,
            )
            .unwrap();
        }
        while app.engine.process_one("bench").unwrap() {}
        let client = novart::model::Client {
            ip: Some("127.0.0.1"),
            user_agent: Some("bench"),
        };
        let session =
            novart::domain::accounts::open_session(&mut conn, &config, user, &client).unwrap();
        (key, format!("nova_art_session={}", session.token))
    };

    let port = free_port();
    let env = server_env(main_db.as_deref());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (child, warm) = start(&data, port, &env);
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(1));
    let idle_kb = rss_kb(pid);
    let base = format!("http://127.0.0.1:{port}");
    let submit = Req {
        method: "POST",
        url: format!("{base}/api/v1/tasks"),
        headers: vec![("Authorization".into(), format!("Bearer {key}"))],
        body: Some(
            r#"{"prompt": "a lighthouse at dusk, benchmark SEED", "size": "1024x1024"}"#.into(),
        ),
    };
    let page = |path: &str| Req {
        method: "GET",
        url: format!("{base}{path}"),
        headers: vec![("Cookie".into(), cookie.clone())],
        body: None,
    };
    let bare_port = match common::pg::fresh("bare") {
        Some(url) => common::bare_pg(&url),
        None => common::bare(dir.path(), &sync.to_uppercase()),
    };
    let bare = Req {
        method: "POST",
        url: format!("http://127.0.0.1:{bare_port}/insert"),
        headers: vec![],
        body: submit.body.clone(),
    };
    // Warm up, then measure; memory is sampled throughout.
    load(&submit, clients, 1);
    load(&bare, clients, 1);
    let ((ours, bare_run, studio, library), loaded_kb) = peak_rss(pid, || {
        let bare_run = load(&bare, clients, secs);
        let ours = load(&submit, clients, secs);
        let pages = |r: &Req| common::wrk(r, 32, secs).unwrap_or_else(|| load(r, 32, secs));
        let studio = pages(&page("/studio"));
        let library = pages(&page("/library"));
        (ours, bare_run, studio, library)
    });
    // Two nodes on the one PostgreSQL database, the clients split between
    // them.
    let two_nodes = main_db.as_ref().map(|_| {
        let port2 = free_port();
        let (second, _) = start(&dir.path().join("node-b"), port2, &env);
        let mut other = submit.clone();
        other.url = format!("http://127.0.0.1:{port2}/api/v1/tasks");
        let run = common::load_across(&[submit.clone(), other], clients, secs);
        stop(second);
        run
    });
    stop(child);
    let db = novart::domain::Db::connect(&config).unwrap();
    let mismatches: i64 = db
        .query_row(
            "SELECT count(*) FROM wallets w WHERE w.balance + w.bonus <> (SELECT COALESCE(sum(delta_balance + delta_bonus), 0) FROM ledger l WHERE l.user_id = w.user_id)",
            (),
            |r| r.get(0),
        )
        .unwrap();
    let q = common::queue::run(normal, common::env_or("BENCH_TASKS", 4000), 2, 64);
    let large = common::queue::run(normal, common::env_or("BENCH_LARGE_TASKS", 300), 2, 1024);
    common::pg::drop_all();

    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "Novart Studio {} benchmark report: {cpus} CPUs, {secs} s per run, database {}, synchronous = {sync} (Novart and the baseline)",
        env!("CARGO_PKG_VERSION"),
        if pg { "PostgreSQL" } else { "SQLite" }
    );
    println!(
        "binary size                                  {:>8.1} MB",
        bin as f64 / 1e6
    );
    println!(
        "start-up to /healthz 200                     {:>8.0} ms fresh (migrations; median of {} ms), {:.0} ms existing database  (target < 300 ms)",
        fresh.as_secs_f64() * 1000.0,
        each.join(", "),
        warm.as_secs_f64() * 1000.0
    );
    println!(
        "resident memory                              {:>8.1} MB idle, {:.1} MB peak under load  (targets < 30 / < 120 MB)",
        idle_kb as f64 / 1024.0,
        loaded_kb as f64 / 1024.0
    );
    line(
        if pg {
            "bare Rocket + one PostgreSQL insert"
        } else {
            "bare Rocket + one SQLite insert"
        },
        &bare_run,
        "",
    );
    line("POST /api/v1/tasks (key, limits, wallet)", &ours, "");
    println!(
        "submission ratio                             {:>8.2}  (target >= 0.6); {clients} clients",
        ours.rate / bare_run.rate
    );
    if let Some(two) = &two_nodes {
        line("POST /api/v1/tasks, two nodes", two, "");
    }
    let tool = if std::process::Command::new("wrk").arg("-v").output().is_ok() {
        "wrk"
    } else {
        "threads; install wrk for a cheaper client"
    };
    println!("page load generator: {tool}");
    line(
        "GET /studio, 32 connections",
        &studio,
        "(target p99 < 20 ms)",
    );
    line(
        "GET /library (24 images), 32 connections",
        &library,
        "(target p99 < 20 ms)",
    );
    println!(
        "queue, instant upstream, 2 workers          {:>8.0} tasks/s end to end (submit {:.0}/s; queue's own time p50 {:.2} ms, p99 {:.2} ms)  (target >= 2000)",
        q.run_rate, q.submit_rate, q.added_p50_ms, q.added_p99_ms
    );
    if let Some(rate) = q.two_nodes_rate {
        println!("queue, instant upstream, two nodes × 2 workers {rate:>5.0} tasks/s end to end");
    }
    println!(
        "queue, 1024² PNG results, 2 workers        {:>8.0} tasks/s end to end (queue's own time p50 {:.2} ms, p99 {:.2} ms)",
        large.run_rate, large.added_p50_ms, large.added_p99_ms
    );
    println!("ledger mismatches after the runs             {mismatches:>8}");
}
