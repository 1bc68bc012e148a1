//! Text helpers shared by the subcommands: aligned columns, a use bar,
//! human sizes and UTC times (no time zone database needed).

/// Left-aligned columns separated by two spaces; the last column is not
/// padded.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                let pad = widths[i].saturating_sub(c.chars().count()) + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        while out.ends_with(' ') {
            out.pop();
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// `[###.......]  27%`: ten cells, at least one filled when anything is used.
pub fn bar(used: u128, size: u128) -> String {
    if size == 0 {
        return "[..........]   -".into();
    }
    let cells = if used == 0 {
        0
    } else {
        (used.saturating_mul(10).div_ceil(size)).clamp(1, 10) as usize
    };
    let percent = used.saturating_mul(100) / size;
    format!(
        "[{}{}] {percent:>3}%",
        "#".repeat(cells),
        ".".repeat(10 - cells)
    )
}

/// A count of addresses: exact up to ten million, then `1.8e19`.
pub fn count(n: u128) -> String {
    if n < 10_000_000 {
        n.to_string()
    } else {
        format!("{:.1e}", n as f64)
    }
}

/// `1 pool`, `3 pools`.
pub fn plural(n: impl Into<u128>, what: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `1.2 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Unix seconds as `2026-12-01 08:30:02 UTC` (Howard Hinnant's
/// days-to-civil algorithm).
pub fn utc(secs: f64) -> String {
    let s = secs.max(0.0) as i64;
    let (days, rem) = (s.div_euclid(86_400), s.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_format() {
        assert_eq!(bar(0, 254), "[..........]   0%");
        assert_eq!(bar(1, 254), "[#.........]   0%");
        assert_eq!(bar(254, 254), "[##########] 100%");
        assert_eq!(bar(3, u128::MAX), "[#.........]   0%");
        assert_eq!(count(254), "254");
        assert_eq!(count(1 << 64), "1.8e19");
        assert_eq!(plural(1u8, "pool"), "1 pool");
        assert_eq!(plural(0u8, "lease"), "0 leases");
        assert_eq!(bytes(222), "222 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_113_802.0), "2026-12-01 08:30:02 UTC");
        let t = render(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }
}
