//! The guard for every URL the server calls on a user's behalf (webhooks):
//! http or https only, no credentials in the URL, the name resolved once and
//! every address checked (loopback, private, link-local, CGNAT, unique-local,
//! multicast, documentation ranges, and IPv4 hidden in IPv6 forms), IPv4
//! literals read the way `inet_aton` reads them (0x7f000001, 127.1, 017700000001).
//! The caller connects to the checked addresses only (see `jobs::webhooks`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// Name resolution, behind a trait so tests can fake DNS (rebinding).
pub trait Resolve: Send + Sync {
    fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, String>;
}

/// The operating system's resolver.
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, String> {
        (host, port)
            .to_socket_addrs()
            .map(|a| a.map(|s| s.ip()).collect())
            .map_err(|e| format!("cannot resolve {host}: {e}"))
    }
}

/// A URL that passed the guard, with the addresses to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub host: String,
    pub port: u16,
    pub https: bool,
    pub addrs: Vec<SocketAddr>,
}

/// Parses an IPv4 address the permissive ways C libraries accept: one to
/// four parts, each decimal, octal (leading 0) or hex (0x).
pub fn ipv4_literal(host: &str) -> Option<Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(parts.len());
    for p in &parts {
        let n = if let Some(hex) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            if hex.is_empty() {
                0
            } else {
                u64::from_str_radix(hex, 16).ok()?
            }
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(&p[1..], 8).ok()?
        } else {
            p.parse::<u64>().ok()?
        };
        nums.push(n);
    }
    let (last, head) = nums.split_last()?;
    if head.iter().any(|&n| n > 255) {
        return None;
    }
    let rest_bits = 8 * (4 - head.len() as u32);
    if *last >= 1u64 << rest_bits {
        return None;
    }
    let mut v: u64 = 0;
    for (i, n) in head.iter().enumerate() {
        v |= n << (24 - 8 * i as u32);
    }
    v |= last;
    Some(Ipv4Addr::from(v as u32))
}

fn v4_is_public(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0                                  // 0.0.0.0/8
        || (a == 100 && (64..=127).contains(&b))   // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0)          // 192.0.0.0/24
        || (a == 198 && (b == 18 || b == 19))      // benchmarking 198.18/15
        || a >= 240) // reserved
}

/// The IPv4 address an IPv6 address carries (mapped, compatible, NAT64,
/// 6to4), if any.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        return Some(tail); // ::a.b.c.d (deprecated "compatible")
    }
    if s[0] == 0x64 && s[1] == 0xff9b {
        return Some(tail); // NAT64 64:ff9b::/96 (and the local-use /48)
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        )); // 6to4
    }
    None
}

/// Whether the server may call this address on a user's behalf.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_is_public(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return v4_is_public(v4);
            }
            let s0 = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (s0 & 0xfe00) == 0xfc00       // unique local fc00::/7
                || (s0 & 0xffc0) == 0xfe80       // link-local fe80::/10
                || (s0 & 0xffc0) == 0xfec0       // site-local (deprecated)
                || (s0 == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || (s0 == 0x2001 && v6.segments()[1] < 0x200)   // TEREDO, benchmarking, ORCHID
                || s0 == 0x0100) // discard-only
        }
    }
}

/// Checks `url` and resolves it once; `allow_private` (development only)
/// lets loopback and private addresses through.
pub fn check(url: &str, resolver: &dyn Resolve, allow_private: bool) -> Result<Target, String> {
    let url = url.trim();
    if url.len() > 2000 {
        return Err("The URL is longer than 2000 characters.".into());
    }
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("Only http:// and https:// URLs can be called.".into());
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("The URL contains spaces or control characters.".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err("User names and passwords in the URL are not allowed.".into());
    }
    if authority.contains('\\') || authority.contains('%') {
        return Err("The URL's host is not valid.".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("The URL's IPv6 address is not closed with ].")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("The URL's port is not valid.")?),
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port: u16 = match port {
        None | Some("") => {
            if https {
                443
            } else {
                80
            }
        }
        Some(p) => p
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or("The URL's port is not valid.")?,
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty() {
        return Err("The URL has no host.".into());
    }
    let ips: Vec<IpAddr> = if let Ok(v6) = host.parse::<Ipv6Addr>() {
        vec![IpAddr::V6(v6)]
    } else if let Some(v4) = ipv4_literal(&host) {
        vec![IpAddr::V4(v4)]
    } else {
        let valid_name = host.len() <= 253
            && host.trim_end_matches('.').split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid_name {
            return Err("The URL's host is not a valid name.".into());
        }
        if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err("The URL's host is not a valid address.".into());
        }
        resolver.resolve(host.trim_end_matches('.'), port)?
    };
    if ips.is_empty() {
        return Err(format!("{host} does not resolve to any address."));
    }
    if !allow_private {
        if let Some(bad) = ips.iter().find(|ip| !is_public(**ip)) {
            return Err(format!(
                "{host} resolves to {bad}, a loopback, private or reserved address; the server does not call those."
            ));
        }
    }
    Ok(Target {
        url: url.to_string(),
        host,
        port,
        https,
        addrs: ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_aton_forms() {
        let lo = Ipv4Addr::new(127, 0, 0, 1);
        for s in [
            "127.0.0.1",
            "127.1",
            "0x7f000001",
            "2130706433",
            "0177.0.0.1",
            "0x7f.1",
            "127.0.1",
            "127.0.0.1.",
        ] {
            assert_eq!(ipv4_literal(s), Some(lo), "{s}");
        }
        assert_eq!(ipv4_literal("256.0.0.1"), None);
        assert_eq!(ipv4_literal("example.com"), None);
        assert_eq!(ipv4_literal("1.2.3.4.5"), None);
    }
}
