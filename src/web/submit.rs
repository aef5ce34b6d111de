//! The one way a request handler queues a task or stores an upload: the
//! cheap checks on a pooled connection, the costly work (decoding, name
//! resolution, the moderation service) on a blocking thread with no
//! connection, then the writes. The steps and their rules live in
//! `domain::submission` and `domain::uploads`.

use crate::domain::submission::{self, Checked};
use crate::domain::tasks::NewTaskInput;
use crate::domain::uploads;
use crate::error::{AppError, AppResult};
use crate::model::{Asset, Task, UserId};
use crate::App;
use rocket::data::{Data, ToByteUnit};

/// Runs blocking work with no database connection.
pub(super) async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> AppResult<T> + Send + 'static,
) -> AppResult<T> {
    rocket::tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AppError::internal(format!("blocking task: {e}")))?
}

/// Checks and queues a task; the flag is true when an earlier request with
/// the same `Idempotency-Key` made it.
pub async fn task(app: &App, user: UserId, input: NewTaskInput) -> AppResult<(Task, bool)> {
    let (config, catalog) = (app.config.clone(), app.engine.catalog.clone());
    let checked = app
        .db
        .run(move |conn| submission::check(conn, &config, &catalog, user, input))
        .await?;
    let plan = match checked {
        Checked::Replay(task) => return Ok((task, true)),
        Checked::Fresh(plan) => plan,
    };
    let (catalog, gate) = (app.engine.catalog.clone(), app.decodes.clone());
    let ready = off_thread(move || submission::prepare(&catalog, &gate, plan)).await?;
    let (config, catalog) = (app.config.clone(), app.engine.catalog.clone());
    app.db
        .run(move |conn| submission::store(conn, &config, &catalog, ready))
        .await
}

/// Checks, cleans and stores one uploaded reference image: the account's
/// restrictions before the body is read, the size while it is read, the
/// header before anything is decoded.
pub async fn upload(app: &App, user: UserId, data: Data<'_>) -> AppResult<Asset> {
    app.db
        .run(move |conn| uploads::may_upload(conn, user))
        .await?;
    let max = app.config.storage.max_upload_bytes;
    let bytes = data
        .open((max + 1).bytes())
        .into_bytes()
        .await
        .map_err(|e| AppError::invalid("image", format!("The upload could not be read: {e}")))?;
    if !bytes.is_complete() || bytes.len() as u64 > max {
        return Err(AppError::TooLarge(format!(
            "The image is larger than {} MB.",
            max / 1_048_576
        )));
    }
    let bytes = bytes.into_inner();
    let inspected = uploads::inspect(&app.config, "reference_images", &bytes)?;
    let gate = app.decodes.clone();
    let image = off_thread(move || {
        let _permit = gate.enter()?;
        uploads::clean("reference_images", &bytes, &inspected)
    })
    .await?;
    let config = app.config.clone();
    app.db
        .run(move |conn| uploads::store(conn, &config, user, &image))
        .await
}
