//! The signed-in user's live stream (Server-Sent Events): task updates as
//! they happen and new inbox messages. Every page opens it once; the studio
//! follows its tasks on it, and `app.js` turns messages into toasts and,
//! when the user allowed it, browser notifications.

use std::time::Duration;

use rocket::request::{self, FromRequest, Request};
use rocket::response::stream::{Event, EventStream};
use rocket::{get, routes, Route, Shutdown, State};
use serde_json::json;

use super::guards::{Csrf, MaybeUser};
use crate::domain::{messages, secrets, sessions, tasks};
use crate::error::{AppError, AppResult};
use crate::App;

/// How often the stream looks for new messages (messages can come from
/// another process, `novart announce`, so the database is the source) and
/// checks that its session still stands: a stream ends within this time of
/// its session ending, and sends nothing after.
pub const MESSAGE_POLL: Duration = Duration::from_secs(2);

/// The `Last-Event-ID` a reconnecting EventSource sends (a message id).
pub struct LastEventId(pub Option<i64>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for LastEventId {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        let id = req
            .headers()
            .get_one("Last-Event-ID")
            .and_then(|v| v.trim().parse::<i64>().ok());
        request::Outcome::Success(LastEventId(id))
    }
}

/// A message for the page, in its language (texts the server wrote are
/// translated; an operator's announcement stays as written).
fn message_event(
    m: &crate::domain::messages::Message,
    unread: i64,
    catalogs: &crate::i18n::Catalogs,
    lang: crate::i18n::Lang,
) -> Event {
    let body = catalogs.message(lang, &m.body);
    let body: String = body.chars().take(300).collect();
    Event::json(&json!({
        "id": m.id,
        "kind": m.kind,
        "kind_label": catalogs.message(lang, messages::kind_label(&m.kind)),
        "title": catalogs.message(lang, &m.title),
        "body": body,
        "created_at": m.created_at,
        "unread": unread,
    }))
    .event("message")
    .id(m.id.to_string())
}

/// Browsers' EventSource cannot send headers, so the CSRF token comes in the
/// query. `messages_after`: the newest message id the page already shows
/// (default: the newest now); a reconnect's `Last-Event-ID` wins.
#[get("/api/v1/events?<csrf_token>&<messages_after>")]
#[allow(clippy::too_many_arguments)] // Rocket guards, one per concern
async fn events(
    app: &State<App>,
    user: MaybeUser,
    csrf: Csrf,
    csrf_token: Option<String>,
    messages_after: Option<i64>,
    last_event: LastEventId,
    lang: super::render::PageLang,
    mut shutdown: Shutdown,
) -> AppResult<EventStream![Event + '_]> {
    let Some(signed_in) = user.0 else {
        return Err(AppError::Unauthenticated);
    };
    if !secrets::constant_time_eq(&csrf.token, csrf_token.as_deref().unwrap_or_default()) {
        return Err(AppError::Forbidden(
            "The CSRF token is missing or wrong.".into(),
        ));
    }
    let me = signed_in.user.id;
    let session = std::sync::Arc::new(signed_in.session);
    let mut last_message = last_event
        .0
        .or(messages_after)
        .unwrap_or(signed_in.inbox.latest)
        .max(0);
    let mut rx = app.engine.hub.subscribe();
    let hub = app.engine.hub.clone();
    let db = app.db.clone();
    Ok(EventStream! {
        yield Event::data("ready").event("ready");
        let mut poll = rocket::tokio::time::interval(MESSAGE_POLL);
        loop {
            rocket::tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) if ev.user == me => {
                        let (id, s) = (ev.task.clone(), session.clone());
                        let found = db
                            .run(move |conn| {
                                // One read snapshot: the session check and
                                // what is sent see the same moment.
                                let tx = conn.transaction()?;
                                if !sessions::still_alive(&tx, &s, crate::domain::now())? {
                                    return Ok(None);
                                }
                                tasks::get(&tx, me, &id).map(Some)
                            })
                            .await;
                        match found {
                            Ok(Some(view)) => {
                                let mut v = serde_json::json!(view);
                                v["preview_seq"] = hub.preview_seq(&view.task.public_id).into();
                                yield Event::json(&v).event("task")
                            }
                            Ok(None) => break,
                            Err(_) => {}
                        }
                    }
                    Ok(_) => {}
                    Err(rocket::tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        yield Event::data("resync").event("resync");
                    }
                    Err(_) => break,
                },
                _ = poll.tick() => {
                    let (after, s) = (last_message, session.clone());
                    let found = db
                        .run(move |conn| {
                            let tx = conn.transaction()?;
                            if !sessions::still_alive(&tx, &s, crate::domain::now())? {
                                return Ok(None);
                            }
                            let new = messages::after(&tx, me, after)?;
                            let unread = if new.is_empty() { 0 } else { messages::unread(&tx, me)? };
                            Ok(Some((new, unread)))
                        })
                        .await;
                    match found {
                        Ok(Some((new, unread))) => {
                            for m in &new {
                                last_message = last_message.max(m.id);
                                yield message_event(m, unread, app.templates.catalogs(), lang.0);
                            }
                        }
                        // The session ended: so does the stream.
                        Ok(None) => break,
                        Err(_) => {}
                    }
                },
                _ = &mut shutdown => break,
            }
        }
    }
    .heartbeat(Duration::from_secs(15)))
}

pub fn routes() -> Vec<Route> {
    routes![events]
}
