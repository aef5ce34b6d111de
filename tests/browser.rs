//! The account journey in a real browser: headless Chromium driven through
//! chromedriver (W3C WebDriver), against the built `novart` binary.
//!
//! Skips loudly when Chromium or chromedriver is missing, unless
//! NOVART_REQUIRE_BROWSER=1 (set by .ci/run), where that is a failure.
//! Screenshots land in target/screenshots/.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    for name in names {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    // Generous: the whole suite shares two cores with this browser.
    while start.elapsed() < Duration::from_secs(45) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

struct Browser {
    base: String,
    session: String,
    shots: PathBuf,
}

impl Browser {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            ("DELETE", _) => agent.delete(&url).call(),
            (_, b) => agent.post(&url).send_json(b.unwrap_or(json!({}))),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path} → {status}: {v}");
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn xpath(&self, xpath: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({ "using": "xpath", "value": xpath })),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {xpath}: {v}\n{}", self.source()))
            .to_string()
    }

    /// The input labelled `label` (found through <label for>, as a person would).
    fn field(&self, label: &str) -> String {
        let lab = self.xpath(&format!("//label[normalize-space()='{label}']"));
        let id = self.call("GET", &format!("/element/{lab}/attribute/for"), None);
        let id = id
            .as_str()
            .unwrap_or_else(|| panic!("label {label} has no for="));
        let v = self.call(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": format!("#{id}") })),
        );
        v[ELEMENT].as_str().unwrap().to_string()
    }

    fn fill(&self, label: &str, text: &str) {
        let el = self.field(label);
        self.call("POST", &format!("/element/{el}/clear"), None);
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Chooses the option shown as `option` in the select labelled `label`.
    fn select(&self, label: &str, option: &str) {
        let lab = self.xpath(&format!("//label[normalize-space()='{label}']"));
        let id = self.call("GET", &format!("/element/{lab}/attribute/for"), None);
        let opt = self.xpath(&format!(
            "//select[@id='{}']/option[normalize-space()='{option}']",
            id.as_str().unwrap()
        ));
        self.call("POST", &format!("/element/{opt}/click"), None);
    }

    fn click_button(&self, text: &str) {
        let el = self.xpath(&format!("//button[normalize-space()='{text}']"));
        self.call("POST", &format!("/element/{el}/click"), None);
    }

    fn wait_text(&self, text: &str) {
        wait_for(&format!("page text {text:?}"), || {
            self.source().contains(text)
        });
    }

    fn script(&self, js: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": js, "args": [] })),
        )
    }

    fn resize(&self, w: u32, h: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({ "width": w, "height": h })),
        );
    }

    fn screenshot(&self, name: &str) {
        use base64::Engine;
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(&self.shots).unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    fn no_horizontal_scroll(&self) -> bool {
        self.script("return document.documentElement.scrollWidth <= window.innerWidth;")
            == json!(true)
    }
}

/// A running studio, a chromedriver and a browser session on it.
struct Session {
    b: Browser,
    app_url: String,
    dir: tempfile::TempDir,
    _server: Kill,
    _driver: Kill,
    _profile: tempfile::TempDir,
}

/// Starts everything, or returns None (after saying so loudly) when Chromium
/// is not installed and NOVART_REQUIRE_BROWSER is not set.
fn start(test: &str) -> Option<Session> {
    let required = std::env::var("NOVART_REQUIRE_BROWSER")
        .map(|v| v == "1")
        .unwrap_or(false);
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = find_program(&["chromedriver"]);
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        if required {
            panic!("NOVART_REQUIRE_BROWSER=1 but chromium/chromedriver is not installed");
        }
        eprintln!("\n*** SKIPPED {test}: chromium and chromedriver are not installed (apt-get install chromium chromium-driver) ***\n");
        return None;
    };

    // The real binary on a free port with its own data.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let app_url = format!("http://127.0.0.1:{port}");
    let server = Kill(
        Command::new(env!("CARGO_BIN_EXE_novart"))
            .arg("serve")
            .current_dir(dir.path())
            .env_remove("NOVART_CONFIG")
            .env("NOVART_SERVER__PORT", port.to_string())
            .env("NOVART_STORAGE__DATA_DIR", dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the studio to answer /healthz", || {
        ureq::get(format!("{app_url}/healthz")).call().is_ok()
    });

    let dport = free_port();
    let driver = Kill(
        Command::new(driver)
            .arg(format!("--port={dport}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{dport}");
    wait_for("chromedriver", || {
        ureq::get(format!("{base}/status")).call().is_ok()
    });
    let profile = tempfile::tempdir().unwrap();
    let caps = json!({ "capabilities": { "alwaysMatch": { "browserName": "chrome", "goog:chromeOptions": {
        "binary": chromium.to_str().unwrap(),
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-quic", "--disable-component-update",
                 "--disable-sync", "--window-size=1280,900",
                 format!("--user-data-dir={}", profile.path().display())]
    }}}});
    let mut resp = ureq::post(format!("{base}/session"))
        .send_json(caps)
        .expect("new WebDriver session");
    let v: Value = resp.body_mut().read_json().unwrap();
    let session = v["value"]["sessionId"]
        .as_str()
        .expect("session id")
        .to_string();
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let b = Browser {
        base,
        session,
        shots,
    };
    Some(Session {
        b,
        app_url,
        dir,
        _server: server,
        _driver: driver,
        _profile: profile,
    })
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.b.call("DELETE", "", None)
        }));
    }
}

#[test]
fn account_journey_in_chromium() {
    let Some(s) = start("account_journey_in_chromium") else {
        return;
    };
    let (b, app_url, dir) = (&s.b, &s.app_url, &s.dir);

    // Landing page.
    b.goto(&format!("{app_url}/"));
    b.wait_text("Turn words into images");
    b.screenshot("01-landing");

    // Register through the labelled form.
    b.goto(&format!("{app_url}/register"));
    b.fill("E-mail address", "browser@example.com");
    b.fill("Display name", "Brow <b>Ser</b>");
    b.fill("Password", "short");
    b.click_button("Create account");
    // The browser's own minlength check or our message stops it; either way no account.
    std::thread::sleep(Duration::from_millis(300));
    assert!(b.url().ends_with("/register"));
    b.fill("Password", "a long browser passphrase");
    b.click_button("Create account");
    b.wait_text("Check your e-mail");
    b.screenshot("02-check-email");

    // Sign-in is refused before confirming.
    b.goto(&format!("{app_url}/login"));
    b.fill("E-mail address", "browser@example.com");
    b.fill("Password", "a long browser passphrase");
    b.click_button("Sign in");
    b.wait_text("Please confirm your e-mail address first");

    // Open the link from the outbox and confirm.
    let link = {
        let mails = common::mails_to(&dir.path().join("data/outbox"), "browser@example.com");
        mails
            .iter()
            .rev()
            .find_map(|m| common::find_link(m, "/verify?token="))
            .expect("verification mail")
    };
    let link = link.replace("http://127.0.0.1:8000", app_url);
    b.goto(&link);
    b.wait_text("Confirm your e-mail address");
    b.screenshot("03-confirm");
    b.click_button("Confirm my e-mail address");
    b.wait_text("Your e-mail address is confirmed");

    // Sign in: the e-mail is pre-filled from the redirect.
    b.fill("Password", "a long browser passphrase");
    b.click_button("Sign in");
    b.wait_text("Hello, Brow &lt;b&gt;Ser&lt;/b&gt;.");
    b.wait_text("You are signed in.");
    b.screenshot("04-signed-in");

    // Settings: rename, see the toast and the session list.
    b.goto(&format!("{app_url}/settings"));
    b.wait_text("Signed-in devices");
    b.fill("Display name", "Browser Artist");
    b.click_button("Save name");
    b.wait_text("Your display name is saved.");
    b.screenshot("05-settings");
    assert!(
        b.no_horizontal_scroll(),
        "settings scrolls sideways at 1280px"
    );

    // Phone width: nothing scrolls sideways.
    b.resize(360, 780);
    for path in ["/settings", "/", "/privacy"] {
        b.goto(&format!("{app_url}{path}"));
        assert!(b.no_horizontal_scroll(), "{path} scrolls sideways at 360px");
    }
    b.goto(&format!("{app_url}/settings"));
    b.screenshot("06-settings-phone");
    b.resize(1280, 900);

    // Data rights on the settings page, and the privacy notice.
    b.goto(&format!("{app_url}/settings#data-h"));
    b.wait_text("Download my data");
    b.script("document.getElementById('data-h').scrollIntoView(); return 1;");
    b.screenshot("07-settings-data");
    b.goto(&format!("{app_url}/privacy"));
    b.wait_text("Who else receives your data");
    b.screenshot("08-privacy");

    // Sign out from the header button.
    b.click_button("Sign out");
    b.wait_text("You are signed out.");
    b.goto(&format!("{app_url}/settings"));
    wait_for("redirect to sign-in", || b.url().contains("/login?next="));

    // Forgotten password, all the way to signing in with the new one.
    b.goto(&format!("{app_url}/forgot"));
    b.fill("E-mail address", "browser@example.com");
    b.click_button("Send reset link");
    b.wait_text("If an account exists for");
    let link = {
        let mails = common::mails_to(&dir.path().join("data/outbox"), "browser@example.com");
        mails
            .iter()
            .rev()
            .find_map(|m| common::find_link(m, "/reset?token="))
            .expect("reset mail")
    };
    b.goto(&link.replace("http://127.0.0.1:8000", app_url));
    b.fill("New password", "the newest passphrase");
    b.click_button("Save new password");
    b.wait_text("Your password has been changed");
    b.fill("Password", "the newest passphrase");
    b.click_button("Sign in");
    b.wait_text("Hello, Browser Artist.");
}

/// Runs the admin CLI on the session's data directory; it must succeed.
fn cli(s: &Session, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_novart"))
        .args(args)
        .current_dir(s.dir.path())
        .env("NOVART_STORAGE__DATA_DIR", s.dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "novart {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates a verified account with the CLI and signs in, landing on `next`.
fn sign_in_new_user(s: &Session, email: &str, name: &str, next: &str) {
    let data = s.dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_novart"))
        .args([
            "user",
            "create",
            "--email",
            email,
            "--name",
            name,
            "--verified",
            "--password-stdin",
        ])
        .current_dir(s.dir.path())
        .env("NOVART_STORAGE__DATA_DIR", &data)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"maker passphrase 1\n")?;
            c.wait()
        })
        .unwrap();
    assert!(out.success());
    s.b.goto(&format!(
        "{}/login?next={}",
        s.app_url,
        next.replace('/', "%2F")
    ));
    s.b.fill("E-mail address", email);
    s.b.fill("Password", "maker passphrase 1");
    s.b.click_button("Sign in");
}

#[test]
fn developer_center_in_chromium() {
    let Some(s) = start("developer_center_in_chromium") else {
        return;
    };
    let (b, app_url) = (&s.b, &s.app_url);
    sign_in_new_user(&s, "dev@example.com", "Dev", "/developer");
    b.wait_text("No keys yet");
    b.screenshot("20-developer-empty");
    b.fill("Name", "shop backend");
    b.click_button("Create key");
    b.wait_text("shown only this once");
    let secret = b.script("return document.getElementById('new-key-secret').textContent");
    let secret = secret.as_str().unwrap().to_string();
    assert!(secret.starts_with("nva_"), "{secret}");
    assert!(b.no_horizontal_scroll());
    b.screenshot("21-developer-new-key");
    // The key works from outside the browser.
    let mut r = ureq::get(&format!("{app_url}/api/v1/account"))
        .header("Authorization", &format!("Bearer {secret}"))
        .call()
        .unwrap();
    let v: Value = r.body_mut().read_json().unwrap();
    assert_eq!(v["email"], "dev@example.com");
    b.resize(390, 844);
    b.goto(&format!("{app_url}/developer"));
    assert!(!b.source().contains(&secret), "shown once");
    let wide = b.script("return Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && e.children.length < 50).map(e => e.tagName + '.' + e.className + ':' + Math.round(e.getBoundingClientRect().right)).slice(0, 8).join(' ');");
    assert!(b.no_horizontal_scroll(), "too wide: {wide}");
    b.screenshot("22-developer-phone");
    b.resize(1280, 900);
    b.goto(&format!("{app_url}/docs/api"));
    b.wait_text("Standard Webhooks");
    b.screenshot("23-docs-api");

    // An announcement shows in the inbox with the unread badge.
    cli(
        &s,
        &[
            "announce",
            "--title",
            "Maintenance tonight",
            "--body",
            "The studio pauses at 02:00 UTC for ten minutes.",
        ],
    );
    b.goto(&format!("{app_url}/messages"));
    b.wait_text("Maintenance tonight");
    assert!(
        b.source().contains("2 unread"),
        "the announcement and the new-key alert"
    );
    b.screenshot("24-messages");
    assert_eq!(
        b.script("return document.getElementById('notify-toggle').hidden;"),
        json!(false),
        "the notification switch is offered"
    );
    // The service worker that shows notifications is registered for the site.
    let scope = b.call("POST", "/execute/async", Some(json!({ "script":
        "const done = arguments[0]; navigator.serviceWorker.ready.then(r => done(r.scope)).catch(e => done('error: ' + e));",
        "args": [] })));
    assert_eq!(scope, json!(format!("{app_url}/")), "service worker scope");

    // A new message arrives live on another page: a toast and a new count.
    b.goto(&format!("{app_url}/library"));
    b.wait_text("Library");
    cli(
        &s,
        &[
            "announce",
            "--title",
            "New models this week",
            "--body",
            "Two new styles are in the studio.",
            "--to",
            "dev@example.com",
        ],
    );
    wait_for("the live toast", || {
        b.script("return Array.from(document.querySelectorAll('.toast-message:not([hidden])')).map(t => t.textContent).join(' | ');")
            .as_str()
            .is_some_and(|t| t.contains("New models this week"))
    });
    assert!(b.source().contains("3 unread"), "the badge follows");
    b.screenshot("25-live-toast");
    // Shown once, it does not come back on the next page (localStorage).
    b.script("Array.from(document.querySelectorAll('.toast-message')).filter(t => t.textContent.includes('New models')).forEach(t => t.querySelector('.toast-close').click()); return 1;");
    b.goto(&format!("{app_url}/wallet"));
    b.wait_text("Wallet");
    assert_eq!(
        b.script("return Array.from(document.querySelectorAll('.toast-message:not([hidden])')).filter(t => t.textContent.includes('New models')).length;"),
        json!(0)
    );
    assert_eq!(
        b.script("return localStorage.getItem('novart.toasts.seen') !== null;"),
        json!(true)
    );

    // Suspended: signed out at once; signing in again shows why and until when.
    cli(
        &s,
        &[
            "ban",
            "dev@example.com",
            "--for",
            "7d",
            "--reason",
            "Automated requests for forged documents",
        ],
    );
    b.goto(&format!("{app_url}/login?next=%2Fstudio"));
    b.fill("E-mail address", "dev@example.com");
    b.fill("Password", "maker passphrase 1");
    b.click_button("Sign in");
    b.wait_text("Your account is suspended until");
    assert!(b
        .source()
        .contains("Automated requests for forged documents"));
    b.screenshot("26-suspended");

    // A narrower restriction stands next to the ban; the banner names both
    // and leads to Settings, where each can be appealed once.
    cli(
        &s,
        &[
            "ban",
            "dev@example.com",
            "--scope",
            "upload",
            "--for",
            "30d",
            "--reason",
            "Uploads of other people's documents",
        ],
    );
    b.goto(&format!("{app_url}/library"));
    b.wait_text("You may not upload reference images until");
    b.goto(&format!("{app_url}/settings#restrictions-h"));
    b.wait_text("Reference-image uploads");
    b.fill(
        "Why this restriction should be lifted",
        "The forged-document prompts came from a leaked key, revoked since.",
    );
    b.click_button("Send appeal");
    b.wait_text("is sent. The decision arrives in your inbox.");
    b.wait_text("Appeal pending");
    assert!(b.source().contains("leaked key, revoked since"));
    b.screenshot("27-appeal");
}

#[test]
fn studio_journey_in_chromium() {
    let Some(s) = start("studio_journey_in_chromium") else {
        return;
    };
    let (b, app_url) = (&s.b, &s.app_url);
    sign_in_new_user(&s, "maker@example.com", "Maker", "/studio");
    b.wait_text("Nothing here yet");
    assert!(b.source().contains("built-in renderer, no AI model"));
    b.screenshot("10-studio-empty");

    // Write a prompt, pick 16:9 and two images; the cost follows.
    b.fill("Prompt", "a sunset over the ocean, warm light, calm water");
    // As a person would: scroll the choice out from under the action bar.
    b.script("document.querySelector('label[for=\"ar-16-9\"]').scrollIntoView({block: 'center'});");
    let wide = b.xpath("//label[normalize-space()='16:9']");
    b.call("POST", &format!("/element/{wide}/click"), None);
    b.select("Images", "2");
    wait_for("the cost to show 2 credits", || {
        b.source().contains("2 credits")
    });
    b.click_button("Generate");

    // The card appears at once and turns into images, live.
    b.wait_text("Queued: 2 images on the way.");
    wait_for("the task to finish", || b.source().contains(">Done<"));
    wait_for("two images in the card", || {
        b.script("return document.querySelectorAll('.task-card .thumb img').length;") == json!(2)
    });
    wait_for("the images to load", || {
        b.script("return Array.from(document.querySelectorAll('.task-card .thumb img')).every(i => i.complete && i.naturalWidth > 0);") == json!(true)
    });
    b.screenshot("11-studio-done");

    // Open the large view, then close it with Escape.
    let thumb = b.xpath("(//button[contains(@class,'thumb')])[1]");
    b.call("POST", &format!("/element/{thumb}/click"), None);
    wait_for("the viewer", || {
        b.script("return document.getElementById('viewer').open;") == json!(true)
    });
    wait_for("the full image", || {
        b.script("const i = document.getElementById('viewer-img'); return i.complete && i.naturalWidth === 1024;") == json!(true)
    });
    b.screenshot("12-viewer");
    // The heading is the prompt; the arrow keys and the buttons walk the
    // images, and the ends have no button past them.
    let viewer_state = || {
        b.script("const v = k => document.getElementById(k); return [v('viewer-title').textContent, v('viewer-img').getAttribute('src'), v('viewer-prev').hidden, v('viewer-next').hidden, v('viewer-position').textContent];")
    };
    let first = viewer_state();
    assert!(
        first[0]
            .as_str()
            .unwrap()
            .starts_with("a sunset over the ocean"),
        "{first}"
    );
    assert_eq!(
        (&first[2], &first[3]),
        (&json!(true), &json!(false)),
        "{first}"
    );
    assert_eq!(first[4], "1 of 2");
    let key = |code: &str| {
        b.call(
            "POST",
            "/actions",
            Some(
                json!({ "actions": [{ "type": "key", "id": "kb", "actions": [
            { "type": "keyDown", "value": code }, { "type": "keyUp", "value": code } ] }] }),
            ),
        );
    };
    key("\u{E014}"); // ArrowRight
    let second = viewer_state();
    assert_ne!(second[1], first[1], "another image");
    assert_eq!(
        (&second[2], &second[3], &second[4]),
        (&json!(false), &json!(true), &json!("2 of 2")),
        "{second}"
    );
    b.script("document.getElementById('viewer-prev').click();");
    assert_eq!(viewer_state()[1], first[1]);
    key("\u{E012}"); // ArrowLeft at the first image: nothing before it
    assert_eq!(viewer_state()[1], first[1]);
    // The close button is on screen, at desktop and phone sizes.
    for (w, h) in [(1280, 800), (390, 844)] {
        b.resize(w, h);
        let on_screen = b.script("const r = document.getElementById('viewer-close').getBoundingClientRect(); return r.top >= 0 && r.right <= window.innerWidth && r.bottom <= window.innerHeight && r.width > 0;");
        assert_eq!(on_screen, json!(true), "{w}x{h}");
    }
    b.screenshot("12b-viewer-phone");
    b.resize(1280, 800);
    key("\u{E00C}");
    wait_for("the viewer to close", || {
        b.script("return document.getElementById('viewer').open;") == json!(false)
    });

    // The library shows both images; the download link serves the PNG.
    b.goto(&format!("{app_url}/library"));
    wait_for("two tiles", || {
        b.script("return document.querySelectorAll('.gallery .tile').length;") == json!(2)
    });
    wait_for("the previews to load", || {
        b.script("return Array.from(document.querySelectorAll('.gallery img')).every(i => i.complete && i.naturalWidth > 0);") == json!(true)
    });
    b.screenshot("13-library");
    let tile = b.xpath("(//ul[@class='gallery']//button)[1]");
    b.call("POST", &format!("/element/{tile}/click"), None);
    wait_for("the viewer", || {
        b.script("return document.getElementById('viewer').open;") == json!(true)
    });
    let kind = b.call("POST", "/execute/async", Some(json!({ "script":
        "const done = arguments[0]; fetch(document.getElementById('viewer-download').href).then(r => done([r.status, r.headers.get('content-type'), r.headers.get('content-disposition')]));",
        "args": [] })));
    assert_eq!(kind[0], 200);
    assert_eq!(kind[1], "image/png");
    assert!(kind[2].as_str().unwrap().starts_with("attachment"));

    // "Use these settings again" fills the studio form.
    let reuse = b.call(
        "POST",
        "/execute/sync",
        Some(
            json!({ "script": "return document.getElementById('viewer-reuse').href;", "args": [] }),
        ),
    );
    b.goto(reuse.as_str().unwrap());
    wait_for("the prompt to be filled", || {
        b.script("return document.getElementById('prompt').value;")
            == json!("a sunset over the ocean, warm light, calm water")
    });
    assert_eq!(
        b.script("return document.querySelector('input[name=aspect_ratio]:checked').value;"),
        json!("16:9")
    );

    // Phone width: nothing scrolls sideways.
    b.resize(360, 780);
    for path in ["/studio", "/library"] {
        b.goto(&format!("{app_url}{path}"));
        assert!(b.no_horizontal_scroll(), "{path} scrolls sideways at 360px");
    }
    b.goto(&format!("{app_url}/studio"));
    b.screenshot("14-studio-phone");
    b.resize(1280, 900);

    // Sharing: publish one image to the gallery and share it by link.
    b.goto(&format!("{app_url}/library"));
    b.script("document.querySelector('.tile details.share').open = true; return 1;");
    b.click_button("Publish to the gallery");
    b.wait_text("The image is in the public gallery.");
    b.script("document.querySelector('.tile details.share').open = true; return 1;");
    b.click_button("Create a share link");
    b.wait_text("Anyone with the link can now see the image.");
    b.script("document.querySelector('.tile details.share').open = true; return 1;");
    b.screenshot("15-library-sharing");
    let link = b.script("return document.querySelector('.share-body input[readonly]').value;");
    let link = link
        .as_str()
        .unwrap()
        .replace("http://127.0.0.1:8000", app_url);
    b.goto(&format!("{app_url}/gallery"));
    wait_for("the published image to load", || {
        b.script("return Array.from(document.querySelectorAll('.gallery img')).filter(i => i.complete && i.naturalWidth > 0).length;") == json!(1)
    });
    b.screenshot("16-gallery");
    b.goto(&link);
    wait_for("the shared image to load", || {
        b.script("var i = document.querySelector('.shared img'); return !!i && i.complete && i.naturalWidth > 0;") == json!(true)
    });
    b.screenshot("17-shared");

    // The footer switches the whole studio to Simplified Chinese, live
    // texts of the scripts included.
    b.goto(&format!("{app_url}/studio"));
    b.select("Language", "简体中文");
    b.click_button("Change");
    b.wait_text("你的任务");
    b.fill("提示词", "海上日落，温暖的光线");
    b.click_button("生成");
    b.wait_text("已排队：1 张图片正在生成。");
    wait_for("the new task to finish", || {
        b.script("return document.querySelectorAll('.task-card .badge-succeeded').length;")
            == json!(2)
    });
    wait_for("the images to load", || {
        b.script("return Array.from(document.querySelectorAll('.task-card .thumb img')).every(i => i.complete && i.naturalWidth > 0);") == json!(true)
    });
    assert!(b.source().contains(">已完成<"));
    b.script("window.scrollTo(0, 0); return true;");
    b.screenshot("18-studio-zh-CN");

    // The reference picker reads in the page's language (the browser's own
    // file button, which stays English, is hidden) and says what was chosen.
    let picker = b.script("const i = document.getElementById('refs'); return [document.getElementById('refs-choose').textContent, document.getElementById('refs-chosen').textContent, i.getBoundingClientRect().width <= 1];");
    assert_eq!(picker, json!(["选择图片", "未选择", true]));
    let png = s.dir.path().join("reference.png");
    image::RgbImage::from_pixel(64, 48, image::Rgb([200, 120, 40]))
        .save(&png)
        .unwrap();
    let input = b.xpath("//input[@id='refs']");
    b.call(
        "POST",
        &format!("/element/{input}/value"),
        Some(json!({ "text": png.to_str().unwrap() })),
    );
    wait_for("the reference's thumbnail", || {
        b.script("const i = document.querySelector('#ref-list img'); return !!i && i.complete && i.naturalWidth > 0;")
            == json!(true)
    });
    assert_eq!(
        b.script("return document.getElementById('refs-chosen').textContent;"),
        json!("已选 1 张，最多 4 张")
    );
    b.script("document.getElementById('dropzone').scrollIntoView({block: 'center'}); return true;");
    b.screenshot("18b-reference-zh-CN");
}

/// The visible toasts' texts.
fn toasts(b: &Browser) -> Vec<String> {
    let v = b.script(
        "return Array.from(document.querySelectorAll('#toasts .toast:not([hidden])')).map(t => t.textContent.replace('×', '').trim());",
    );
    serde_json::from_value(v).unwrap()
}

#[test]
fn toasts_are_one_at_a_time_leave_by_themselves_and_show_inbox_items_once() {
    let Some(s) = start("toasts_are_one_at_a_time_leave_by_themselves_and_show_inbox_items_once")
    else {
        return;
    };
    let (b, app_url) = (&s.b, &s.app_url);
    sign_in_new_user(&s, "toast@example.com", "Toast", "/studio");
    b.wait_text("Generate");
    // The sign-in's own notice is the one toast; a new one replaces it.
    wait_for("the sign-in toast", || toasts(b).len() == 1);
    b.script("window.novartToast('Queued: 2 images on the way.', 'success'); window.novartToast('Canceled.', 'info');");
    assert_eq!(toasts(b), ["Canceled."]);
    // It leaves by itself.
    wait_for("the toast to leave", || toasts(b).is_empty());
    // An error stays until dismissed.
    b.script("window.novartToast('The upload failed.', 'error');");
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(toasts(b), ["The upload failed."]);
    b.script("document.querySelector('#toasts .toast-close').click();");
    assert!(toasts(b).is_empty());

    // An inbox item: a toast on the page it arrives on, and never again.
    cli(
        &s,
        &[
            "announce",
            "--title",
            "Maintenance tonight",
            "--body",
            "Back at 2:00.",
            "--to",
            "toast@example.com",
        ],
    );
    wait_for("the inbox toast", || {
        toasts(b).iter().any(|t| t.contains("Maintenance tonight"))
    });
    for path in ["/studio", "/library", "/wallet"] {
        b.goto(&format!("{app_url}{path}"));
        b.wait_text("Novart Studio");
        assert!(
            !toasts(b).iter().any(|t| t.contains("Maintenance tonight")),
            "shown once, not again on {path}"
        );
    }

    // On a phone the toast keeps off the form: at the bottom it would cover
    // Generate, so it goes to the top.
    b.resize(390, 844);
    b.goto(&format!("{app_url}/studio"));
    b.wait_text("Generate");
    b.script("document.querySelector('.studio-panel button[type=submit]').scrollIntoView({block: 'end'});");
    b.script("window.novartToast('Your images are ready.', 'success');");
    let covered = b.script(
        "const t = document.querySelector('#toasts').getBoundingClientRect();
         const g = document.querySelector('.studio-panel button[type=submit]').getBoundingClientRect();
         return g.bottom > t.top && g.top < t.bottom;",
    );
    assert_eq!(covered, json!(false), "the toast covers Generate");
    b.screenshot("28-toast-phone");
}

#[test]
fn generate_waits_while_the_cost_is_over_the_balance() {
    let Some(s) = start("generate_waits_while_the_cost_is_over_the_balance") else {
        return;
    };
    let b = &s.b;
    sign_in_new_user(&s, "short@example.com", "Short", "/studio");
    b.wait_text("Generate");
    // Leave 2 credits (the built-in model costs 1 per image).
    cli(
        &s,
        &[
            "credits",
            "deduct",
            "short@example.com",
            "18",
            "--reason",
            "test",
        ],
    );
    b.goto(&format!("{}/studio", s.app_url));
    b.wait_text("Generate");
    let state = || {
        b.script(
            "return [document.getElementById('generate').disabled, document.getElementById('generate-why').hidden, document.getElementById('generate-why').textContent];",
        )
    };
    assert_eq!(state()[0], json!(false), "1 image for 1 of 2 credits");
    b.select("Images", "4");
    let v = state();
    assert_eq!((&v[0], &v[1]), (&json!(true), &json!(false)), "{v}");
    assert!(
        v[2].as_str().unwrap().contains("4 credits")
            && v[2].as_str().unwrap().contains("2 credits"),
        "{v}"
    );
    b.script("document.getElementById('generate').scrollIntoView({block: 'center'});");
    b.screenshot("29-generate-short");
    b.select("Images", "2");
    let v = state();
    assert_eq!((&v[0], &v[1]), (&json!(false), &json!(true)), "{v}");
}

/// Whether the element's box is wholly inside the window.
fn on_screen(b: &Browser, selector: &str) -> bool {
    b.script(&format!(
        "const r = document.querySelector({selector:?}).getBoundingClientRect(); return r.width > 0 && r.top >= 0 && r.bottom <= window.innerHeight;"
    )) == json!(true)
}

#[test]
fn generate_is_always_reachable_and_a_new_card_comes_into_view() {
    let Some(s) = start("generate_is_always_reachable_and_a_new_card_comes_into_view") else {
        return;
    };
    let (b, app_url) = (&s.b, &s.app_url);
    sign_in_new_user(&s, "reach@example.com", "Reach", "/studio");
    b.wait_text("Generate");
    for (w, h, name) in [
        (1280, 800, "30-studio-actions"),
        (390, 844, "31-studio-actions-phone"),
    ] {
        b.resize(w, h);
        b.goto(&format!("{app_url}/studio"));
        b.wait_text("Generate");
        assert!(on_screen(b, "#generate"), "Generate on screen at {w}x{h}");
        assert!(on_screen(b, "#cost"), "the cost beside it at {w}x{h}");
        // Opening more options does not push it away.
        b.script("document.querySelector('details.more').open = true;");
        assert!(
            on_screen(b, "#generate"),
            "with more options open at {w}x{h}"
        );
        b.screenshot(name);
    }
    // On the phone, a new task's card is brought into view.
    b.fill("Prompt", "a paper boat on a puddle");
    b.select("Images", "4");
    b.click_button("Generate");
    wait_for("the new card", || {
        b.script("return document.querySelectorAll('.task-card').length;") == json!(1)
    });
    wait_for("the card in view", || {
        b.script("const r = document.querySelector('.task-card').getBoundingClientRect(); return r.top < window.innerHeight && r.bottom > 0;")
            == json!(true)
    });
    // Four images sit in a grid, not one long column.
    wait_for("the images", || {
        b.script("return document.querySelectorAll('.task-card .thumb img').length;") == json!(4)
    });
    let columns = b.script(
        "const xs = Array.from(document.querySelectorAll('.task-card .thumb')).map(t => Math.round(t.getBoundingClientRect().left)); return new Set(xs).size;",
    );
    assert_eq!(columns, json!(2), "two columns on a phone");
    b.screenshot("32-studio-phone-grid");
}
