//! The SMTP transport, against a fake SMTP server on 127.0.0.1 that speaks
//! the protocol (RFC 5321: greeting, EHLO, MAIL, RCPT, DATA, QUIT) and keeps
//! what it was sent.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use common::{TestApp, PASSWORD};
use novart::config::MailTransport;
use rocket::http::Status;

#[derive(Default, Debug, Clone)]
struct Received {
    from: String,
    to: Vec<String>,
    data: String,
}

fn serve_one(stream: TcpStream, inbox: Arc<Mutex<Vec<Received>>>) {
    let mut out = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut msg = Received::default();
    out.write_all(b"220 fake.smtp.test ESMTP ready\r\n")
        .unwrap();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            out.write_all(b"250-fake.smtp.test greets you\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                .unwrap();
        } else if upper.starts_with("MAIL FROM:") {
            msg.from = cmd[10..].trim().to_string();
            out.write_all(b"250 2.1.0 OK\r\n").unwrap();
        } else if upper.starts_with("RCPT TO:") {
            msg.to.push(cmd[8..].trim().to_string());
            out.write_all(b"250 2.1.5 OK\r\n").unwrap();
        } else if upper == "DATA" {
            out.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                msg.data.push_str(
                    line.strip_prefix('.')
                        .filter(|_| line.starts_with(".."))
                        .unwrap_or(&line),
                );
            }
            inbox.lock().unwrap().push(std::mem::take(&mut msg));
            out.write_all(b"250 2.0.0 queued\r\n").unwrap();
        } else if upper == "QUIT" {
            out.write_all(b"221 2.0.0 bye\r\n").unwrap();
            return;
        } else if upper == "RSET" || upper == "NOOP" {
            out.write_all(b"250 OK\r\n").unwrap();
        } else {
            out.write_all(b"502 5.5.2 command not recognised\r\n")
                .unwrap();
        }
    }
}

fn fake_smtp() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let inbox2 = inbox.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let inbox = inbox2.clone();
            std::thread::spawn(move || serve_one(stream, inbox));
        }
    });
    (port, inbox)
}

#[test]
fn verification_mail_goes_through_smtp() {
    let (port, inbox) = fake_smtp();
    let app = TestApp::with(|c| {
        c.mail.transport = MailTransport::Smtp;
        c.mail.smtp_url = format!("smtp://127.0.0.1:{port}");
        c.mail.from = "Studio <studio@example.com>".into();
    });
    let r = app.register("smtp@example.com", PASSWORD, "Smtp");
    assert_eq!(r.status(), Status::Ok);
    let got = inbox.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].from, "<studio@example.com>");
    assert_eq!(got[0].to, vec!["<smtp@example.com>".to_string()]);
    let text = common::decode_mail(&got[0].data);
    assert!(
        text.contains("Subject: Confirm your e-mail address for Novart Studio"),
        "{text}"
    );
    assert!(
        text.contains("Content-Type: text/plain"),
        "a plain-text part"
    );
    assert!(text.contains("Content-Type: text/html"), "an HTML part");
    let link = common::find_link(&text, "/verify?token=").expect("a link");
    // Nothing was written to the outbox: SMTP replaced it.
    assert!(!app.outbox().exists());

    // The link from the SMTP message confirms the account.
    let path = common::local_path(&link);
    let page = app.page(&path);
    let token = path.split("token=").nth(1).unwrap();
    let r = app.post_raw(
        "/verify",
        &[("csrf_token", &common::csrf_in(&page)), ("token", token)],
    );
    assert_eq!(r.status(), Status::SeeOther);
    assert_eq!(
        app.login("smtp@example.com", PASSWORD).status(),
        Status::SeeOther
    );
}

#[test]
fn a_dead_mail_server_does_not_reveal_accounts_or_lose_them() {
    // A port with nothing listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::with(|c| {
        c.mail.transport = MailTransport::Smtp;
        c.mail.smtp_url = format!("smtp://127.0.0.1:{port}");
    });
    let r = app.register("down@example.com", PASSWORD, "Down");
    assert_eq!(r.status(), Status::Ok, "the visitor sees the normal answer");
    let n: i64 = app
        .db()
        .query_row("SELECT count(*) FROM users", (), |r| r.get(0))
        .unwrap();
    assert_eq!(
        n, 1,
        "the account is kept; a new link can be asked for later"
    );

    let strip = |b: String, e: &str| b.replace(e, "EMAIL");
    let known = app.submit("/forgot", "/forgot", &[("email", "down@example.com")]);
    let (ks, kb) = (
        known.status(),
        strip(known.into_string().unwrap(), "down@example.com"),
    );
    let unknown = app.submit("/forgot", "/forgot", &[("email", "nobody@example.com")]);
    let (us, ub) = (
        unknown.status(),
        strip(unknown.into_string().unwrap(), "nobody@example.com"),
    );
    assert_eq!((ks, kb), (us, ub));
}
