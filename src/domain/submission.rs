//! Submitting a task, in three steps ordered by cost, so that a request
//! that will be refused costs almost nothing and the slow work never holds
//! a database connection that other users wait for:
//!
//! 1. `check` (a pooled connection, reads only): the idempotency replay,
//!    the prompt, restrictions, the local content rules, the model, size,
//!    count, seed, the reference count, the webhook URL's form, the balance
//!    and the key's quota; last, the attached images' bytes (base64 and the
//!    header: size, format, pixel area). Nothing is decoded or written yet,
//!    except the record of a prompt the content rules refused.
//! 2. `prepare` (no connection): the images are decoded and cleaned, at
//!    most `storage.max_parallel_decodes` at once (`DecodeGate`); the
//!    webhook's host name is resolved and checked; the upstream moderation
//!    service is asked.
//! 3. `store` (the writer): the cleaned images' files, then one transaction
//!    with their rows, the task, the charge and the idempotency record. When
//!    that transaction refuses (a limit reached meanwhile), the files are
//!    taken back: a refused request leaves nothing behind.

use crate::domain::{Connection, Transaction};

use crate::config::Config;
use crate::domain::db;
use crate::error::{AppError, AppResult};
use crate::model::{AssetId, Task, UserId};

use super::assets::{new_public_id, Prepared as Image, Written};
use super::catalog::Catalog;
use super::moderation::Hit;
use super::tasks::{
    NewTaskInput, MAX_IDEMPOTENCY_KEY, MAX_NEGATIVE_CHARS, MAX_PROMPT_CHARS, MAX_SEED,
};
use super::uploads::{self, DecodeGate, Inspected, MAX_REFERENCES};

/// A reference image or mask as a request names it.
#[derive(Debug, Clone)]
pub enum ImageInput {
    /// An earlier upload's public id (`ref_…`).
    Uploaded(String),
    /// Base64 image data (a `data:` URL prefix is allowed).
    Base64(String),
    /// The bytes of a file (multipart).
    Bytes(Vec<u8>),
}

impl ImageInput {
    /// A JSON string: an upload id, or base64 data.
    pub fn from_json(s: String) -> ImageInput {
        if s.starts_with("ref_") {
            ImageInput::Uploaded(s)
        } else {
            ImageInput::Base64(s)
        }
    }

    fn is_blank(&self) -> bool {
        match self {
            ImageInput::Uploaded(s) | ImageInput::Base64(s) => s.trim().is_empty(),
            ImageInput::Bytes(b) => b.is_empty(),
        }
    }
}

impl From<String> for ImageInput {
    fn from(id: String) -> ImageInput {
        ImageInput::Uploaded(id)
    }
}

impl From<&str> for ImageInput {
    fn from(id: &str) -> ImageInput {
        ImageInput::Uploaded(id.to_string())
    }
}

/// One reference or the mask, after the cheap checks.
enum Slot<I> {
    Stored(AssetId),
    New(I),
}

/// Attached bytes that passed the cheap checks, not yet decoded.
pub struct Incoming {
    field: &'static str,
    bytes: Vec<u8>,
    inspected: Inspected,
}

/// What `check` passes on: the request, checked.
pub enum Checked {
    /// An earlier request with the same `Idempotency-Key` made this task.
    Replay(Task),
    Fresh(Plan),
}

/// A checked request, its images still undecoded.
pub struct Plan {
    item: Item<Incoming>,
    webhook: Option<super::ssrf::Checked>,
    client_ip: Option<String>,
}

/// A request ready to be written.
pub enum Ready {
    Clean(Item<Image>),
    /// The upstream moderation service refused the prompt: only that is
    /// recorded.
    Flagged {
        hit: Hit,
        item: Item<Incoming>,
        client_ip: Option<String>,
    },
}

/// What is written, with the references (and mask) as `I`.
pub struct Item<I> {
    public_id: String,
    user: UserId,
    model: String,
    prompt: String,
    negative: String,
    width: u32,
    height: u32,
    n: u32,
    seed: i64,
    webhook: Option<String>,
    cost: i64,
    references: Vec<Slot<I>>,
    mask: Option<Slot<I>>,
    api_key: Option<super::apikeys::KeyQuota>,
    idempotency: Option<(String, String)>,
}

impl<I> Item<I> {
    fn with_images<J>(self, mut f: impl FnMut(I) -> AppResult<J>) -> AppResult<Item<J>> {
        let mut map = |s: Slot<I>| -> AppResult<Slot<J>> {
            Ok(match s {
                Slot::Stored(id) => Slot::Stored(id),
                Slot::New(i) => Slot::New(f(i)?),
            })
        };
        let references = self
            .references
            .into_iter()
            .map(&mut map)
            .collect::<AppResult<_>>()?;
        let mask = self.mask.map(&mut map).transpose()?;
        Ok(Item {
            public_id: self.public_id,
            user: self.user,
            model: self.model,
            prompt: self.prompt,
            negative: self.negative,
            width: self.width,
            height: self.height,
            n: self.n,
            seed: self.seed,
            webhook: self.webhook,
            cost: self.cost,
            references,
            mask,
            api_key: self.api_key,
            idempotency: self.idempotency,
        })
    }

    fn new_images(&self) -> impl Iterator<Item = &I> {
        self.references
            .iter()
            .chain(self.mask.as_ref())
            .filter_map(|s| match s {
                Slot::New(i) => Some(i),
                Slot::Stored(_) => None,
            })
    }

    fn has_images(&self) -> bool {
        !self.references.is_empty() || self.mask.is_some()
    }
}

/// The one idempotency rule for every way a task is submitted (the native
/// API, `/v1` and the studio form): the key the client chose, remembered
/// with the SHA-256 of what it asked for. The same key and request give the
/// same task (`replay`); the same key with another request is refused.
pub fn idempotency(key: Option<&str>, request: &str) -> Option<(String, String)> {
    key.map(|k| (k.trim().to_string(), super::secrets::sha256_hex(request)))
}

/// The task an earlier request with the same `Idempotency-Key` made: Ok(None)
/// if the key is new, 409 if it came with a different body.
pub fn replay(
    conn: &Connection,
    user: UserId,
    key: &str,
    body_hash: &str,
) -> AppResult<Option<Task>> {
    match db::tasks::idempotency_get(conn, user, key)? {
        None => Ok(None),
        Some((hash, task)) if hash == body_hash => db::tasks::by_id(conn, task),
        Some(_) => Err(AppError::Conflict(
            "This Idempotency-Key was already used with a different request body.".into(),
        )),
    }
}

fn webhook_error(e: String) -> AppError {
    AppError::invalid(
        "webhook_url",
        format!("The webhook URL cannot be used: {e}"),
    )
}

/// Step 1: every check that costs little, before anything is decoded,
/// resolved or stored.
pub fn check(
    conn: &mut Connection,
    config: &Config,
    catalog: &Catalog,
    user: UserId,
    input: NewTaskInput,
) -> AppResult<Checked> {
    if let Some((key, hash)) = &input.idempotency {
        if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !key.is_ascii() {
            return Err(AppError::invalid(
                "Idempotency-Key",
                format!("The Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} ASCII characters."),
            ));
        }
        if let Some(task) = replay(conn, user, key, hash)? {
            return Ok(Checked::Replay(task));
        }
    }
    let prompt = input.prompt.trim();
    if prompt.is_empty() {
        return Err(AppError::invalid(
            "prompt",
            "Describe the image you want in the prompt.",
        ));
    }
    if prompt.chars().count() > MAX_PROMPT_CHARS {
        return Err(AppError::invalid(
            "prompt",
            format!("The prompt is too long: at most {MAX_PROMPT_CHARS} characters."),
        ));
    }
    let negative = input.negative_prompt.as_deref().unwrap_or("").trim();
    if negative.chars().count() > MAX_NEGATIVE_CHARS {
        return Err(AppError::invalid(
            "negative_prompt",
            format!("The negative prompt is too long: at most {MAX_NEGATIVE_CHARS} characters."),
        ));
    }
    let mask_input = input.mask.filter(|m| !m.is_blank());
    if input.references.len() > MAX_REFERENCES {
        return Err(AppError::invalid(
            "reference_images",
            format!("At most {MAX_REFERENCES} reference images per task."),
        ));
    }
    super::bans::ensure(conn, user, super::bans::Action::Generate)?;
    if !input.references.is_empty() || mask_input.is_some() {
        super::bans::ensure(conn, user, super::bans::Action::Upload)?;
    }
    if let Some(hit) = catalog.moderator.check_local(prompt, negative) {
        return Err(refuse_prompt(
            conn,
            catalog,
            user,
            &input.api_key,
            &input.client_ip,
            &hit,
            prompt,
            negative,
        )?);
    }
    let model = catalog.model(input.model.trim())?;
    let (width, height) = model.resolve_size(
        input.size.as_deref(),
        input.aspect_ratio.as_deref(),
        input.resolution,
    )?;
    let n = input.n.unwrap_or(1);
    if n == 0 || n > model.max_n {
        return Err(AppError::invalid(
            "n",
            format!("{} makes 1 to {} images per task.", model.name, model.max_n),
        ));
    }
    let seed = match input.seed {
        Some(s) if (0..=MAX_SEED).contains(&s) => s,
        Some(_) => {
            return Err(AppError::invalid(
                "seed",
                format!("The seed must be between 0 and {MAX_SEED}."),
            ))
        }
        None => (rand::random::<u32>()) as i64,
    };
    let webhook_url = input
        .webhook_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let webhook = webhook_url
        .map(|u| super::ssrf::check_form(u).map_err(webhook_error))
        .transpose()?;
    if !input.references.is_empty() && !model.reference_images {
        return Err(AppError::invalid(
            "reference_images",
            format!("{} does not take reference images.", model.name),
        ));
    }
    if mask_input.is_some() && input.references.is_empty() {
        return Err(AppError::invalid("mask", "A mask needs an image to edit."));
    }
    let cost = super::wallet::task_cost(model.price, n)?;
    super::wallet::ensure_affordable(conn, user, cost)?;
    if let Some(q) = &input.api_key {
        super::apikeys::check_quota(conn, q, &model.id)?;
    }
    // Last, the attached images: base64 and their headers (no decoding).
    let slot = |field: &'static str, image: ImageInput| -> AppResult<Slot<Incoming>> {
        let bytes = match image {
            ImageInput::Uploaded(id) => {
                return super::uploads::own_reference(conn, user, id.trim())
                    .map(|a| Slot::Stored(a.id))
                    .map_err(|e| match e {
                        AppError::Invalid { message, .. } => AppError::invalid(field, message),
                        other => other,
                    })
            }
            ImageInput::Base64(text) => decode_base64(field, &text)?,
            ImageInput::Bytes(b) => b,
        };
        let inspected = uploads::inspect(config, field, &bytes)?;
        Ok(Slot::New(Incoming {
            field,
            bytes,
            inspected,
        }))
    };
    let references = input
        .references
        .into_iter()
        .map(|r| slot("reference_images", r))
        .collect::<AppResult<Vec<_>>>()?;
    let mask = mask_input.map(|m| slot("mask", m)).transpose()?;
    Ok(Checked::Fresh(Plan {
        item: Item {
            public_id: new_public_id("tsk"),
            user,
            model: model.id.clone(),
            prompt: prompt.to_string(),
            negative: negative.to_string(),
            width,
            height,
            n,
            seed,
            webhook: webhook_url.map(str::to_string),
            cost,
            references,
            mask,
            api_key: input.api_key,
            idempotency: input.idempotency,
        },
        webhook,
        client_ip: input.client_ip,
    }))
}

fn decode_base64(field: &'static str, text: &str) -> AppResult<Vec<u8>> {
    use base64::Engine;
    let b64 = text.split_once("base64,").map(|(_, b)| b).unwrap_or(text);
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| {
            AppError::invalid(
                field,
                "Each reference image is an uploaded image id (ref_...) or base64 image data.",
            )
        })
}

/// Records a prompt the content rules refused and returns the refusal.
#[allow(clippy::too_many_arguments)]
fn refuse_prompt(
    conn: &mut Connection,
    catalog: &Catalog,
    user: UserId,
    key: &Option<super::apikeys::KeyQuota>,
    ip: &Option<String>,
    hit: &Hit,
    prompt: &str,
    negative: &str,
) -> AppResult<AppError> {
    let origin = super::bans::Origin {
        user: Some(user),
        api_key: key.as_ref().map(|q| q.key_id),
        ip: ip.clone(),
    };
    let text = if hit.field == "negative_prompt" {
        negative
    } else {
        prompt
    };
    super::bans::blocked(conn, &catalog.moderation, &origin, hit, text)
}

/// Step 2: the costly work, with no database connection: the webhook host
/// resolved, the moderation service asked, the images decoded (each
/// holding a permit of `gate`).
pub fn prepare(catalog: &Catalog, gate: &DecodeGate, plan: Plan) -> AppResult<Ready> {
    if let Some(url) = plan.webhook {
        super::ssrf::resolve(
            url,
            &super::ssrf::SystemResolver,
            catalog.allow_private_webhooks,
        )
        .map_err(webhook_error)?;
    }
    if let Some(hit) = catalog
        .moderator
        .check_service(&plan.item.prompt, &plan.item.negative)?
    {
        return Ok(Ready::Flagged {
            hit,
            item: plan.item,
            client_ip: plan.client_ip,
        });
    }
    Ok(Ready::Clean(plan.item.with_images(|i| {
        let _permit = gate.enter()?;
        uploads::clean(i.field, &i.bytes, &i.inspected)
    })?))
}

/// Step 3: the new images' files, then one transaction for their rows, the
/// task, the charge and the idempotency record. The files are removed again
/// when the transaction refuses or an earlier request made the task.
pub fn store(
    conn: &mut Connection,
    config: &Config,
    catalog: &Catalog,
    ready: Ready,
) -> AppResult<(Task, bool)> {
    let item = match ready {
        Ready::Clean(item) => item,
        Ready::Flagged {
            hit,
            item,
            client_ip,
        } => {
            return Err(refuse_prompt(
                conn,
                catalog,
                item.user,
                &item.api_key,
                &client_ip,
                &hit,
                &item.prompt,
                &item.negative,
            )?)
        }
    };
    let mut written: Vec<Written> = Vec::new();
    for image in item.new_images() {
        match uploads::write(config, item.user, image) {
            Ok(w) => written.push(w),
            Err(e) => {
                super::assets::unwrite(config, &written);
                return Err(e);
            }
        }
    }
    let batch = Batch {
        item,
        written,
        retention: config.storage.reference_retention_hours,
        now: super::now(),
    };
    static SUBMITS: std::sync::OnceLock<db::Batcher<Batch, (Task, bool)>> =
        std::sync::OnceLock::new();
    let written = batch.written.clone();
    let outcome = SUBMITS
        .get_or_init(Default::default)
        .run(conn, batch, insert);
    // Files of a refused request, or of a replay (an earlier request made
    // the task), are not kept.
    if !matches!(outcome, Ok((_, false))) {
        super::assets::unwrite(config, &written);
    }
    outcome
}

/// A checked submission with its new images' files, ready to be recorded.
struct Batch {
    item: Item<Image>,
    written: Vec<Written>,
    retention: u32,
    now: i64,
}

/// The write half of a submission: the key's limits, the new images' rows,
/// the task and its images, the charge and the idempotency record, all in
/// the caller's transaction (submissions are group-committed; see
/// `db::Batcher`).
fn insert(tx: &Transaction, b: &Batch) -> AppResult<(Task, bool)> {
    let p = &b.item;
    if let Some((key, hash)) = &p.idempotency {
        if let Some(task) = replay(tx, p.user, key, hash)? {
            return Ok((task, true));
        }
    }
    // Again inside the write: a restriction imposed since the checks.
    super::bans::ensure(tx, p.user, super::bans::Action::Generate)?;
    if p.has_images() {
        super::bans::ensure(tx, p.user, super::bans::Action::Upload)?;
    }
    if let Some(q) = &p.api_key {
        super::apikeys::check_quota(tx, q, &p.model)?;
    }
    let mut files = b.written.iter();
    let mut asset = |slot: &Slot<Image>| -> AppResult<AssetId> {
        match slot {
            Slot::Stored(id) => Ok(*id),
            Slot::New(image) => {
                let w = files
                    .next()
                    .ok_or_else(|| AppError::internal("an image without its file"))?;
                uploads::record(tx, p.user, image, w, b.now, b.retention)
            }
        }
    };
    let references = p
        .references
        .iter()
        .map(&mut asset)
        .collect::<AppResult<Vec<_>>>()?;
    let mask = p.mask.as_ref().map(&mut asset).transpose()?;
    let id = db::tasks::insert(
        tx,
        &db::tasks::NewTask {
            public_id: &p.public_id,
            user_id: p.user,
            model: &p.model,
            prompt: &p.prompt,
            negative_prompt: &p.negative,
            width: p.width,
            height: p.height,
            n: p.n,
            seed: p.seed,
            webhook_url: p.webhook.as_deref(),
            cost: p.cost,
            api_key_id: p.api_key.as_ref().map(|q| q.key_id),
            now: b.now,
        },
    )?;
    for (i, r) in references.iter().enumerate() {
        db::assets::attach_reference(tx, id, *r, i as u32)?;
    }
    if let Some(m) = mask {
        db::assets::attach_mask(tx, id, m)?;
    }
    super::wallet::charge_task(tx, p.user, id, p.cost, b.now)?;
    if let Some((key, hash)) = &p.idempotency {
        db::tasks::idempotency_put(tx, p.user, key, hash, id, b.now)?;
    }
    let task = db::tasks::by_id(tx, id)?.ok_or(AppError::NotFound)?;
    Ok((task, false))
}

/// All three steps in one go, holding `conn` throughout (the CLI and
/// tests; request handlers run `prepare` outside the connection).
pub fn submit_here(
    conn: &mut Connection,
    config: &Config,
    catalog: &Catalog,
    user: UserId,
    input: NewTaskInput,
) -> AppResult<(Task, bool)> {
    match check(conn, config, catalog, user, input)? {
        Checked::Replay(task) => Ok((task, true)),
        Checked::Fresh(plan) => {
            let gate = DecodeGate::from_config(config);
            let ready = prepare(catalog, &gate, plan)?;
            store(conn, config, catalog, ready)
        }
    }
}

/// `/v1` calls wait for their images; one that timed out leaves its task
/// under `key` (body hash empty: the key is itself a digest of the body), so
/// a client's retry picks the task up instead of paying twice. Once the
/// call answers, the key is dropped.
pub fn remember_unanswered(
    conn: &mut Connection,
    user: UserId,
    key: &str,
    task: crate::model::TaskId,
    timed_out: bool,
) -> AppResult<()> {
    db::write(conn, |tx| {
        db::tasks::idempotency_delete(tx, user, key)?;
        if timed_out {
            db::tasks::idempotency_put(tx, user, key, "", task, super::now())?;
        }
        Ok(())
    })
}
