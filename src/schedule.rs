//! Cron expressions: parsing (5 fields, or 6 with seconds) and "when is the next run".
//!
//! `croner` is used instead of the `cron` crate because `cron` rejects standard 5-field
//! expressions (see ARCHITECTURE.md, "Deviations from the stack card").

use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// Parse a cron expression; the error says what was wrong.
pub fn parse(expr: &str) -> Result<Cron, String> {
    let fields = expr.split_whitespace().count();
    if !(expr.trim_start().starts_with('@') || fields == 5 || fields == 6) {
        return Err(format!(
            "expected a cron expression of 5 fields (min hour day month weekday) or 6 (with seconds first), got {expr:?}"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| format!("invalid cron expression {expr:?}: {e}"))
}

/// The first time strictly after `after` that matches `cron`, in the zone of `after`.
pub fn next_after(cron: &Cron, after: &jiff::Zoned) -> Option<jiff::Zoned> {
    cron.find_next_occurrence(after, false).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_fields() {
        assert!(parse("*/5 * * * *").is_ok());
        assert!(parse("0 */5 * * * *").is_ok());
        assert!(parse("every five").is_err());
        assert!(parse("61 * * * *").is_err());
    }

    #[test]
    fn next_run_is_in_the_configured_zone() {
        let c = parse("0 3 * * *").unwrap();
        let now: jiff::Zoned = "2026-11-22T10:00:00-03:00[America/Argentina/Buenos_Aires]"
            .parse()
            .unwrap();
        let next = next_after(&c, &now).unwrap();
        assert_eq!(
            next.to_string(),
            "2026-11-23T03:00:00-03:00[America/Argentina/Buenos_Aires]"
        );
    }
}
