//! Shared test harness: `TestApp` gives each test its own data directory,
//! SQLite file and Rocket client, plus helpers that go through the real forms
//! and read links from the mail outbox.
#![allow(dead_code)]

pub mod browser;
pub mod pg;
pub mod s3;

use std::path::{Path, PathBuf};

use novart::config::Config;
use rocket::http::{ContentType, Header, Status};
use rocket::local::blocking::{Client, LocalResponse};

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub client: Client,
}

impl TestApp {
    pub fn new() -> TestApp {
        TestApp::with(|_| {})
    }

    pub fn with(f: impl FnOnce(&mut Config)) -> TestApp {
        log_if_asked();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_data_dir(dir.path());
        s3::apply(&mut config);
        pg::apply(&mut config);
        f(&mut config);
        config.validate().expect("test config is valid");
        let rocket = novart::build_rocket(config.clone()).expect("app builds");
        let client = Client::tracked(rocket).expect("rocket client");
        TestApp {
            dir,
            config,
            client,
        }
    }

    /// An app over an existing data directory (e.g. one the CLI made).
    pub fn at(data_dir: &Path) -> (Client, Config) {
        let mut config = Config::for_data_dir(data_dir);
        s3::apply(&mut config);
        pg::apply(&mut config);
        let rocket = novart::build_rocket(config.clone()).expect("app builds");
        (Client::tracked(rocket).expect("rocket client"), config)
    }

    /// A second browser (its own cookie jar) on the same server.
    pub fn other_browser(&self) -> Client {
        let rocket = novart::build_rocket(self.config.clone()).expect("app builds");
        Client::tracked(rocket).expect("rocket client")
    }

    /// A second device: another browser that signs in as `email`.
    pub fn sign_in_elsewhere(&self, email: &str, password: &str, user_agent: &str) -> Client {
        let other = self.other_browser();
        let page = other.get("/login").dispatch().into_string().unwrap();
        let status = other
            .post("/login")
            .header(ContentType::Form)
            .header(Header::new("User-Agent", user_agent.to_string()))
            .body(form_body(&[
                ("csrf_token", &csrf_in(&page)),
                ("email", email),
                ("password", password),
            ]))
            .dispatch()
            .status();
        assert_eq!(status, Status::SeeOther, "second device signs in");
        other
    }

    pub fn get(&self, path: &str) -> LocalResponse<'_> {
        self.client.get(path.to_string()).dispatch()
    }

    pub fn page(&self, path: &str) -> String {
        let r = self.get(path);
        assert_eq!(r.status(), Status::Ok, "GET {path}");
        r.into_string().unwrap()
    }

    /// The CSRF token embedded in a page.
    pub fn csrf(&self, path: &str) -> String {
        csrf_in(&self.page(path))
    }

    /// Posts a form as a browser would (token taken from `from_page`).
    pub fn submit(
        &self,
        from_page: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> LocalResponse<'_> {
        let token = self.csrf(from_page);
        let mut all = vec![("csrf_token", token.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(action, &all)
    }

    /// Posts exactly these fields (no token added).
    pub fn post_raw(&self, action: &str, fields: &[(&str, &str)]) -> LocalResponse<'_> {
        self.client
            .post(action.to_string())
            .header(ContentType::Form)
            .body(form_body(fields))
            .dispatch()
    }

    pub fn post_with_header(
        &self,
        action: &str,
        fields: &[(&str, &str)],
        header: Header<'static>,
    ) -> LocalResponse<'_> {
        self.client
            .post(action.to_string())
            .header(ContentType::Form)
            .header(header)
            .body(form_body(fields))
            .dispatch()
    }

    pub fn register(&self, email: &str, password: &str, name: &str) -> LocalResponse<'_> {
        self.submit(
            "/register",
            "/register",
            &[
                ("email", email),
                ("password", password),
                ("display_name", name),
            ],
        )
    }

    /// Opens the newest verification link sent to `email` and confirms it.
    pub fn verify(&self, email: &str) -> LocalResponse<'_> {
        let link = self.latest_link(email, "/verify?token=");
        let path = local_path(&link);
        let page = self.page(&path);
        let token = path.split("token=").nth(1).unwrap().to_string();
        let csrf = csrf_in(&page);
        self.post_raw("/verify", &[("csrf_token", &csrf), ("token", &token)])
    }

    pub fn login(&self, email: &str, password: &str) -> LocalResponse<'_> {
        self.submit(
            "/login",
            "/login",
            &[("email", email), ("password", password)],
        )
    }

    /// Registers, verifies and signs in; returns the e-mail used.
    pub fn signed_in_user(&self, email: &str) -> String {
        let r = self.register(email, PASSWORD, "Test User");
        assert_eq!(r.status(), Status::Ok);
        assert_eq!(self.verify(email).status(), Status::SeeOther);
        assert_eq!(self.login(email, PASSWORD).status(), Status::SeeOther);
        email.to_string()
    }

    pub fn session_cookie(&self) -> Option<String> {
        self.client
            .cookies()
            .get("nova_art_session")
            .map(|c| c.value().to_string())
    }

    pub fn outbox(&self) -> PathBuf {
        self.config.outbox_dir()
    }

    /// All messages sent to `to`, oldest first, decoded.
    pub fn mails_to(&self, to: &str) -> Vec<String> {
        mails_to(&self.outbox(), to)
    }

    /// The newest link containing `marker` in a message to `to`.
    pub fn latest_link(&self, to: &str, marker: &str) -> String {
        let mails = self.mails_to(to);
        for mail in mails.iter().rev() {
            if let Some(link) = find_link(mail, marker) {
                return link;
            }
        }
        panic!("no message to {to} with a link containing {marker}; messages: {mails:#?}");
    }

    /// A connection to this app's database (SQLite or PostgreSQL).
    pub fn db(&self) -> novart::domain::Connection {
        novart::domain::Db::connect(&self.config).unwrap()
    }
}

/// The server's log on stderr when TEST_NOVART_LOG is set (e.g.
/// `TEST_NOVART_LOG=novart=debug`), to see what went wrong behind a 500.
pub fn log_if_asked() {
    if let Ok(filter) = std::env::var("TEST_NOVART_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// An app (no HTTP) on `config` with one verified user.
/// A verified account with `credits` granted (on top of the signup bonus)
/// and an API key with the default limits; returns the user and the key.
pub fn user_with_key(
    app: &novart::App,
    email: &str,
    credits: i64,
) -> (novart::model::UserId, String) {
    let user = verified_user(app, email);
    let mut conn = app.db.get().unwrap();
    if credits > 0 {
        novart::domain::wallet::grant(&mut conn, user, credits, false, "test", "test credits")
            .unwrap();
    }
    let (_, key) = novart::domain::apikeys::create(
        &mut conn,
        &app.config,
        &app.engine.catalog,
        user,
        novart::domain::apikeys::KeySpec::defaults(&app.config, "test key"),
        novart::domain::apikeys::Authority::Admin,
    )
    .unwrap();
    (user, key)
}

/// Signs `client` in through the form with the test password.
pub fn sign_in(client: &Client, email: &str) -> Status {
    let page = client.get("/login").dispatch().into_string().unwrap();
    client
        .post("/login")
        .header(ContentType::Form)
        .body(form_body(&[
            ("csrf_token", &csrf_in(&page)),
            ("email", email),
            ("password", PASSWORD),
        ]))
        .dispatch()
        .status()
}

/// A connection to the database of the instance in `data_dir` (one the
/// CLI made), on this run's engine.
pub fn db_at(data_dir: &Path) -> novart::domain::Connection {
    novart::domain::Db::connect(&config_for(data_dir)).unwrap()
}

/// A verified account with the test password.
pub fn verified_user(app: &novart::App, email: &str) -> novart::model::UserId {
    let mut conn = app.db.get().unwrap();
    novart::domain::accounts::create_by_admin(
        &mut conn,
        &app.config,
        email,
        PASSWORD,
        "",
        novart::model::Role::User,
        true,
    )
    .unwrap()
    .id
}

/// A config on `dir` with the storage backend this run tests
/// (TEST_STORAGE_BACKEND).
pub fn config_for(dir: &Path) -> Config {
    let mut c = Config::for_data_dir(dir);
    s3::apply(&mut c);
    pg::apply(&mut c);
    c
}

pub fn app_with_user(config: &Config, email: &str) -> (novart::App, novart::model::UserId) {
    let app = novart::App::new(config.clone()).unwrap();
    let user = verified_user(&app, email);
    (app, user)
}

pub fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                novart::templates::urlencode(k),
                novart::templates::urlencode(v)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub fn csrf_in(html: &str) -> String {
    let marker = "<meta name=\"csrf-token\" content=\"";
    let start = html.find(marker).expect("page has a csrf-token meta tag") + marker.len();
    let end = html[start..].find('"').unwrap();
    html[start..start + end].to_string()
}

/// The path and query of an absolute URL.
pub fn local_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    match after_scheme.find('/') {
        Some(i) => after_scheme[i..].to_string(),
        None => "/".into(),
    }
}

pub fn find_link(text: &str, marker: &str) -> Option<String> {
    let i = text.find(marker)?;
    let start = text[..i].rfind("http").unwrap_or(i);
    let end = text[i..]
        .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .map(|e| i + e)
        .unwrap_or(text.len());
    Some(text[start..end].to_string())
}

pub fn mails_to(outbox: &Path, to: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(outbox) else {
        return vec![];
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().map(|x| x == "eml").unwrap_or(false))
        .map(|e| (e.metadata().unwrap().modified().unwrap(), e.path()))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|(_, p)| decode_mail(&std::fs::read_to_string(p).unwrap()))
        .filter(|m| m.lines().any(|l| l.starts_with("To:") && l.contains(to)))
        .collect()
}

/// Undoes the transfer encodings lettre may choose (quoted-printable or
/// base64) so tests can search the text; headers are kept as they are.
pub fn decode_mail(raw: &str) -> String {
    let mut out = String::new();
    let mut encoding = String::new();
    let mut in_headers = true;
    let mut body = String::new();
    let flush = |encoding: &str, body: &mut String, out: &mut String| {
        match encoding {
            "quoted-printable" => out.push_str(&decode_qp(body)),
            "base64" => {
                use base64::Engine;
                let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(compact) {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                } else {
                    out.push_str(body);
                }
            }
            _ => out.push_str(body),
        }
        body.clear();
    };
    for line in raw.split("\r\n").flat_map(|l| l.split('\n')) {
        if line.starts_with("--") {
            flush(&encoding, &mut body, &mut out);
            out.push_str(line);
            out.push('\n');
            in_headers = true;
            encoding.clear();
            continue;
        }
        if in_headers {
            out.push_str(line);
            out.push('\n');
            if let Some(v) = line.strip_prefix("Content-Transfer-Encoding:") {
                encoding = v.trim().to_ascii_lowercase();
            }
            if line.is_empty() {
                in_headers = false;
            }
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    flush(&encoding, &mut body, &mut out);
    out
}

fn decode_qp(s: &str) -> String {
    let joined = s.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs the built `novart` binary in `dir` with its data in `dir/data`.
pub fn novart(dir: &Path, args: &[&str]) -> std::process::Output {
    novart_with_stdin(dir, args, None)
}

pub fn novart_with_stdin(dir: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_novart"))
        .args(args)
        .current_dir(dir)
        .env_remove("NOVART_CONFIG")
        .env("NOVART_STORAGE__DATA_DIR", dir.join("data"))
        .envs(s3::env_for(&dir.join("data")))
        .envs(pg::env_for(&dir.join("data")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run novart");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}
pub mod fake_comfy;
pub mod fake_http;

/// The real server (build_rocket) on a free loopback port, for tests that
/// need many clients at once. Stops when dropped.
#[allow(dead_code)]
pub struct Live {
    pub base: String,
    pub config: Config,
    pub dir: tempfile::TempDir,
    shutdown: Option<rocket::Shutdown>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[allow(dead_code)]
pub fn live(f: impl FnOnce(&mut Config)) -> Live {
    log_if_asked();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::for_data_dir(dir.path());
    s3::apply(&mut config);
    pg::apply(&mut config);
    config.server.port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    f(&mut config);
    config.validate().expect("test config is valid");
    let (tx, rx) = std::sync::mpsc::channel();
    let c = config.clone();
    let thread = std::thread::spawn(move || {
        rocket::execute(async move {
            let rocket = novart::build_rocket(c).unwrap().ignite().await.unwrap();
            tx.send(rocket.shutdown()).unwrap();
            let _ = rocket.launch().await;
        })
    });
    let shutdown = rx.recv().expect("server starts");
    let addr = format!("127.0.0.1:{}", config.server.port);
    for _ in 0..200 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Live {
        base: format!("http://{addr}"),
        config,
        dir,
        shutdown: Some(shutdown),
        thread: Some(thread),
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            s.notify();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An HTTP client that returns 4xx/5xx answers instead of errors.
#[allow(dead_code)]
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent()
}

/// The `name=value` pairs of a response's Set-Cookie headers, as a Cookie
/// header.
#[allow(dead_code)]
pub fn cookies_of(r: &ureq::http::Response<ureq::Body>) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A fresh session on a live server, as a browser holds it.
#[allow(dead_code)]
pub struct LiveSession {
    /// The Cookie header.
    pub cookie: String,
    /// The CSRF token its pages carry.
    pub csrf: String,
    pub id: novart::model::SessionId,
    /// The inbox page it was read from.
    pub page: String,
}

/// Opens a session of `user` on a live server and reads its inbox page.
#[allow(dead_code)]
pub fn live_session(srv: &Live, app: &novart::App, user: novart::model::UserId) -> LiveSession {
    session_on(&srv.base, app, user)
}

/// Opens a session of `user` and reads its inbox page from the server at
/// `base` (any node of the instance).
#[allow(dead_code)]
pub fn session_on(base: &str, app: &novart::App, user: novart::model::UserId) -> LiveSession {
    let session = novart::domain::accounts::open_session(
        &mut app.db.get().unwrap(),
        &app.config,
        user,
        &novart::model::Client::default(),
    )
    .unwrap();
    let cookie = format!("nova_art_session={}", session.token);
    let page = http()
        .get(&format!("{base}/messages"))
        .header("Cookie", &cookie)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    LiveSession {
        csrf: csrf_in(&page),
        cookie,
        id: session.id,
        page,
    }
}

/// A model `id` served by `providers`, one credit per image, one size.
pub fn model(
    id: &str,
    providers: &[&str],
    size: &str,
    max_n: u32,
) -> novart::config::catalog::ModelConfig {
    novart::config::catalog::ModelConfig {
        id: id.into(),
        name: id.to_uppercase(),
        providers: providers.iter().map(|p| p.to_string()).collect(),
        upstream_model: String::new(),
        price: 1,
        sizes: vec![size.into()],
        max_n,
        reference_images: false,
        description: String::new(),
        charge_extra_images: false,
    }
}

/// Starts the server's queue workers (and the fleet's watch) for `engine`
/// on a runtime of their own; they run while the runtime is kept.
pub fn run_workers(engine: &novart::jobs::queue::Engine) -> rocket::tokio::runtime::Runtime {
    let rt = rocket::tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = engine.clone();
    rt.block_on(async move { engine.spawn_workers() });
    rt
}

/// Runs `f` in one write transaction (tests that set up a state the rules
/// would not reach on their own).
#[allow(dead_code)]
pub fn in_tx<T>(
    conn: &mut novart::domain::Connection,
    f: impl FnOnce(&novart::domain::Transaction<'_>) -> novart::AppResult<T>,
) -> novart::AppResult<T> {
    let tx = conn.write_transaction()?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// A verified account written straight into the table (no bcrypt), for
/// tests that need hundreds of them.
#[allow(dead_code)]
pub fn raw_user(
    conn: &novart::domain::Connection,
    email: &str,
    referral_code: &str,
    referred_by: Option<novart::model::UserId>,
    ip: Option<&str>,
) -> novart::model::UserId {
    conn.execute(
        "INSERT INTO users (email, display_name, password_hash, role, email_verified_at, created_at,
                            password_changed_at, referral_code, referred_by, registration_ip)
         VALUES (?1, 'R', 'x', 'user', 1, 1, 1, ?2, ?3, ?4)",
        novart::params![email, referral_code, referred_by, ip],
    )
    .unwrap();
    novart::model::UserId(conn.last_insert_rowid().unwrap())
}
