//! The browser harness: the built `novart` binary on a free port, headless
//! Chromium through chromedriver (W3C WebDriver), and helpers that act as a
//! person would (fields found by their labels).
//!
//! `start` skips loudly when Chromium or chromedriver is missing, unless
//! NOVART_REQUIRE_BROWSER=1 (set by .ci/run), where that is a failure.
//! Screenshots land in target/screenshots/.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn find_program(names: &[&str]) -> Option<PathBuf> {
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

pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
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

pub struct Browser {
    pub base: String,
    pub session: String,
    pub shots: PathBuf,
}

impl Browser {
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
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

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn xpath(&self, xpath: &str) -> String {
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
    pub fn field(&self, label: &str) -> String {
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

    pub fn fill(&self, label: &str, text: &str) {
        let el = self.field(label);
        self.call("POST", &format!("/element/{el}/clear"), None);
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Chooses the option shown as `option` in the select labelled `label`.
    pub fn select(&self, label: &str, option: &str) {
        let lab = self.xpath(&format!("//label[normalize-space()='{label}']"));
        let id = self.call("GET", &format!("/element/{lab}/attribute/for"), None);
        let opt = self.xpath(&format!(
            "//select[@id='{}']/option[normalize-space()='{option}']",
            id.as_str().unwrap()
        ));
        self.call("POST", &format!("/element/{opt}/click"), None);
    }

    pub fn click_button(&self, text: &str) {
        let el = self.xpath(&format!("//button[normalize-space()='{text}']"));
        self.call("POST", &format!("/element/{el}/click"), None);
    }

    /// Moves the mouse over the element (as a person does before clicking
    /// something that shows on hover).
    pub fn hover(&self, element: &str) {
        self.call(
            "POST",
            "/actions",
            Some(
                json!({ "actions": [{ "type": "pointer", "id": "mouse", "actions": [
                    { "type": "pointerMove", "origin": { ELEMENT: element }, "x": 0, "y": 0 }
                ]}]}),
            ),
        );
    }

    pub fn wait_text(&self, text: &str) {
        wait_for(&format!("page text {text:?}"), || {
            self.source().contains(text)
        });
    }

    pub fn script(&self, js: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": js, "args": [] })),
        )
    }

    pub fn resize(&self, w: u32, h: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({ "width": w, "height": h })),
        );
    }

    pub fn screenshot(&self, name: &str) {
        use base64::Engine;
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(&self.shots).unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    pub fn no_horizontal_scroll(&self) -> bool {
        self.script("return document.documentElement.scrollWidth <= window.innerWidth;")
            == json!(true)
    }
}

/// A running studio, a chromedriver and a browser session on it.
pub struct Session {
    pub b: Browser,
    pub app_url: String,
    pub dir: tempfile::TempDir,
    pub _server: Kill,
    pub _driver: Kill,
    pub _profile: tempfile::TempDir,
}

/// Starts everything, or returns None (after saying so loudly) when Chromium
/// is not installed and NOVART_REQUIRE_BROWSER is not set.
pub fn start(test: &str) -> Option<Session> {
    start_with(test, "")
}

/// `start`, with `config` (TOML) written to the studio's novart.toml.
pub fn start_with(test: &str, config: &str) -> Option<Session> {
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
    if !config.is_empty() {
        std::fs::write(dir.path().join("novart.toml"), config).unwrap();
    }
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
                 // A desktop with a mouse (headless has no pointing device).
                 "--blink-settings=primaryPointerType=4,availablePointerTypes=4,primaryHoverType=2,availableHoverTypes=2",
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

/// Runs the admin CLI on the session's data directory; it must succeed.
pub fn cli(s: &Session, args: &[&str]) {
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
pub fn sign_in_new_user(s: &Session, email: &str, name: &str, next: &str) {
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

/// The visible toasts' texts.
pub fn toasts(b: &Browser) -> Vec<String> {
    let v = b.script(
        "return Array.from(document.querySelectorAll('#toasts .toast:not([hidden])')).map(t => t.textContent.replace('×', '').trim());",
    );
    serde_json::from_value(v).unwrap()
}

/// Whether the element's box is wholly inside the window.
pub fn on_screen(b: &Browser, selector: &str) -> bool {
    b.script(&format!(
        "const r = document.querySelector({selector:?}).getBoundingClientRect(); return r.width > 0 && r.top >= 0 && r.bottom <= window.innerHeight;"
    )) == json!(true)
}

/// Chooses a small PNG of one colour in the studio's reference picker and
/// waits for its thumbnail.
pub fn upload_reference(s: &Session, rgb: [u8; 3]) {
    let png = s.dir.path().join(format!("reference-{}.png", rgb[0]));
    image::RgbImage::from_pixel(64, 48, image::Rgb(rgb))
        .save(&png)
        .unwrap();
    let before =
        s.b.script("return document.querySelectorAll('#ref-list img').length;");
    let input = s.b.xpath("//input[@id='refs']");
    s.b.call(
        "POST",
        &format!("/element/{input}/value"),
        Some(json!({ "text": png.to_str().unwrap() })),
    );
    wait_for("the reference's thumbnail", || {
        let js = format!("const i = document.querySelectorAll('#ref-list img'); return i.length > {before} && Array.from(i).every(x => x.complete && x.naturalWidth > 0);");
        s.b.script(&js) == json!(true)
    });
}
