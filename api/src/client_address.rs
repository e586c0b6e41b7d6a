//! Who is calling, for rate limits: the TCP peer, or, when the peer is a configured trusted
//! proxy, the first address in `X-Forwarded-For` (read right to left) that is not a trusted
//! proxy. IPv6 clients are bucketed by their /64 (one subscriber's usual allocation), so a
//! single host cannot take a fresh bucket per address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use actix_web::HttpRequest;

/// An IP network: an address and a prefix length (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        let (address, prefix) = match raw.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (raw, None),
        };
        let network = canonical(
            IpAddr::from_str(address).map_err(|_| format!("{raw} is not an IP address or CIDR"))?,
        );
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{raw}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self {
            network: mask(network, prefix),
            prefix,
        })
    }
}

impl Cidr {
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        address.is_ipv4() == self.network.is_ipv4() && mask(address, self.prefix) == self.network
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, as dual-stack sockets report) are IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = if prefix == 0 {
                0
            } else {
                bits & (u32::MAX << (32 - u32::from(prefix)))
            };
            IpAddr::V4(Ipv4Addr::from(kept))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = if prefix == 0 {
                0
            } else {
                bits & (u128::MAX << (128 - u32::from(prefix)))
            };
            IpAddr::V6(Ipv6Addr::from(kept))
        }
    }
}

/// The proxies whose `X-Forwarded-For` is believed (`server.trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn parse(list: &[String]) -> Result<Self, String> {
        list.iter()
            .map(|raw| raw.parse())
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(address))
    }

    /// The client's address: the peer, unless the peer is trusted; then, walking the
    /// `X-Forwarded-For` hops (`forwarded`, in header order) from the right, the first one
    /// that is not trusted. A hop that is not an address stops the walk (the trusted hop
    /// after it is the best we know), as does reaching the left end.
    pub fn client(&self, peer: IpAddr, forwarded: &[&str]) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let hops = forwarded.iter().flat_map(|h| h.split(',')).map(str::trim);
        for hop in hops.collect::<Vec<_>>().into_iter().rev() {
            let Some(address) = parse_hop(hop) else {
                break;
            };
            client = canonical(address);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }

    /// The request's client address.
    pub fn address_of(&self, req: &HttpRequest) -> IpAddr {
        let peer = req
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip());
        let forwarded: Vec<&str> = if self.0.is_empty() {
            Vec::new()
        } else {
            req.headers()
                .get_all("x-forwarded-for")
                .filter_map(|v| v.to_str().ok())
                .collect()
        };
        self.client(peer, &forwarded)
    }

    /// The rate-limit key of the request's client.
    pub fn key_of(&self, req: &HttpRequest) -> ClientKey {
        ClientKey::of(self.address_of(req))
    }
}

/// A hop as proxies write it: an address, or an address with a port (`[v6]:port`, `v4:port`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    IpAddr::from_str(hop)
        .ok()
        .or_else(|| std::net::SocketAddr::from_str(hop).ok().map(|s| s.ip()))
}

/// A rate-limit bucket: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(address: IpAddr) -> Self {
        match canonical(address) {
            v4 @ IpAddr::V4(_) => Self(v4),
            v6 => Self(mask(v6, 64)),
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("198.51.100.7"), &["203.0.113.1"]),
            ip("198.51.100.7")
        );
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".to_owned()]).unwrap();
        assert_eq!(
            trusted.client(ip("198.51.100.7"), &["203.0.113.1"]),
            ip("198.51.100.7"),
            "a peer that is not a trusted proxy cannot choose its address"
        );
    }

    #[test]
    fn behind_trusted_proxies_the_first_untrusted_hop_from_the_right_is_the_client() {
        let trusted =
            TrustedProxies::parse(&["10.0.0.0/8".to_owned(), "2001:db8:ffff::1".to_owned()])
                .unwrap();
        // The client forged "1.1.1.1"; the load balancer appended the real address; an inner
        // proxy appended the balancer's.
        let hops = ["1.1.1.1, 203.0.113.9", "10.1.2.3"];
        assert_eq!(trusted.client(ip("10.0.0.5"), &hops), ip("203.0.113.9"));
        assert_eq!(
            trusted.client(ip("2001:db8:ffff::1"), &["[2001:db8:1::5]:4711"]),
            ip("2001:db8:1::5")
        );
        // Only trusted hops: the leftmost is the best we know.
        assert_eq!(
            trusted.client(ip("10.0.0.5"), &["10.9.9.9"]),
            ip("10.9.9.9")
        );
        // Garbage written by a trusted hop stops the walk.
        assert_eq!(trusted.client(ip("10.0.0.5"), &["junk"]), ip("10.0.0.5"));
        // A dual-stack socket's mapped address is matched as IPv4.
        assert_eq!(
            trusted.client(ip("::ffff:10.0.0.5"), &["203.0.113.9"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let a = ClientKey::of(ip("2001:db8:1:2:aaaa::1"));
        let b = ClientKey::of(ip("2001:db8:1:2:ffff:1:2:3"));
        let other = ClientKey::of(ip("2001:db8:1:3::1"));
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_ne!(
            ClientKey::of(ip("192.0.2.1")),
            ClientKey::of(ip("192.0.2.2"))
        );
        assert_eq!(
            ClientKey::of(ip("::ffff:192.0.2.1")).to_string(),
            "192.0.2.1"
        );
    }

    #[test]
    fn cidrs_are_parsed_strictly() {
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        let net: Cidr = "192.0.2.77/24".parse().unwrap();
        assert!(net.contains(ip("192.0.2.1")) && !net.contains(ip("192.0.3.1")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        assert!(!"0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("::1")));
    }
}
