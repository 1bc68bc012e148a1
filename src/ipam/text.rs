//! Addresses, subnets and pool ids as text, written straight into a byte
//! buffer: exactly what their `Display` writes, without the formatting
//! machinery, which is most of what a journal line or a RequestAddress
//! reply costs to write (performance.md: the journal thread is the one
//! serial stage of a durable request).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{Mac, PoolId};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `n` in decimal.
pub fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Appends `v` in lowercase hexadecimal without leading zeros (`{:x}`).
fn push_hex16(buf: &mut Vec<u8>, v: u16) {
    let mut started = false;
    for shift in [12, 8, 4, 0] {
        let d = (v >> shift) & 0xf;
        if d != 0 || started || shift == 0 {
            buf.push(HEX[d as usize]);
            started = true;
        }
    }
}

/// Writes `v` as eight lowercase hex digits (`{:08x}`) into `out`.
pub fn hex8(out: &mut [u8; 8], v: u32) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((v >> (28 - 4 * i)) & 0xf) as usize];
    }
}

fn push_v4(buf: &mut Vec<u8>, a: Ipv4Addr) {
    for (i, o) in a.octets().into_iter().enumerate() {
        if i > 0 {
            buf.push(b'.');
        }
        push_u64(buf, u64::from(o));
    }
}

fn push_groups(buf: &mut Vec<u8>, groups: &[u16]) {
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            buf.push(b':');
        }
        push_hex16(buf, *g);
    }
}

/// What `Ipv6Addr`'s `Display` writes (RFC 5952): the longest run of two
/// or more zero groups (the first of equals) as `::`, and an IPv4-mapped
/// address as `::ffff:a.b.c.d`.
fn push_v6(buf: &mut Vec<u8>, a: Ipv6Addr) {
    if let Some(v4) = a.to_ipv4_mapped() {
        buf.extend_from_slice(b"::ffff:");
        push_v4(buf, v4);
        return;
    }
    let s = a.segments();
    let (mut best, mut best_len) = (0, 0);
    let (mut cur, mut cur_len) = (0, 0);
    for (i, g) in s.iter().enumerate() {
        if *g == 0 {
            if cur_len == 0 {
                cur = i;
            }
            cur_len += 1;
            if cur_len > best_len {
                (best, best_len) = (cur, cur_len);
            }
        } else {
            cur_len = 0;
        }
    }
    if best_len > 1 {
        push_groups(buf, &s[..best]);
        buf.extend_from_slice(b"::");
        push_groups(buf, &s[best + best_len..]);
    } else {
        push_groups(buf, &s);
    }
}

/// Appends what `ip.to_string()` would be.
pub fn push_ip(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => push_v4(buf, a),
        IpAddr::V6(a) => push_v6(buf, a),
    }
}

/// Appends what `net.to_string()` would be (`address/length`).
pub fn push_net(buf: &mut Vec<u8>, net: &IpNet) {
    push_ip(buf, net.addr());
    buf.push(b'/');
    push_u64(buf, u64::from(net.prefix_len()));
}

/// Appends what `id.to_string()` would be.
pub fn push_pool_id(buf: &mut Vec<u8>, id: &PoolId) {
    buf.extend_from_slice(id.space.as_bytes());
    buf.push(b'/');
    push_net(buf, &id.subnet);
    if let Some(r) = &id.range {
        buf.push(b'/');
        push_net(buf, r);
    }
}

/// Appends what `mac.to_string()` would be (`02:42:ac:11:00:02`).
pub fn push_mac(buf: &mut Vec<u8>, mac: &Mac) {
    for (i, b) in mac.0.iter().enumerate() {
        if i > 0 {
            buf.push(b':');
        }
        buf.push(HEX[usize::from(b >> 4)]);
        buf.push(HEX[usize::from(b & 0xf)]);
    }
}

/// `net.to_string()`, written the fast way.
pub fn net_string(net: &IpNet) -> String {
    let mut buf = Vec::with_capacity(48);
    push_net(&mut buf, net);
    // Only ASCII digits, hex letters, `.`, `:` and `/` were written.
    String::from_utf8(buf).unwrap_or_else(|_| net.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (no dependency for tests).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        f(&mut buf);
        String::from_utf8(buf).expect("ascii")
    }

    #[test]
    fn addresses_read_exactly_as_display_writes_them() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..200_000 {
            let r = rng.next();
            // Groups are zero often, so that every shape of zero run and
            // every tie between runs comes up.
            let mut g = [0u16; 8];
            for (i, x) in g.iter_mut().enumerate() {
                let pick = (r >> (i * 4)) & 0xf;
                *x = match pick {
                    0..=7 => 0,
                    8 => 1,
                    9 => 0xffff,
                    _ => rng.next() as u16,
                };
            }
            let v6 = Ipv6Addr::from(g);
            assert_eq!(text(|b| push_ip(b, v6.into())), v6.to_string());
            let mapped = Ipv4Addr::from(rng.next() as u32).to_ipv6_mapped();
            assert_eq!(text(|b| push_ip(b, mapped.into())), mapped.to_string());
            let v4 = Ipv4Addr::from(rng.next() as u32);
            assert_eq!(text(|b| push_ip(b, v4.into())), v4.to_string());
        }
        for a in [
            "::",
            "::1",
            "1::",
            "0:0:1::",
            "::ffff:0.0.0.0",
            "::ffff:1:2",
        ] {
            let a: IpAddr = a.parse().expect("addr");
            assert_eq!(text(|b| push_ip(b, a)), a.to_string());
        }
    }

    #[test]
    fn numbers_subnets_pool_ids_and_macs_read_as_display_writes_them() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(text(|b| push_u64(b, n)), n.to_string());
        }
        let mut out = [0u8; 8];
        for v in [0, 1, 0xdead_beef, u32::MAX] {
            hex8(&mut out, v);
            assert_eq!(out, *format!("{v:08x}").as_bytes());
        }
        for id in [
            "LocalDefault/10.40.3.0/24",
            "GlobalDefault/10.10.0.0/16/10.10.5.0/24",
            "LocalDefault/2001:db8::/48/2001:db8:0:1::/64",
            "LocalDefault/fd00:6a:7e::/64",
        ] {
            let id: PoolId = id.parse().expect("pool id");
            assert_eq!(text(|b| push_pool_id(b, &id)), id.to_string());
            assert_eq!(net_string(&id.subnet), id.subnet.to_string());
        }
        let mac = Mac([0x02, 0x42, 0xac, 0x11, 0x00, 0xff]);
        assert_eq!(text(|b| push_mac(b, &mac)), mac.to_string());
    }
}
