//! Where callbacks may go. `X-Callback-Url` makes the gateway POST a body of
//! the caller's choosing, so by default it goes only to public addresses:
//! never loopback, link-local (cloud metadata), private, shared (CGNAT),
//! unique-local, multicast or reserved ranges, whatever a name resolves to.
//! An operator opens more with `--callback-allow` (CIDRs and host names).
//!
//! The check is on the address connected to, not the name: names resolve
//! through [`Resolver`], which drops the addresses not allowed, so a name
//! that later resolves to 127.0.0.1 (DNS rebinding) still cannot reach it.
//! Literal addresses never reach a resolver and are checked in
//! [`Policy::check_url`]. Redirects are never followed (hyper's client
//! does not).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use ipnet::IpNet;

/// One `--callback-allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// Addresses in this network (`10.0.0.0/8`; a bare address is a /32 or /128).
    Net(IpNet),
    /// This host name, whatever it resolves to (`hooks.internal`), or every
    /// name under a domain (`*.internal`).
    Host(String),
}

impl FromStr for Allowed {
    type Err = String;

    fn from_str(v: &str) -> Result<Allowed, String> {
        let v = v.trim();
        if v.is_empty() {
            return Err("empty entry: expected a CIDR (10.0.0.0/8) or a host name".into());
        }
        if let Ok(net) = v.parse::<IpNet>() {
            return Ok(Allowed::Net(net.trunc()));
        }
        if let Ok(ip) = v.parse::<IpAddr>() {
            return Ok(Allowed::Net(IpNet::from(ip)));
        }
        let name = v.trim_end_matches('.').to_ascii_lowercase();
        let bare = name.strip_prefix("*.").unwrap_or(&name);
        let valid = !bare.is_empty()
            && bare.len() <= 253
            && bare.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid || v.contains('/') {
            return Err(format!(
                "{v:?} is neither a CIDR (10.0.0.0/8), an address, nor a host name"
            ));
        }
        Ok(Allowed::Host(name))
    }
}

/// The operator's choice of where callbacks may go.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allowed: Arc<Vec<Allowed>>,
}

impl Policy {
    pub fn new(allowed: Vec<Allowed>) -> Policy {
        Policy {
            allowed: Arc::new(allowed),
        }
    }

    /// Whether the name itself was allowed (then any address it has is).
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed.iter().any(|a| match a {
            Allowed::Host(h) => match h.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                None => *h == host,
            },
            Allowed::Net(_) => false,
        })
    }

    /// Whether a callback may connect to `ip`.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        is_public(ip)
            || self.allowed.iter().any(|a| match a {
                Allowed::Net(net) => net.contains(&ip),
                Allowed::Host(_) => false,
            })
    }

    /// Checks a callback URL before it is accepted: an absolute `http://`
    /// URL whose host, when it is an address or `localhost`, is allowed.
    /// Names are checked again, by their addresses, at delivery.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let uri = url
            .parse::<http::Uri>()
            .ok()
            .filter(|u| u.scheme_str() == Some("http"))
            .filter(|u| u.host().is_some_and(|h| !h.is_empty()))
            .ok_or_else(|| format!("X-Callback-Url {url:?} is not an absolute http:// URL"))?;
        let host = uri.host().unwrap_or_default();
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let refused = |what: &str| {
            format!(
                "X-Callback-Url {url:?} points at {what}: callbacks go only to public addresses unless the operator allows more (--callback-allow)"
            )
        };
        if let Ok(ip) = literal.parse::<IpAddr>() {
            if !self.allows_ip(ip) {
                return Err(refused(&format!("{ip}, a {} address", kind(ip))));
            }
            return Ok(());
        }
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if (name == "localhost" || name.ends_with(".localhost")) && !self.allows_host(&name) {
            return Err(refused("localhost"));
        }
        Ok(())
    }
}

/// IPv4-mapped IPv6 addresses are their IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Globally reachable unicast: not loopback, private, link-local, shared,
/// unique-local, multicast, documentation, benchmarking or reserved, nor
/// an IPv6 form that embeds an IPv4 address (NAT64, 6to4, IPv4-compatible,
/// Teredo), which could lead back to one.
fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || (a == 192 && b == 0 && c == 0))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo
        || s[0] == 0x2002 // 6to4
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64
        || s[..6] == [0; 6]) // IPv4-compatible and other ::/96
}

/// What kind of address a refused one is, for the message.
fn kind(ip: IpAddr) -> &'static str {
    match canonical(ip) {
        IpAddr::V4(v4) if v4.is_loopback() => "loopback",
        IpAddr::V6(v6) if v6.is_loopback() => "loopback",
        IpAddr::V4(v4) if v4.is_private() => "private",
        IpAddr::V4(v4) if v4.is_link_local() => "link-local",
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => "link-local",
        IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 => "unique-local",
        IpAddr::V4(v4) if v4.is_unspecified() => "unspecified",
        IpAddr::V6(v6) if v6.is_unspecified() => "unspecified",
        _ => "non-public",
    }
}

/// Resolves callback host names to the addresses the policy allows
/// (hyper-util's connector then tries them in turn).
#[derive(Clone)]
pub struct Resolver {
    policy: Policy,
}

impl Resolver {
    pub fn new(policy: Policy) -> Resolver {
        Resolver { policy }
    }
}

/// A name that resolves only to addresses callbacks may not use.
#[derive(Debug, thiserror::Error)]
#[error(
    "{host} resolves only to addresses callbacks may not use ({addrs}); the operator can allow them with --callback-allow"
)]
pub struct Refused {
    host: String,
    addrs: String,
}

impl tower::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if policy.allows_host(&host) {
                return Ok(all.into_iter());
            }
            let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
                all.into_iter().partition(|a| policy.allows_ip(a.ip()));
            if allowed.is_empty() {
                let addrs = refused
                    .iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(Refused { host, addrs }) as Self::Error);
            }
            Ok(allowed.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> Policy {
        Policy::new(entries.iter().map(|e| e.parse().unwrap()).collect())
    }

    #[test]
    fn only_public_addresses_by_default() {
        let p = Policy::default();
        for denied in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "ff02::1",
        ] {
            assert!(!p.allows_ip(denied.parse().unwrap()), "{denied}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert!(p.allows_ip(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn the_operator_opens_networks_and_names() {
        let p = policy(&["10.0.0.0/8", "127.0.0.1", "hooks.internal", "*.corp"]);
        assert!(p.allows_ip("10.9.9.9".parse().unwrap()));
        assert!(p.allows_ip("127.0.0.1".parse().unwrap()));
        assert!(p.allows_ip("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!p.allows_ip("127.0.0.2".parse().unwrap()));
        assert!(!p.allows_ip("192.168.0.1".parse().unwrap()));
        assert!(p.allows_host("hooks.internal"));
        assert!(p.allows_host("HOOKS.internal."));
        assert!(p.allows_host("a.b.corp"));
        assert!(!p.allows_host("corp"));
        assert!(!p.allows_host("xcorp"));
        assert!(!p.allows_host("other.internal"));
    }

    #[test]
    fn urls_are_checked_by_their_literal_address() {
        let p = Policy::default();
        for bad in [
            "http://127.0.0.1:9/x",
            "http://[::1]:80/",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:8080/",
            "http://LOCALHOST./",
            "http://10.0.0.1/",
        ] {
            let err = p.check_url(bad).unwrap_err();
            assert!(err.contains("--callback-allow"), "{bad}: {err}");
        }
        for bad in ["ftp://example.com/", "/relative", "http://", "not a url"] {
            let err = p.check_url(bad).unwrap_err();
            assert!(err.contains("absolute http://"), "{bad}: {err}");
        }
        assert!(p.check_url("http://example.com/hook").is_ok());
        assert!(p.check_url("http://93.184.216.34/hook").is_ok());
        let open = policy(&["127.0.0.0/8", "localhost"]);
        assert!(open.check_url("http://127.0.0.1:9/x").is_ok());
        assert!(open.check_url("http://localhost:9/x").is_ok());
    }

    #[test]
    fn bad_entries_are_named() {
        for bad in ["", "10.0.0.0/33", "a b", "http://x", "-/-"] {
            assert!(bad.parse::<Allowed>().is_err(), "{bad}");
        }
        assert_eq!(
            "10.1.2.3/8".parse::<Allowed>().unwrap(),
            Allowed::Net("10.0.0.0/8".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_refused() {
        use tower::Service;
        let mut resolver = Resolver::new(Policy::default());
        let name: Name = "localhost".parse().unwrap();
        let err = resolver.call(name).await.unwrap_err();
        assert!(err.to_string().contains("--callback-allow"), "{err}");
        let mut open = Resolver::new(policy(&["localhost"]));
        let addrs: Vec<SocketAddr> = open
            .call("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
        let mut by_net = Resolver::new(policy(&["127.0.0.0/8", "::1"]));
        assert!(by_net.call("localhost".parse().unwrap()).await.is_ok());
    }
}
