//! Main pools that no longer contain the automatic blocks live networks
//! hold: why [`Ipam::new`](super::Ipam::new) refuses new settings, what the
//! state was started with, and the pool list that would keep those blocks
//! (so that a refusal can spell out its fix).

use std::fmt;

use ipnet::{IpNet, Ipv6Net};

use super::{Family, PoolId};

/// One family whose new main pools strand held automatic blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stranded {
    pub family: Family,
    /// The main pools given now.
    pub now: Vec<IpNet>,
    /// The main pools the state was last started with, when recorded. For
    /// IPv6 an empty list means the generated ULA ([`Stranded::ula`]).
    pub was: Option<Vec<IpNet>>,
    /// The ULA /48 generated for an empty V6, if any.
    pub ula: Option<Ipv6Net>,
    /// The held automatic blocks outside every pool of `now`.
    pub held: Vec<PoolId>,
}

/// Every family that strands blocks (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strands(pub Vec<Stranded>);

fn join(list: &[IpNet]) -> String {
    let all: Vec<String> = list.iter().map(|n| n.to_string()).collect();
    all.join(",")
}

impl Stranded {
    /// The setting's environment name.
    pub fn name(&self) -> &'static str {
        match self.family {
            Family::V4 => "V4",
            Family::V6 => "V6",
        }
    }

    /// The pools the old setting covered, when known: the recorded list,
    /// or the generated ULA for an empty V6.
    pub fn old_pools(&self) -> Option<Vec<IpNet>> {
        let was = self.was.as_ref()?;
        if was.is_empty() && self.family == Family::V6 {
            return Some(self.ula.map(IpNet::V6).into_iter().collect());
        }
        Some(was.clone())
    }

    /// The new pools, in their order, plus what keeps every held block:
    /// the old main pool that holds it (the block itself when the old
    /// pools are unknown), appended after them, or in place of the new
    /// pools it contains. New networks still come from the new pools first.
    pub fn keeping(&self) -> Vec<IpNet> {
        let old = self.old_pools().unwrap_or_default();
        let mut out = self.now_pools();
        for block in self.held.iter().map(|id| id.subnet) {
            if out.iter().any(|p| p.contains(&block)) {
                continue;
            }
            let cover = old
                .iter()
                .find(|o| o.contains(&block))
                .copied()
                .unwrap_or(block);
            // CIDRs overlap only when one contains the other, and none of
            // `out` contains the block: `cover` can only contain them.
            match out.iter().position(|p| cover.contains(p)) {
                Some(at) => {
                    out.retain(|p| !cover.contains(p));
                    out.insert(at.min(out.len()), cover);
                }
                None => out.push(cover),
            }
        }
        out
    }

    /// The pools the new setting covers: the given list, or the
    /// generated ULA for an empty V6.
    fn now_pools(&self) -> Vec<IpNet> {
        match self.ula {
            Some(ula) if self.now.is_empty() && self.family == Family::V6 => vec![IpNet::V6(ula)],
            _ => self.now.clone(),
        }
    }

    /// The value that puts the old setting back (`""` for an empty V6).
    pub fn old_value(&self) -> Option<String> {
        self.was.as_deref().map(join)
    }

    /// A comma-separated pool list, as the setting takes it.
    pub fn value(list: &[IpNet]) -> String {
        join(list)
    }

    /// What is wrong, with the setting written by `assign` (`V4=X` or
    /// `--v4 X`): the new and old value and the blocks it strands.
    pub fn describe(&self, assign: &dyn Fn(&str) -> String) -> String {
        let was = match (&self.was, self.ula) {
            (Some(v), Some(ula)) if v.is_empty() && self.family == Family::V6 => {
                format!(" (was empty: the generated ULA {ula})")
            }
            (Some(v), _) if v.is_empty() => " (was empty)".to_string(),
            (Some(v), _) => format!(" (was {})", join(v)),
            (None, _) => String::new(),
        };
        let now = match self.ula {
            Some(ula) if self.now.is_empty() && self.family == Family::V6 => {
                format!("{} (empty: the generated ULA {ula})", assign(""))
            }
            _ => assign(&join(&self.now)),
        };
        let held: Vec<String> = self.held.iter().map(|id| id.to_string()).collect();
        format!(
            "{now}{was} no longer contains {}, held by live networks",
            held.join(", ")
        )
    }
}

impl fmt::Display for Strands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self
            .0
            .iter()
            .map(|s| {
                let name = s.name();
                let mut line = s.describe(&|v| format!("{name}={v}"));
                line.push_str(&format!("; keep them with {name}={}", join(&s.keeping())));
                line
            })
            .collect();
        f.write_str(&all.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &str) -> Vec<IpNet> {
        list.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("net"))
            .collect()
    }

    fn stranded(now: &str, was: Option<&str>, held: &[&str]) -> Stranded {
        let family = if now.contains(':') || was.is_some_and(|w| w.contains(':')) {
            Family::V6
        } else {
            Family::V4
        };
        Stranded {
            family,
            now: nets(now),
            was: was.map(nets),
            ula: Some("fd12:3456:789a::/48".parse().expect("ula")),
            held: held
                .iter()
                .map(|b| format!("LocalDefault/{b}").parse().expect("pool id"))
                .collect(),
        }
    }

    #[test]
    fn keeping_lists_the_new_pools_first_then_what_holds_the_blocks() {
        // now | was (None: not recorded) | held blocks | keeping
        let cases: &[(&str, Option<&str>, &[&str], &str)] = &[
            (
                "10.40.0.0/16",
                Some("172.16.0.0/16"),
                &["172.16.0.0/24", "172.16.1.0/24"],
                "10.40.0.0/16,172.16.0.0/16",
            ),
            // Two old pools, only one of them holds a block.
            (
                "10.40.0.0/16",
                Some("172.16.0.0/16,10.50.0.0/16"),
                &["10.50.3.0/24"],
                "10.40.0.0/16,10.50.0.0/16",
            ),
            // The new pool shrank the old one: the old one comes back in
            // its place.
            (
                "10.8.0.0/24,10.40.0.128/25",
                Some("10.40.0.0/16"),
                &["10.40.7.0/24"],
                "10.8.0.0/24,10.40.0.0/16",
            ),
            // Old pools unknown (a state from an older gipam): the blocks.
            (
                "10.40.0.0/16",
                None,
                &["172.16.0.0/24", "172.16.5.0/24"],
                "10.40.0.0/16,172.16.0.0/24,172.16.5.0/24",
            ),
            // V6 was empty: the generated ULA, spelled out.
            (
                "2001:db8::/48",
                Some(""),
                &["fd12:3456:789a::/64"],
                "2001:db8::/48,fd12:3456:789a::/48",
            ),
        ];
        for (now, was, held, want) in cases {
            let s = stranded(now, *was, held);
            let got = Stranded::value(&s.keeping());
            assert_eq!(got, *want, "{now} was {was:?}");
            let kept = s.keeping();
            for b in s.held.iter().map(|id| id.subnet) {
                assert!(kept.iter().any(|p| p.contains(&b)), "{got} keeps {b}");
            }
            for (i, a) in kept.iter().enumerate() {
                for b in &kept[i + 1..] {
                    assert!(!a.contains(b) && !b.contains(a), "{got}: {a} and {b}");
                }
            }
        }
    }

    #[test]
    fn describe_names_the_old_value_and_the_blocks() {
        let s = stranded("10.40.0.0/16", Some("172.16.0.0/16"), &["172.16.0.0/24"]);
        assert_eq!(
            s.describe(&|v| format!("--v4 {v}")),
            "--v4 10.40.0.0/16 (was 172.16.0.0/16) no longer contains LocalDefault/172.16.0.0/24, held by live networks"
        );
        assert_eq!(s.old_value().as_deref(), Some("172.16.0.0/16"));
        let s = stranded("2001:db8::/48", Some(""), &["fd12:3456:789a::/64"]);
        let text = s.describe(&|v| format!("V6={v}"));
        assert!(
            text.starts_with("V6=2001:db8::/48 (was empty: the generated ULA fd12:3456:789a::/48)"),
            "{text}"
        );
        assert_eq!(s.old_value().as_deref(), Some(""));
    }
}
