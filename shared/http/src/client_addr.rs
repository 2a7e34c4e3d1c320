//! The client's address, the one every per-address rule keys on (sign-in
//! limits, leak reports, a request record's `client_ip`, and so insights).
//!
//! Without trusted proxies it is the connection's peer. With
//! `--trusted-proxies CIDR,…`, when the peer is one of them, the address is
//! read from the hops the proxies appended, right to left: the right-most
//! hop that is not itself a trusted proxy is the client (everything left of
//! it was written by the client and proves nothing). A peer that is not a
//! trusted proxy is the client whatever its headers say.
//!
//! `X-Forwarded-For` and `Forwarded` (RFC 7239 `for=`) are both read. A
//! proxy maintains one of them and passes the other through untouched, so
//! when a request carries both and they name different clients, one of them
//! is the client's invention: such a request counts under the last trusted
//! hop (the proxy's own address), where a forger only shares an allowance
//! with other forgers. A hop that cannot be read (`unknown`, an obfuscated
//! name, garbage) ends the walk the same way.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderName, header};

/// One network of trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an address or CIDR block (e.g. 10.0.0.0/8)"))?;
        let network = canonical(network);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

/// IPv4 as is, also when mapped into IPv6.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The proxies whose forwarding headers are believed (`--trusted-proxies`);
/// none by default. Put on a router with [`TrustedProxies::layer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Arc<[Cidr]>);

impl std::str::FromStr for TrustedProxies {
    type Err = String;

    /// `CIDR,CIDR,…` (a bare address is a block of one); empty or `none`:
    /// no proxy is trusted.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(TrustedProxies::default());
        }
        s.split(',')
            .map(str::trim)
            .filter(|one| !one.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Cidr>, _>>()
            .map(|cidrs| TrustedProxies(cidrs.into()))
    }
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|cidr| cidr.contains(ip))
    }

    /// `router` with these proxies trusted by every [`ClientAddr`] under it.
    pub fn layer(self, router: axum::Router) -> axum::Router {
        router.layer(axum::Extension(self))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let xff = self.walk(peer, hops(headers, &X_FORWARDED_FOR, xff_hops));
        let forwarded = self.walk(peer, hops(headers, &header::FORWARDED, forwarded_hops));
        match (xff, forwarded) {
            (Some(a), Some(b)) if a == b => a,
            // Both, naming different clients: one is forged.
            (Some(_), Some(_)) => peer,
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => peer,
        }
    }

    /// The right-most untrusted hop of `hops` (right-most first); `None`
    /// when the header is absent. A hop that cannot be read, or a list of
    /// trusted hops only, answers the last trusted hop.
    fn walk(&self, peer: IpAddr, mut hops: impl Iterator<Item = Option<IpAddr>>) -> Option<IpAddr> {
        let mut last_trusted = peer;
        let mut any = false;
        for hop in hops.by_ref() {
            any = true;
            match hop.map(canonical) {
                Some(ip) if self.contains(ip) => last_trusted = ip,
                Some(ip) => return Some(ip),
                None => return Some(last_trusted),
            }
        }
        any.then_some(last_trusted)
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Most hops read from one header: proxies in a chain are few, and a
/// client's own list is not worth reading far.
const MAX_HOPS: usize = 32;

type Hops<'a> = Box<dyn DoubleEndedIterator<Item = Option<IpAddr>> + 'a>;

/// The hops of every `name` header line, right-most first, each line split
/// by `split` (a line that is not text is one unreadable hop).
fn hops<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    split: fn(&'a str) -> Hops<'a>,
) -> impl Iterator<Item = Option<IpAddr>> + 'a {
    let lines: Vec<_> = headers.get_all(name).iter().collect();
    lines
        .into_iter()
        .rev()
        .flat_map(move |line| -> Hops<'a> {
            match line.to_str() {
                Ok(text) => Box::new(split(text).rev()),
                Err(_) => Box::new(std::iter::once(None)),
            }
        })
        .take(MAX_HOPS)
}

/// `X-Forwarded-For: client, proxy1, proxy2`.
fn xff_hops(line: &str) -> Hops<'_> {
    Box::new(line.split(',').map(|hop| node(hop.trim())))
}

/// `Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"`: the
/// `for` of each element (an element without one is unreadable).
fn forwarded_hops(line: &str) -> Hops<'_> {
    Box::new(line.split(',').map(|element| {
        element
            .split(';')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
            .and_then(|(_, value)| node(value.trim().trim_matches('"')))
    }))
}

/// An address, with or without a port: `192.0.2.1`, `192.0.2.1:80`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`.
fn node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    text.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse().ok())
}

/// The client address of a request: its peer (`ConnectInfo`), or what the
/// trusted proxies on its router say; `None` where the server does not
/// record the peer.
pub fn client_addr(extensions: &Extensions, headers: &HeaderMap) -> Option<IpAddr> {
    let peer = extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    Some(match extensions.get::<TrustedProxies>() {
        Some(trusted) => trusted.client(peer, headers),
        None => canonical(peer),
    })
}

/// The extractor of [`client_addr`].
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(&parts.extensions, &parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(s: &str) -> TrustedProxies {
        s.parse().expect("trusted proxies")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        map
    }

    #[test]
    fn blocks_and_single_addresses_parse_and_bad_ones_are_refused() {
        let t = trusted("10.0.0.0/8, 192.168.1.5,fd00::/8");
        assert!(t.contains(ip("10.200.3.4")));
        assert!(t.contains(ip("::ffff:10.1.1.1")));
        assert!(t.contains(ip("192.168.1.5")));
        assert!(!t.contains(ip("192.168.1.6")));
        assert!(t.contains(ip("fd12::1")));
        assert!(!t.contains(ip("2001:db8::1")));
        assert!(trusted("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(trusted("none").is_empty());
        assert!(trusted("").is_empty());
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "example.com",
            "10.0.0.0/x",
            "10.0.0/8",
        ] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let t = trusted("10.0.0.0/8");
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("forwarded", "for=198.51.100.7"),
        ]);
        assert_eq!(t.client(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        assert_eq!(
            TrustedProxies::default().client(ip("203.0.113.9"), &h),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn from_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client() {
        let t = trusted("10.0.0.0/8");
        let peer = ip("10.0.0.1");
        // The client forged the first hop; the proxy appended what it saw.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(t.client(peer, &h), ip("198.51.100.7"));
        // Several header lines are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "198.51.100.7:5555"),
        ]);
        assert_eq!(t.client(peer, &h), ip("198.51.100.7"));
        let h = headers(&[(
            "forwarded",
            "for=1.2.3.4, for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.2",
        )]);
        assert_eq!(t.client(peer, &h), ip("2001:db8::7"));
        // No header: the proxy itself.
        assert_eq!(t.client(peer, &HeaderMap::new()), peer);
        // Only trusted hops: the left-most of them.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.0.0.2")]);
        assert_eq!(t.client(peer, &h), ip("10.9.9.9"));
    }

    #[test]
    fn an_unreadable_hop_or_headers_that_disagree_count_as_the_last_trusted_hop() {
        let t = trusted("10.0.0.0/8");
        let peer = ip("10.0.0.1");
        let h = headers(&[("x-forwarded-for", "198.51.100.7, garbage, 10.0.0.2")]);
        assert_eq!(t.client(peer, &h), ip("10.0.0.2"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(t.client(peer, &h), peer);
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("forwarded", "for=203.0.113.50"),
        ]);
        assert_eq!(t.client(peer, &h), peer);
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("forwarded", "for=198.51.100.7;proto=https"),
        ]);
        assert_eq!(t.client(peer, &h), ip("198.51.100.7"));
    }

    #[test]
    fn a_long_forged_list_is_read_only_as_far_as_the_first_untrusted_hop() {
        let t = trusted("10.0.0.0/8");
        let forged = vec!["10.1.1.1"; 1000].join(", ");
        let h = headers(&[("x-forwarded-for", &forged)]);
        // All trusted, and more than MAX_HOPS: the last one read.
        assert_eq!(t.client(ip("10.0.0.1"), &h), ip("10.1.1.1"));
    }
}
