//! `sourceIPAddress` is not always an IP address. CloudTrail writes a service's DNS name when
//! a service calls on a principal's behalf (`ec2.amazonaws.com`), `AWS Internal` (sometimes
//! `AWS Internal/3`) for AWS's own plumbing, and published data sets carry anonymiser output
//! such as `08.1.250.216` or `redacted`. A detector that treats the raw string as an address
//! locks on nonsense (DETECTION-NOTES cases 1 and 7), so every record's source is classified
//! once, here, leniently.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// What a record's `sourceIPAddress` is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SourceAddress {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    /// An AWS service's name, e.g. `ec2.amazonaws.com`: the service called on the principal's behalf.
    AwsService(crate::text::Text),
    /// `AWS Internal` and its variants.
    AwsInternal,
    /// Anything else (`redacted`, placeholders). Never an address, never a lock.
    Other(crate::text::Text),
    /// The field was absent or null.
    Missing,
}

impl SourceAddress {
    pub fn classify(raw: Option<&str>) -> SourceAddress {
        let Some(raw) = raw else {
            return SourceAddress::Missing;
        };
        let s = raw.trim();
        if s.is_empty() {
            return SourceAddress::Missing;
        }
        if let Some(v4) = parse_ipv4_lenient(s) {
            return SourceAddress::V4(v4);
        }
        if s.contains(':') {
            if let Ok(v6) = s.parse::<Ipv6Addr>() {
                // An IPv4-mapped IPv6 address is the IPv4 host.
                return match v6.to_ipv4_mapped() {
                    Some(v4) => SourceAddress::V4(v4),
                    None => SourceAddress::V6(v6),
                };
            }
        }
        // Compared without case and without a lowercased copy: a service name is the source
        // of a good share of all records, and this runs for every one of them.
        let starts = |p: &str| {
            s.len() >= p.len() && s.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
        };
        let ends = |p: &str| {
            s.len() >= p.len()
                && s.as_bytes()[s.len() - p.len()..].eq_ignore_ascii_case(p.as_bytes())
        };
        if starts("aws internal") {
            return SourceAddress::AwsInternal;
        }
        if ends(".amazonaws.com")
            || ends(".amazonaws.com.cn")
            || s.eq_ignore_ascii_case("amazonaws.com")
        {
            return SourceAddress::AwsService(if s.bytes().any(|b| b.is_ascii_uppercase()) {
                s.to_ascii_lowercase().into()
            } else {
                s.into()
            });
        }
        SourceAddress::Other(s.into())
    }

    /// True when an AWS service made the call (service name or AWS Internal).
    pub fn is_aws_service(&self) -> bool {
        matches!(
            self,
            SourceAddress::AwsService(_) | SourceAddress::AwsInternal
        )
    }

    /// Private, loopback, link-local, CGNAT or unique-local: only meaningful with a VPC endpoint.
    pub fn is_private(&self) -> bool {
        match self {
            SourceAddress::V4(a) => {
                a.is_private()
                    || a.is_loopback()
                    || a.is_link_local()
                    || (a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64)
            }
            SourceAddress::V6(a) => {
                let seg = a.segments()[0];
                a.is_loopback() || (seg & 0xfe00) == 0xfc00 || (seg & 0xffc0) == 0xfe80
            }
            _ => false,
        }
    }
}

impl fmt::Display for SourceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceAddress::V4(a) => write!(f, "{a}"),
            SourceAddress::V6(a) => write!(f, "{a}"),
            SourceAddress::AwsService(s) | SourceAddress::Other(s) => f.write_str(s),
            SourceAddress::AwsInternal => f.write_str("AWS Internal"),
            SourceAddress::Missing => f.write_str("-"),
        }
    }
}

/// Dotted-quad IPv4 that also accepts leading zeros (`08.1.250.216` is 8.1.250.216), which
/// the standard parser rejects and anonymisers produce.
pub fn parse_ipv4_lenient(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut n = 0;
    for part in s.split('.') {
        if n == 4 || part.is_empty() || part.len() > 3 || !part.bytes().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        octets[n] = part.parse::<u16>().ok().filter(|v| *v <= 255)? as u8;
        n += 1;
    }
    (n == 4).then(|| Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_real_world_sources() {
        assert_eq!(
            SourceAddress::classify(Some("203.0.113.7")),
            SourceAddress::V4("203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            SourceAddress::classify(Some("08.1.250.216")),
            SourceAddress::V4("8.1.250.216".parse().unwrap())
        );
        assert_eq!(
            SourceAddress::classify(Some("2001:db8::1")),
            SourceAddress::V6("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            SourceAddress::classify(Some("::ffff:198.51.100.1")),
            SourceAddress::V4("198.51.100.1".parse().unwrap())
        );
        assert_eq!(
            SourceAddress::classify(Some("AWS Internal")),
            SourceAddress::AwsInternal
        );
        assert_eq!(
            SourceAddress::classify(Some("AWS Internal/3")),
            SourceAddress::AwsInternal
        );
        assert_eq!(
            SourceAddress::classify(Some("ec2.amazonaws.com")),
            SourceAddress::AwsService("ec2.amazonaws.com".into())
        );
        assert_eq!(
            SourceAddress::classify(Some("redacted")),
            SourceAddress::Other("redacted".into())
        );
        assert_eq!(
            SourceAddress::classify(Some("256.1.1.1")),
            SourceAddress::Other("256.1.1.1".into())
        );
        assert_eq!(
            SourceAddress::classify(Some("1.2.3")),
            SourceAddress::Other("1.2.3".into())
        );
        // Case does not matter; a service name is kept lowercase.
        assert_eq!(
            SourceAddress::classify(Some("EC2.AmazonAWS.com")),
            SourceAddress::AwsService("ec2.amazonaws.com".into())
        );
        assert_eq!(
            SourceAddress::classify(Some("aws internal/3")),
            SourceAddress::AwsInternal
        );
        assert_eq!(
            SourceAddress::classify(Some("s3.amazonaws.com.cn")),
            SourceAddress::AwsService("s3.amazonaws.com.cn".into())
        );
        assert_eq!(
            SourceAddress::classify(Some("Amazonaws.com")),
            SourceAddress::AwsService("amazonaws.com".into())
        );
        assert_eq!(
            SourceAddress::classify(Some("evil-amazonaws.com")),
            SourceAddress::Other("evil-amazonaws.com".into())
        );
        assert_eq!(SourceAddress::classify(None), SourceAddress::Missing);
        assert!(SourceAddress::classify(Some("10.1.2.3")).is_private());
        assert!(SourceAddress::classify(Some("100.64.0.1")).is_private());
        assert!(!SourceAddress::classify(Some("54.1.2.3")).is_private());
        assert!(SourceAddress::classify(Some("fd00::1")).is_private());
    }
}
