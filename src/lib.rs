//! Novart Studio: a self-hostable AI image studio in one binary.
//!
//! Layers: `web` (routes, guards, templates) → `domain` (rules, no HTTP) →
//! `db` (SQL only). The CLI is another caller of `domain`.

#![recursion_limit = "512"]

pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod i18n;
pub mod jobs;
pub mod mail;
pub mod metrics;
pub mod model;
pub mod providers;
pub mod templates;
pub mod web;

use std::sync::Arc;

use rocket::figment::Figment;
use rocket::{Build, Rocket};

pub use config::Config;
pub use error::{AppError, AppResult};

/// Everything a request handler may use, built once per server.
pub struct App {
    pub config: Config,
    pub db: domain::Db,
    pub mailer: mail::Mailer,
    pub templates: Arc<templates::Templates>,
    /// Signs CSRF tokens; generated once per instance and kept in the database.
    pub secret: Vec<u8>,
    /// The task queue: catalogue, providers, workers' shared state.
    pub engine: jobs::queue::Engine,
    /// Requests per minute per API key.
    pub key_rates: domain::apikeys::RateLimiter,
    /// Per-IP and per-account limits on sign-in, registration, resets,
    /// resends and redemption.
    pub auth_limits: domain::ratelimit::AuthLimits,
    /// Writes the API request log in batches.
    pub request_log: domain::reqlog::RequestLog,
    /// Bounds how many uploaded images decode at once.
    pub decodes: Arc<domain::uploads::DecodeGate>,
}

impl App {
    /// Opens the database (migrating it), loads the templates, and prepares
    /// the mailer.
    pub fn new(config: Config) -> AppResult<App> {
        let db = domain::Db::open(&config)?;
        let templates = Arc::new(templates::Templates::load()?);
        let mailer = mail::Mailer::new(&config, templates.clone())?;
        let mut conn = db.get()?;
        domain::vault::check_at_start(&mut conn, &config).map_err(AppError::Internal)?;
        drop(conn);
        domain::stored::check_at_start(&config).map_err(AppError::Internal)?;
        let conn = db.get()?;
        domain::storage_move::check_at_start(&conn, &config).map_err(AppError::Internal)?;
        let secret = domain::secrets::instance_secret(&conn)?;
        let engine = jobs::queue::Engine::new(db.clone(), &config);
        let request_log = domain::reqlog::RequestLog::start(db.clone());
        // Several nodes on one database count the account limits together.
        let auth_limits = if config.database.is_postgres() {
            domain::ratelimit::AuthLimits::shared(db.clone())
        } else {
            Default::default()
        };
        Ok(App {
            decodes: Arc::new(domain::uploads::DecodeGate::from_config(&config)),
            config,
            db,
            mailer,
            templates,
            secret,
            engine,
            key_rates: Default::default(),
            auth_limits,
            request_log,
        })
    }
}

/// The whole web application for `config`, ready to launch (used by `novart
/// serve` and by the tests).
pub fn build_rocket(config: Config) -> AppResult<Rocket<Build>> {
    let app = App::new(config)?;
    let c = &app.config;
    let limits = rocket::data::Limits::default()
        .limit("form", rocket::data::ByteUnit::Kibibyte(64))
        .limit("data-form", rocket::data::ByteUnit::Mebibyte(16))
        .limit("json", rocket::data::ByteUnit::Mebibyte(1))
        .limit("bytes", rocket::data::ByteUnit::Mebibyte(64))
        .limit("string", rocket::data::ByteUnit::Kibibyte(64));
    let figment = Figment::from(rocket::Config::default())
        .merge(("address", c.server.bind.clone()))
        .merge(("port", c.server.port))
        .merge(("ident", "Novart"))
        .merge(("log_level", rocket::config::LogLevel::Off))
        .merge(("cli_colors", false))
        .merge(("limits", limits))
        .merge(("shutdown.grace", 5))
        .merge(("shutdown.mercy", 5));
    let (db, config, engine) = (app.db.clone(), app.config.clone(), app.engine.clone());
    let deliverer = jobs::webhooks::Deliverer::new(db.clone(), config.clone(), app.secret.clone());
    let rocket = rocket::custom(figment).attach(rocket::fairing::AdHoc::on_liftoff(
        "queue and scheduler",
        |_| {
            Box::pin(async move {
                jobs::cluster::start(&engine.db, &engine.config, &engine.hub);
                jobs::start_queue(engine);
                jobs::spawn_scheduler(db, config);
                jobs::webhooks::spawn(deliverer);
            })
        },
    ));
    Ok(web::mount(rocket, app))
}

/// Logs to stderr; `NOVART_LOG` (or `RUST_LOG`) sets the filter, `info` by
/// default.
pub fn init_tracing() {
    let filter = std::env::var("NOVART_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
