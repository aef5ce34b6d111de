//! The live stream (/api/v1/events) follows its session: when the session
//! ends for any reason, the stream closes within seconds and sends nothing
//! more (no security alert, no announcement, no task).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use common::{http, live};
use novart::model::UserId;

/// Opens the stream with a fresh session of `user`; returns the reader
/// once "ready" arrived, and the session's id.
fn open_stream(
    srv: &common::Live,
    app: &novart::App,
    user: UserId,
) -> (BufReader<std::net::TcpStream>, novart::model::SessionId) {
    let common::LiveSession {
        cookie,
        csrf,
        id: session,
        ..
    } = common::live_session(srv, app, user);
    let addr = srv.base.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /api/v1/events?csrf_token={csrf} HTTP/1.0\r\nHost: {addr}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "the stream opens");
        if line.starts_with("event: ready") || line.starts_with("event:ready") {
            break;
        }
        lines.push(line);
    }
    assert!(lines[0].contains("200"), "{lines:?}");
    (r, session)
}

/// Everything the stream sends until it closes; panics if it stays open
/// past `limit`.
fn rest_of(mut r: BufReader<std::net::TcpStream>, limit: Duration) -> (Vec<String>, Duration) {
    let started = Instant::now();
    let mut events = Vec::new();
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {
                if let Some(e) = line.strip_prefix("event:") {
                    events.push(e.trim().to_string());
                }
            }
            Err(e) => panic!("the stream stayed open ({e}) after {:?}", started.elapsed()),
        }
        assert!(
            started.elapsed() < limit,
            "the stream stayed open: {events:?}"
        );
    }
    (events, started.elapsed())
}

#[test]
fn a_stream_ends_with_its_session_whatever_ends_it() {
    let srv = live(|c| c.queue.workers = 0);
    let app = novart::App::new(srv.config.clone()).unwrap();
    type End = fn(&novart::App, UserId, novart::model::SessionId);
    let ends: Vec<(&str, End)> = vec![
        ("sign-out", |app, _, id| {
            novart::domain::sessions::end(&app.db.get().unwrap(), id).unwrap()
        }),
        ("the session list's end", |app, user, id| {
            assert!(novart::domain::sessions::end_one(&app.db.get().unwrap(), user, id).unwrap())
        }),
        ("a password change elsewhere", |app, user, _| {
            let hash = novart::domain::passwords::hash("a new password 123", 4).unwrap();
            common::in_tx(&mut app.db.get().unwrap(), |tx| {
                novart::domain::recovery::password_replaced(
                    tx,
                    user,
                    &hash,
                    None,
                    novart::domain::now(),
                )
            })
            .unwrap()
        }),
        ("a ban", |app, user, _| {
            let actor = novart::domain::bans::Actor {
                name: "admin@example.com",
                ip: None,
            };
            novart::domain::bans::ban(
                &mut app.db.get().unwrap(),
                user,
                "all",
                None,
                "spam",
                &actor,
            )
            .unwrap();
        }),
        ("the account's deletion", |app, user, _| {
            novart::domain::deletion::delete(
                &mut app.db.get().unwrap(),
                &app.config,
                user,
                "admin",
                "asked for",
                None,
            )
            .unwrap();
        }),
    ];
    for (i, (why, end)) in ends.into_iter().enumerate() {
        let (user, key) = common::user_with_key(&app, &format!("live{i}@example.com"), 50);
        let (stream, session) = open_stream(&srv, &app, user);
        let ended = Instant::now();
        end(&app, user, session);
        // What would have reached the stream: an announcement, and (while
        // the account still exists) a new task with its prompt.
        let _ = novart::domain::messages::announce(
            &mut app.db.get().unwrap(),
            "After the end",
            "must not arrive",
            Some(user),
        );
        let _ = http()
            .post(&format!("{}/api/v1/tasks", srv.base))
            .header("Authorization", &format!("Bearer {key}"))
            .send_json(serde_json::json!({ "prompt": "a secret prompt" }));
        let (events, _) = rest_of(stream, Duration::from_secs(10));
        println!(
            "{why}: the stream closed {:.1} s after the session ended",
            ended.elapsed().as_secs_f64()
        );
        assert!(
            events.iter().all(|e| e != "message" && e != "task"),
            "{why}: {events:?}"
        );
    }
}

#[test]
fn a_stream_of_a_live_session_keeps_going() {
    let srv = live(|c| c.queue.workers = 0);
    let app = novart::App::new(srv.config.clone()).unwrap();
    let (user, _) = common::user_with_key(&app, "stays@example.com", 0);
    let (mut stream, _) = open_stream(&srv, &app, user);
    // Another session of the same account ends: this one goes on.
    let (_, other) = open_stream(&srv, &app, user);
    novart::domain::sessions::end(&app.db.get().unwrap(), other).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    novart::domain::messages::announce(&mut app.db.get().unwrap(), "Still here", "yes", Some(user))
        .unwrap();
    loop {
        let mut line = String::new();
        assert!(
            stream.read_line(&mut line).unwrap() > 0,
            "the stream stays open"
        );
        if line.contains("Still here") {
            break;
        }
    }
}
