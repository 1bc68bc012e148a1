//! The host's routes as an input of the block search, and the rule for when
//! a candidate block collides with one.
//!
//! Engine 29 sends size-only requests (`0.0.0.0/26`, `::/80`) and, because
//! `Pool` is not empty, never checks the answer against the host's routes
//! (moby `ipams/remote/remote.go` `RequestPool` only loops for `Pool == ""`).
//! So gipam does: a block it chooses never collides with a route the host
//! already has. The routes are read outside the core (`crate::routes`) and
//! handed in with the request, so the core stays free of I/O.
//!
//! What collides: any overlap with a *connected* route (no next hop: a LAN,
//! a point-to-point peer, a bridge, the host's own addresses), as the
//! daemon's own check (`netutils.InferReservedNetworks`, on-link routes)
//! would see it; and a route *via a gateway* or a *reject* route
//! (blackhole, unreachable) only when it lies inside the block — one that
//! covers the block (the default route, the aggregate of a prefix routed to
//! this host) is exactly what a Docker network is carved out of. A /0 route
//! never collides.

use ipnet::IpNet;

use super::{Family, net_bounds};

/// One route of the host's routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRoute {
    /// The destination.
    pub net: IpNet,
    /// Directly connected (no gateway, not a reject route).
    pub connected: bool,
}

impl HostRoute {
    /// Whether a block would collide with this route (see the module doc).
    pub fn collides(&self, block: &IpNet) -> bool {
        if self.net.prefix_len() == 0 || Family::of_net(&self.net) != Family::of_net(block) {
            return false;
        }
        let overlaps = self.net.contains(block) || block.contains(&self.net);
        overlaps && (self.connected || block.contains(&self.net))
    }
}

/// The last address of the routes in `routes` that collide with `block`, if
/// any: the block search continues after it.
pub fn collision_end(routes: &[HostRoute], block: &IpNet) -> Option<u128> {
    routes
        .iter()
        .filter(|r| r.collides(block))
        .map(|r| net_bounds(&r.net).1.max(net_bounds(block).1))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(s: &str) -> HostRoute {
        let (net, kind) = s.split_once(' ').unwrap_or((s, "dev"));
        HostRoute {
            net: net.parse().expect("test route"),
            connected: kind == "dev",
        }
    }

    #[test]
    fn connected_routes_collide_on_any_overlap_others_only_inside() {
        let cases = [
            // route | block | collides
            ("10.40.0.0/24 dev", "10.40.0.0/26", true),
            ("10.40.0.0/24 dev", "10.40.0.0/16", true),
            ("10.40.0.0/24 dev", "10.40.1.0/24", false),
            ("10.40.0.7/32 dev", "10.40.0.0/29", true),
            ("10.40.0.0/31 dev", "10.40.0.0/30", true),
            ("10.0.0.0/8 via", "10.40.0.0/24", false),
            ("10.40.0.128/25 via", "10.40.0.0/24", true),
            ("10.40.0.0/16 reject", "10.40.0.0/24", false),
            ("10.40.0.0/28 reject", "10.40.0.0/24", true),
            ("0.0.0.0/0 dev", "10.40.0.0/24", false),
            ("0.0.0.0/0 via", "10.40.0.0/24", false),
            ("2001:db8:7700::/48 reject", "2001:db8:7700::/64", false),
            ("2001:db8:7700::/64 dev", "2001:db8:7700::/64", true),
            ("2001:db8:7700::5/128 dev", "2001:db8:7700::/80", true),
            ("2001:db8:7700::/127 dev", "2001:db8:7700::/126", true),
            ("::/0 reject", "2001:db8:7700::/64", false),
            ("10.40.0.0/24 dev", "2001:db8::/64", false),
        ];
        for (r, block, want) in cases {
            let block: IpNet = block.parse().expect("test block");
            assert_eq!(route(r).collides(&block), want, "{r} vs {block}");
        }
    }
}
