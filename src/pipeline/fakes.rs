//! In-memory fakes of the traits the engine talks to — [`FakeErp`] for `Erp`, [`FakeSource`] for
//! `PaymentSource` — and a [`Harness`] that wires a real [`Engine`] to them and to a real SQLite
//! ledger on a temporary file, for the engine's unit tests.
//!
//! The fake ERP keeps what a real ERPNext keeps for these tests (orders, entries with their
//! `reference_no`, allocation and guard value) and answers each create from a script: commit,
//! refuse without committing, or commit and lose the answer — the three things a real server does.

use std::collections::{HashMap, HashSet, VecDeque};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use jiff::civil::Date;
use rust_decimal::Decimal;
use secrecy::SecretString;

use super::run::RunCtx;
use super::{AccountCtx, Engine, RunOptions};
use crate::clock::TokioClock;
use crate::config::AccountSettings;
use crate::domain::{
    ExistingEntry, Operation, OperationEntry, PaymentEntry, PaymentStatus, SalesOrder,
};
use crate::erp::{CreatedEntry, Erp, ErpError};
use crate::source::{Fetched, Page, PaymentSource, SourceError, SourceKind, Window};
use crate::store::{Ledger, LedgerRow};
use crate::summary::Summary;

pub const TODAY: Date = jiff::civil::date(2026, 10, 6);
pub const COMPANY: &str = "Mi Empresa SA";

/// How the fake ERP answers one create. A scripted refusal comes before the guard's check (a
/// validation error is raised before the insert); a commit meets the guard.
pub enum Answer {
    /// Created, answered.
    Commit,
    /// Refused before anything was committed.
    Fail(ErpError),
    /// Committed, but the answer is this error (a timeout, a proxy's 502).
    CommitThenFail(ErpError),
    /// Held at the server: `reached` is notified when the create arrives, and it commits (and is
    /// answered) once `release` is notified.
    Hold {
        reached: Arc<tokio::sync::Notify>,
        release: Arc<tokio::sync::Notify>,
    },
}

/// One entry the fake ERP holds.
#[derive(Debug, Clone)]
pub struct Held {
    pub name: String,
    pub entry: PaymentEntry,
    /// 1 submitted, 2 cancelled.
    pub docstatus: i32,
}

#[derive(Default)]
pub struct ErpState {
    pub orders: HashMap<String, SalesOrder>,
    pub entries: Vec<Held>,
    /// Answers to the next creates of each operation, in turn; when none is left, they commit.
    pub script: HashMap<String, VecDeque<Answer>>,
    /// The server-side duplicate guard is installed (unique guard value, cancelled ones too).
    pub guard: bool,
    /// Errors for the next lookups by `reference_no`, in turn.
    pub lookup_errors: VecDeque<ErpError>,
    /// Every create received, in order.
    pub creates: Vec<PaymentEntry>,
    /// Lookups by `reference_no` received.
    pub lookups: usize,
    /// Entries that commit at a later (tokio) instant: a create another process sent.
    pub in_flight: Vec<(tokio::time::Instant, PaymentEntry)>,
    /// Every reversal created, in order.
    pub reversals: Vec<crate::domain::reversal::ReversalEntry>,
}

#[derive(Default)]
pub struct FakeErp {
    pub state: Mutex<ErpState>,
    /// Notified after each lookup by `reference_no`.
    looked_up: tokio::sync::Notify,
}

impl FakeErp {
    pub fn with<R>(&self, f: impl FnOnce(&mut ErpState) -> R) -> R {
        let mut s = self.state.lock().unwrap();
        let now = tokio::time::Instant::now();
        let (due, later) = std::mem::take(&mut s.in_flight)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        s.in_flight = later;
        for (_, entry) in due {
            commit(&mut s, entry);
        }
        f(&mut s)
    }

    pub fn add_order(&self, name: &str, total: &str) {
        self.with(|s| s.orders.insert(name.into(), order(name, total)));
    }

    /// How the next create of operation `uid` is answered.
    pub fn answer(&self, uid: &str, a: Answer) {
        self.with(|s| s.script.entry(uid.into()).or_default().push_back(a));
    }

    /// Hold the next create of `uid` at the server ([`Answer::Hold`]): notified when it arrives,
    /// it commits once the second is notified.
    pub fn hold(&self, uid: &str) -> (Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>) {
        let (reached, release) = (Arc::default(), Arc::default());
        let answer = Answer::Hold {
            reached: Arc::clone(&reached),
            release: Arc::clone(&release),
        };
        self.answer(uid, answer);
        (reached, release)
    }

    /// Commit an entry as another process would.
    pub fn commit(&self, entry: PaymentEntry) -> String {
        self.with(|s| commit(s, entry))
    }

    /// Commit `entry` once `after` has passed (a create another process has in flight).
    pub fn commit_later(&self, entry: PaymentEntry, after: Duration) {
        let at = tokio::time::Instant::now() + after;
        self.with(|s| s.in_flight.push((at, entry)));
    }

    /// The uids of the creates received, in order.
    pub fn created_uids(&self) -> Vec<String> {
        self.with(|s| s.creates.iter().map(|e| e.reference_no.clone()).collect())
    }

    pub fn entry_count(&self) -> usize {
        self.with(|s| s.entries.len())
    }

    /// Once `n` lookups by `reference_no` have been received in all.
    pub async fn lookups_reach(&self, n: usize) {
        loop {
            let next = self.looked_up.notified();
            if self.with(|s| s.lookups) >= n {
                return;
            }
            next.await;
        }
    }
}

#[async_trait]
impl Erp for FakeErp {
    fn api_name(&self) -> &'static str {
        "fake-erp"
    }

    /// By name only: the engine's own tests keep the default `order_field`.
    async fn sales_orders(
        &self,
        field: &str,
        names: &[String],
    ) -> Result<HashMap<String, Vec<SalesOrder>>, ErpError> {
        assert_eq!(field, "name", "the fake ERP looks orders up by name only");
        Ok(self.with(|s| {
            (names.iter())
                .filter_map(|n| s.orders.get(n).map(|o| (n.clone(), vec![o.clone()])))
                .collect()
        }))
    }

    async fn orders_with_entries(&self, names: &[String]) -> Result<HashSet<String>, ErpError> {
        Ok(self.with(|s| {
            (s.entries.iter())
                .filter(|h| h.docstatus == 1)
                .filter_map(|h| h.entry.allocation.as_ref())
                .map(|a| a.sales_order.clone())
                .filter(|o| names.contains(o))
                .collect()
        }))
    }

    async fn entries_by_reference(
        &self,
        refs: &[String],
    ) -> Result<HashMap<String, ExistingEntry>, ErpError> {
        let found = self.with(|s| {
            s.lookups += 1;
            if let Some(e) = s.lookup_errors.pop_front() {
                return Err(e);
            }
            Ok((s.entries.iter())
                .filter(|h| h.docstatus != 2 && refs.contains(&h.entry.reference_no))
                .map(|h| {
                    let uid = h.entry.reference_no.clone();
                    let e = ExistingEntry {
                        name: h.name.clone(),
                        reference_no: uid.clone(),
                        docstatus: h.docstatus,
                    };
                    (uid, e)
                })
                .collect())
        });
        self.looked_up.notify_waiters();
        found
    }

    async fn mode_of_payment_account(&self, _: &str, _: &str) -> Result<String, ErpError> {
        Ok("Mobbex - MESA".into())
    }

    async fn audit_entries(
        &self,
        _q: &crate::erp::AuditQuery<'_>,
    ) -> Result<Vec<crate::domain::audit::AuditEntry>, ErpError> {
        Ok(Vec::new())
    }

    async fn create_reversal(
        &self,
        entry: &crate::domain::reversal::ReversalEntry,
    ) -> Result<CreatedEntry, ErpError> {
        let n = self.with(|s| {
            s.reversals.push(entry.clone());
            s.reversals.len()
        });
        Ok(CreatedEntry {
            name: format!("ACC-PAY-2026-R{n:04}"),
        })
    }

    async fn create_entry(&self, entry: &PaymentEntry) -> Result<CreatedEntry, ErpError> {
        let (answer, duplicate) = self.with(|s| {
            s.creates.push(entry.clone());
            let duplicate =
                s.guard && (s.entries.iter()).any(|h| h.entry.guard_key() == entry.guard_key());
            let scripted = s.script.get_mut(&entry.reference_no);
            let answer = scripted.and_then(|q| q.pop_front());
            (answer.unwrap_or(Answer::Commit), duplicate)
        });
        match answer {
            Answer::Commit if duplicate => Err(ErpError::Duplicate(format!(
                "Duplicate entry '{}' for key 'paysync_operation'",
                entry.guard_key()
            ))),
            Answer::Commit => Ok(CreatedEntry {
                name: self.commit(entry.clone()),
            }),
            Answer::Fail(e) => Err(e),
            Answer::CommitThenFail(e) => {
                self.commit(entry.clone());
                Err(e)
            }
            Answer::Hold { reached, release } => {
                reached.notify_one();
                release.notified().await;
                Ok(CreatedEntry {
                    name: self.commit(entry.clone()),
                })
            }
        }
    }

    async fn whoami(&self) -> Result<String, ErpError> {
        Ok("paysync@example.com".into())
    }

    async fn guard_installed(&self) -> Result<bool, ErpError> {
        Ok(self.with(|s| s.guard))
    }

    async fn entry_by_guard(&self, value: &str) -> Result<Option<ExistingEntry>, ErpError> {
        Ok(self.with(|s| {
            (s.entries.iter())
                .find(|h| h.entry.guard_key() == value)
                .map(|h| ExistingEntry {
                    name: h.name.clone(),
                    reference_no: h.entry.reference_no.clone(),
                    docstatus: h.docstatus,
                })
        }))
    }

    async fn entries_of_operation(
        &self,
        reference_no: &str,
    ) -> Result<Vec<OperationEntry>, ErpError> {
        Ok(self.with(|s| {
            (s.entries.iter())
                .filter(|h| h.entry.reference_no == reference_no)
                .map(|h| OperationEntry {
                    name: h.name.clone(),
                    docstatus: h.docstatus,
                    guard_value: Some(h.entry.guard_key().to_string()),
                    payment_type: Some("Receive".into()),
                    party: Some(h.entry.party.clone()),
                    paid_amount: Some(h.entry.paid_amount),
                    posting_date: Some(h.entry.posting_date.to_string()),
                })
                .collect()
        }))
    }
}

fn commit(s: &mut ErpState, entry: PaymentEntry) -> String {
    let name = format!("ACC-PAY-2026-{:05}", s.entries.len() + 1);
    s.entries.push(Held {
        name: name.clone(),
        entry,
        docstatus: 1,
    });
    name
}

/// A payment source holding a fixed set of operations.
#[derive(Default)]
pub struct FakeSource {
    pub ops: Mutex<Vec<Operation>>,
}

impl FakeSource {
    pub fn add(&self, op: Operation) {
        self.ops.lock().unwrap().push(op);
    }
}

#[async_trait]
impl PaymentSource for FakeSource {
    async fn list_page(&self, window: &Window, page: u32) -> Result<Page, SourceError> {
        let mut ops: Vec<Operation> = (self.ops.lock().unwrap().iter())
            .filter(|o| o.created >= window.from && o.created <= window.to)
            .cloned()
            .collect();
        ops.sort_by_key(|o| o.created);
        let start = (page as usize * 50).min(ops.len());
        let end = (start + 50).min(ops.len());
        Ok(Page {
            items: ops[start..end].iter().cloned().map(Fetched::Op).collect(),
            is_last: end == ops.len(),
            total: None,
        })
    }

    async fn get_operation(&self, uid: &str) -> Result<Operation, SourceError> {
        let ops = self.ops.lock().unwrap();
        (ops.iter().find(|o| o.uid == uid).cloned()).ok_or_else(|| SourceError::NotFound {
            api: "fake",
            uid: uid.into(),
        })
    }

    async fn check(&self) -> Result<(), SourceError> {
        Ok(())
    }
}

pub fn paid() -> PaymentStatus {
    PaymentStatus::Paid
}

/// An operation created `minute` minutes into 2026-10-05 (UTC).
pub fn op(
    uid: &str,
    reference: &str,
    status: PaymentStatus,
    total: &str,
    minute: i64,
) -> Operation {
    let base: Timestamp = "2026-10-05T12:00:00Z".parse().unwrap();
    Operation {
        uid: uid.into(),
        reference: reference.into(),
        status,
        source_status: "200".into(),
        total: Decimal::from_str(total).unwrap(),
        currency: "ARS".into(),
        created: base + jiff::SignedDuration::from_mins(minute),
        updated: None,
        is_child: false,
        is_test: false,
        marketplace_order: None,
        refunds: Vec::new(),
        fees: Vec::new(),
    }
}

/// The entry the rules would ask for: `op`'s total, allocated to its order.
pub fn entry_for(op: &Operation, order: &str) -> PaymentEntry {
    PaymentEntry {
        company: COMPANY.into(),
        party: "Cliente Demo".into(),
        paid_amount: op.total,
        received_amount: op.total,
        mode_of_payment: "Mobbex".into(),
        paid_to: "Mobbex - MESA".into(),
        paid_from: None,
        reference_no: op.uid.clone(),
        reference_date: TODAY,
        posting_date: TODAY,
        allocation: Some(crate::domain::Allocation {
            sales_order: order.into(),
            allocated_amount: op.total,
        }),
        guard_value: None,
        naming_series: None,
        deductions: Vec::new(),
    }
}

/// A submitted order of `total` nothing has paid yet.
pub fn order(name: &str, total: &str) -> SalesOrder {
    let total = Decimal::from_str(total).unwrap();
    SalesOrder {
        name: name.into(),
        customer: "Cliente Demo".into(),
        company: COMPANY.into(),
        currency: "ARS".into(),
        docstatus: 1,
        status: "To Deliver and Bill".into(),
        grand_total: total,
        rounded_total: total,
        advance_paid: Decimal::ZERO,
        per_billed: Decimal::ZERO,
    }
}

pub fn settings() -> AccountSettings {
    AccountSettings {
        name: "main".into(),
        source: SourceKind::Mobbex,
        api_url: "http://127.0.0.1:9/".parse().unwrap(),
        credentials: crate::config::SourceCredentials::Mobbex {
            api_key: SecretString::from("k"),
            access_token: SecretString::from("t"),
        },
        webhook_token: None,
        company: COMPANY.into(),
        mode_of_payment: "Mobbex".into(),
        paid_to: Some("Mobbex - MESA".into()),
        order_pattern: Some(regex::Regex::new(r"^(?P<order>SAL-ORD-\d{4}-\d+)").unwrap()),
        order_source: crate::config::OrderSource::ExternalReference,
        order_field: "name".into(),
        include_test: false,
        reverse_refunds: false,
        schedule: None,
        naming_series: Vec::new(),
        fees: None,
    }
}

/// A real engine on the fakes and a real ledger (a temporary SQLite file), on a clock that
/// follows tokio's time (tests pause it).
pub struct Harness {
    pub engine: Arc<Engine>,
    pub erp: Arc<FakeErp>,
    pub source: Arc<FakeSource>,
    pub ledger: Arc<dyn Ledger>,
    pub account: AccountCtx,
    dir: tempfile::TempDir,
}

impl Harness {
    pub async fn new() -> Harness {
        Harness::with(|e| e).await
    }

    /// Then tokio's time paused (it moves only when every task waits on a timer). Only for tests
    /// that do not use the ledger afterwards: sqlx's pool waits on tokio timers while SQLite
    /// works on its own threads, so paused time would jump past them ("pool timed out").
    pub async fn paused(f: impl FnOnce(Engine) -> Engine) -> Harness {
        let h = Harness::with(f).await;
        tokio::time::pause();
        h
    }

    /// With the engine adjusted by `f` (a retry policy, claim timing, ...).
    pub async fn with(f: impl FnOnce(Engine) -> Engine) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        let ledger = crate::store::open(&url).await.unwrap();
        Harness::on_ledger(ledger, dir, f)
    }

    /// A second "process" sharing this one's ledger (own engine, claims and ERP view).
    pub fn second_process(&self, f: impl FnOnce(Engine) -> Engine) -> Arc<Engine> {
        Arc::new(f(engine(self.erp.clone(), self.ledger.clone())))
    }

    fn on_ledger(
        ledger: Arc<dyn Ledger>,
        dir: tempfile::TempDir,
        f: impl FnOnce(Engine) -> Engine,
    ) -> Harness {
        let erp = Arc::new(FakeErp::default());
        let source = Arc::new(FakeSource::default());
        let engine = Arc::new(f(engine(erp.clone(), ledger.clone())));
        let account = AccountCtx {
            settings: settings(),
            source: source.clone(),
        };
        Harness {
            engine,
            erp,
            source,
            ledger,
            account,
            dir,
        }
    }

    /// Decide these operations as one trigger (a webhook's batch).
    pub async fn run(&self, ops: Vec<Operation>) -> Summary {
        self.run_with(ops, &RunOptions::default()).await
    }

    pub async fn run_with(&self, ops: Vec<Operation>, opts: &RunOptions) -> Summary {
        let items = ops.into_iter().map(Fetched::Op).collect();
        (self.engine.process_operations(&self.account, items, opts))
            .await
            .unwrap()
    }

    /// The context of a run with these options.
    pub(in crate::pipeline) async fn ctx(&self, opts: &RunOptions) -> Arc<RunCtx> {
        let policy = self.engine.policy(&self.account.settings).await.unwrap();
        Arc::new(RunCtx::new(&self.engine, &self.account, policy, opts))
    }

    /// From now on the ledger refuses to record decisions (as a full disk or a lost
    /// connection would), through a trigger in the real SQLite file; everything else works.
    pub async fn refuse_records(&self) {
        use sqlx::Connection;
        let url = format!("sqlite://{}", self.dir.path().join("ledger.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        for event in ["INSERT", "UPDATE"] {
            let sql = format!(
                "CREATE TRIGGER refuse_{event} BEFORE {event} ON operations \
                 BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }

    /// The ledger records decisions again (undoes [`Harness::refuse_records`]).
    pub async fn allow_records(&self) {
        use sqlx::Connection;
        let url = format!("sqlite://{}", self.dir.path().join("ledger.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        for event in ["INSERT", "UPDATE"] {
            let sql = format!("DROP TRIGGER refuse_{event}");
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }

    pub async fn row(&self, uid: &str) -> LedgerRow {
        let rows = self.ledger.rows("main", &[uid.to_string()]).await.unwrap();
        rows.get(uid)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {uid}"))
    }
}

fn engine(erp: Arc<FakeErp>, ledger: Arc<dyn Ledger>) -> Engine {
    Engine::new(erp, ledger, jiff::tz::TimeZone::UTC, 4)
        .with_today(TODAY)
        .with_clock(TokioClock::starting_at(Timestamp::now()))
        .with_retry(crate::retry::RetryPolicy {
            max_total: Duration::from_secs(10),
            ..Default::default()
        })
}
