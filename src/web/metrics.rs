//! `GET /metrics`: Prometheus text format, for the operator's monitoring.
//! Off unless `metrics.token` is set; then only with that bearer token.

use rocket::http::{ContentType, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{get, routes, Route, State};

use crate::domain::secrets::constant_time_eq;
use crate::error::AppResult;
use crate::App;

pub struct Bearer(Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Bearer {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        let token = req
            .headers()
            .get_one("Authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
        Outcome::Success(Bearer(token))
    }
}

#[get("/metrics")]
async fn metrics(
    app: &State<App>,
    bearer: Bearer,
) -> AppResult<Result<(ContentType, String), (Status, &'static str)>> {
    let token = app.config.metrics.token.trim();
    if token.is_empty() {
        return Ok(Err((Status::NotFound, "metrics are off (metrics.token)\n")));
    }
    if !constant_time_eq(token, bearer.0.as_deref().unwrap_or_default()) {
        return Ok(Err((
            Status::Unauthorized,
            "send Authorization: Bearer <metrics.token>\n",
        )));
    }
    let config = app.config.clone();
    let stats = app
        .db
        .run(move |conn| crate::domain::stats::collect(conn, &config))
        .await?;
    let mut out = String::with_capacity(16 * 1024);
    crate::metrics::global().render(&mut out);
    stats.render(&mut out);
    Ok(Ok((
        ContentType::new("text", "plain").with_params(("version", "0.0.4")),
        out,
    )))
}

pub fn routes() -> Vec<Route> {
    routes![metrics]
}
