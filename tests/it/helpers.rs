//! Spawning a simulator and a paysync app wired to it, with a fresh ledger per test (a SQLite
//! file, or a PostgreSQL database given by the test).

use std::path::PathBuf;

use jiff::civil::{Date, date};
use paysync::app::{App, created_window};
use paysync::config;
use paysync::domain::DecisionKind;
use paysync::pipeline::RunOptions;
use paysync::store::postgres::scratch::ScratchDb;
use paysync::summary::Summary;
use paysync_sim::fixtures::ConfigBuilder;
use paysync_sim::sample::ExpectedOutcome;
use paysync_sim::{SimOptions, Simulator};

/// The order and the operation most tests start from (shared with the demo and the bench).
pub use paysync_sim::fixtures::{order, paid_op};

/// "Today" for every test entry.
pub const TODAY: Date = date(2026, 11, 22);

pub struct TestEnv {
    pub sim: Simulator,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// The PostgreSQL database of the ledger, when the suite runs on that backend; dropped last.
    pub(crate) _db: Option<ScratchDb>,
}

/// Set to `postgres` (with `PAYSYNC_TEST_POSTGRES_URL`), every [`TestEnv`] that names no ledger
/// of its own gets a fresh PostgreSQL database instead of a SQLite file: `.ci/run` runs the daemon,
/// claims and sync suites a second time so.
pub const LEDGER_ENV: &str = "PAYSYNC_TEST_LEDGER";

/// A scratch PostgreSQL database when [`LEDGER_ENV`] asks for one.
async fn default_postgres_ledger() -> Option<ScratchDb> {
    match std::env::var(LEDGER_ENV).as_deref() {
        Ok("postgres") => Some(
            ScratchDb::create("TestEnv")
                .await
                .unwrap_or_else(|| panic!("{LEDGER_ENV}=postgres needs PAYSYNC_TEST_POSTGRES_URL")),
        ),
        Ok("sqlite") | Err(_) => None,
        Ok(other) => panic!("{LEDGER_ENV}: expected sqlite or postgres, got {other:?}"),
    }
}

impl TestEnv {
    pub async fn start() -> TestEnv {
        Self::start_with(SimOptions::default(), "").await
    }

    /// `extra_account_toml` is appended to the account table (e.g. `order_pattern = '...'`).
    pub async fn start_with(opts: SimOptions, extra_account_toml: &str) -> TestEnv {
        Self::start_on(opts, extra_account_toml, None).await
    }

    /// [`TestEnv::start_with`] with the ledger at `store_url` (`None`: a SQLite file in `dir`).
    pub async fn start_on(
        opts: SimOptions,
        extra_account_toml: &str,
        store_url: Option<&str>,
    ) -> TestEnv {
        Self::start_built(opts, store_url, |b| b.account_line(extra_account_toml)).await
    }

    /// A second account, `mp`, reading the simulator's Mercado Pago with its static token or
    /// (`oauth`) its OAuth client; `extra_account_toml` goes into that account's table.
    pub async fn start_mercadopago(
        opts: SimOptions,
        oauth: bool,
        extra_account_toml: &str,
        store_url: Option<&str>,
    ) -> TestEnv {
        Self::start_built(opts, store_url, |b| {
            b.mercadopago_account("mp", oauth)
                .account_line(extra_account_toml)
        })
        .await
    }

    /// The common configuration, then `accounts` adds to the builder (whose last account is
    /// the Mobbex `main`).
    async fn start_built(
        opts: SimOptions,
        store_url: Option<&str>,
        accounts: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    ) -> TestEnv {
        let sim = Simulator::start(opts).await.expect("simulator starts");
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("sync.toml");
        let mut builder = ConfigBuilder::for_simulator(&sim, dir.path().join("ledger.db"));
        let db = match store_url {
            Some(_) => None,
            None => default_postgres_ledger().await,
        };
        if let Some(url) = store_url.or(db.as_ref().map(|d| d.url.as_str())) {
            builder = builder.store_url(url);
        }
        let builder = builder
            .daemon("retry_budget = \"2s\"")
            // Short leases: a takeover in a test waits seconds, not the production 30 s.
            .daemon("lease = \"2s\"")
            .erp("max_in_flight = 4")
            .erp("timeout = \"5s\"")
            .erp("commit_horizon = \"4s\"")
            .account_line("webhook_token = \"hook-secret-token\"");
        accounts(builder).write(&config_path).unwrap();
        TestEnv {
            sim,
            dir,
            config_path,
            _db: db,
        }
    }

    pub fn settings(&self) -> config::Settings {
        config::load_with_env(&self.config_path, &Default::default()).expect("test config loads")
    }

    /// Everything the ledger holds, as text: the SQLite files' bytes (WAL included), or every
    /// row of every table of the PostgreSQL database.
    pub async fn ledger_contents(&self) -> String {
        let url = self.settings().store.url;
        if !paysync::store::postgres::is_postgres_url(&url) {
            let mut bytes = Vec::new();
            for entry in std::fs::read_dir(self.dir.path()).unwrap() {
                let p = entry.unwrap().path();
                if p.to_string_lossy().contains("ledger") {
                    bytes.extend(std::fs::read(p).unwrap());
                }
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let mut text = String::new();
        for t in tables {
            let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT t::text FROM \"{t}\" t"
            )))
            .fetch_all(&mut conn)
            .await
            .unwrap();
            text.push_str(&rows.join("\n"));
        }
        text
    }

    pub async fn app(&self) -> App {
        App::build(self.settings()).await.unwrap().with_today(TODAY)
    }

    /// Sync operations created between two dates, as `paysync sync --since --until` does.
    pub async fn sync(&self, since: Date, until: Date, dry_run: bool) -> Summary {
        let app = self.app().await;
        sync_with(&app, since, until, dry_run).await
    }
}

pub async fn sync_with(app: &App, since: Date, until: Date, dry_run: bool) -> Summary {
    let window = created_window(&app.settings.daemon.timezone, since, until);
    let opts = RunOptions {
        dry_run,
        collect_booked: true,
        ..RunOptions::default()
    };
    match app
        .engine
        .sync_window(&app.accounts[0], window, &opts)
        .await
    {
        Ok(s) => s,
        Err((s, e)) => panic!("sync failed: {e} (after {s})"),
    }
}

/// The final ERPNext state must be exactly what the oracle expects: one submitted entry per
/// booked operation, none for the others, nothing else created since `before`.
pub fn assert_exactly_expected(
    sim: &paysync_sim::Simulator,
    expected: &[paysync_sim::sample::Expected],
    before: &[String],
) {
    use std::collections::HashMap;
    let mut by_ref: HashMap<String, usize> = HashMap::new();
    let new: Vec<_> = sim
        .payment_entries()
        .into_iter()
        .filter(|e| !before.contains(&e.name))
        .collect();
    for e in &new {
        assert_eq!(e.docstatus, 1, "{} is not submitted", e.name);
        *by_ref
            .entry(e.reference_no.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let mut booked = 0;
    for e in expected {
        let n = by_ref.get(&e.uid).copied().unwrap_or(0);
        if e.outcome.is_booked() {
            booked += 1;
            assert_eq!(n, 1, "{} must be booked exactly once, found {n}", e.uid);
        } else {
            assert_eq!(n, 0, "{} ({:?}) must not be booked", e.uid, e.outcome);
        }
    }
    assert_eq!(new.len(), booked, "entries beyond the expected ones");
}

/// The decision paysync must record for an operation with this outcome: the oracle names it as
/// `rules.md` does; this maps the name to paysync's type.
pub fn expected_kind(o: &ExpectedOutcome) -> DecisionKind {
    DecisionKind::parse(o.decision())
        .unwrap_or_else(|| panic!("the oracle names an unknown decision {:?}", o.decision()))
}

/// The final ERPNext state must equal the oracle's **field by field**: for every booked
/// operation exactly one submitted entry, from the order's customer, for the operation's total;
/// the initial one allocated to its order with the expected amount, every additional one
/// unallocated on the customer's receivable account; posted on `today`. Nothing else created
/// since `before`.
pub fn assert_books_exactly(
    sim: &paysync_sim::Simulator,
    expected: &[paysync_sim::sample::Expected],
    before: &[String],
    today: Date,
) {
    use std::collections::HashMap;
    assert_exactly_expected(sim, expected, before);
    let ops: HashMap<String, paysync_sim::SimOperation> = sim
        .operations()
        .into_iter()
        .map(|o| (o.uid.clone(), o))
        .collect();
    let entries: HashMap<String, paysync_sim::SimPaymentEntry> = sim
        .payment_entries()
        .into_iter()
        .filter(|e| !before.contains(&e.name))
        .filter_map(|e| Some((e.reference_no.clone()?, e)))
        .collect();
    let mut wrong = Vec::new();
    for exp in expected {
        let (order, party, allocated) = match &exp.outcome {
            ExpectedOutcome::BookedInitial {
                order,
                party,
                allocated,
            } => (order, party, Some(*allocated)),
            ExpectedOutcome::BookedAdditional { order, party } => (order, party, None),
            _ => continue,
        };
        let e = &entries[&exp.uid];
        let op = &ops[&exp.uid];
        let mut check = |what: &str, ok: bool| {
            if !ok {
                wrong.push(format!("{} ({}): {what}: {e:?}", exp.uid, order));
            }
        };
        check("payment type", e.payment_type == "Receive");
        check("company", e.company == "Mi Empresa SA");
        check("party", e.party_type == "Customer" && &e.party == party);
        check(
            "amounts",
            e.paid_amount == op.total && e.received_amount == op.total,
        );
        check("paid_to", e.paid_to == "Mobbex - MESA");
        check(
            "mode of payment",
            e.mode_of_payment.as_deref() == Some("Mobbex"),
        );
        check(
            "dates",
            e.posting_date == today && e.reference_date == Some(today),
        );
        match allocated {
            Some(amount) => check(
                "initial: one reference row to the order with the expected allocation",
                e.references.len() == 1
                    && e.references[0].reference_doctype == "Sales Order"
                    && &e.references[0].reference_name == order
                    && e.references[0].allocated_amount == amount,
            ),
            None => check(
                "additional: unallocated on the customer's receivable account",
                e.references.is_empty()
                    && e.paid_from == "Deudores - MESA"
                    && e.unallocated_amount == op.total,
            ),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} entries differ from the oracle:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Run the real `paysync` binary with the test's configuration.
pub fn paysync_cmd(env: &TestEnv, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_paysync"))
        .arg("--config")
        .arg(&env.config_path)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// `POST /api/resource/Payment Entry` requests the simulator has received so far, counted as
/// they arrive (before their latency, whatever becomes of them).
pub fn creates_received(sim: &Simulator) -> u64 {
    let stats = sim.stats();
    stats
        .by_endpoint
        .get("POST /api/resource/Payment Entry")
        .copied()
        .unwrap_or(0)
}

/// Until a create beyond the first `before` is in ERPNext's hands (received, not necessarily
/// committed), at most 20 s. (Not `max_concurrent_writes`: `erp-setup`'s own write counts
/// there.) The simulator has no signal for an arriving request: polled every 20 ms.
pub async fn until_a_create_arrives(sim: &Simulator, before: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while creates_received(sim) == before {
        assert!(std::time::Instant::now() < deadline, "no create came");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Held by the tests that load both cores for seconds (`series.rs`) and by the ones that assert
/// latencies (`slowloris.rs`), so that neither runs beside the other: on a 2-core machine a p99
/// bound measured next to a saturating test measures that test.
pub static CPU_HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A submitted Payment Entry typed by hand in ERPNext (or left there by a crashed run), put
/// straight into the simulator: a "Receive" from `party` to the Mobbex account, or a "Pay" the
/// other way, posted today. Its name.
pub fn entry_by_hand(
    env: &TestEnv,
    reference_no: &str,
    payment_type: &str,
    party: &str,
    amount: rust_decimal::Decimal,
) -> String {
    let name = format!(
        "ACC-PAY-2026-{:05}",
        env.sim.payment_entries().len() + 90_000
    );
    let (paid_from, paid_to) = if payment_type == "Pay" {
        ("Mobbex - MESA", "Deudores - MESA")
    } else {
        ("Deudores - MESA", "Mobbex - MESA")
    };
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("America/Argentina/Buenos_Aires").unwrap())
        .date();
    env.sim
        .insert_payment_entry_directly(paysync_sim::SimPaymentEntry {
            name: name.clone(),
            naming_series: paysync_sim::DEFAULT_NAMING_SERIES.into(),
            docstatus: 1,
            payment_type: payment_type.into(),
            company: "Mi Empresa SA".into(),
            party_type: "Customer".into(),
            party: party.into(),
            paid_from: paid_from.into(),
            paid_to: paid_to.into(),
            mode_of_payment: Some("Mobbex".into()),
            paid_amount: amount,
            received_amount: amount,
            reference_no: Some(reference_no.into()),
            reference_date: Some(today),
            posting_date: today,
            references: Vec::new(),
            deductions: Vec::new(),
            unallocated_amount: amount,
            paysync_operation: None,
            amended_from: None,
        });
    name
}
