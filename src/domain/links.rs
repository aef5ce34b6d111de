//! Signed, expiring links to stored images, for API answers and webhooks
//! (the caller has no session cookie). The signature covers the image id and
//! the expiry; it works for the full image, the preview and the download.

use super::secrets;
use crate::config::Config;

fn signature(secret: &[u8], asset: &str, expires: i64) -> String {
    let mut s = secrets::hmac_hex(secret, &format!("media|{asset}|{expires}"));
    s.truncate(40);
    s
}

/// When a link made now stops working: the configured lifetime, never past
/// the image's own deletion.
pub fn expiry(config: &Config, asset_expires_at: i64, now: i64) -> i64 {
    (now + config.api.signed_url_ttl_secs as i64).min(asset_expires_at)
}

/// `<public_url>/media/<id><suffix>?expires=..&signature=..`; `suffix` is
/// "", "/preview" or "/download".
pub fn media_url(
    config: &Config,
    secret: &[u8],
    (asset, asset_expires_at): (&str, i64),
    suffix: &str,
    now: i64,
) -> String {
    let expires = expiry(config, asset_expires_at, now);
    format!(
        "{}/media/{asset}{suffix}?expires={expires}&signature={}",
        config.public_url(),
        signature(secret, asset, expires)
    )
}

pub fn verify(secret: &[u8], asset: &str, expires: i64, sig: &str, now: i64) -> bool {
    expires > now && secrets::constant_time_eq(&signature(secret, asset, expires), sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_asset_and_expiry() {
        let k = b"k";
        let s = signature(k, "ast_a", 100);
        assert!(verify(k, "ast_a", 100, &s, 99));
        assert!(!verify(k, "ast_a", 100, &s, 100), "expired");
        assert!(!verify(k, "ast_b", 100, &s, 0), "other asset");
        assert!(!verify(k, "ast_a", 101, &s, 0), "other expiry");
        assert!(!verify(b"other", "ast_a", 100, &s, 0), "other secret");
    }
}
