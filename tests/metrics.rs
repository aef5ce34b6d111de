//! /metrics and `novart stats`. A test binary of its own: the counters are
//! per process, and other tests would add to them.

mod common;

use novart::domain::tasks::{self, NewTaskInput};

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn metrics_need_the_token_and_speak_prometheus() {
    use rocket::http::{Header, Status};
    let token = "m3tr1cs-t0ken-for-tests";
    let t = common::TestApp::with(|c| {
        c.metrics.token = token.into();
        c.queue.workers = 0;
        c.server.node_id = "gpu-node-2".into();
    });
    assert_eq!(t.get("/metrics").status(), Status::Unauthorized);
    let wrong = t
        .client
        .get("/metrics")
        .header(Header::new("Authorization", "Bearer not-the-token-at-all"))
        .dispatch();
    assert_eq!(wrong.status(), Status::Unauthorized);
    // Some traffic: pages, a task queued, one processed.
    t.signed_in_user("m@example.com");
    assert_eq!(t.get("/studio").status(), Status::Ok);
    let app = t.client.rocket().state::<novart::App>().unwrap();
    let user = novart::domain::accounts::find(&app.db.get().unwrap(), "m@example.com").unwrap();
    for prompt in ["one", "two"] {
        let input = NewTaskInput {
            prompt: prompt.into(),
            model: "novart-builtin".into(),
            ..Default::default()
        };
        tasks::submit(
            &mut app.db.get().unwrap(),
            &app.engine.config,
            &app.engine.catalog,
            user.id,
            &input,
        )
        .unwrap();
    }
    assert!(app.engine.process_one("w").unwrap());
    let scrape = || {
        let r = t
            .client
            .get("/metrics")
            .header(Header::new("Authorization", format!("Bearer {token}")))
            .dispatch();
        assert_eq!(r.status(), Status::Ok);
        assert!(r
            .content_type()
            .unwrap()
            .to_string()
            .starts_with("text/plain"));
        r.into_string().unwrap()
    };
    let text = scrape();
    for line in [
        "novart_http_requests_total{group=\"studio\",status=\"2xx\"} 1",
        "novart_queue_depth{model=\"novart-builtin\",state=\"queued\"} 1",
        "novart_tasks_finished_total{model=\"novart-builtin\",provider=\"builtin\",status=\"succeeded\"} 1",
        "novart_task_duration_seconds_count{model=\"novart-builtin\",provider=\"builtin\"} 1",
        "novart_users 1",
        "novart_sessions_active 1",
        &format!(
            "novart_node_info{{node=\"gpu-node-2\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
        "novart_webhook_attempts_total 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(text
        .contains("novart_http_request_duration_seconds_bucket{group=\"studio\",le=\"+Inf\"} 1"));
    assert!(
        text.contains("novart_ledger_credits{kind=\"task_charge\"} -2"),
        "{text}"
    );
    assert!(text.contains("novart_db_bytes "));
    // Every sample line is `name{labels} number`, every family has a TYPE.
    let sample =
        regex::Regex::new(r#"^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$"#)
            .unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(sample.is_match(line), "not a Prometheus sample: {line}");
        let name = line.split(['{', ' ']).next().unwrap();
        let family = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "no TYPE for {family}"
        );
    }
    // Counters grow with traffic.
    assert_eq!(t.get("/studio").status(), Status::Ok);
    assert!(scrape().contains("novart_http_requests_total{group=\"studio\",status=\"2xx\"} 2"));

    // Off without a token.
    let off = common::TestApp::new();
    assert_eq!(off.get("/metrics").status(), Status::NotFound);

    // The same numbers for people.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_novart"))
        .arg("stats")
        .env_remove("NOVART_CONFIG")
        .env("NOVART_STORAGE__DATA_DIR", &t.config.storage.data_dir)
        .envs(common::pg::env_for(&t.config.storage.data_dir))
        .output()
        .unwrap();
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("accounts           1") && text.contains("1 waiting, 0 running"),
        "{text}"
    );
}
