//! CIDR blocks: the company's egress ranges, VPC CIDRs, `aws:SourceIp` conditions and the
//! broker's trusted proxies are all the same thing, so they are parsed in one place.

use std::net::IpAddr;

/// One CIDR block, IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cidr {
    V4 { start: u32, end: u32 },
    V6 { start: u128, end: u128 },
}

impl Cidr {
    /// Parse `a.b.c.d/n`, `x::/n`, or a bare address (a /32 or /128); `None` when it is neither.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, len) = match s.trim().split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u32>().ok()?)),
            None => (s.trim(), None),
        };
        match addr.parse::<IpAddr>().ok()? {
            IpAddr::V4(a) => {
                let len = len.unwrap_or(32);
                if len > 32 {
                    return None;
                }
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                let start = u32::from(a) & mask;
                Some(Cidr::V4 {
                    start,
                    end: start | !mask,
                })
            }
            IpAddr::V6(a) => {
                let len = len.unwrap_or(128);
                if len > 128 {
                    return None;
                }
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                let start = u128::from(a) & mask;
                Some(Cidr::V6 {
                    start,
                    end: start | !mask,
                })
            }
        }
    }

    /// True when `addr` lies inside this block (an IPv4 block never holds an IPv6 address).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (*self, addr) {
            (Cidr::V4 { start, end }, IpAddr::V4(a)) => (start..=end).contains(&u32::from(a)),
            (Cidr::V6 { start, end }, IpAddr::V6(a)) => (start..=end).contains(&u128::from(a)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_hold_their_addresses() {
        let b = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(b.contains("10.1.255.3".parse().unwrap()));
        assert!(!b.contains("10.2.0.1".parse().unwrap()));
        assert!(!b.contains("::1".parse().unwrap()));
        assert_eq!(Cidr::parse("10.1.2.3"), Cidr::parse("10.1.2.3/32"));
        assert!(Cidr::parse("fd00::/8")
            .unwrap()
            .contains("fdff::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/x", "host", ""] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }
}
