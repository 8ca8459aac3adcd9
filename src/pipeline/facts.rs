//! What the ERP says about a batch, asked in batched calls: entries already carrying the
//! operations' ids as `reference_no`, the orders their keys name (looked up in the account's
//! `order_field`), which of them already have an entry; and the account's ERP settings (its bank
//! account), cached.
//!
//! An operation's order key is the value of `order_field` (the order's name by default, or a
//! `po_no`, or a custom field holding a MercadoLibre order id); everything keyed by order in the
//! engine (groups, claims, the ledger) uses the key, while what is asked of the ERP about entries
//! uses the order's name, known once the order is found.
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
    pick_order,
};
use crate::erp::ErpError;

/// What the ERP says about a batch.
#[derive(Debug, Clone, Default)]
pub(super) struct Facts {
    /// Entries by operation id (draft or submitted).
    pub existing: HashMap<String, ExistingEntry>,
    /// Orders by order key (the keys one order holds).
    pub orders: HashMap<String, SalesOrder>,
    /// Keys several live orders hold: their names (nothing is booked for them).
    pub ambiguous: HashMap<String, Vec<String>>,
    /// Orders, by name, a submitted entry references.
    pub with_entries: HashSet<String>,
}

/// What the order lookup found: the keys held by one order, and those held by several.
#[derive(Debug, Clone, Default)]
pub(super) struct FoundOrders {
    pub orders: HashMap<String, SalesOrder>,
    pub ambiguous: HashMap<String, Vec<String>>,
}

impl FoundOrders {
    /// The names of the orders these keys found.
    fn names_of<'k>(&self, keys: impl IntoIterator<Item = &'k String>) -> Vec<String> {
        sorted(
            keys.into_iter()
                .filter_map(|k| self.orders.get(k).map(|o| o.name.clone())),
        )
    }
}

impl Facts {
    /// The part about one order group.
    pub fn for_group(
        &self,
        order: Option<&str>,
        ops: &[Examined],
        read_at: Timestamp,
    ) -> GroupFacts {
        let found = order.and_then(|o| self.orders.get(o));
        GroupFacts {
            order: found.cloned(),
            ambiguous: order.and_then(|o| self.ambiguous.get(o).cloned()),
            order_has_entry: found.is_some_and(|o| self.with_entries.contains(&o.name)),
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
    /// Several live orders hold the group's key: their names.
    pub ambiguous: Option<Vec<String>>,
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
    pub async fn prefetch(&self, field: &str, uid: &str, order_guess: Option<&str>) -> Prefetched {
        let uids = [uid.to_string()];
        let keys: Vec<String> = order_guess.map(|o| vec![o.to_string()]).unwrap_or_default();
        let read_at = self.clock.now();
        let facts = self.all_facts(field, &uids, &keys).await.ok();
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
        let field = ctx.policy.order_field.as_str();
        let uids: Vec<String> = candidates.iter().map(|e| e.op.uid.clone()).collect();
        let keys = sorted(candidates.iter().filter_map(|e| e.order.clone()));
        if candidates.len() == 1 {
            return Ok((self.all_facts(field, &uids, &keys).await?, read_at));
        }
        let found = self.orders_of(field, &keys).await?;
        let (uids, keys) = self.bookable(ctx, candidates, &found.orders);
        let names = found.names_of(&keys);
        let (existing, with_entries) =
            tokio::try_join!(self.entries_of(&uids), self.orders_with_entries_of(&names))?;
        let facts = Facts {
            existing,
            orders: found.orders,
            ambiguous: found.ambiguous,
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
                    order_ambiguous: None,
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
        ops: &[Examined],
        facts: &mut GroupFacts,
    ) -> Result<(), ErpError> {
        let uids: Vec<String> = ops.iter().map(|e| e.op.uid.clone()).collect();
        let names: Vec<String> = facts.order.iter().map(|o| o.name.clone()).collect();
        let read_at = self.clock.now();
        let (existing, with_entries) =
            tokio::try_join!(self.entries_of(&uids), self.orders_with_entries_of(&names))?;
        facts.existing = existing;
        facts.order_has_entry = names.iter().any(|o| with_entries.contains(o));
        facts.read_at = read_at;
        Ok(())
    }

    /// All three lookups at once, one round trip of latency, when the keys are the orders'
    /// names; by another field the entries are asked once the orders' names are known.
    async fn all_facts(
        &self,
        field: &str,
        uids: &[String],
        keys: &[String],
    ) -> Result<Facts, ErpError> {
        let (existing, found, with_entries) = if field == "name" {
            tokio::try_join!(
                self.entries_of(uids),
                self.orders_of(field, keys),
                self.orders_with_entries_of(keys)
            )?
        } else {
            let (existing, found) =
                tokio::try_join!(self.entries_of(uids), self.orders_of(field, keys))?;
            let names = found.names_of(keys);
            let with_entries = self.orders_with_entries_of(&names).await?;
            (existing, found, with_entries)
        };
        Ok(Facts {
            existing,
            orders: found.orders,
            ambiguous: found.ambiguous,
            with_entries,
        })
    }

    /// The orders whose `field` holds these keys (none asked, no call), each key resolved to
    /// one order by [`pick_order`].
    async fn orders_of(&self, field: &str, keys: &[String]) -> Result<FoundOrders, ErpError> {
        let mut found = FoundOrders::default();
        if keys.is_empty() {
            return Ok(found);
        }
        for (key, holders) in self.erp.sales_orders(field, keys).await? {
            match pick_order(holders) {
                Ok(Some(order)) => {
                    found.orders.insert(key, order);
                }
                Ok(None) => {}
                Err(names) => {
                    found.ambiguous.insert(key, names);
                }
            }
        }
        Ok(found)
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
    pub async fn policy(&self, acc: &AccountSettings) -> Result<AccountPolicy, ErpError> {
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
            reverse_refunds: acc.reverse_refunds,
            order_field: acc.order_field.clone(),
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
