//! Every row's exactly-once check: the Payment Entries paysync created in the simulator (those
//! not there before it ran) are exactly the expected ones — each operation to book, once,
//! submitted; nothing for the others; nothing else. A row that books faster by booking wrong
//! must not produce a figure: a failed check ends the benchmark with what differed.
//!
//! The expected set is the oracle's (`sample::populate`) for the backfill, and the burst's own
//! for the webhook burst (every webhooked operation is a paid one on its own order).

use std::collections::{HashMap, HashSet};

use paysync_sim::Simulator;
use paysync_sim::sample::Expected;

/// Names of the entries already in the simulator (the sample's "typed by hand" ones).
pub fn entries_before(sim: &Simulator) -> HashSet<String> {
    sim.entry_names().into_iter().collect()
}

pub use paysync_sim::sample::to_book;

/// The check; `Ok` with the number of entries created, else an error listing (the first ten of)
/// the missing, the duplicated, the unexpected and the unsubmitted.
pub fn exactly_once(
    sim: &Simulator,
    expected: &[Expected],
    before: &HashSet<String>,
    row: &str,
) -> anyhow::Result<u64> {
    let new: Vec<_> = sim
        .payment_entries()
        .into_iter()
        .filter(|e| !before.contains(&e.name))
        .collect();
    let mut by_ref: HashMap<&str, usize> = HashMap::new();
    let mut unsubmitted = Vec::new();
    for e in &new {
        if e.docstatus != 1 {
            unsubmitted.push(e.name.clone());
        }
        *by_ref
            .entry(e.reference_no.as_deref().unwrap_or(""))
            .or_default() += 1;
    }
    let (mut missing, mut duplicated, mut unexpected) = (Vec::new(), Vec::new(), Vec::new());
    for e in expected {
        let n = by_ref.remove(e.uid.as_str()).unwrap_or(0);
        match (e.outcome.is_booked(), n) {
            (true, 0) => missing.push(e.uid.clone()),
            (true, 1) | (false, 0) => {}
            (true, n) => duplicated.push(format!("{} ×{n}", e.uid)),
            (false, n) => unexpected.push(format!("{} ({}) ×{n}", e.uid, e.outcome.decision())),
        }
    }
    // Entries for operations the oracle does not know at all.
    unexpected.extend(by_ref.into_iter().map(|(r, n)| format!("{r:?} ×{n}")));
    if missing.is_empty()
        && duplicated.is_empty()
        && unexpected.is_empty()
        && unsubmitted.is_empty()
    {
        return Ok(new.len() as u64);
    }
    let list = |what: &str, v: &mut Vec<String>| {
        v.sort();
        let shown: Vec<&str> = v.iter().take(10).map(String::as_str).collect();
        format!(
            "{what}: {}{}{}",
            v.len(),
            if v.is_empty() { "" } else { " — " },
            shown.join(", ")
        )
    };
    anyhow::bail!(
        "{row}: not exactly once ({} entries created, {} expected); {}; {}; {}; {}",
        new.len(),
        to_book(expected),
        list("missing", &mut missing),
        list("duplicated", &mut duplicated),
        list("unexpected", &mut unexpected),
        list("not submitted", &mut unsubmitted),
    )
}

#[cfg(test)]
mod tests {
    use paysync_sim::sample::{Expected, ExpectedOutcome};
    use paysync_sim::{SimOptions, SimPaymentEntry, Simulator};
    use rust_decimal::Decimal;

    fn entry(n: usize, reference: &str) -> SimPaymentEntry {
        let date = jiff::civil::date(2026, 11, 1);
        SimPaymentEntry {
            name: format!("ACC-PAY-2026-{n:05}"),
            naming_series: paysync_sim::DEFAULT_NAMING_SERIES.into(),
            docstatus: 1,
            payment_type: "Receive".into(),
            company: "Mi Empresa SA".into(),
            party_type: "Customer".into(),
            party: "C".into(),
            paid_from: "Deudores - MESA".into(),
            paid_to: "Mobbex - MESA".into(),
            mode_of_payment: Some("Mobbex".into()),
            paid_amount: Decimal::ONE,
            received_amount: Decimal::ONE,
            reference_no: Some(reference.into()),
            reference_date: Some(date),
            posting_date: date,
            references: Vec::new(),
            deductions: Vec::new(),
            unallocated_amount: Decimal::ONE,
            paysync_operation: None,
            amended_from: None,
        }
    }

    fn paid(uid: &str) -> Expected {
        Expected {
            uid: uid.into(),
            outcome: ExpectedOutcome::BookedAdditional {
                order: "O".into(),
                party: "C".into(),
            },
        }
    }

    #[tokio::test]
    async fn missing_duplicated_and_unexpected_entries_are_each_named() {
        let sim = Simulator::start(SimOptions::default()).await.unwrap();
        let hand = entry(1, "typed-by-hand");
        sim.insert_payment_entry_directly(hand);
        let before = super::entries_before(&sim);
        let expected = vec![
            paid("once"),
            paid("twice"),
            paid("never"),
            Expected {
                uid: "rejected".into(),
                outcome: ExpectedOutcome::Rejected,
            },
        ];
        sim.insert_payment_entry_directly(entry(2, "once"));
        assert_eq!(
            super::exactly_once(&sim, &expected[..1], &before, "row").unwrap(),
            1
        );
        for (n, r) in [(3, "twice"), (4, "twice"), (5, "rejected"), (6, "stranger")] {
            sim.insert_payment_entry_directly(entry(n, r));
        }
        let e = super::exactly_once(&sim, &expected, &before, "row")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing: 1 — never"), "{e}");
        assert!(e.contains("duplicated: 1 — twice ×2"), "{e}");
        assert!(e.contains("rejected (rejected) ×1"), "{e}");
        assert!(e.contains("\"stranger\" ×1"), "{e}");
        assert!(!e.contains("typed-by-hand"), "{e}");
        sim.shutdown().await;
    }
}
