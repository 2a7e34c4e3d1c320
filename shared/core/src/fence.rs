//! A token's fences (contract §18): the client addresses it may be used
//! from (`allowed_cidrs`) and the moment it starts working (`not_before`).
//! Both are set when the token is created, kept by a rotation, and recorded
//! in its `token_created` event; every verifier (the API nodes' replicas,
//! the control plane's introspection) reads them from the event through
//! [`Fence::of`], so they cannot disagree on what a fence allows.
//!
//! CIDRs are parsed by `ipnet` (a small, widely used crate with no
//! dependencies of its own), not by hand. The API keeps them in a canonical
//! form (`192.0.2.0/24`, `2001:db8::/32`; a bare address is a block of one),
//! and refuses a block with host bits set (`10.0.0.1/8`), which is almost
//! always a typo for something narrower or wider than meant.

use std::net::IpAddr;

use ipnet::IpNet;
use jiff::{SignedDuration, Timestamp};

use crate::events::TokenCreated;

/// The most ranges one token may name.
pub const MAX_ALLOWED_CIDRS: usize = 32;

/// How far ahead `not_before` may be: 90 days.
pub const MAX_NOT_BEFORE_AHEAD: SignedDuration = SignedDuration::from_hours(90 * 24);

/// Why a range is refused, in words for the API's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("is not an IPv4 or IPv6 address or CIDR block (e.g. 192.0.2.0/24, 2001:db8::/32)")]
    Malformed,
    #[error("has host bits set; the block is {0}")]
    HostBitsSet(IpNet),
    #[error("is an IPv4-mapped IPv6 block; write it as IPv4")]
    Ipv4Mapped,
}

/// Parses one range as the API takes it: `ADDR/LEN` with no host bits set,
/// or a bare address (a block of one).
pub fn parse_cidr(text: &str) -> Result<IpNet, CidrError> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => text
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| CidrError::Malformed)?,
    };
    if let IpNet::V6(v6) = net
        && v6.network().to_ipv4_mapped().is_some()
        && v6.prefix_len() >= 96
    {
        return Err(CidrError::Ipv4Mapped);
    }
    if net.trunc() != net {
        return Err(CidrError::HostBitsSet(net.trunc()));
    }
    Ok(net)
}

/// IPv4 as is, also when mapped into IPv6 (as a dual-stack listener sees it).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What a fence refuses a call for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Before `not_before`.
    NotYetValid,
    /// From an address outside `allowed_cidrs` (or from an unknown one).
    AddressNotAllowed,
}

/// A token's fences, as every verifier holds them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    /// Milliseconds since the epoch; `i64::MIN` when there is none.
    pub not_before_ms: i64,
    /// The ranges calls may come from; `None` for any address. An event
    /// whose list holds nothing readable allows no address at all (a fence
    /// that cannot be read fails closed).
    pub allowed: Option<Box<[Range]>>,
}

/// One allowed range, ready to match: an address is in it when its bits
/// under `mask` are `bits` (IPv4 in the low 32 bits, apart from IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Range {
    v4: bool,
    bits: u128,
    mask: u128,
}

impl Range {
    fn of(net: IpNet) -> Range {
        let (v4, bits, width) = match net.network() {
            IpAddr::V4(a) => (true, u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (false, u128::from(a), 128),
        };
        let host = u128::MAX
            .checked_shr(128 - width + u32::from(net.prefix_len()))
            .unwrap_or(0);
        let mask = !host & (u128::MAX >> (128 - width));
        Range { v4, bits, mask }
    }

    /// Whether the canonical address `(v4, bits)` is in it.
    fn holds(&self, v4: bool, bits: u128) -> bool {
        self.v4 == v4 && bits & self.mask == self.bits
    }
}

impl Fence {
    /// The fences `created` records, or `None` when it has none (the token
    /// works from anywhere as soon as it exists).
    pub fn of(created: &TokenCreated) -> Option<Fence> {
        Fence::new(&created.allowed_cidrs, created.not_before)
    }

    /// The fences of a token with these recorded fields (its event's, or a
    /// state folded from it), or `None` when it has none.
    pub fn new(allowed_cidrs: &[String], not_before: Option<Timestamp>) -> Option<Fence> {
        if allowed_cidrs.is_empty() && not_before.is_none() {
            return None;
        }
        let allowed = (!allowed_cidrs.is_empty()).then(|| {
            allowed_cidrs
                .iter()
                .filter_map(|c| parse_cidr(c).ok())
                .map(Range::of)
                .collect()
        });
        Some(Fence {
            not_before_ms: not_before.map_or(i64::MIN, |t| t.as_millisecond()),
            allowed,
        })
    }

    /// Whether a call at `now_ms` from `client` (`None`: not known) passes.
    pub fn check(&self, client: Option<IpAddr>, now_ms: i64) -> Result<(), Refusal> {
        if now_ms < self.not_before_ms {
            return Err(Refusal::NotYetValid);
        }
        self.admits(client)
            .then_some(())
            .ok_or(Refusal::AddressNotAllowed)
    }

    /// Whether calls from `client` are allowed (an unknown address is not,
    /// when the token names ranges).
    pub fn admits(&self, client: Option<IpAddr>) -> bool {
        let Some(allowed) = &self.allowed else {
            return true;
        };
        let (v4, bits) = match client.map(canonical) {
            Some(IpAddr::V4(a)) => (true, u128::from(u32::from(a))),
            Some(IpAddr::V6(a)) => (false, u128::from(a)),
            None => return false,
        };
        allowed.iter().any(|range| range.holds(v4, bits))
    }

    /// Whether this fence needs the client's address to decide.
    pub fn needs_address(&self) -> bool {
        self.allowed.is_some()
    }
}

/// Why a creation's fences are refused; each names its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenceError {
    #[error("`allowed_cidrs` must name at least one range, or be left out")]
    NoCidrs,
    #[error("`allowed_cidrs` may name at most {MAX_ALLOWED_CIDRS} ranges, not {0}")]
    TooManyCidrs(usize),
    #[error("`allowed_cidrs[{index}]` {why}")]
    BadCidr { index: usize, why: CidrError },
    #[error("`not_before` may be at most 90 days ahead")]
    NotBeforeTooFar,
    #[error("`not_before` must be before the token expires")]
    NotBeforeAfterExpiry,
}

impl FenceError {
    /// The request field it is about.
    pub fn field(&self) -> &'static str {
        match self {
            FenceError::NoCidrs | FenceError::TooManyCidrs(_) | FenceError::BadCidr { .. } => {
                "allowed_cidrs"
            }
            FenceError::NotBeforeTooFar | FenceError::NotBeforeAfterExpiry => "not_before",
        }
    }

    /// Its stable `code`.
    pub fn code(&self) -> &'static str {
        match self.field() {
            "allowed_cidrs" => "invalid_allowed_cidrs",
            _ => "invalid_not_before",
        }
    }
}

/// The ranges of a request, checked and in canonical form, duplicates
/// dropped, in the order given.
pub fn allowed_cidrs(given: &[String]) -> Result<Vec<String>, FenceError> {
    if given.is_empty() {
        return Err(FenceError::NoCidrs);
    }
    if given.len() > MAX_ALLOWED_CIDRS {
        return Err(FenceError::TooManyCidrs(given.len()));
    }
    let mut out: Vec<String> = Vec::with_capacity(given.len());
    for (index, text) in given.iter().enumerate() {
        let net = parse_cidr(text.trim()).map_err(|why| FenceError::BadCidr { index, why })?;
        let canonical = net.to_string();
        if !out.contains(&canonical) {
            out.push(canonical);
        }
    }
    Ok(out)
}

/// A request's `not_before`, checked at `now` against the token's expiry.
pub fn not_before(
    at: Timestamp,
    now: Timestamp,
    expires_at: Option<Timestamp>,
) -> Result<Timestamp, FenceError> {
    let latest = now
        .checked_add(MAX_NOT_BEFORE_AHEAD)
        .map_err(|_| FenceError::NotBeforeTooFar)?;
    if at > latest {
        return Err(FenceError::NotBeforeTooFar);
    }
    if expires_at.is_some_and(|end| at >= end) {
        return Err(FenceError::NotBeforeAfterExpiry);
    }
    Ok(crate::clock::millis(at))
}

/// The most ranges a suggestion names.
pub const MAX_SUGGESTED_CIDRS: usize = 8;

/// The ranges that cover `addresses` (those that made allowed calls): each
/// address alone (/32, /128), several that share a /24 (IPv6: a /48) as
/// that block, and while that makes more than [`MAX_SUGGESTED_CIDRS`], the
/// two neighbours with the longest common prefix merged into it (so the
/// set stays as narrow as ≤ 8 ranges allow). IPv4 first, each family in
/// address order.
pub fn suggest_cidrs(addresses: impl IntoIterator<Item = IpAddr>) -> Vec<IpNet> {
    let mut singles: Vec<IpNet> = addresses
        .into_iter()
        .map(|ip| IpNet::from(canonical(ip)))
        .collect();
    singles.sort();
    singles.dedup();
    let block = |net: &IpNet| {
        let len = if net.addr().is_ipv4() { 24 } else { 48 };
        IpNet::new(net.addr(), len).map_or(*net, |n| n.trunc())
    };
    let mut nets: Vec<IpNet> = singles
        .chunk_by(|a, b| block(a) == block(b))
        .map(|run| match run {
            [one] => *one,
            _ => block(&run[0]),
        })
        .collect();
    while nets.len() > MAX_SUGGESTED_CIDRS {
        // In address order, the narrowest common block of any two ranges
        // is that of two neighbours.
        let best = nets
            .windows(2)
            .enumerate()
            .filter_map(|(i, pair)| common_block(&pair[0], &pair[1]).map(|n| (i, n)))
            .min_by_key(|(_, n)| std::cmp::Reverse(n.prefix_len()));
        let Some((i, merged)) = best else {
            break;
        };
        nets.splice(i..i + 2, [merged]);
        nets.sort();
        // A block now covering its neighbours stands for them.
        nets.dedup_by(|later, earlier| earlier.contains(&*later));
    }
    nets
}

/// The narrowest block holding both, if they are of one family.
fn common_block(a: &IpNet, b: &IpNet) -> Option<IpNet> {
    let (a_bits, b_bits, width) = match (a.network(), b.network()) {
        (IpAddr::V4(x), IpAddr::V4(y)) => (u128::from(u32::from(x)), u128::from(u32::from(y)), 32),
        (IpAddr::V6(x), IpAddr::V6(y)) => (u128::from(x), u128::from(y), 128),
        _ => return None,
    };
    let shared = ((a_bits ^ b_bits).leading_zeros() - (128 - width)) as u8;
    let len = shared.min(a.prefix_len()).min(b.prefix_len());
    IpNet::new(a.network(), len).ok().map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    fn created(cidrs: &[&str], not_before: Option<Timestamp>) -> TokenCreated {
        TokenCreated {
            user_id: "alice".into(),
            description: "fence".into(),
            expiration: crate::Expiration::Never,
            scopes: vec![crate::Scope::Read],
            workspaces: vec!["acme".into()],
            expires_at: None,
            secret_hash: "00".repeat(32),
            replaces: None,
            allowed_cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
            not_before,
            self_rotate: false,
            decoy: false,
        }
    }

    #[test]
    fn ranges_parse_in_canonical_form_and_bad_ones_say_why() {
        assert_eq!(
            allowed_cidrs(&[
                "192.0.2.0/24".into(),
                "2001:DB8::/32".into(),
                "198.51.100.7".into()
            ]),
            Ok(vec![
                "192.0.2.0/24".to_owned(),
                "2001:db8::/32".to_owned(),
                "198.51.100.7/32".to_owned()
            ])
        );
        assert_eq!(
            allowed_cidrs(&["10.0.0.0/8".into(), "10.0.0.0/8".into()]).map(|v| v.len()),
            Ok(1)
        );
        assert_eq!(allowed_cidrs(&[]), Err(FenceError::NoCidrs));
        let many: Vec<String> = (0..33).map(|i| format!("10.0.{i}.0/24")).collect();
        assert_eq!(allowed_cidrs(&many), Err(FenceError::TooManyCidrs(33)));
        assert!(allowed_cidrs(&many[..32]).is_ok());
        for (bad, why) in [
            ("10.0.0.0/33", CidrError::Malformed),
            ("example.com", CidrError::Malformed),
            ("10.0.0/8", CidrError::Malformed),
            ("", CidrError::Malformed),
            (
                "10.0.0.1/8",
                CidrError::HostBitsSet("10.0.0.0/8".parse().expect("net")),
            ),
            ("::ffff:10.0.0.0/104", CidrError::Ipv4Mapped),
        ] {
            assert_eq!(
                allowed_cidrs(&["192.0.2.0/24".into(), bad.into()]),
                Err(FenceError::BadCidr { index: 1, why }),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_fence_admits_its_ranges_only_and_an_unknown_address_never() {
        let fence = Fence::of(&created(&["192.0.2.0/24", "2001:db8::/32"], None)).expect("fence");
        assert!(fence.admits(ip("192.0.2.200")));
        assert!(fence.admits(ip("::ffff:192.0.2.1")), "IPv4-mapped is IPv4");
        assert!(fence.admits(ip("2001:db8:1::5")));
        assert!(!fence.admits(ip("192.0.3.1")));
        assert!(!fence.admits(ip("127.0.0.1")));
        assert!(!fence.admits(None));
        assert_eq!(
            fence.check(ip("192.0.3.1"), 0),
            Err(Refusal::AddressNotAllowed)
        );
        assert!(fence.needs_address());
    }

    #[test]
    fn not_before_refuses_until_its_instant_and_no_fence_is_none() {
        let at: Timestamp = "2026-12-24T00:00:00Z".parse().expect("ts");
        let fence = Fence::of(&created(&[], Some(at))).expect("fence");
        let ms = at.as_millisecond();
        assert_eq!(fence.check(None, ms - 1), Err(Refusal::NotYetValid));
        assert_eq!(fence.check(None, ms), Ok(()));
        assert!(!fence.needs_address());
        assert_eq!(Fence::of(&created(&[], None)), None);
    }

    #[test]
    fn whole_spaces_and_single_addresses_match_exactly_their_addresses() {
        let fence = Fence::new(&["0.0.0.0/0".into()], None).expect("fence");
        assert!(fence.admits(ip("203.0.113.1")));
        assert!(
            !fence.admits(ip("2001:db8::1")),
            "IPv4's whole space holds no IPv6"
        );
        let fence = Fence::new(&["::/0".into()], None).expect("fence");
        assert!(fence.admits(ip("2001:db8::1")));
        assert!(!fence.admits(ip("203.0.113.1")));
        let fence =
            Fence::new(&["198.51.100.7/32".into(), "2001:db8::7/128".into()], None).expect("fence");
        assert!(fence.admits(ip("198.51.100.7")));
        assert!(!fence.admits(ip("198.51.100.6")));
        assert!(fence.admits(ip("2001:db8::7")));
        assert!(!fence.admits(ip("2001:db8::8")));
        let fence = Fence::new(&["10.128.0.0/9".into()], None).expect("fence");
        assert!(fence.admits(ip("10.255.255.255")));
        assert!(!fence.admits(ip("10.127.255.255")));
    }

    #[test]
    fn a_recorded_list_that_cannot_be_read_admits_no_one() {
        let fence = Fence::of(&created(&["not a range"], None)).expect("fence");
        assert!(!fence.admits(ip("192.0.2.1")));
    }

    fn suggested(addresses: &[&str]) -> Vec<String> {
        suggest_cidrs(addresses.iter().map(|a| a.parse::<IpAddr>().expect("ip")))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_suggestion_keeps_singles_and_widens_addresses_that_share_a_24_or_48() {
        assert_eq!(
            suggested(&["192.0.2.10", "192.0.2.20", "192.0.2.30", "198.51.100.7"]),
            ["192.0.2.0/24", "198.51.100.7/32"]
        );
        assert_eq!(
            suggested(&[
                "2001:db8:1:2::1",
                "2001:db8:1:ff::9",
                "2001:db8:2::1",
                "::ffff:203.0.113.5"
            ]),
            ["203.0.113.5/32", "2001:db8:1::/48", "2001:db8:2::1/128"]
        );
        assert_eq!(suggested(&["10.0.0.1", "10.0.0.1"]), ["10.0.0.1/32"]);
        assert!(suggested(&[]).is_empty());
    }

    #[test]
    fn a_suggestion_merges_the_closest_ranges_until_at_most_8_are_left() {
        // Ten addresses in ten /24s: the two closest pairs merge.
        let many = [
            "10.0.1.1",
            "10.0.2.1",
            "10.0.8.1",
            "10.0.9.1",
            "172.16.0.1",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "100.64.0.1",
            "8.8.8.8",
        ];
        let got = suggested(&many);
        assert_eq!(got.len(), 8, "{got:?}");
        assert!(got.contains(&"10.0.0.0/22".to_owned()), "{got:?}");
        assert!(got.contains(&"10.0.8.0/23".to_owned()), "{got:?}");
        // Every address is covered.
        let nets: Vec<IpNet> = got.iter().map(|n| n.parse().expect("net")).collect();
        for a in many {
            let ip: IpAddr = a.parse().expect("ip");
            assert!(nets.iter().any(|n| n.contains(&ip)), "{a} in {got:?}");
        }
        // A thousand spread over the space still fit in 8.
        let spread: Vec<IpAddr> = (0..1000u32)
            .map(|i| IpAddr::V4(std::net::Ipv4Addr::from(i.wrapping_mul(2_654_435_761))))
            .collect();
        let nets = suggest_cidrs(spread.clone());
        assert!(nets.len() <= MAX_SUGGESTED_CIDRS);
        assert!(spread.iter().all(|ip| nets.iter().any(|n| n.contains(ip))));
    }

    #[test]
    fn not_before_is_at_most_90_days_ahead_and_before_expiry() {
        let now: Timestamp = "2026-12-07T00:00:00Z".parse().expect("ts");
        let limit = now.checked_add(MAX_NOT_BEFORE_AHEAD).expect("ts");
        assert_eq!(not_before(limit, now, None), Ok(limit));
        assert_eq!(
            not_before(limit + SignedDuration::from_millis(1), now, None),
            Err(FenceError::NotBeforeTooFar)
        );
        let end = now + SignedDuration::from_hours(24);
        assert_eq!(
            not_before(end, now, Some(end)),
            Err(FenceError::NotBeforeAfterExpiry)
        );
        let past = now - SignedDuration::from_hours(1);
        assert_eq!(not_before(past, now, Some(end)), Ok(past));
    }
}
