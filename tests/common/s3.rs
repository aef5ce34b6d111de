//! A real S3-compatible server for the tests: `s3s-fs` (from crates.io; it
//! checks SigV4 signatures) started once per test binary on a free loopback
//! port, with a fresh bucket per data directory.
//!
//! `TEST_STORAGE_BACKEND=s3` runs the ordinary tests with their images in it
//! (`.ci/run` runs the tests that touch files a second time so). Tests of
//! S3 itself call `required`: without the server they say loudly that they
//! were skipped, or fail under CI (`CI=true`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use novart::config::{Backend, Config};

pub const ACCESS_KEY: &str = "novart-test-key";
pub const SECRET_KEY: &str = "novart-test-secret-0123456789";

pub struct Server {
    pub endpoint: String,
    pub root: PathBuf,
}

fn find() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("NOVART_S3S_FS") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("s3s-fs"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let home = std::env::var_os("HOME")?;
        let p = Path::new(&home).join(".cargo/bin/s3s-fs");
        p.is_file().then_some(p)
    })
}

/// A directory for this test binary's server, under one parent in the
/// temp directory; those of test binaries that have ended are removed (the
/// server dies with its binary and cannot clean up after itself).
fn fresh_root() -> PathBuf {
    let parent = std::env::temp_dir().join("novart-s3-tests");
    if let Ok(rd) = std::fs::read_dir(&parent) {
        for e in rd.flatten() {
            let gone = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
            if gone {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let root = parent.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    root
}

/// The server, started on first use; None when s3s-fs is not installed.
pub fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let bin = find()?;
            let root = fresh_root();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let (tx, rx) = std::sync::mpsc::channel();
            let r = root.clone();
            // Spawned from a thread that lives as long as the test binary:
            // the child is killed when that thread (the process) ends.
            std::thread::spawn(move || {
                use std::os::unix::process::CommandExt;
                let mut cmd = std::process::Command::new(bin);
                cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                    .arg(&r)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                let mut child = cmd.spawn().expect("start s3s-fs");
                tx.send(child.id()).unwrap();
                // Waits for the server (it ends with the test binary).
                let _ = child.wait();
            });
            rx.recv().unwrap();
            let addr = format!("127.0.0.1:{port}");
            for _ in 0..250 {
                if std::net::TcpStream::connect(&addr).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Some(Server {
                endpoint: format!("http://{addr}"),
                root,
            })
        })
        .as_ref()
}

/// The server for a test of S3 itself: None (after saying so loudly) when
/// s3s-fs is missing, a failure under CI.
pub fn required(test: &str) -> Option<&'static Server> {
    let s = server();
    if s.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("CI=true but s3s-fs is not installed (cargo install s3s-fs@0.14.1 --features binary --locked)");
        }
        eprintln!("\n*** SKIPPED {test}: s3s-fs is not installed (cargo install s3s-fs@0.14.1 --features binary --locked) ***\n");
    }
    s
}

/// A bucket name of the data directory (the same for every app and CLI
/// run on it), created on the server.
fn bucket_for(server: &Server, data_dir: &Path) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(data_dir.to_string_lossy().as_bytes());
    let name = format!("t{}", &hex::encode(h)[..24]);
    std::fs::create_dir_all(server.root.join(&name)).unwrap();
    name
}

/// Points `config` at a bucket of its own on the server.
pub fn use_s3(config: &mut Config, server: &Server) {
    config.storage.backend = Backend::S3;
    let s3 = &mut config.storage.s3;
    s3.endpoint = server.endpoint.clone();
    s3.bucket = bucket_for(server, &config.storage.data_dir);
    s3.prefix = "novart/".into();
    s3.access_key_id = ACCESS_KEY.into();
    s3.secret_access_key = SECRET_KEY.into();
    s3.path_style = true;
}

/// True when this run keeps the tests' images in S3.
pub fn chosen() -> bool {
    std::env::var("TEST_STORAGE_BACKEND").is_ok_and(|v| v == "s3")
}

/// The backend this run tests: with TEST_STORAGE_BACKEND=s3, `config` uses
/// the server (which must then be installed).
pub fn apply(config: &mut Config) {
    if chosen() {
        let s = server().expect("TEST_STORAGE_BACKEND=s3 but s3s-fs is not installed");
        use_s3(config, s);
    }
}

/// The same as environment variables, for the `novart` binary.
pub fn env_for(data_dir: &Path) -> Vec<(String, String)> {
    if !chosen() {
        return Vec::new();
    }
    let mut c = Config::for_data_dir(data_dir);
    apply(&mut c);
    let mut env = vec![("NOVART_STORAGE__BACKEND".into(), "s3".into())];
    env.extend(bucket_env(&c));
    env
}

/// `config`'s bucket as environment variables (which backend is used is
/// left to the caller).
pub fn bucket_env(config: &Config) -> Vec<(String, String)> {
    let s3 = &config.storage.s3;
    vec![
        ("NOVART_STORAGE__S3__ENDPOINT".into(), s3.endpoint.clone()),
        ("NOVART_STORAGE__S3__BUCKET".into(), s3.bucket.clone()),
        ("NOVART_STORAGE__S3__PREFIX".into(), s3.prefix.clone()),
        (
            "NOVART_STORAGE__S3__ACCESS_KEY_ID".into(),
            s3.access_key_id.clone(),
        ),
        (
            "NOVART_STORAGE__S3__SECRET_ACCESS_KEY".into(),
            s3.secret_access_key.clone(),
        ),
    ]
}

/// Keys of the stored objects under `prefix`, whichever backend `config`
/// uses (tests that check what is kept and what is gone).
pub fn stored_keys(config: &Config, prefix: &str) -> Vec<String> {
    let base = stored_path(config, "");
    let mut out = Vec::new();
    let mut stack = vec![base.join(prefix)];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().contains(".s3s") {
                // (s3s-fs's own bookkeeping files are not objects)
                out.push(
                    p.strip_prefix(&base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

/// Where the stored object `key` lies on this machine's disk, whichever
/// backend `config` uses (s3s-fs keeps each object as a file under its
/// root), for tests that look at or damage the stored bytes themselves.
pub fn stored_path(config: &Config, key: &str) -> PathBuf {
    match config.storage.backend {
        Backend::Local => config.storage.data_dir.join(key),
        Backend::S3 => server()
            .unwrap()
            .root
            .join(&config.storage.s3.bucket)
            .join(format!("{}{key}", config.storage.s3.prefix)),
    }
}
