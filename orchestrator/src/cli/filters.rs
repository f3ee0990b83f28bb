//! Filters as the admin API's query pairs (`status`, `type`, `id_prefix`, ...), `--where key=value`
//! conditions, and the time forms `--since`/`--until` accept.

use serde_json::{Map, Value};

use super::args::Filters;
use super::exit::CliError;

/// The filter names `--where` accepts (those of `GET /api/v1/runs`).
const WHERE_KEYS: &[&str] = &[
    "status",
    "type",
    "id_prefix",
    "paused",
    "parent_id",
    "error_contains",
    "created_from_ms",
    "created_until_ms",
    "updated_from_ms",
    "updated_until_ms",
];

/// The filters as query pairs, times resolved against `now_ms`.
pub(crate) fn pairs(filters: &Filters, now_ms: i64) -> Result<Vec<(String, String)>, CliError> {
    let mut pairs = Vec::new();
    for status in &filters.status {
        pairs.push(("status".to_string(), status.clone()));
    }
    let mut push = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            pairs.push((key.to_string(), value));
        }
    };
    push("type", filters.workflow_type.clone());
    push("id_prefix", filters.id_prefix.clone());
    push("error_contains", filters.error_contains.clone());
    push("paused", filters.paused.map(|paused| paused.to_string()));
    push("parent_id", filters.parent.clone());
    if let Some(since) = &filters.since {
        push(
            "created_from_ms",
            Some(parse_time(since, now_ms)?.to_string()),
        );
    }
    if let Some(until) = &filters.until {
        push(
            "created_until_ms",
            Some(parse_time(until, now_ms)?.to_string()),
        );
    }
    Ok(pairs)
}

/// `--where key=value` conditions as the fields of a bulk request (`status` as an array).
pub(crate) fn conditions(conditions: &[String]) -> Result<Map<String, Value>, CliError> {
    let mut fields = Map::new();
    let mut statuses = Vec::new();
    for condition in conditions {
        let Some((key, value)) = condition.split_once('=') else {
            return Err(CliError::usage(format!(
                "`--where {}` is not `key=value`",
                crate::limits::shortened(condition)
            )));
        };
        let key = key.trim();
        if !WHERE_KEYS.contains(&key) {
            return Err(CliError::usage(format!(
                "unknown condition `{}`; the conditions are {}",
                crate::limits::shortened(key),
                WHERE_KEYS.join(", ")
            )));
        }
        if key == "status" {
            statuses.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_string())),
            );
        } else if fields
            .insert(key.to_string(), Value::String(value.to_string()))
            .is_some()
        {
            return Err(CliError::usage(format!(
                "`--where {key}=...` is given twice"
            )));
        }
    }
    if !statuses.is_empty() {
        fields.insert("status".to_string(), Value::Array(statuses));
    }
    if fields.is_empty() {
        return Err(CliError::usage(
            "--where needs at least one condition (e.g. --where status=failed)",
        ));
    }
    Ok(fields)
}

/// A time: RFC 3339 UTC (`2026-12-02T14:00:00Z`, fractions allowed), milliseconds since the Unix
/// epoch, or an age before `now_ms` (`90s`, `30m`, `6h`, `2d`).
pub(crate) fn parse_time(text: &str, now_ms: i64) -> Result<i64, CliError> {
    let text = text.trim();
    let bad = || {
        CliError::usage(format!(
            "`{}` is not a time: use RFC 3339 (2026-12-02T14:00:00Z), milliseconds since the epoch, or an age such as 30m, 6h or 2d",
            crate::limits::shortened(text)
        ))
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad());
    }
    if let Some(unit) = text.chars().last().filter(|c| "smhd".contains(*c)) {
        let number = &text[..text.len() - 1];
        if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
            let count: i64 = number.parse().map_err(|_| bad())?;
            let unit_ms = match unit {
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                _ => 86_400_000,
            };
            return count
                .checked_mul(unit_ms)
                .map(|age| now_ms.saturating_sub(age))
                .ok_or_else(bad);
        }
    }
    parse_rfc3339(text).ok_or_else(bad)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` (or `+00:00`) as ms since the epoch.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once(['T', ' '])?;
    let mut date = date.splitn(3, '-');
    let year: i64 = date.next()?.parse().ok()?;
    let month: i64 = date.next()?.parse().ok()?;
    let day: i64 = date.next()?.parse().ok()?;
    let (time, fraction) = match time.split_once('.') {
        Some((time, fraction)) => (time, fraction),
        None => (time, ""),
    };
    let mut time = time.splitn(3, ':');
    let hours: i64 = time.next()?.parse().ok()?;
    let minutes: i64 = time.next()?.parse().ok()?;
    let seconds: i64 = time.next()?.parse().ok()?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hours > 23
        || minutes > 59
        || seconds > 60
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let millis: i64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hours) * 60 + minutes) * 60_000 + seconds * 1_000 + millis)
}

/// Howard Hinnant's `days_from_civil`: days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::rfc3339;

    #[test]
    fn times_in_every_form() {
        let now = 1_796_220_185_123;
        assert_eq!(parse_time("2026-12-02T14:03:05.123Z", 0).unwrap(), now);
        assert_eq!(parse_time(&rfc3339(now), 0).unwrap(), now);
        assert_eq!(
            parse_time("2000-02-29T00:00:00Z", 0).unwrap(),
            951_782_400_000
        );
        assert_eq!(parse_time("1700000000000", 0).unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("30m", now).unwrap(), now - 1_800_000);
        assert_eq!(parse_time("2d", now).unwrap(), now - 172_800_000);
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "5y",
            "m",
            "99999999999999999999d",
        ] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn conditions_are_checked() {
        let fields = conditions(&[
            "status=failed,parked".to_string(),
            "type=checkout".to_string(),
        ])
        .unwrap();
        assert_eq!(
            Value::Object(fields),
            serde_json::json!({"status": ["failed", "parked"], "type": "checkout"})
        );
        assert!(conditions(&["status".to_string()]).is_err());
        assert!(conditions(&["colour=red".to_string()]).is_err());
        assert!(conditions(&[]).is_err());
        assert!(conditions(&["type=a".to_string(), "type=b".to_string()]).is_err());
    }
}
