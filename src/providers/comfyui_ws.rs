//! Following a ComfyUI prompt over its websocket (`GET /ws?clientId=…`):
//! JSON text frames (`progress` with value/max for the running node,
//! `executing` with `node: null` when a prompt is done, `execution_success`,
//! `execution_error`, `execution_interrupted`) and binary preview frames
//! (a big-endian u32 event type, 1 = a preview: then a u32 image format,
//! 1 = JPEG, 2 = PNG, then the image; 4 = a preview with metadata: a u32
//! length, that much JSON, then the image). Only frames for this client
//! arrive on its socket.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

/// What the socket said about our prompt.
pub enum Event {
    /// How far the running node is (0..1).
    Progress(f64),
    /// The latest preview image.
    Preview(Vec<u8>),
    /// The prompt ended (success, error or interrupt): read its history.
    Ended,
    /// Nothing for us within the wait.
    Nothing,
    /// The socket is gone: poll instead.
    Closed,
}

pub struct Socket {
    ws: WebSocket<TcpStream>,
}

impl Socket {
    /// Connects as `client_id`; None when the server cannot be followed this
    /// way (https, refused, an old server or a proxy without websockets).
    pub fn open(base: &str, client_id: &str, auth: Option<&str>) -> Option<Socket> {
        let rest = base.strip_prefix("http://")?;
        let host = rest.split('/').next()?;
        let path = &rest[host.len()..];
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&with_port(host))
            .ok()?
            .next()?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .ok()?;
        let url = format!("ws://{host}{path}/ws?clientId={client_id}");
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(url).ok()?;
        if let Some(a) = auth {
            request
                .headers_mut()
                .insert("Authorization", a.parse().ok()?);
        }
        let (ws, _) = tungstenite::client(request, stream).ok()?;
        Some(Socket { ws })
    }

    /// The next event about `prompt_id`, waiting at most `wait`.
    pub fn next(&mut self, prompt_id: &str, wait: Duration) -> Event {
        if self.ws.get_mut().set_read_timeout(Some(wait)).is_err() {
            return Event::Closed;
        }
        match self.ws.read() {
            Ok(Message::Text(text)) => match serde_json::from_str::<Value>(&text) {
                Ok(v) => text_event(&v, prompt_id),
                Err(_) => Event::Nothing,
            },
            Ok(Message::Binary(bytes)) => preview(&bytes).map_or(Event::Nothing, Event::Preview),
            Ok(Message::Close(_)) => Event::Closed,
            Ok(_) => Event::Nothing,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                Event::Nothing
            }
            Err(_) => Event::Closed,
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }
}

fn with_port(host: &str) -> String {
    if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !host.ends_with(']')
    {
        host.to_string()
    } else {
        format!("{host}:80")
    }
}

fn text_event(v: &Value, prompt_id: &str) -> Event {
    let data = &v["data"];
    // Frames that name a prompt must name ours.
    if data["prompt_id"].as_str().is_some_and(|p| p != prompt_id) {
        return Event::Nothing;
    }
    match v["type"].as_str().unwrap_or("") {
        "progress" => {
            let (value, max) = (data["value"].as_f64(), data["max"].as_f64());
            match (value, max) {
                (Some(v), Some(m)) if m > 0.0 => Event::Progress((v / m).clamp(0.0, 1.0)),
                _ => Event::Nothing,
            }
        }
        "executing" if data["node"].is_null() && data["prompt_id"].is_string() => Event::Ended,
        "execution_success" | "execution_error" | "execution_interrupted" => Event::Ended,
        _ => Event::Nothing,
    }
}

/// The image of a binary preview frame.
fn preview(bytes: &[u8]) -> Option<Vec<u8>> {
    let word = |at: usize| -> Option<usize> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let image = match word(0)? {
        1 => bytes.get(8..)?,
        4 => {
            let meta = word(4)?;
            bytes.get(8 + meta..)?
        }
        _ => return None,
    };
    let known = image.starts_with(&[0xFF, 0xD8, 0xFF]) || image.starts_with(b"\x89PNG");
    (known && image.len() <= super::MAX_PREVIEW_BYTES).then(|| image.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_are_read_as_comfyui_writes_them() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3];
        let mut frame = 1u32.to_be_bytes().to_vec();
        frame.extend(1u32.to_be_bytes());
        frame.extend(jpeg);
        assert_eq!(preview(&frame), Some(jpeg.to_vec()));
        let meta = br#"{"node_id":"3","prompt_id":"p"}"#;
        let mut frame = 4u32.to_be_bytes().to_vec();
        frame.extend((meta.len() as u32).to_be_bytes());
        frame.extend(meta);
        frame.extend(b"\x89PNG\r\n");
        assert_eq!(preview(&frame), Some(b"\x89PNG\r\n".to_vec()));
        assert_eq!(preview(&[0, 0, 0, 2, 1, 2]), None);
        let p = json!({"type": "progress", "data": {"value": 5, "max": 20, "prompt_id": "p", "node": "3"}});
        assert!(matches!(text_event(&p, "p"), Event::Progress(f) if (f - 0.25).abs() < 1e-9));
        assert!(matches!(text_event(&p, "other"), Event::Nothing));
        let done = json!({"type": "executing", "data": {"node": null, "prompt_id": "p"}});
        assert!(matches!(text_event(&done, "p"), Event::Ended));
    }
}
