//! Registration, e-mail verification, sign-in, sign-out and password reset.

use rocket::http::uri::Origin;
use rocket::http::{Cookie, CookieJar, SameSite, Status};
use rocket::response::{Flash, Redirect};
use rocket::time::Duration;
use rocket::{get, post, routes, Route};
use serde_json::json;

use super::guards::{ClientInfo, CsrfForm, CsrfProtected, MaybeUser};
use super::render::{query_param, Page, PageCtx};
use super::SESSION_COOKIE;
use crate::domain::accounts::{self, Registered, Registration, SignInError};
use crate::domain::ratelimit::Action;
use crate::domain::sessions::NewSession;
use crate::error::{AppError, AppResult};
use crate::model::TokenPurpose;
use crate::App;

macro_rules! csrf_form {
    ($name:ident { $($field:ident $(as $rename:literal)?),* $(,)? }) => {
        #[derive(rocket::FromForm)]
        pub struct $name {
            #[field(default = String::new())]
            pub csrf_token: String,
            $(
                #[field(default = String::new())]
                $(#[field(name = $rename)])?
                pub $field: String,
            )*
        }

        impl CsrfProtected for $name {
            fn csrf_token(&self) -> &str {
                &self.csrf_token
            }
        }
    };
}
pub(crate) use csrf_form;

csrf_form!(RegisterForm { email, password, display_name, referral as "ref" });
csrf_form!(LoginForm {
    email,
    password,
    next
});
csrf_form!(EmailForm { email });
csrf_form!(TokenForm { token });
csrf_form!(ResetForm { token, password });
csrf_form!(EmptyForm {});

/// The session cookie: HttpOnly, SameSite=Lax, Path=/, host-only, Secure
/// when the public URL is https.
pub fn session_cookie(app: &App, session: &NewSession) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, session.token.clone()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(app.config.is_https())
        .max_age(Duration::seconds(session.max_age_secs))
        .build()
}

/// Only local paths are followed after sign-in (no open redirects).
pub fn safe_next(next: &str) -> String {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    if !ok {
        return "/".to_string();
    }
    // A path typed or pasted by someone: what a URI may not hold (spaces,
    // quotes, non-ASCII text, a stray %) is percent-encoded; the fragment
    // stays in the browser. What still does not parse goes home.
    let path = next.split('#').next().unwrap_or("/");
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    for (i, &b) in bytes.iter().enumerate() {
        let escape_ok = b == b'%'
            && bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        if b.is_ascii_alphanumeric() || b"-._~!$&()*+,;=:@/?".contains(&b) || escape_ok {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    match rocket::http::uri::Origin::parse(&out) {
        Ok(_) if !out.starts_with("//") => out,
        _ => "/".to_string(),
    }
}

// ---- registration ----

#[get("/register")]
fn register_page(page: PageCtx<'_>, uri: &Origin<'_>) -> AppResult<Result<Page, Redirect>> {
    if page.user.is_some() {
        return Ok(Err(Redirect::to("/")));
    }
    let referral = query_param(uri, "ref").unwrap_or_default();
    Ok(Ok(page.render(
        "register.html",
        json!({ "form": { "ref": referral } }),
    )?))
}

#[post("/register", data = "<form>")]
async fn register(
    page: PageCtx<'_>,
    client: ClientInfo,
    cookies: &CookieJar<'_>,
    form: CsrfForm<RegisterForm>,
) -> AppResult<Result<Page, Flash<Redirect>>> {
    let f = form.0;
    let app = page.app;
    if let Err(e) =
        app.auth_limits
            .attempt(&app.config, Action::Register, client.ip.as_deref(), None)
    {
        let values = json!({ "form": { "email": f.email, "display_name": f.display_name, "ref": f.referral } });
        return Ok(Ok(limited_form(&page, "register.html", values, e)?));
    }
    let (config, mailer) = (app.config.clone(), app.mailer.clone());
    let (email, password, name, referral) = (
        f.email.clone(),
        f.password,
        f.display_name.clone(),
        f.referral.clone(),
    );
    let ip = client.ip.clone();
    let ua = client.user_agent.clone();
    let language = page.lang;
    // The cheap checks, then bcrypt with no database connection held, then
    // the writes.
    let hashed = {
        let (config, password) = (config.clone(), password.clone());
        let (email, name) = (email.clone(), name.clone());
        super::submit::off_thread(move || {
            let input = Registration {
                email: &email,
                password: &password,
                display_name: &name,
                referral_code: None,
                language: None,
            };
            accounts::check_registration(&config, &input)?;
            crate::domain::passwords::hash(&password, config.auth.bcrypt_cost)
        })
        .await
    };
    let result = match hashed {
        Err(e) => Err(e),
        Ok(hash) => {
            app.db
                .run(move |conn| {
                    let client = crate::model::Client {
                        ip: ip.as_deref(),
                        user_agent: ua.as_deref(),
                    };
                    let outcome = accounts::register_hashed(
                        conn,
                        &config,
                        &mailer,
                        Registration {
                            email: &email,
                            password: &password,
                            display_name: &name,
                            referral_code: Some(&referral),
                            language: Some(language),
                        },
                        &hash,
                        &client,
                    )?;
                    // Without e-mail verification a new account is signed in at once.
                    let session = match &outcome {
                        Registered::Created(user)
                            if !config.registration.require_email_verification =>
                        {
                            Some(accounts::open_session(conn, &config, user.id, &client)?)
                        }
                        _ => None,
                    };
                    Ok((outcome, session))
                })
                .await
        }
    };
    let form_values =
        json!({ "form": { "email": f.email, "display_name": f.display_name, "ref": f.referral } });
    match result {
        Ok((_, Some(session))) => {
            cookies.add(session_cookie(app, &session));
            Ok(Err(Flash::success(
                Redirect::to("/"),
                "Welcome to Novart Studio! Your account is ready.",
            )))
        }
        Ok((Registered::AlreadyRegistered, None))
            if !app.config.registration.require_email_verification =>
        {
            let err = AppError::invalid(
                "email",
                "An account with this e-mail address already exists. Sign in, or reset your password.",
            );
            Ok(Ok(page.form_error("register.html", err, form_values)?))
        }
        Ok(_) => Ok(Ok(page.render(
            "check_email.html",
            json!({ "email": f.email.trim(), "purpose": "verify" }),
        )?)),
        Err(e) => Ok(Ok(page.form_error("register.html", e, form_values)?)),
    }
}

// ---- e-mail verification ----

#[get("/verify")]
async fn verify_page(page: PageCtx<'_>, uri: &Origin<'_>) -> AppResult<Page> {
    let Some(token) = query_param(uri, "token").filter(|t| !t.is_empty()) else {
        return page.render("verify.html", json!({ "mode": "resend" }));
    };
    let t = token.clone();
    let valid = page
        .app
        .db
        .run(move |conn| accounts::link_is_valid(conn, TokenPurpose::VerifyEmail, &t))
        .await?;
    if valid {
        // Confirming takes a click (a POST): a GET never changes state, and
        // mail scanners that open links must not use them up.
        page.render("verify.html", json!({ "mode": "confirm", "token": token }))
    } else {
        page.render_status(
            Status::BadRequest,
            "verify.html",
            json!({ "mode": "invalid" }),
        )
    }
}

#[post("/verify", data = "<form>")]
async fn verify(
    page: PageCtx<'_>,
    form: CsrfForm<TokenForm>,
) -> AppResult<Result<Page, Flash<Redirect>>> {
    let token = form.0.token;
    let signed_in = page.user.is_some();
    let config = page.app.config.clone();
    match page
        .app
        .db
        .run(move |conn| accounts::verify_email(conn, &config, &token))
        .await
    {
        Ok(user) => {
            let to = if signed_in {
                "/".to_string()
            } else {
                format!("/login?email={}", crate::templates::urlencode(&user.email))
            };
            Ok(Err(Flash::success(
                Redirect::to(to),
                "Your e-mail address is confirmed. You can sign in now.",
            )))
        }
        Err(AppError::Invalid { .. }) => Ok(Ok(page.render_status(
            Status::BadRequest,
            "verify.html",
            json!({ "mode": "invalid" }),
        )?)),
        Err(e) => Err(e),
    }
}

#[post("/verify/resend", data = "<form>")]
async fn resend(
    page: PageCtx<'_>,
    client: ClientInfo,
    form: CsrfForm<EmailForm>,
) -> AppResult<Page> {
    let email = form.0.email;
    if let Err(e) = page.app.auth_limits.attempt(
        &page.app.config,
        Action::ResendVerification,
        client.ip.as_deref(),
        Some(&email),
    ) {
        let values = json!({ "mode": "resend", "form": { "email": email } });
        return limited_form(&page, "verify.html", values, e);
    }
    let (config, mailer) = (page.app.config.clone(), page.app.mailer.clone());
    let e = email.clone();
    match page
        .app
        .db
        .run(move |conn| accounts::resend_verification(conn, &config, &mailer, &e))
        .await
    {
        Ok(()) => page.render(
            "check_email.html",
            json!({ "email": email.trim(), "purpose": "verify" }),
        ),
        Err(e) => page.form_error(
            "verify.html",
            e,
            json!({ "mode": "resend", "form": { "email": email } }),
        ),
    }
}

// ---- sign in / out ----

#[get("/login")]
fn login_page(page: PageCtx<'_>, uri: &Origin<'_>) -> AppResult<Result<Page, Redirect>> {
    let next = safe_next(&query_param(uri, "next").unwrap_or_default());
    if page.user.is_some() {
        return Ok(Err(Redirect::to(next)));
    }
    let email = query_param(uri, "email").unwrap_or_default();
    Ok(Ok(page.render(
        "login.html",
        json!({ "form": { "email": email, "next": next } }),
    )?))
}

#[post("/login", data = "<form>")]
async fn login(
    page: PageCtx<'_>,
    client: ClientInfo,
    cookies: &CookieJar<'_>,
    form: CsrfForm<LoginForm>,
) -> AppResult<Result<Page, Flash<Redirect>>> {
    let f = form.0;
    let app = page.app;
    let values = json!({ "form": { "email": f.email, "next": f.next } });
    // Counted before the password is checked, settled after (so guesses
    // sent at the same moment cannot all be checked).
    let attempt = match app
        .auth_limits
        .sign_in_attempt(&app.config, client.ip.as_deref(), &f.email)
    {
        Ok(a) => a,
        Err(e) => return Ok(Ok(limited_form(&page, "login.html", values, e)?)),
    };
    let email = f.email.clone();
    let user = app
        .db
        .run(move |conn| accounts::sign_in_account(conn, &email))
        .await?;
    // bcrypt with no database connection held.
    let (config, password) = (app.config.clone(), f.password);
    let (checked, user) = rocket::tokio::task::spawn_blocking(move || {
        (
            accounts::sign_in_check(&config, user.as_ref(), &password),
            user,
        )
    })
    .await
    .map_err(|e| AppError::internal(format!("password check: {e}")))?;
    attempt.settle(!matches!(checked, Err(SignInError::BadCredentials)));
    let result = match (checked, user) {
        (Ok(rehash), Some(user)) => {
            let config = app.config.clone();
            let (ip, ua) = (client.ip.clone(), client.user_agent.clone());
            app.db
                .run(move |conn| {
                    let client = crate::model::Client {
                        ip: ip.as_deref(),
                        user_agent: ua.as_deref(),
                    };
                    accounts::sign_in_finish(conn, &config, &user, rehash, &client)
                })
                .await
                .map_err(SignInError::Other)
        }
        (Ok(_), None) => Err(SignInError::BadCredentials),
        (Err(e), _) => Err(e),
    };
    match result {
        Ok(session) => {
            cookies.add(session_cookie(app, &session));
            Ok(Err(Flash::success(
                Redirect::to(safe_next(&f.next)),
                "You are signed in.",
            )))
        }
        Err(SignInError::BadCredentials) => {
            let mut v = values;
            v["error"] = json!({ "field": null, "message": accounts::BAD_CREDENTIALS });
            Ok(Ok(page.render_status(
                Status::Unauthorized,
                "login.html",
                v,
            )?))
        }
        Err(SignInError::Unverified) => {
            let mut v = values;
            v["unverified"] = json!(true);
            Ok(Ok(page.render_status(
                Status::Forbidden,
                "login.html",
                v,
            )?))
        }
        Err(SignInError::Other(e)) => Err(e),
    }
}

#[post("/logout", data = "<_form>")]
async fn logout(
    user: MaybeUser,
    page: PageCtx<'_>,
    cookies: &CookieJar<'_>,
    _form: CsrfForm<EmptyForm>,
) -> AppResult<Flash<Redirect>> {
    if let Some(s) = user.0 {
        let id = s.session.id;
        page.app
            .db
            .run(move |conn| crate::domain::sessions::end(conn, id))
            .await?;
    }
    cookies.remove(Cookie::build(SESSION_COOKIE).path("/"));
    Ok(Flash::success(Redirect::to("/"), "You are signed out."))
}

// ---- forgotten password ----

#[get("/forgot")]
fn forgot_page(page: PageCtx<'_>) -> AppResult<Page> {
    page.render("forgot.html", json!({}))
}

#[post("/forgot", data = "<form>")]
async fn forgot(
    page: PageCtx<'_>,
    client: ClientInfo,
    form: CsrfForm<EmailForm>,
) -> AppResult<Page> {
    let email = form.0.email;
    if let Err(e) = page.app.auth_limits.attempt(
        &page.app.config,
        Action::PasswordReset,
        client.ip.as_deref(),
        Some(&email),
    ) {
        return limited_form(
            &page,
            "forgot.html",
            json!({ "form": { "email": email } }),
            e,
        );
    }
    let (config, mailer) = (page.app.config.clone(), page.app.mailer.clone());
    let e = email.clone();
    match page
        .app
        .db
        .run(move |conn| accounts::request_password_reset(conn, &config, &mailer, &e))
        .await
    {
        Ok(()) => page.render(
            "check_email.html",
            json!({ "email": email.trim(), "purpose": "reset", "minutes": page.app.config.auth.reset_link_minutes }),
        ),
        Err(e) => page.form_error("forgot.html", e, json!({ "form": { "email": email } })),
    }
}

#[get("/reset")]
async fn reset_page(page: PageCtx<'_>, uri: &Origin<'_>) -> AppResult<Page> {
    let token = query_param(uri, "token").unwrap_or_default();
    let t = token.clone();
    let valid = !token.is_empty()
        && page
            .app
            .db
            .run(move |conn| accounts::link_is_valid(conn, TokenPurpose::ResetPassword, &t))
            .await?;
    if valid {
        page.render("reset.html", json!({ "token": token }))
    } else {
        page.render_status(Status::BadRequest, "reset.html", json!({ "invalid": true }))
    }
}

#[post("/reset", data = "<form>")]
async fn reset(
    page: PageCtx<'_>,
    cookies: &CookieJar<'_>,
    form: CsrfForm<ResetForm>,
) -> AppResult<Result<Page, Flash<Redirect>>> {
    let f = form.0;
    let (config, mailer) = (page.app.config.clone(), page.app.mailer.clone());
    let token = f.token.clone();
    // The link and the new password checked, bcrypt with no database
    // connection held, then the write that uses the link up.
    let (t, p) = (token.clone(), f.password.clone());
    let checked = page
        .app
        .db
        .run(move |conn| accounts::reset_target(conn, &t, &p))
        .await;
    let hashed = match checked {
        Ok(user) => {
            let (cost, p) = (config.auth.bcrypt_cost, f.password.clone());
            super::submit::off_thread(move || Ok((crate::domain::passwords::hash(&p, cost)?, user)))
                .await
        }
        Err(e) => Err(e),
    };
    let outcome = match hashed {
        Ok((hash, user)) => {
            page.app
                .db
                .run(move |conn| {
                    accounts::reset_password_hashed(conn, &mailer, &token, &user, &hash)
                })
                .await
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(user) => {
            cookies.remove(Cookie::build(SESSION_COOKIE).path("/"));
            Ok(Err(Flash::success(
                Redirect::to(format!("/login?email={}", crate::templates::urlencode(&user.email))),
                "Your password has been changed and every session was signed out. Sign in with the new password.",
            )))
        }
        Err(AppError::Invalid {
            field: Some("token"),
            ..
        }) => Ok(Ok(page.render_status(
            Status::BadRequest,
            "reset.html",
            json!({ "invalid": true }),
        )?)),
        Err(e) => Ok(Ok(page.form_error(
            "reset.html",
            e,
            json!({ "token": f.token }),
        )?)),
    }
}

/// A form shown again with the rate-limit message (status 429 and
/// Retry-After come from the error's responder).
fn limited_form(
    page: &PageCtx<'_>,
    template: &str,
    mut values: serde_json::Value,
    e: AppError,
) -> AppResult<Page> {
    let AppError::RateLimited { retry_after_secs } = e else {
        return Err(e);
    };
    values["error"] = json!({ "field": null, "message": e.to_string() });
    let mut p = page.render_status(Status::TooManyRequests, template, values)?;
    p.retry_after = Some(retry_after_secs);
    Ok(p)
}

pub fn routes() -> Vec<Route> {
    routes![
        register_page,
        register,
        verify_page,
        verify,
        resend,
        login_page,
        login,
        logout,
        forgot_page,
        forgot,
        reset_page,
        reset
    ]
}
