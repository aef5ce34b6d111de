//! The user's data rights on the settings page: "Download my data" and
//! deleting the account.

use rocket::http::{ContentType, Header};
use rocket::response::{self, Flash, Redirect, Responder, Response};
use rocket::{get, post, routes, Request, Route};

use super::auth::{csrf_form, EmptyForm};
use super::guards::{ClientInfo, CsrfForm, CsrfProtected, CurrentUser, MaybeUser};
use super::render::{Page, PageCtx};
use crate::domain::export::{self, Requested};
use crate::error::{AppError, AppResult};
use rocket::http::{Cookie, CookieJar};

/// The headers of a ZIP download (never cached: it holds personal data).
fn zip_response(name: &str) -> rocket::response::Builder<'static> {
    let mut r = Response::build();
    r.header(ContentType::ZIP)
        .header(Header::new(
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        ))
        .header(Header::new("Cache-Control", "private, no-store"));
    r
}

/// A ZIP sent as a download.
pub struct ZipDownload {
    name: String,
    bytes: Vec<u8>,
}

impl<'r> Responder<'r, 'static> for ZipDownload {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        zip_response(&self.name)
            .sized_body(self.bytes.len(), std::io::Cursor::new(self.bytes))
            .ok()
    }
}

fn file_name() -> String {
    let today = crate::domain::format_time(crate::domain::now());
    format!("novart-export-{}.zip", &today[..10])
}

#[post("/settings/export", data = "<_form>")]
async fn request_export(
    page: PageCtx<'_>,
    me: CurrentUser,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Result<ZipDownload, Flash<Redirect>>> {
    let (user, config) = (me.0.user.id, page.app.config.clone());
    let r = page
        .app
        .db
        .run(move |conn| export::request(conn, &config, user))
        .await;
    match r {
        Ok(Requested::Now(bytes)) => Ok(Ok(ZipDownload {
            name: file_name(),
            bytes,
        })),
        Ok(Requested::Later) => Ok(Err(Flash::success(
            Redirect::to("/settings#data-h"),
            "Your export is being prepared. A message with the download link arrives in your inbox when it is ready.",
        ))),
        Err(AppError::Conflict(m)) => Ok(Err(Flash::error(Redirect::to("/settings#data-h"), m))),
        Err(e) => Err(e),
    }
}

/// A prepared export, streamed (and decrypted as it goes when stored sealed).
pub struct ZipStream {
    name: String,
    body: rocket::tokio::io::DuplexStream,
}

impl<'r> Responder<'r, 'static> for ZipStream {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        zip_response(&self.name).streamed_body(self.body).ok()
    }
}

#[get("/settings/export/<id>")]
async fn download_export(page: PageCtx<'_>, me: CurrentUser, id: &str) -> AppResult<ZipStream> {
    let (user, config, id) = (me.0.user.id, page.app.config.clone(), id.to_string());
    let mut reader = page
        .app
        .db
        .run(move |conn| export::download(conn, &config, user, &id))
        .await?;
    let (mut tx, rx) = rocket::tokio::io::duplex(256 * 1024);
    let handle = rocket::tokio::runtime::Handle::current();
    rocket::tokio::task::spawn_blocking(move || {
        use rocket::tokio::io::AsyncWriteExt;
        use std::io::Read;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if handle.block_on(tx.write_all(&buf[..n])).is_err() {
                        break; // the browser went away
                    }
                }
                Err(e) => {
                    tracing::error!("reading a data export failed: {e}");
                    break;
                }
            }
        }
    });
    Ok(ZipStream {
        name: file_name(),
        body: rx,
    })
}

/// The settings page again, 400, with a form's error and what was typed.
async fn again(
    page: &PageCtx<'_>,
    me: &CurrentUser,
    extra: serde_json::Value,
) -> AppResult<Result<Flash<Redirect>, Page>> {
    let status = rocket::http::Status::BadRequest;
    Ok(Err(
        super::settings::settings_page(page, me, status, extra).await?
    ))
}

csrf_form!(DeleteForm { password, confirm });

/// Deletes the account after the password is typed again and the
/// confirmation word written; signs out and says goodbye.
#[post("/settings/delete", data = "<form>")]
async fn delete_account(
    page: PageCtx<'_>,
    me: CurrentUser,
    client: ClientInfo,
    cookies: &CookieJar<'_>,
    form: CsrfForm<DeleteForm>,
) -> AppResult<Result<Flash<Redirect>, Page>> {
    let f = form.0;
    let retry = |field: &str, message: String| serde_json::json!({ "delete_error": { "field": field, "message": message } });
    if f.confirm.trim() != "DELETE" {
        let extra = retry("confirm", "Type DELETE in capitals to confirm.".into());
        return again(&page, &me, extra).await;
    }
    let (user, config, ip) = (me.0.user.id, page.app.config.clone(), client.ip.clone());
    let r = page
        .app
        .db
        .run(move |conn| {
            crate::domain::deletion::delete_own(conn, &config, user, &f.password, ip.as_deref())
        })
        .await;
    match r {
        Ok(_) => {
            cookies.remove(Cookie::build(super::SESSION_COOKIE).path("/"));
            Ok(Ok(Flash::success(
                Redirect::to("/"),
                "Your account has been deleted. Thank you for using Novart Studio.",
            )))
        }
        Err(AppError::Invalid { message, .. }) => {
            let extra = retry("delete_password", message);
            again(&page, &me, extra).await
        }
        Err(e) => Err(e),
    }
}

csrf_form!(RequestForm { kind, details });

/// Files a privacy request (access, correction, deletion, objection).
#[post("/settings/privacy-request", data = "<form>")]
async fn privacy_request(
    page: PageCtx<'_>,
    me: CurrentUser,
    form: CsrfForm<RequestForm>,
) -> AppResult<Result<Flash<Redirect>, Page>> {
    let f = form.0;
    let user = me.0.user.id;
    let (kind, details) = (f.kind.clone(), f.details.clone());
    let r = page
        .app
        .db
        .run(move |conn| crate::domain::privacy::file(conn, user, &kind, &details))
        .await;
    match r {
        Ok(id) => Ok(Ok(Flash::success(
            Redirect::to("/settings#privacy-h"),
            format!("Request #{id} is filed. The answer arrives in your inbox."),
        ))),
        Err(AppError::Invalid { field, message }) => {
            let extra = serde_json::json!({
                "request_error": { "field": field, "message": message },
                "request_form": { "kind": f.kind, "details": f.details },
            });
            again(&page, &me, extra).await
        }
        Err(e) => Err(e),
    }
}

csrf_form!(EmailForm {
    new_email,
    email_password
});
csrf_form!(ConfirmEmailForm {
    token,
    confirm_password
});

/// Asks to change the e-mail address: a link goes to the new one.
#[post("/settings/email", data = "<form>")]
async fn change_email(
    page: PageCtx<'_>,
    me: CurrentUser,
    form: CsrfForm<EmailForm>,
) -> AppResult<Result<Flash<Redirect>, Page>> {
    let f = form.0;
    let (session, mailer) = (me.0.session.clone(), page.app.mailer.clone());
    let (email, password) = (f.new_email.clone(), f.email_password.clone());
    let r = page
        .app
        .db
        .run(move |conn| {
            crate::domain::email_change::request(conn, &mailer, &session, &email, &password)
        })
        .await;
    match r {
        Ok(to) => Ok(Ok(Flash::success(
            Redirect::to("/settings#email-h"),
            format!("We sent a confirmation link to {to}. Your address changes when you open it."),
        ))),
        Err(AppError::Invalid { field, message }) => {
            let field = if field == Some("email") {
                Some("new_email")
            } else {
                field
            };
            let extra = serde_json::json!({
                "email_error": { "field": field, "message": message },
                "email_form": { "new_email": f.new_email },
            });
            again(&page, &me, extra).await
        }
        Err(e) => Err(e),
    }
}

/// The link from the e-mail: shows what it would confirm; a click (POST)
/// confirms, so mail scanners opening links change nothing. Outside the
/// session that asked for the change, the page asks for the password too.
#[get("/settings/email/confirm?<token>")]
async fn confirm_email_page(
    page: PageCtx<'_>,
    me: MaybeUser,
    token: Option<String>,
) -> AppResult<Page> {
    let t = token.clone().unwrap_or_default();
    let session = me.0.map(|s| s.session);
    let pending = page
        .app
        .db
        .run(move |conn| crate::domain::email_change::pending(conn, &t, session.as_ref()))
        .await?;
    match pending {
        Some(p) => page.render(
            "confirm_email.html",
            serde_json::json!({
                "token": token,
                "new_email": p.new_email,
                "needs_password": !p.asked_here,
            }),
        ),
        None => page.render_status(
            rocket::http::Status::BadRequest,
            "confirm_email.html",
            serde_json::json!({ "invalid": true }),
        ),
    }
}

#[post("/settings/email/confirm", data = "<form>")]
async fn confirm_email(
    page: PageCtx<'_>,
    me: MaybeUser,
    form: CsrfForm<ConfirmEmailForm>,
) -> AppResult<Result<Flash<Redirect>, Page>> {
    let f = form.0;
    let (token, password) = (f.token.clone(), f.confirm_password.clone());
    let (session, mailer) = (me.0.map(|s| s.session), page.app.mailer.clone());
    let r = page
        .app
        .db
        .run(move |conn| {
            use crate::domain::email_change::{confirm, Proof};
            let proof = match (&session, password.as_str()) {
                (_, pw) if !pw.is_empty() => Proof::Password(pw),
                (Some(s), _) => Proof::Session(s),
                (None, _) => Proof::None,
            };
            confirm(conn, &mailer, &token, proof)
        })
        .await;
    match r {
        Ok(email) => Ok(Ok(Flash::success(
            Redirect::to("/settings"),
            format!("Your e-mail address is now {email}."),
        ))),
        Err(AppError::Invalid {
            field: Some("confirm_password"),
            message,
        }) => {
            let t = f.token.clone();
            let pending = page
                .app
                .db
                .run(move |conn| crate::domain::email_change::pending(conn, &t, None))
                .await?;
            Ok(Err(page.render_status(
                rocket::http::Status::BadRequest,
                "confirm_email.html",
                serde_json::json!({
                    "token": f.token,
                    "new_email": pending.map(|p| p.new_email),
                    "needs_password": true,
                    "error": { "field": "confirm_password", "message": message },
                }),
            )?))
        }
        Err(AppError::Invalid { .. }) | Err(AppError::Conflict(_)) => Ok(Err(page.render_status(
            rocket::http::Status::BadRequest,
            "confirm_email.html",
            serde_json::json!({ "invalid": true }),
        )?)),
        Err(e) => Err(e),
    }
}

pub fn routes() -> Vec<Route> {
    routes![
        request_export,
        download_export,
        delete_account,
        privacy_request,
        change_email,
        confirm_email_page,
        confirm_email
    ]
}
