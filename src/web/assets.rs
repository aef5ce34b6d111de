//! Static files (CSS, JS, icons) embedded in the binary from `assets/`.

use std::path::PathBuf;

use rocket::http::{ContentType, Header};
use rocket::response::{self, Responder, Response};
use rocket::{get, routes, Request, Route};
use rust_embed::Embed;

#[derive(Embed)]
#[folder = "$CARGO_MANIFEST_DIR/assets/"]
struct Files;

pub struct Asset {
    content_type: ContentType,
    data: std::borrow::Cow<'static, [u8]>,
    cache: &'static str,
}

impl<'r> Responder<'r, 'static> for Asset {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let data = self.data.into_owned();
        Response::build()
            .header(self.content_type)
            .header(Header::new("Cache-Control", self.cache))
            .sized_body(data.len(), std::io::Cursor::new(data))
            .ok()
    }
}

#[get("/<path..>")]
fn asset(path: PathBuf) -> Option<Asset> {
    let name = path.to_str()?.replace('\\', "/");
    let file = Files::get(&name)?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let content_type = match ext {
        "css" => ContentType::CSS,
        "js" => ContentType::JavaScript,
        "svg" => ContentType::SVG,
        "png" => ContentType::PNG,
        "ico" => ContentType::Icon,
        "woff2" => ContentType::WOFF2,
        _ => ContentType::Binary,
    };
    Some(Asset {
        content_type,
        data: file.data,
        cache: "public, max-age=3600",
    })
}

/// The service worker (browser notifications). It is served from the root
/// so that it may cover every page, and revalidated on each load so an
/// update reaches browsers at once.
#[get("/sw.js")]
fn service_worker() -> Option<Asset> {
    Some(Asset {
        content_type: ContentType::JavaScript,
        data: Files::get("sw.js")?.data,
        cache: "no-cache",
    })
}

pub fn routes() -> Vec<Route> {
    routes![asset]
}

pub fn root_routes() -> Vec<Route> {
    routes![service_worker]
}
