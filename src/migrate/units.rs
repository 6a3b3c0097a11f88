//! nginx sizes and times, and their podgate spellings.

use std::time::Duration;

// ---------------------------------------------------------------------------
// Units

/// nginx time: `500ms`, `30s`, `5m`, `1h30m`, `2d`; a bare number is
/// seconds. (`M` is 30 days, `y` 365 days.)
pub fn nginx_time(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: u128 = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return None;
        }
        let n: u128 = s[start..i].parse().ok()?;
        let unit_ms: u128 = if s[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let u = b.get(i).copied();
            if u.is_some() {
                i += 1;
            }
            match u {
                None => 1000,
                Some(b's') => 1000,
                Some(b'm') => 60_000,
                Some(b'h') => 3_600_000,
                Some(b'd') => 86_400_000,
                Some(b'w') => 7 * 86_400_000,
                Some(b'M') => 30 * 86_400_000,
                Some(b'y') => 365 * 86_400_000,
                _ => return None,
            }
        };
        total = total.checked_add(n.checked_mul(unit_ms)?)?;
    }
    Some(Duration::from_millis(u64::try_from(total).ok()?))
}

/// A duration as podgate reads it, in the largest unit that is exact.
pub fn podgate_time(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        format!("{ms}ms")
    } else if ms == 0 {
        "0s".into()
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// nginx size: `1024`, `8k`/`8K`, `10m`/`10M`, `1g`/`1G` (binary multiples).
pub fn nginx_size(s: &str) -> Option<u64> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    let mult: u64 = match &s[digits..] {
        "" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A size as podgate reads it, in the largest unit that is exact.
pub fn podgate_size(n: u64) -> String {
    if n == 0 {
        "0".into()
    } else if n % (1 << 30) == 0 {
        format!("{}g", n >> 30)
    } else if n % (1 << 20) == 0 {
        format!("{}m", n >> 20)
    } else if n % (1 << 10) == 0 {
        format!("{}k", n >> 10)
    } else {
        n.to_string()
    }
}
