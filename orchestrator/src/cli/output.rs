//! Printing: colour (only on a terminal, never with NO_COLOR), aligned tables, and user data made
//! safe for a terminal (control characters escaped, so an id cannot carry escape sequences).

use std::fmt::Write as _;
use std::io::Write as _;

use anstyle::{AnsiColor, Style};
use serde_json::Value;

use super::args::ColorWhen;
use super::exit::CliError;

/// Text styles.
pub(crate) const BOLD: Style = Style::new().bold();
pub(crate) const DIM: Style = Style::new().dimmed();
pub(crate) const RED: Style = AnsiColor::Red.on_default();
pub(crate) const GREEN: Style = AnsiColor::Green.on_default();
pub(crate) const YELLOW: Style = AnsiColor::Yellow.on_default();
pub(crate) const CYAN: Style = AnsiColor::Cyan.on_default();

/// Sets the colour choice for everything printed after.
pub(crate) fn init_color(when: ColorWhen) {
    let choice = match when {
        ColorWhen::Auto => anstream::ColorChoice::Auto,
        ColorWhen::Always => anstream::ColorChoice::Always,
        ColorWhen::Never => anstream::ColorChoice::Never,
    };
    choice.write_global();
}

/// `text` in `style` (the escapes are stripped later when colour is off).
pub(crate) fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// The style of a run or step state.
pub(crate) fn state_style(state: &str) -> Style {
    match state {
        "completed" | "succeeded" => GREEN,
        "failed" | "terminated" | "compensation_failed" | "cut_short" => RED,
        "parked" | "retrying" | "cancelled" | "paused" | "unfinished" => YELLOW,
        "running" | "waiting" | "in_flight" => CYAN,
        _ => Style::new(),
    }
}

/// User data made safe to print: control characters (escape sequences, NUL, newlines) are shown
/// escaped, and very long text is cut.
pub(crate) fn safe(text: &str) -> String {
    const MAX: usize = 400;
    let mut out = String::with_capacity(text.len().min(MAX));
    for (count, c) in text.chars().enumerate() {
        if count == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The width a cell takes on a terminal (colour escapes excluded).
fn width(cell: &str) -> usize {
    let mut width = 0;
    let mut chars = cell.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip a CSI sequence: ESC [ ... final byte.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            width += 1;
        }
    }
    width
}

/// Rows aligned in columns under a bold header (cells may hold colour escapes).
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (column, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(column) {
                *w = (*w).max(width(cell));
            }
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let last = cells.len().saturating_sub(1);
        for (column, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if column < last {
                let pad = widths
                    .get(column)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(width(cell));
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        // No trailing spaces.
        while out.ends_with(' ') {
            out.pop();
        }
        out.push('\n');
    };
    let header: Vec<String> = header.iter().map(|h| paint(BOLD, h)).collect();
    line(&mut out, &header);
    for row in rows {
        line(&mut out, row);
    }
    out
}

/// Prints text to standard output (colour stripped when it is not wanted).
pub(crate) fn print(text: &str) {
    let mut out = anstream::stdout();
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Prints a JSON document (pretty) to standard output.
pub(crate) fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    print(&format!("{text}\n"));
}

/// Prints a JSON document on one line (for streams of events).
pub(crate) fn print_json_line(value: &Value) {
    print(&format!("{value}\n"));
}

/// Prints an error to standard error: as text with its hint, or as JSON with `--json`.
pub(crate) fn print_error(error: &CliError, json: bool) {
    let mut err = anstream::stderr();
    if json {
        let value = serde_json::json!({
            "error": {
                "code": error.code,
                "message": error.message,
                "hint": error.hint,
                "exit_code": error.exit.code(),
            }
        });
        let _ = writeln!(err, "{value}");
    } else {
        let _ = writeln!(
            err,
            "{} {}",
            paint(RED.bold(), "error:"),
            safe(&error.message)
        );
        if let Some(hint) = &error.hint {
            let _ = writeln!(err, "{} {}", paint(BOLD, "hint:"), hint);
        }
    }
    let _ = err.flush();
}

/// A duration in milliseconds, short: `850ms`, `12.3s`, `4m05s`, `2h10m`, `3d4h`.
pub(crate) fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1_000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1_000 % 60),
        3_600_000..86_400_000 => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
        _ => format!("{}d{}h", ms / 86_400_000, ms / 3_600_000 % 24),
    }
}

/// A time as RFC 3339, or `-`.
pub(crate) fn time(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_string(), crate::inspect::rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(safe("a\u{1b}[31mred\0\n"), "a\\u{1b}[31mred\\u{0}\\n");
        assert_eq!(safe("quote \"ok\""), "quote \"ok\"");
        assert!(safe(&"x".repeat(1_000)).ends_with('…'));
    }

    #[test]
    fn tables_align_without_counting_colour() {
        let rows = vec![
            vec![paint(RED, "failed"), "a".to_string()],
            vec!["completed".to_string(), "bb".to_string()],
        ];
        let text = table(&["STATE", "ID"], &rows);
        let plain: Vec<String> = text
            .lines()
            .map(|line| anstream::adapter::strip_str(line).to_string())
            .collect();
        assert_eq!(plain, ["STATE      ID", "failed     a", "completed  bb"]);
    }

    #[test]
    fn durations() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(7_800_000), "2h10m");
        assert_eq!(duration(-5), "0ms");
    }
}
