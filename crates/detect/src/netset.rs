//! Sets of networks: the company's declared egress CIDRs and AWS's published address ranges
//! (`ip-ranges.json`). Both are sorted, merged interval lists, so a lookup is one binary
//! search whatever their size (AWS publishes ~10 000 prefixes).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

use crate::error::ConfigError;
pub use credwarden_core::Cidr;

/// [`Cidr::parse`] with the configuration error that names the bad text.
pub fn parse_cidr(s: &str) -> Result<Cidr, ConfigError> {
    Cidr::parse(s).ok_or_else(|| ConfigError::Cidr(s.to_owned()))
}

/// A set of address ranges with fast membership tests.
#[derive(Clone, Debug, Default)]
pub struct NetSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

fn merge<T: Ord + Copy>(mut v: Vec<(T, T)>, next: impl Fn(T) -> Option<T>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        if let Some(last) = out.last_mut() {
            if next(last.1).is_none_or(|n| s <= n) {
                last.1 = last.1.max(e);
                continue;
            }
        }
        out.push((s, e));
    }
    out
}

fn contains<T: Ord + Copy>(v: &[(T, T)], x: T) -> bool {
    let i = v.partition_point(|(s, _)| *s <= x);
    i > 0 && x <= v[i - 1].1
}

impl NetSet {
    pub fn from_cidrs(cidrs: impl IntoIterator<Item = Cidr>) -> NetSet {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for c in cidrs {
            match c {
                Cidr::V4 { start, end } => v4.push((start, end)),
                Cidr::V6 { start, end } => v6.push((start, end)),
            }
        }
        NetSet {
            v4: merge(v4, |x: u32| x.checked_add(1)),
            v6: merge(v6, |x: u128| x.checked_add(1)),
        }
    }

    pub fn parse_list<S: AsRef<str>>(items: &[S]) -> Result<NetSet, ConfigError> {
        Ok(NetSet::from_cidrs(
            items
                .iter()
                .map(|s| parse_cidr(s.as_ref()))
                .collect::<Result<Vec<_>, _>>()?,
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn contains_v4(&self, a: Ipv4Addr) -> bool {
        contains(&self.v4, u32::from(a))
    }

    pub fn contains_v6(&self, a: Ipv6Addr) -> bool {
        contains(&self.v6, u128::from(a))
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => self.contains_v4(a),
            IpAddr::V6(a) => self.contains_v6(a),
        }
    }
}

/// AWS's published address ranges (`https://ip-ranges.amazonaws.com/ip-ranges.json`).
#[derive(Clone, Debug)]
pub struct AwsIpRanges {
    pub sync_token: String,
    pub create_date: String,
    pub prefixes: usize,
    pub set: NetSet,
}

impl AwsIpRanges {
    /// Parse the official file. Every prefix counts as "inside AWS", whatever its service:
    /// an attacker's EC2 instance is inside AWS too, which is why this is a second signal and
    /// the lock is the first.
    pub fn parse(json: &[u8]) -> Result<AwsIpRanges, ConfigError> {
        #[derive(Deserialize)]
        struct File {
            #[serde(rename = "syncToken", default)]
            sync_token: String,
            #[serde(rename = "createDate", default)]
            create_date: String,
            prefixes: Vec<V4>,
            #[serde(default)]
            ipv6_prefixes: Vec<V6>,
        }
        #[derive(Deserialize)]
        struct V4 {
            ip_prefix: String,
        }
        #[derive(Deserialize)]
        struct V6 {
            ipv6_prefix: String,
        }
        let f: File = serde_json::from_slice(json).map_err(ConfigError::IpRangesJson)?;
        if f.prefixes.is_empty() {
            return Err(ConfigError::IpRangesEmpty);
        }
        let cidrs = f
            .prefixes
            .iter()
            .map(|p| parse_cidr(&p.ip_prefix))
            .chain(f.ipv6_prefixes.iter().map(|p| parse_cidr(&p.ipv6_prefix)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AwsIpRanges {
            sync_token: f.sync_token,
            create_date: f.create_date,
            prefixes: cidrs.len(),
            set: NetSet::from_cidrs(cidrs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_matches_cidrs() {
        let set =
            NetSet::parse_list(&["10.0.0.0/8", "203.0.113.7", "2001:db8::/32", "0.0.0.0/0"][..3])
                .unwrap();
        assert!(set.contains("10.255.1.1".parse().unwrap()));
        assert!(!set.contains("11.0.0.0".parse().unwrap()));
        assert!(set.contains("203.0.113.7".parse().unwrap()));
        assert!(!set.contains("203.0.113.8".parse().unwrap()));
        assert!(set.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!set.contains("2001:db9::".parse().unwrap()));
        assert!(NetSet::parse_list(&["0.0.0.0/0"])
            .unwrap()
            .contains("255.255.255.255".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0/8", "::/129"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn reads_the_official_format() {
        let r = AwsIpRanges::parse(br#"{"syncToken":"1","createDate":"2024-01-01-00-00-00","prefixes":[{"ip_prefix":"3.5.140.0/22","region":"ap-northeast-2","service":"AMAZON","network_border_group":"ap-northeast-2"}],"ipv6_prefixes":[{"ipv6_prefix":"2600:1f00::/24","region":"x","service":"AMAZON"}]}"#).unwrap();
        assert!(r.set.contains("3.5.141.9".parse().unwrap()));
        assert!(r.set.contains("2600:1f00::1".parse().unwrap()));
        assert!(AwsIpRanges::parse(b"{}").is_err());
        assert!(AwsIpRanges::parse(br#"{"prefixes":[]}"#).is_err());
    }

    proptest! {
        #[test]
        fn netset_agrees_with_a_linear_scan(blocks in proptest::collection::vec((any::<u32>(), 8u32..=32), 0..20), probes in proptest::collection::vec(any::<u32>(), 50)) {
            let cidrs: Vec<String> = blocks.iter().map(|(a, l)| format!("{}/{}", Ipv4Addr::from(*a), l)).collect();
            let parsed: Vec<Cidr> = cidrs.iter().map(|c| Cidr::parse(c).unwrap()).collect();
            let set = NetSet::from_cidrs(parsed.clone());
            for p in probes.iter().copied().chain(parsed.iter().filter_map(|c| if let Cidr::V4 { start, .. } = c { Some(*start) } else { None })) {
                let linear = parsed.iter().any(|c| matches!(c, Cidr::V4 { start, end } if *start <= p && p <= *end));
                prop_assert_eq!(set.contains_v4(Ipv4Addr::from(p)), linear);
            }
        }
    }
}
