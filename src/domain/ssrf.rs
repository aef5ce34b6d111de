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

/// What an IPv6 address says about IPv4, by the IPv4-embedding ranges of
/// IANA's special-purpose registry and the older embedding forms.
#[derive(Debug, PartialEq, Eq)]
enum Embedded {
    /// It carries this IPv4 address, which decides.
    V4(Ipv4Addr),
    /// A translation range whose embedding is local (64:ff9b:1::/48) or
    /// unassigned: never called.
    Refuse,
    /// An ordinary IPv6 address.
    None,
}

fn embedded_v4(ip: Ipv6Addr) -> Embedded {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // ::ffff:0:0/96, IPv4-mapped
        [0, 0, 0, 0, 0, 0xffff, _, _] => Embedded::V4(tail),
        // ::ffff:0:0:0/96, IPv4-translated (SIIT)
        [0, 0, 0, 0, 0xffff, 0, _, _] => Embedded::V4(tail),
        // ::/96, IPv4-compatible (deprecated; also :: and ::1)
        [0, 0, 0, 0, 0, 0, _, _] => Embedded::V4(tail),
        // 64:ff9b::/96, the well-known NAT64 prefix
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Embedded::V4(tail),
        // 64:ff9b:1::/48 (local-use NAT64) and the rest of 64:ff9b::/32
        [0x64, 0xff9b, ..] => Embedded::Refuse,
        // 2002::/16, 6to4: the IPv4 address follows the prefix
        [0x2002, hi, lo, ..] => Embedded::V4(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        // 2001::/32, Teredo: the server's and the (obfuscated) client's
        // IPv4 addresses; relays are not called
        [0x2001, 0, ..] => Embedded::Refuse,
        // ISATAP interface identifiers (::0:5efe:a.b.c.d, ::200:5efe:a.b.c.d)
        [_, _, _, _, i, 0x5efe, _, _] if i & 0xfdff == 0 => Embedded::V4(tail),
        _ => Embedded::None,
    }
}

/// Whether the server may call this address on a user's behalf.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_is_public(v4),
        IpAddr::V6(v6) => {
            match embedded_v4(v6) {
                Embedded::V4(v4) => return v4_is_public(v4),
                Embedded::Refuse => return false,
                Embedded::None => {}
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

/// A URL whose form passed the guard, not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    url: String,
    host: String,
    port: u16,
    https: bool,
    /// The address when the host is an IP literal.
    literal: Option<IpAddr>,
}

/// The checks of a URL that need no network: scheme, length, credentials,
/// host and port (cheap: run them before anything costly).
pub fn check_form(url: &str) -> Result<Checked, String> {
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
    let literal = if let Ok(v6) = host.parse::<Ipv6Addr>() {
        Some(IpAddr::V6(v6))
    } else if let Some(v4) = ipv4_literal(&host) {
        Some(IpAddr::V4(v4))
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
        None
    };
    Ok(Checked {
        url: url.to_string(),
        host,
        port,
        https,
        literal,
    })
}

/// Resolves a checked URL once (a network call for a name: never while
/// holding a database connection) and checks every address; `allow_private`
/// (development only) lets loopback and private addresses through.
pub fn resolve(c: Checked, resolver: &dyn Resolve, allow_private: bool) -> Result<Target, String> {
    let host = c.host;
    let ips: Vec<IpAddr> = match c.literal {
        Some(ip) => vec![ip],
        None => resolver.resolve(host.trim_end_matches('.'), c.port)?,
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
        url: c.url,
        host,
        port: c.port,
        https: c.https,
        addrs: ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, c.port))
            .collect(),
    })
}

/// Checks `url` and resolves it once: `check_form`, then `resolve`.
pub fn check(url: &str, resolver: &dyn Resolve, allow_private: bool) -> Result<Target, String> {
    resolve(check_form(url)?, resolver, allow_private)
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

    /// Every IPv4-embedding IPv6 form of IANA's special-purpose registry
    /// (and the older forms), carrying loopback, a private, the metadata
    /// and a CGNAT address: all refused; the same forms carrying a public
    /// address are judged by it.
    #[test]
    fn ipv4_embedded_in_ipv6_is_judged_by_the_ipv4_address() {
        let private = [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
        ];
        type Form = fn(Ipv4Addr) -> String;
        let forms: [(&str, Form); 7] = [
            ("mapped ::ffff:0:0/96", |v| format!("::ffff:{v}")),
            ("translated ::ffff:0:0:0/96", |v| {
                let o = v.octets();
                format!(
                    "::ffff:0:{:x}:{:x}",
                    u16::from_be_bytes([o[0], o[1]]),
                    u16::from_be_bytes([o[2], o[3]])
                )
            }),
            ("compatible ::/96", |v| format!("::{v}")),
            ("NAT64 64:ff9b::/96", |v| format!("64:ff9b::{v}")),
            ("6to4 2002::/16", |v| {
                let o = v.octets();
                format!(
                    "2002:{:x}:{:x}::1",
                    u16::from_be_bytes([o[0], o[1]]),
                    u16::from_be_bytes([o[2], o[3]])
                )
            }),
            ("ISATAP ::0:5efe", |v| format!("2a00:1450::5efe:{v}")),
            ("ISATAP ::200:5efe", |v| format!("2a00:1450::200:5efe:{v}")),
        ];
        for (name, form) in forms {
            for v4 in private {
                let ip: Ipv6Addr = form(v4.parse().unwrap()).parse().unwrap();
                assert!(!is_public(IpAddr::V6(ip)), "{name}: {ip} carries {v4}");
                let url = format!("http://[{ip}]/hook");
                assert!(check(&url, &SystemResolver, false).is_err(), "{url}");
            }
            let ip: Ipv6Addr = form("8.8.8.8".parse().unwrap()).parse().unwrap();
            assert!(
                is_public(IpAddr::V6(ip)),
                "{name}: {ip} carries a public address"
            );
        }
        // The example from the attack, written as it was.
        assert!(check("http://[::ffff:0:7f00:1]/", &SystemResolver, false).is_err());
        // Ranges refused whatever they carry: local-use NAT64, Teredo.
        for ip in [
            "64:ff9b:1::808:808",
            "64:ff9b:1:abcd::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        // Ordinary public IPv6 stays callable.
        for ip in ["2a00:1450:4001:80b::200e", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
