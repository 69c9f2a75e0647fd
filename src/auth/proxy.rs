//! The client's address behind trusted proxies (`--trusted-proxy`).
//!
//! PocketBase ties a realtime client to the IP it connected from (a subscribe
//! POST from another IP is refused), so behind a reverse proxy every client
//! would share the proxy's address. Headers are only believed from a peer we
//! trust, and `X-Forwarded-For` is read from the right: each trusted proxy
//! appends the address it saw, while anything to the left may have been
//! written by the client itself.

use super::error::AuthConfigError;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The networks whose forwarding headers are believed; empty trusts nobody.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// From CIDRs (`10.0.0.0/8`, `fd00::/8`) or bare addresses (one host).
    /// Empty entries, as a trailing comma leaves, are skipped.
    pub fn new(cidrs: &[String]) -> Result<TrustedProxies, AuthConfigError> {
        let nets = cidrs
            .iter()
            .map(|entry| entry.trim())
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| AuthConfigError::TrustedProxy(entry.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { nets })
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client IP: `peer` unless `peer` is a trusted proxy; then the
    /// right-most `X-Forwarded-For` entry that is not itself a trusted proxy
    /// (entries left of it may be forged by the client); without one,
    /// `X-Real-IP` if it is a valid address that is not a trusted proxy;
    /// `peer` if neither gives one (also when the chain holds a malformed entry
    /// before any untrusted one: the chain cannot be followed past it).
    /// `X-Forwarded-For` comes first because appending proxies keep it right,
    /// while some proxies pass a client's own `X-Real-IP` through.
    ///
    /// `x_forwarded_for` is every `X-Forwarded-For` value joined with `,` in
    /// the order received. IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, as
    /// dual-stack sockets report IPv4 peers) count as IPv4.
    pub fn client_ip(
        &self,
        peer: IpAddr,
        x_forwarded_for: Option<&str>,
        x_real_ip: Option<&str>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        for entry in x_forwarded_for.unwrap_or("").rsplit(',') {
            if entry.trim().is_empty() {
                continue;
            }
            match parse_ip(entry) {
                Some(ip) if self.trusts(ip) => continue,
                Some(ip) => return ip,
                None => return peer,
            }
        }
        match x_real_ip.and_then(parse_ip) {
            Some(ip) if !self.trusts(ip) => ip,
            _ => peer,
        }
    }
}

/// An address as proxies write it: bare, or with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:80`), canonical.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|addr| addr.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let p = proxies(&["10.0.0.0/8"]);
        let peer = ip("203.0.113.7");
        assert_eq!(p.client_ip(peer, Some("1.1.1.1"), Some("2.2.2.2")), peer);
        // Nobody is trusted by default.
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("10.0.0.1"), Some("1.1.1.1"), Some("2.2.2.2")),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_for_first_then_real_ip() {
        let p = proxies(&["10.0.0.0/8"]);
        // A passed-through X-Real-IP does not beat the appended chain.
        assert_eq!(
            p.client_ip(ip("10.1.2.3"), Some("1.1.1.1"), Some("127.0.0.1")),
            ip("1.1.1.1")
        );
        assert_eq!(
            p.client_ip(ip("10.1.2.3"), None, Some("2.2.2.2")),
            ip("2.2.2.2")
        );
        // Invalid, or naming a trusted proxy (a CDN edge): the peer.
        assert_eq!(
            p.client_ip(ip("10.1.2.3"), None, Some("nope")),
            ip("10.1.2.3")
        );
        assert_eq!(
            p.client_ip(ip("10.1.2.3"), None, Some("10.7.7.7")),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn forwarded_for_is_read_from_the_right() {
        let p = proxies(&["10.0.0.0/8", "192.168.1.1"]);
        let proxy = ip("10.0.0.2");
        // client → 192.168.1.1 → 10.0.0.2 → us
        assert_eq!(
            p.client_ip(proxy, Some("198.51.100.4, 192.168.1.1"), None),
            ip("198.51.100.4")
        );
        // A client that sends its own X-Forwarded-For cannot choose its address.
        assert_eq!(
            p.client_ip(
                proxy,
                Some("6.6.6.6, 7.7.7.7, 198.51.100.4, 192.168.1.1"),
                None
            ),
            ip("198.51.100.4")
        );
        // A client claiming to be a trusted proxy is skipped only while it is
        // right of the real client.
        assert_eq!(
            p.client_ip(proxy, Some("10.9.9.9, 198.51.100.4"), None),
            ip("198.51.100.4")
        );
        // Garbage on the left is never reached; right of the client it stops the walk.
        assert_eq!(
            p.client_ip(proxy, Some("garbage, 198.51.100.4"), None),
            ip("198.51.100.4")
        );
        assert_eq!(
            p.client_ip(proxy, Some("198.51.100.4, garbage"), None),
            proxy
        );
        // Only trusted entries, none, or empty: the peer.
        assert_eq!(
            p.client_ip(proxy, Some("10.0.0.9, 192.168.1.1"), None),
            proxy
        );
        assert_eq!(p.client_ip(proxy, None, None), proxy);
        assert_eq!(p.client_ip(proxy, Some(" , "), None), proxy);
        // Headers joined from several lines, and ports as some proxies write them.
        assert_eq!(
            p.client_ip(proxy, Some("5.5.5.5,198.51.100.4:5555,"), None),
            ip("198.51.100.4")
        );
        assert_eq!(
            p.client_ip(proxy, Some("[2001:db8::7]:443"), None),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let p = proxies(&["127.0.0.1"]);
        let mapped = ip("::ffff:127.0.0.1");
        assert_eq!(
            p.client_ip(mapped, Some("::ffff:198.51.100.4"), None),
            ip("198.51.100.4")
        );
        let untrusted_mapped = ip("::ffff:203.0.113.9");
        assert_eq!(
            p.client_ip(untrusted_mapped, Some("1.1.1.1"), None),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn ipv6_networks() {
        let p = proxies(&["fd00::/8", "::1"]);
        assert_eq!(
            p.client_ip(ip("fd12::1"), Some("2001:db8::5"), None),
            ip("2001:db8::5")
        );
        assert_eq!(
            p.client_ip(ip("::1"), None, Some("2001:db8::6")),
            ip("2001:db8::6")
        );
        assert_eq!(
            p.client_ip(ip("fe80::1"), Some("2001:db8::5"), None),
            ip("fe80::1")
        );
    }

    #[test]
    fn config_accepts_cidrs_and_addresses_and_names_bad_entries() {
        let p = proxies(&[" 10.0.0.1/8 ", "", "::1", "192.168.0.7"]);
        assert!(p.trusts(ip("10.200.0.1")));
        assert!(p.trusts(ip("192.168.0.7")));
        assert!(!p.trusts(ip("192.168.0.8")));
        assert!(p.trusts(ip("::1")));
        let err = TrustedProxies::new(&["10.0.0.0/33".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--trusted-proxy \"10.0.0.0/33\" is neither an IP address nor a CIDR range; write e.g. 10.0.0.0/8, 127.0.0.1 or ::1"
        );
        assert!(TrustedProxies::new(&["localhost".into()]).is_err());
    }
}
