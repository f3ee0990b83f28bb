//! Duration literals of the attribute options: `"200ms"`, `"10s"`, `"1.5s"`, `"1m30s"`, and the
//! `"200ms..30s"` ranges of `retry(backoff = ..)`.
//!
//! Values are computed exactly in whole nanoseconds (no floating point), so `"1.5s"` is exactly
//! 1 500 000 000 ns, and a fraction that would need sub-nanosecond precision is rejected.

use std::time::Duration;

/// The grammar of a duration literal, as shown in error messages.
pub(crate) const EXPECTED: &str = "expected a number followed by a unit (ns, us, ms, s, m, h or d), \
     e.g. \"200ms\", \"10s\", \"1.5s\", \"5m\", \"1h\" or \"1m30s\"";

/// Nanoseconds in one of each accepted unit.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 60 * 60 * 1_000_000_000),
    ("d", 24 * 60 * 60 * 1_000_000_000),
];

/// Parses a duration literal such as `"200ms"`, `"1.5s"` or `"1m30s"`.
///
/// The text is one or more `<number><unit>` components (whitespace allowed between them and between a
/// number and its unit), summed. The number is a decimal with an optional fraction. The error is a
/// complete, human-readable message.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let invalid = |detail: &str| format!("invalid duration \"{text}\": {detail}; {EXPECTED}");

    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid("it is empty"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        rest = next.trim_start();

        if number.is_empty() {
            return Err(invalid("each unit must follow a number"));
        }
        if unit.is_empty() {
            return Err(invalid(&format!("`{number}` has no unit")));
        }
        let Some(&(_, unit_nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(invalid(&format!("unknown unit `{unit}`")));
        };
        let nanos = component_nanos(number, unit_nanos).map_err(|detail| invalid(&detail))?;
        total = total
            .checked_add(nanos)
            .ok_or_else(|| invalid("it is too long"))?;
    }
    let nanos = u64::try_from(total)
        .map_err(|_| invalid("it is too long (the limit is about 584 years)"))?;
    Ok(Duration::from_nanos(nanos))
}

/// `number` (digits with an optional `.fraction`) times `unit_nanos`, exactly.
fn component_nanos(number: &str, unit_nanos: u128) -> Result<u128, String> {
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    let malformed = || format!("`{number}` is not a number");
    if whole.is_empty() || (number.contains('.') && fraction.is_empty()) || fraction.contains('.') {
        return Err(malformed());
    }
    let too_long = || "it is too long".to_owned();
    // At most 38 digits fit a u128, and a duration this long is rejected anyway.
    if whole.len() > 30 || fraction.len() > 30 {
        return Err(too_long());
    }
    let whole: u128 = whole.parse().map_err(|_| malformed())?;
    let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(too_long)?;
    if !fraction.is_empty() {
        let numerator: u128 = fraction.parse().map_err(|_| malformed())?;
        let denominator = 10u128.pow(fraction.len() as u32);
        let scaled = numerator.checked_mul(unit_nanos).ok_or_else(too_long)?;
        if scaled % denominator != 0 {
            return Err(format!("`{number}` is finer than one nanosecond"));
        }
        nanos = nanos
            .checked_add(scaled / denominator)
            .ok_or_else(too_long)?;
    }
    Ok(nanos)
}

/// Parses a backoff range `"<initial>..<max>"` such as `"200ms..30s"` (`..=` is accepted too).
pub(crate) fn parse_range(text: &str) -> Result<(Duration, Duration), String> {
    let Some((start, end)) = text.split_once("..") else {
        return Err(format!(
            "invalid backoff range \"{text}\": expected \"<initial>..<max>\", e.g. \"200ms..30s\""
        ));
    };
    let end = end.strip_prefix('=').unwrap_or(end);
    let side = |part: &str, which: &str| {
        parse(part)
            .map_err(|message| format!("invalid {which} of backoff range \"{text}\": {message}"))
    };
    Ok((side(start, "start")?, side(end, "end")?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("1500ns").unwrap(), Duration::from_nanos(1500));
        assert_eq!(parse("1500us").unwrap(), Duration::from_micros(1500));
        assert_eq!(parse("1500µs").unwrap(), Duration::from_micros(1500));
        assert_eq!(parse("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn parses_fractions_exactly() {
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("0.25ms").unwrap(), Duration::from_micros(250));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("0.001s").unwrap(), Duration::from_millis(1));
        assert_eq!(parse("0.000000001s").unwrap(), Duration::from_nanos(1));
    }

    #[test]
    fn sums_compound_durations_and_tolerates_spaces() {
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1h 1m 1s").unwrap(), Duration::from_secs(3661));
        assert_eq!(parse(" 10 s ").unwrap(), Duration::from_secs(10));
    }

    #[test]
    fn rejects_malformed_literals_with_the_accepted_units() {
        for bad in [
            "", "  ", "10", "s", "ms10", "10x", "10sec", "1.s", ".5s", "1.2.3s", "-1s", "10S",
        ] {
            let message = parse(bad).expect_err(bad);
            assert!(message.contains("invalid duration"), "{bad:?}: {message}");
            assert!(
                message.contains("ns, us, ms, s, m, h or d"),
                "{bad:?}: {message}"
            );
        }
        assert!(parse("10x").unwrap_err().contains("unknown unit `x`"));
        assert!(parse("10").unwrap_err().contains("`10` has no unit"));
    }

    #[test]
    fn rejects_sub_nanosecond_precision_and_overflow() {
        assert!(
            parse("1.5ns")
                .unwrap_err()
                .contains("finer than one nanosecond")
        );
        assert!(parse("1000000d").unwrap_err().contains("too long"));
        assert!(
            parse("99999999999999999999999999999999999d")
                .unwrap_err()
                .contains("too long")
        );
        // u64::MAX nanoseconds is the longest duration accepted.
        assert_eq!(
            parse("18446744073709551615ns").unwrap(),
            Duration::from_nanos(u64::MAX)
        );
        assert!(parse("18446744073709551616ns").is_err());
    }

    #[test]
    fn parses_ranges() {
        assert_eq!(
            parse_range("200ms..30s").unwrap(),
            (Duration::from_millis(200), Duration::from_secs(30))
        );
        assert_eq!(
            parse_range("1s..=1m").unwrap(),
            (Duration::from_secs(1), Duration::from_secs(60))
        );
        assert!(
            parse_range("200ms")
                .unwrap_err()
                .contains("expected \"<initial>..<max>\"")
        );
        assert!(parse_range("200ms..").unwrap_err().contains("invalid end"));
        assert!(parse_range("x..1s").unwrap_err().contains("invalid start"));
    }
}
