//! What the ERP says about a batch, asked in batched calls: entries already carrying the
//! operations' ids as `reference_no`, the named orders, which of them already have an entry; and
//! the account's ERP settings (its bank account), cached.
//!
//! A single operation (a webhook) asks all three at once: one round trip of latency — and the
//! daemon reads them *while* the operation is re-read from the source ([`Engine::prefetch`]). A
//! batch first reads the orders, then asks about entries only for the operations the orders make
//! bookable: re-examining operations whose order is missing costs one call, not three.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use jiff::Timestamp;

use super::Engine;
use super::run::{Examined, RunCtx};
use crate::config::AccountSettings;
use crate::domain::{
    AccountPolicy, Decision, DecisionInput, ExistingEntry, FeePolicy, SalesOrder, decide,
};
use crate::erp::ErpError;

/// What the ERP says about a batch.
#[derive(Debug, Clone, Default)]
pub(super) struct Facts {
    /// Entries by operation id (draft or submitted).
    pub existing: HashMap<String, ExistingEntry>,
    /// Orders by name (those that exist).
    pub orders: HashMap<String, SalesOrder>,
    /// Orders a submitted entry references.
    pub with_entries: HashSet<String>,
}

impl Facts {
    /// The part about one order group.
    pub fn for_group(
        &self,
        order: Option<&str>,
        ops: &[Examined],
        read_at: Timestamp,
    ) -> GroupFacts {
        GroupFacts {
            order: order.and_then(|o| self.orders.get(o).cloned()),
            order_has_entry: order.is_some_and(|o| self.with_entries.contains(o)),
            existing: ops
                .iter()
                .filter_map(|e| {
                    let uid = &e.op.uid;
                    self.existing.get(uid).map(|x| (uid.clone(), x.clone()))
                })
                .collect(),
            read_at,
        }
    }
}

/// What the ERP said about one order group.
#[derive(Debug, Clone)]
pub(super) struct GroupFacts {
    pub order: Option<SalesOrder>,
    /// A *submitted* entry references the order now (ERPNext's word: a cancelled one does not).
    pub order_has_entry: bool,
    pub existing: HashMap<String, ExistingEntry>,
    /// When these facts were asked for: only what the ledger booked since can add to them.
    pub read_at: Timestamp,
}

/// ERP facts read ahead for one operation (see [`Engine::prefetch`]).
pub struct Prefetched {
    uid: String,
    order: Option<String>,
    facts: Option<Facts>,
    read_at: Timestamp,
}

/// The ERP's account settings, read once per process.
#[derive(Default)]
pub(super) struct ErpCache {
    /// By (mode of payment, company).
    paid_to: Mutex<HashMap<(String, String), String>>,
}

impl Engine {
    /// The ERP facts about one operation, read *while* the operation itself is being re-read from
    /// the source (a webhook's `reference` is used only as a guess of the order; the guess is used
    /// only if the source confirms it). Saves one ERP round trip on the webhook path.
    pub async fn prefetch(&self, uid: &str, order_guess: Option<&str>) -> Prefetched {
        let uids = [uid.to_string()];
        let names: Vec<String> = order_guess.map(|o| vec![o.to_string()]).unwrap_or_default();
        let read_at = self.clock.now();
        let facts = self.all_facts(&uids, &names).await.ok();
        Prefetched {
            uid: uid.to_string(),
            order: order_guess.map(str::to_string),
            facts,
            read_at,
        }
    }

    /// The facts about a batch's candidates (paid, not booked in the ledger), and when they were
    /// asked for. Facts read ahead for exactly this one operation and order are used as they are.
    pub(super) async fn batch_facts(
        &self,
        ctx: &RunCtx,
        candidates: &[Examined],
        prefetched: Option<Prefetched>,
    ) -> Result<(Facts, Timestamp), ErpError> {
        let mut read_at = self.clock.now();
        if let (Some(p), [only]) = (prefetched, candidates)
            && p.uid == only.op.uid
            && p.order == only.order
        {
            read_at = p.read_at;
            if let Some(facts) = p.facts {
                return Ok((facts, read_at));
            }
        }
        let uids: Vec<String> = candidates.iter().map(|e| e.op.uid.clone()).collect();
        let names = sorted(candidates.iter().filter_map(|e| e.order.clone()));
        if candidates.len() == 1 {
            return Ok((self.all_facts(&uids, &names).await?, read_at));
        }
        let orders = self.orders_of(&names).await?;
        let (uids, names) = self.bookable(ctx, candidates, &orders);
        let (existing, with_entries) =
            tokio::try_join!(self.entries_of(&uids), self.orders_with_entries_of(&names))?;
        let facts = Facts {
            existing,
            orders,
            with_entries,
        };
        Ok((facts, read_at))
    }

    /// The ids and orders of the candidates that these orders make bookable.
    fn bookable(
        &self,
        ctx: &RunCtx,
        candidates: &[Examined],
        orders: &HashMap<String, SalesOrder>,
    ) -> (Vec<String>, Vec<String>) {
        let today = self.today();
        let mut uids = Vec::new();
        let mut names = Vec::new();
        for e in candidates {
            let order = e.order.as_deref().and_then(|n| orders.get(n));
            let bookable = matches!(
                decide(&DecisionInput {
                    op: &e.op,
                    policy: &ctx.policy,
                    order_name: e.order.as_deref(),
                    order,
                    order_has_entry: false,
                    already_loaded: None,
                    earlier_unresolved: None,
                    today,
                }),
                Decision::BookInitial(_) | Decision::BookAdditional(_)
            );
            if bookable {
                uids.push(e.op.uid.clone());
                names.extend(e.order.clone());
            }
        }
        (uids, sorted(names))
    }

    /// Ask the ERP again about one order group (after waiting out a previous holder's creates).
    pub(super) async fn refresh_facts(
        &self,
        order: Option<&str>,
        ops: &[Examined],
        facts: &mut GroupFacts,
    ) -> Result<(), ErpError> {
        let uids: Vec<String> = ops.iter().map(|e| e.op.uid.clone()).collect();
        let names: Vec<String> = order.map(|o| vec![o.to_string()]).unwrap_or_default();
        let read_at = self.clock.now();
        let (existing, with_entries) =
            tokio::try_join!(self.entries_of(&uids), self.orders_with_entries_of(&names))?;
        facts.existing = existing;
        facts.order_has_entry = order.is_some_and(|o| with_entries.contains(o));
        facts.read_at = read_at;
        Ok(())
    }

    /// All three lookups at once: one round trip of latency.
    async fn all_facts(&self, uids: &[String], names: &[String]) -> Result<Facts, ErpError> {
        let (existing, orders, with_entries) = tokio::try_join!(
            self.entries_of(uids),
            self.orders_of(names),
            self.orders_with_entries_of(names)
        )?;
        Ok(Facts {
            existing,
            orders,
            with_entries,
        })
    }

    /// The named orders (none asked, no call).
    async fn orders_of(&self, names: &[String]) -> Result<HashMap<String, SalesOrder>, ErpError> {
        if names.is_empty() {
            return Ok(HashMap::new());
        }
        self.erp.sales_orders(names).await
    }

    /// Entries carrying these operation ids (none asked, no call).
    async fn entries_of(
        &self,
        uids: &[String],
    ) -> Result<HashMap<String, ExistingEntry>, ErpError> {
        if uids.is_empty() {
            return Ok(HashMap::new());
        }
        self.erp.entries_by_reference(uids).await
    }

    /// Of these orders, those with a submitted entry (none asked, no call).
    pub(super) async fn orders_with_entries_of(
        &self,
        names: &[String],
    ) -> Result<HashSet<String>, ErpError> {
        if names.is_empty() {
            return Ok(HashSet::new());
        }
        self.erp.orders_with_entries(names).await
    }

    /// The account's bank account for `paid_to`: configured, else the mode of payment's default.
    pub(super) async fn policy(&self, acc: &AccountSettings) -> Result<AccountPolicy, ErpError> {
        let paid_to = match &acc.paid_to {
            Some(p) => p.clone(),
            None => {
                let key = (acc.mode_of_payment.clone(), acc.company.clone());
                let cached = self
                    .erp_cache
                    .paid_to
                    .lock()
                    .expect("poisoned")
                    .get(&key)
                    .cloned();
                match cached {
                    Some(p) => p,
                    None => {
                        let p = self
                            .erp
                            .mode_of_payment_account(&acc.mode_of_payment, &acc.company)
                            .await?;
                        let mut cache = self.erp_cache.paid_to.lock().expect("poisoned");
                        cache.insert(key, p.clone());
                        p
                    }
                }
            }
        };
        Ok(AccountPolicy {
            company: acc.company.clone(),
            mode_of_payment: acc.mode_of_payment.clone(),
            paid_to,
            include_test: acc.include_test,
            fees: acc.fees.as_ref().map(|f| FeePolicy {
                account: f.account.clone(),
                cost_center: f.cost_center.clone(),
            }),
        })
    }
}

fn sorted(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = names.into_iter().collect();
    names.sort();
    names.dedup();
    names
}
