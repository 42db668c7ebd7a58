//! Egress grants: the network addresses a tenant's jobs may reach.
//!
//! The admin grants a tenant `HOST:PORT` patterns; a job whose connector
//! names an address no pattern covers is refused when it is submitted. On a
//! shared server nothing is granted by default.
//!
//! * `HOST` is an IP address (`10.1.2.3`, `[fd00::1]`), a network
//!   (`10.0.0.0/8`, `[fd00::/8]`), a host name (`kafka.internal`), a domain's
//!   hosts (`*.kafka.internal`), or `*`.
//! * `PORT` is a number, a range (`9092-9094`) or `*`.
//!
//! An address written as an IP matches IP and network patterns; `*` covers
//! only public IP addresses, never loopback, private, link-local or other
//! special ranges, which must be granted by address or network. An address
//! written as a host name matches only name patterns (`kafka.internal`,
//! `*.kafka.internal`): the admin who grants a name vouches for what it
//! resolves to, and `*` grants no name, so a tenant cannot reach an internal
//! address through a name it controls.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// One granted pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressPattern {
    host: HostPattern,
    ports: (u16, u16),
    text: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// `*`: public IP addresses.
    AnyPublic,
    /// An address or a network.
    Net(IpNet),
    /// A host name, lower case, without a trailing dot.
    Name(String),
    /// `*.suffix`: names ending in `.suffix`.
    Domain(String),
}

/// A grant or an address that is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// A grant pattern that does not parse.
    #[error(
        "egress pattern `{pattern}`: {reason}; write HOST:PORT, such as `10.0.0.0/8:9092` or `*.kafka.internal:9092-9094`"
    )]
    Pattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An address (a connector setting) that does not parse.
    #[error("address `{address}`: {reason}")]
    Address {
        /// The address as written.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An address no grant covers.
    #[error(
        "address `{address}` is not granted to the tenant ({}); the admin grants addresses with `weir tenant grant`",
        granted_list(granted)
    )]
    NotGranted {
        /// The address, in canonical form.
        address: String,
        /// The tenant's grants.
        granted: Vec<String>,
    },
}

fn granted_list(granted: &[String]) -> String {
    if granted.is_empty() {
        "none is granted".to_string()
    } else {
        format!("granted: {}", granted.join(", "))
    }
}

impl FromStr for EgressPattern {
    type Err = EgressError;

    fn from_str(text: &str) -> Result<Self, EgressError> {
        let bad = |reason: &'static str| EgressError::Pattern {
            pattern: text.to_string(),
            reason,
        };
        let (host, port) = split_host_port(text).ok_or_else(|| bad("no port"))?;
        let ports = if port == "*" {
            (0, u16::MAX)
        } else if let Some((lo, hi)) = port.split_once('-') {
            let lo: u16 = lo.parse().map_err(|_| bad("bad port range"))?;
            let hi: u16 = hi.parse().map_err(|_| bad("bad port range"))?;
            if lo > hi {
                return Err(bad("port range ends before it starts"));
            }
            (lo, hi)
        } else {
            let p: u16 = port.parse().map_err(|_| bad("bad port"))?;
            (p, p)
        };
        let host = if host == "*" {
            HostPattern::AnyPublic
        } else if let Ok(net) = host.parse::<IpNet>() {
            HostPattern::Net(net.trunc())
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            HostPattern::Net(IpNet::from(ip))
        } else if let Some(domain) = host.strip_prefix("*.") {
            HostPattern::Domain(name(domain).ok_or_else(|| bad("bad domain"))?)
        } else {
            HostPattern::Name(name(host).ok_or_else(|| bad("bad host"))?)
        };
        Ok(Self {
            host,
            ports,
            text: text.to_string(),
        })
    }
}

impl fmt::Display for EgressPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A host name in canonical form, if `s` is one.
fn name(s: &str) -> Option<String> {
    let s = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
        });
    ok.then_some(s)
}

/// `host:port`, `[v6]:port`, or a network `a.b.c.d/n:port`.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = s.rsplit_once(':')?;
    // A bare IPv6 address has more colons: it must be bracketed.
    (!host.contains(':') && !host.is_empty()).then_some((host, port))
}

/// An address a job would connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    host: EndpointHost,
    port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum EndpointHost {
    Ip(IpAddr),
    Name(String),
}

impl FromStr for Endpoint {
    type Err = EgressError;

    /// `host:port`, `[v6]:port`, optionally after a scheme (`SSL://`), as
    /// librdkafka reads a bootstrap entry.
    fn from_str(text: &str) -> Result<Self, EgressError> {
        let bad = |reason: &'static str| EgressError::Address {
            address: text.to_string(),
            reason,
        };
        let s = text.trim();
        let s = s.split_once("://").map_or(s, |(_, rest)| rest);
        let (host, port) = split_host_port(s).ok_or_else(|| bad("write HOST:PORT"))?;
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => EndpointHost::Ip(ip),
            Err(_) => EndpointHost::Name(name(host).ok_or_else(|| bad("bad host name"))?),
        };
        Ok(Self { host, port })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            EndpointHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            EndpointHost::Ip(ip) => write!(f, "{ip}:{}", self.port),
            EndpointHost::Name(n) => write!(f, "{n}:{}", self.port),
        }
    }
}

impl EgressPattern {
    /// Whether this pattern covers `endpoint`.
    pub fn covers(&self, endpoint: &Endpoint) -> bool {
        if endpoint.port < self.ports.0 || endpoint.port > self.ports.1 {
            return false;
        }
        match (&self.host, &endpoint.host) {
            (HostPattern::AnyPublic, EndpointHost::Ip(ip)) => is_public(*ip),
            (HostPattern::Net(net), EndpointHost::Ip(ip)) => net.contains(&canonical(*ip)),
            (HostPattern::Name(n), EndpointHost::Name(e)) => n == e,
            (HostPattern::Domain(d), EndpointHost::Name(e)) => {
                e.len() > d.len() + 1
                    && e.ends_with(d.as_str())
                    && e.as_bytes()[e.len() - d.len() - 1] == b'.'
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Not loopback, private, link-local, shared, documentation, multicast,
/// unspecified or otherwise special.
fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64/10, shared
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0/24
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18/15, benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b)) // NAT64, may reach IPv4 private
        }
    }
}

/// A tenant's egress grants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Egress {
    patterns: Vec<EgressPattern>,
}

impl Egress {
    /// Parses granted patterns.
    ///
    /// # Errors
    /// The first pattern that does not parse, and why.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, EgressError> {
        let patterns = patterns
            .iter()
            .map(|p| p.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// Whether a job may connect to `address` (`HOST:PORT`).
    ///
    /// # Errors
    /// Why not: the address does not parse, or no grant covers it.
    pub fn allows(&self, address: &str) -> Result<(), EgressError> {
        let endpoint: Endpoint = address.parse()?;
        if self.patterns.iter().any(|p| p.covers(&endpoint)) {
            return Ok(());
        }
        Err(EgressError::NotGranted {
            address: endpoint.to_string(),
            granted: self.patterns.iter().map(ToString::to_string).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(patterns: &[&str], address: &str) -> bool {
        Egress::parse(patterns).unwrap().allows(address).is_ok()
    }

    #[test]
    fn nothing_is_granted_by_default() {
        let e = Egress::default()
            .allows("127.0.0.1:9092")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`127.0.0.1:9092` is not granted") && e.contains("none is granted"),
            "{e}"
        );
    }

    #[test]
    fn addresses_networks_and_ports() {
        assert!(allows(&["127.0.0.1:9092"], "127.0.0.1:9092"));
        assert!(!allows(&["127.0.0.1:9092"], "127.0.0.1:9093"));
        assert!(!allows(&["127.0.0.1:9092"], "127.0.0.2:9092"));
        assert!(allows(&["10.0.0.0/8:9092-9094"], "10.20.30.40:9094"));
        assert!(!allows(&["10.0.0.0/8:9092-9094"], "10.20.30.40:9095"));
        assert!(!allows(&["10.0.0.0/8:*"], "11.0.0.1:9092"));
        assert!(allows(&["[::1]:*"], "[::1]:9092"));
        // An IPv4-mapped IPv6 address is the IPv4 address.
        assert!(allows(&["127.0.0.1:9092"], "[::ffff:127.0.0.1]:9092"));
        assert!(!allows(&["*:*"], "[::ffff:127.0.0.1]:9092"));
        // librdkafka's scheme prefix.
        assert!(allows(&["127.0.0.1:9092"], "SSL://127.0.0.1:9092"));
    }

    #[test]
    fn a_wildcard_host_covers_only_public_addresses() {
        assert!(allows(&["*:9092"], "8.8.8.8:9092"));
        for internal in [
            "127.0.0.1:9092",
            "10.1.1.1:9092",
            "172.16.0.1:9092",
            "192.168.1.1:9092",
            "169.254.169.254:9092",
            "100.64.0.1:9092",
            "0.0.0.0:9092",
            "[::1]:9092",
            "[fd00::1]:9092",
            "[fe80::1]:9092",
        ] {
            assert!(!allows(&["*:*"], internal), "{internal}");
        }
        // Nor any host name.
        assert!(!allows(&["*:*"], "localhost:9092"));
    }

    #[test]
    fn names_match_only_name_patterns() {
        assert!(allows(&["kafka.internal:9092"], "KAFKA.internal.:9092"));
        assert!(allows(&["*.kafka.internal:9092"], "b1.kafka.internal:9092"));
        assert!(!allows(&["*.kafka.internal:9092"], "kafka.internal:9092"));
        assert!(!allows(
            &["*.kafka.internal:9092"],
            "evilkafka.internal:9092"
        ));
        assert!(!allows(
            &["*.kafka.internal:9092"],
            "b1.kafka.internal.evil.com:9092"
        ));
        // A name is not its address, nor the reverse.
        assert!(!allows(&["127.0.0.1:9092"], "localhost:9092"));
        assert!(!allows(&["localhost:9092"], "127.0.0.1:9092"));
    }

    #[test]
    fn bad_patterns_and_addresses_say_why() {
        let e = Egress::parse(&["10.0.0.0/8"]).unwrap_err().to_string();
        assert!(e.contains("`10.0.0.0/8`") && e.contains("HOST:PORT"), "{e}");
        assert!(
            Egress::parse(&["h:9-8"])
                .unwrap_err()
                .to_string()
                .contains("ends before")
        );
        assert!(
            Egress::parse(&["h_x:9"])
                .unwrap_err()
                .to_string()
                .contains("bad host")
        );
        let e = Egress::parse(&["*:*"])
            .unwrap()
            .allows("nohost")
            .unwrap_err()
            .to_string();
        assert!(e.contains("HOST:PORT"), "{e}");
        assert!(Egress::parse(&["*:*"]).unwrap().allows("::1:9092").is_err());
    }
}
