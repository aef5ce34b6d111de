//! A small HTTP/1.1 server on 127.0.0.1 for imitating upstream APIs in
//! tests. Each request goes to a handler; every request is recorded.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Resp {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
}

impl Resp {
    pub fn json(status: u16, v: serde_json::Value) -> Resp {
        Resp {
            status,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
    pub fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Resp {
        Resp {
            status,
            content_type,
            body,
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
    #[allow(dead_code)]
    pub fn header(mut self, name: &str, value: &str) -> Resp {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn slow(mut self, d: Duration) -> Resp {
        self.delay = d;
        self
    }
}

pub struct Fake {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Req>>>,
    down_until: Arc<Mutex<Option<Instant>>>,
}

impl Fake {
    /// Closes the listening socket for `d` (connections are refused, as
    /// while a server restarts), then listens on the same port again.
    pub fn go_down_for(&self, d: Duration) {
        *self.down_until.lock().unwrap() = Some(Instant::now() + d);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn requests_to(&self, path_prefix: &str) -> Vec<Req> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }
}

/// Takes a request that asked for a websocket, once the 101 answer is sent.
pub type Upgrade = Arc<dyn Fn(&Req, tungstenite::WebSocket<TcpStream>) + Send + Sync>;

pub fn serve(handler: impl Fn(&Req) -> Resp + Send + Sync + 'static) -> Fake {
    serve_ws(handler, None)
}

/// `serve`, and requests with `Upgrade: websocket` handed to `upgrade`
/// after the handshake (RFC 6455: the key's SHA-1 accept value).
pub fn serve_ws(
    handler: impl Fn(&Req) -> Resp + Send + Sync + 'static,
    upgrade: Option<Upgrade>,
) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let down_until: Arc<Mutex<Option<Instant>>> = Arc::default();
    let (reqs, handler, down) = (requests.clone(), Arc::new(handler), down_until.clone());
    let upgrade = upgrade.clone();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut listener = Some(listener);
        loop {
            let until = *down.lock().unwrap();
            match until {
                Some(t) if Instant::now() < t => {
                    listener = None;
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Some(_) => *down.lock().unwrap() = None,
                None => {}
            }
            if listener.is_none() {
                match TcpListener::bind(("127.0.0.1", port)) {
                    Ok(l) => {
                        l.set_nonblocking(true).unwrap();
                        listener = Some(l);
                    }
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                }
            }
            let stream = match listener.as_ref().unwrap().accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(_) => continue,
            };
            stream.set_nonblocking(false).unwrap();
            let (reqs, handler, upgrade) = (reqs.clone(), handler.clone(), upgrade.clone());
            std::thread::spawn(move || {
                let mut out = stream.try_clone().unwrap();
                let mut r = BufReader::new(stream);
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap_or("").to_string(),
                    parts.next().unwrap_or("").to_string(),
                );
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.push((k.trim().to_string(), v.trim().to_string()));
                    }
                }
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let req = Req {
                    method,
                    path,
                    headers,
                    body,
                };
                reqs.lock().unwrap().push(req.clone());
                let wants_ws = req
                    .header("upgrade")
                    .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
                if let (true, Some(upgrade)) = (wants_ws, upgrade.as_ref()) {
                    let key = req.header("sec-websocket-key").unwrap_or("").to_string();
                    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
                    let head = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
                    if out.write_all(head.as_bytes()).is_ok() {
                        let ws = tungstenite::WebSocket::from_raw_socket(
                            out,
                            tungstenite::protocol::Role::Server,
                            None,
                        );
                        upgrade(&req, ws);
                    }
                    return;
                }
                let resp = handler(&req);
                std::thread::sleep(resp.delay);
                let extra: String = resp
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}\r\n"))
                    .collect();
                let head = format!(
                    "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                    resp.status,
                    resp.content_type,
                    resp.body.len()
                );
                let _ = out.write_all(head.as_bytes());
                let _ = out.write_all(&resp.body);
            });
        }
    });
    Fake {
        port,
        requests,
        down_until,
    }
}

pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img =
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 3) as u8, (y * 3) as u8, 128]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
