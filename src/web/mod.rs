//! The HTTP layer: routes per area, request guards, fairings and catchers.
//! Handlers never write SQL: guards → one domain call in `db.run` → a page or
//! JSON.

mod api;
mod appeals;
mod assets;
mod auth;
mod caller;
mod catchers;
mod developer;
mod docs;
mod fairings;
mod gallery;
pub mod guards;
mod live;
mod media;
mod messages;
mod metrics;
mod openai;
mod pages;
mod privacy;
pub mod render;
mod settings;
mod studio;
mod submit;
mod wallet;

use rocket::{Build, Rocket};

use crate::App;

/// Cookie names (part of the outside contract).
pub const SESSION_COOKIE: &str = "nova_art_session";
pub const VISITOR_COOKIE: &str = "nova_art_visitor";

pub fn mount(rocket: Rocket<Build>, app: App) -> Rocket<Build> {
    rocket
        .manage(app)
        .mount("/", pages::routes())
        .mount("/", auth::routes())
        .mount("/", settings::routes())
        .mount("/", appeals::routes())
        .mount("/", privacy::routes())
        .mount("/", api::routes())
        .mount("/", studio::routes())
        .mount("/", wallet::routes())
        .mount("/", developer::routes())
        .mount("/", media::routes())
        .mount("/", messages::routes())
        .mount("/", live::routes())
        .mount("/", gallery::routes())
        .mount("/", openai::routes())
        .mount("/", docs::routes())
        .mount("/", metrics::routes())
        .mount("/assets", assets::routes())
        .mount("/", assets::root_routes())
        .register("/", catchers::catchers())
        .attach(fairings::Http)
}
