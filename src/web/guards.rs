//! Request guards: who is asking (client IP, signed-in user) and whether a
//! state-changing request is genuine (CSRF).

use std::net::IpAddr;

use rocket::data::{self, Data, FromData};
use rocket::form::{Form, FromForm};
use rocket::http::{Cookie, SameSite, Status};
use rocket::outcome::Outcome;
use rocket::request::{self, FromRequest, Request};
use rocket::time::Duration;
use rocket::State;

use crate::config::canonical_ip;
use crate::domain::{self, csrf};
use crate::model::{Client, Session, User};
use crate::App;

use super::{SESSION_COOKIE, VISITOR_COOKIE};

/// The client's IP: the socket peer, or — only when the peer is a configured
/// trusted proxy — the nearest untrusted address in `X-Forwarded-For`.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

pub fn client_ip(req: &Request<'_>, app: &App) -> Option<IpAddr> {
    let peer = canonical_ip(req.remote()?.ip());
    let proxies = app.config.trusted_proxies();
    if !proxies.iter().any(|p| p.contains(peer)) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = req
        .headers()
        .get("X-Forwarded-For")
        .flat_map(|h| h.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .map(canonical_ip)
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !proxies.iter().any(|p| p.contains(*ip)))
        .or(Some(peer))
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ClientIp {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        let app = req.rocket().state::<App>().expect("App is managed");
        Outcome::Success(*req.local_cache(|| ClientIp(client_ip(req, app))))
    }
}

/// IP and user agent of a request, in the form the domain records.
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    pub fn as_client(&self) -> Client<'_> {
        Client {
            ip: self.ip.as_deref(),
            user_agent: self.user_agent.as_deref(),
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ClientInfo {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        let ip = req.guard::<ClientIp>().await.succeeded().and_then(|c| c.0);
        Outcome::Success(ClientInfo {
            ip: ip.map(|i| i.to_string()),
            user_agent: req.headers().get_one("User-Agent").map(str::to_string),
        })
    }
}

/// A signed-in user and their session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: User,
    pub session: Session,
    /// Unread messages, for the badge in the navigation.
    pub unread: i64,
    /// The inbox: newest id and recent unread messages (toasts).
    pub inbox: domain::messages::InboxState,
    /// Restrictions in force (a full ban or narrower ones): the pages say
    /// so; actions are refused by the domain.
    pub restrictions: Vec<crate::domain::bans::Ban>,
}

/// The session behind the cookie, looked up once per request.
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<SignedIn>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for MaybeUser {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        let cached = req
            .local_cache_async(async {
                let Some(token) = req
                    .cookies()
                    .get(SESSION_COOKIE)
                    .map(|c| c.value().to_string())
                else {
                    return MaybeUser(None);
                };
                let app = req.rocket().state::<App>().expect("App is managed");
                let ip = req
                    .guard::<ClientIp>()
                    .await
                    .succeeded()
                    .and_then(|c| c.0)
                    .map(|i| i.to_string());
                let config = app.config.clone();
                let found = app
                    .db
                    .run(move |conn| {
                        let found = domain::sessions::authenticate(
                            conn,
                            &config,
                            &token,
                            ip.as_deref(),
                            domain::now(),
                        )?;
                        match found {
                            Some((user, session)) => {
                                let inbox = domain::messages::state(conn, user.id)?;
                                let restrictions = domain::bans::restrictions(conn, user.id)?;
                                Ok(Some((user, session, inbox, restrictions)))
                            }
                            None => Ok(None),
                        }
                    })
                    .await;
                match found {
                    Ok(Some((user, session, inbox, restrictions))) => MaybeUser(Some(SignedIn {
                        user,
                        session,
                        unread: inbox.unread,
                        inbox,
                        restrictions,
                    })),
                    Ok(None) => {
                        req.cookies()
                            .remove(Cookie::build(SESSION_COOKIE).path("/"));
                        MaybeUser(None)
                    }
                    Err(e) => {
                        tracing::error!("session lookup failed: {e}");
                        MaybeUser(None)
                    }
                }
            })
            .await;
        Outcome::Success(cached.clone())
    }
}

/// A signed-in user; without one, the request fails with 401 (browsers are
/// sent to /login by the catcher).
#[derive(Debug, Clone)]
pub struct CurrentUser(pub SignedIn);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for CurrentUser {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        match req.guard::<MaybeUser>().await {
            Outcome::Success(MaybeUser(Some(s))) => Outcome::Success(CurrentUser(s)),
            _ => Outcome::Error((Status::Unauthorized, ())),
        }
    }
}

/// The CSRF token for this request's session (or visitor cookie, which is
/// created if missing). Every page embeds it; every state-changing request
/// must send it back.
#[derive(Debug, Clone)]
pub struct Csrf {
    pub token: String,
}

/// Cached per request so error pages can embed the token too.
#[derive(Debug, Clone, Default)]
pub struct CachedCsrf(pub Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Csrf {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> request::Outcome<Self, ()> {
        let app = req.rocket().state::<App>().expect("App is managed");
        let user = req.guard::<MaybeUser>().await.succeeded().and_then(|m| m.0);
        let token = match &user {
            Some(s) => csrf::token(&app.secret, &csrf::Binding::Session(&s.session.token_hash)),
            None => {
                let visitor = match req.cookies().get(VISITOR_COOKIE) {
                    Some(c) if !c.value().is_empty() && c.value().len() <= 64 => {
                        c.value().to_string()
                    }
                    _ => {
                        let v = domain::secrets::random_token(16);
                        req.cookies().add(
                            Cookie::build((VISITOR_COOKIE, v.clone()))
                                .path("/")
                                .http_only(true)
                                .same_site(SameSite::Lax)
                                .secure(app.config.is_https())
                                .max_age(Duration::days(30)),
                        );
                        v
                    }
                };
                csrf::token(&app.secret, &csrf::Binding::Visitor(&visitor))
            }
        };
        req.local_cache(|| CachedCsrf(Some(token.clone())));
        Outcome::Success(Csrf { token })
    }
}

/// Whether the request comes from a page of this site: `Origin` (when sent)
/// must be ours, and `Sec-Fetch-Site` must not say cross-site.
pub fn same_origin(req: &Request<'_>, app: &App) -> bool {
    if let Some(site) = req.headers().get_one("Sec-Fetch-Site") {
        if site.eq_ignore_ascii_case("cross-site") {
            return false;
        }
    }
    let Some(origin) = req.headers().get_one("Origin") else {
        return true;
    };
    if origin == "null" {
        return false;
    }
    let public = app.config.public_url();
    if origin.trim_end_matches('/') == public {
        return true;
    }
    // Direct access by another name for this host (localhost vs 127.0.0.1).
    let host = req.headers().get_one("Host").unwrap_or_default();
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or_default();
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// Forms that carry a `csrf_token` field.
pub trait CsrfProtected {
    fn csrf_token(&self) -> &str;
}

/// A form whose CSRF token and origin were checked; anything else is 403
/// before the handler runs, so nothing changes.
pub struct CsrfForm<T>(pub T);

pub const CSRF_FAILED: &str =
    "This form has expired or came from another site. Reload the page and try again.";

#[rocket::async_trait]
impl<'r, T> FromData<'r> for CsrfForm<T>
where
    T: FromForm<'r> + CsrfProtected + Send + 'r,
{
    type Error = ();

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self, ()> {
        let form = match Form::<T>::from_data(req, data).await {
            Outcome::Success(f) => f.into_inner(),
            Outcome::Error((status, _)) => return Outcome::Error((status, ())),
            Outcome::Forward(f) => return Outcome::Forward(f),
        };
        let app = match req.guard::<&State<App>>().await {
            Outcome::Success(a) => a,
            _ => return Outcome::Error((Status::InternalServerError, ())),
        };
        let Outcome::Success(expected) = req.guard::<Csrf>().await else {
            return Outcome::Error((Status::Forbidden, ()));
        };
        let presented = form.csrf_token();
        let ok = same_origin(req, app)
            && !presented.is_empty()
            && domain::secrets::constant_time_eq(&expected.token, presented);
        if !ok {
            tracing::warn!(path = %req.uri().path(), "CSRF check failed");
            return Outcome::Error((Status::Forbidden, ()));
        }
        Outcome::Success(CsrfForm(form))
    }
}
