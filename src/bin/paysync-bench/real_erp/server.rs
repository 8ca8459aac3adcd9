//! The real server's side of the real-ERPNext mode: the mix of payments, what the benchmark
//! creates on the server (customers, submitted Sales Orders, all named after the run's tag),
//! the replay of bodies that gives the server's ceiling, and the exactly-once check.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// Sales Orders or customers per `insert_many` request (Frappe takes at most 200).
const INSERT_BATCH: usize = 50;

/// One operation of the mix.
pub struct MixOp {
    pub uid: String,
    /// Index into [`Mix::totals`].
    pub order: usize,
    pub amount: Decimal,
    pub status: u16,
    /// The order's first paid operation: booked allocated to it.
    pub initial: bool,
}

/// Orders and their operations: most orders paid by one to three payments (the first
/// allocated, the others unallocated on the customer's account), some with a rejected or a
/// pending payment only (examined, not booked) — one customer per order, as in a shop.
pub struct Mix {
    pub totals: Vec<Decimal>,
    pub ops: Vec<MixOp>,
}

impl Mix {
    /// About `ops` operations; `prefix` makes their ids unique on the server.
    pub fn generate(ops: usize, seed: u64, prefix: &str) -> Mix {
        let mut rng = SplitMix(seed);
        let mut mix = Mix {
            totals: Vec::new(),
            ops: Vec::new(),
        };
        while mix.ops.len() < ops {
            let order = mix.totals.len();
            let total = 1_000 + (rng.next() % 49_000) as i64;
            mix.totals.push(Decimal::from(total));
            let uid = |n: usize| format!("pb-{prefix}-{:05}", n);
            let roll = (rng.next() % 1000) as f64 / 1000.0;
            if roll < 0.8 {
                let payments = 1 + (rng.next() % 3) as usize;
                let first = if payments == 1 { total } else { total * 6 / 10 };
                let rest = total - first;
                for p in 0..payments {
                    let amount = if p == 0 {
                        first
                    } else {
                        (rest / (payments as i64 - 1)).max(1)
                    };
                    mix.ops.push(MixOp {
                        uid: uid(mix.ops.len()),
                        order,
                        amount: Decimal::from(amount),
                        status: 200,
                        initial: p == 0,
                    });
                }
            } else {
                let status = if roll < 0.9 { 400 } else { 1 };
                mix.ops.push(MixOp {
                    uid: uid(mix.ops.len()),
                    order,
                    amount: Decimal::from(total),
                    status,
                    initial: false,
                });
            }
        }
        mix
    }

    /// Entries paysync must create: one per paid operation.
    pub fn to_book(&self) -> usize {
        self.ops.iter().filter(|o| o.status == 200).count()
    }
}

/// A small seeded generator (SplitMix64): the same seed, the same mix.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// What the benchmark learnt about the server.
pub struct Site {
    pub versions: String,
    pub company: String,
    pub mode_of_payment: String,
    pub paid_to: String,
    pub item: String,
}

/// How one replay went.
pub struct Replay {
    pub concurrency: usize,
    pub entries: usize,
    /// First request sent to last answer.
    pub wall: Duration,
    pub rate: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub deadlocks: usize,
}

/// The exactly-once check of one paysync run.
pub struct Check {
    pub booked: usize,
    pub problems: Vec<String>,
}

/// A real ERPNext (through the counting proxy), with the benchmark's token.
pub struct RealErp {
    http: reqwest::Client,
    url: String,
    pub key: String,
    pub secret: String,
}

impl RealErp {
    pub fn new(url: &str, key: &str, secret: &str) -> RealErp {
        RealErp {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()
                .expect("a client"),
            url: url.trim_end_matches('/').to_string(),
            key: key.into(),
            secret: secret.into(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value, Duration)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header(
                "authorization",
                format!("token {}:{}", self.key, self.secret),
            );
        if let Some(b) = body {
            req = req.json(b);
        }
        let t = Instant::now();
        let resp = req
            .send()
            .await
            .with_context(|| format!("ERPNext {path}"))?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let took = t.elapsed();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, v, took))
    }

    async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (status, v, _) = self.call(method, path, body).await?;
        anyhow::ensure!(
            status == 200,
            "ERPNext {path}: HTTP {status}: {}",
            brief(&v)
        );
        Ok(v)
    }

    /// Versions, the mode of payment's account for the company.
    pub async fn describe(&self, company: &str, mode: &str) -> anyhow::Result<Site> {
        let who = self
            .ok(
                reqwest::Method::GET,
                "/api/method/frappe.auth.get_logged_user",
                None,
            )
            .await
            .context("the token is refused")?;
        let versions = match self
            .ok(
                reqwest::Method::GET,
                "/api/method/frappe.utils.change_log.get_versions",
                None,
            )
            .await
        {
            Ok(v) => ["frappe", "erpnext"]
                .iter()
                .map(|app| {
                    format!(
                        "{} {}",
                        app,
                        v["message"][app]["version"].as_str().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            Err(_) => "versions not readable".into(),
        };
        let mop = self
            .ok(
                reqwest::Method::GET,
                &format!("/api/resource/Mode%20of%20Payment/{}", urlencode(mode)),
                None,
            )
            .await?;
        let paid_to = mop["data"]["accounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["company"] == company)
            .and_then(|a| a["default_account"].as_str())
            .with_context(|| format!("Mode of Payment {mode} has no account for {company}"))?
            .to_string();
        Ok(Site {
            versions: format!("{versions} (as {})", who["message"].as_str().unwrap_or("?")),
            company: company.into(),
            mode_of_payment: mode.into(),
            paid_to,
            item: "SERV-MBX".into(),
        })
    }

    async fn insert_many(&self, docs: Vec<Value>) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for chunk in docs.chunks(INSERT_BATCH) {
            let v = self
                .ok(
                    reqwest::Method::POST,
                    "/api/method/frappe.client.insert_many",
                    Some(&json!({ "docs": chunk })),
                )
                .await?;
            let got: Vec<String> =
                serde_json::from_value(v["message"].clone()).context("insert_many's names")?;
            anyhow::ensure!(
                got.len() == chunk.len(),
                "insert_many returned {} names for {}",
                got.len(),
                chunk.len()
            );
            names.extend(got);
        }
        Ok(names)
    }

    /// One customer and one submitted Sales Order per order of the mix; the orders' names.
    pub async fn create_orders(
        &self,
        tag: &str,
        label: &str,
        mix: &Mix,
        site: &Site,
    ) -> anyhow::Result<Vec<String>> {
        let customers: Vec<Value> = (0..mix.totals.len())
            .map(|i| {
                json!({
                    "doctype": "Customer",
                    "customer_name": format!("PB {tag} {label} {i:04}"),
                    "customer_type": "Company",
                    "customer_group": "Commercial",
                    "territory": "All Territories",
                })
            })
            .collect();
        let customers = self
            .insert_many(customers)
            .await
            .context("creating customers")?;
        let today = jiff::Zoned::now().date();
        let delivery = today
            .checked_add(jiff::Span::new().days(30))
            .expect("a date");
        let orders: Vec<Value> = mix
            .totals
            .iter()
            .zip(&customers)
            .map(|(total, customer)| {
                json!({
                    "doctype": "Sales Order",
                    "docstatus": 1,
                    "customer": customer,
                    "company": site.company,
                    "transaction_date": today.to_string(),
                    "delivery_date": delivery.to_string(),
                    "items": [{"item_code": site.item, "qty": 1, "rate": total.to_string().parse::<f64>().unwrap_or(0.0)}],
                })
            })
            .collect();
        self.insert_many(orders)
            .await
            .context("creating Sales Orders")
    }

    /// POST `bodies` as Payment Entries, `concurrency` at once, spread round-robin over
    /// `series` (none when only the default one). A deadlock's victim is sent again.
    pub async fn replay(
        self: &Arc<Self>,
        bodies: &[Value],
        concurrency: usize,
        series: &[String],
    ) -> anyhow::Result<Replay> {
        let next = Arc::new(AtomicUsize::new(0));
        let bodies: Arc<Vec<Value>> = Arc::new(
            bodies
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let mut b = b.clone();
                    if series.len() > 1 {
                        b["naming_series"] = json!(series[i % series.len()]);
                    }
                    b
                })
                .collect(),
        );
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (erp, next, bodies) = (self.clone(), next.clone(), bodies.clone());
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut deadlocks = 0usize;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    loop {
                        let (status, v, took) = erp
                            .call(
                                reqwest::Method::POST,
                                "/api/resource/Payment%20Entry",
                                Some(body),
                            )
                            .await?;
                        if status == 200 {
                            latencies.push(took);
                            break;
                        }
                        if v["exc_type"] == "QueryDeadlockError" {
                            deadlocks += 1;
                            continue;
                        }
                        anyhow::bail!(
                            "replaying {}: HTTP {status}: {}",
                            body["reference_no"],
                            brief(&v)
                        );
                    }
                }
                anyhow::Ok((latencies, deadlocks))
            }));
        }
        let mut latencies = Vec::new();
        let mut deadlocks = 0;
        for w in workers {
            let (l, d) = w.await??;
            latencies.extend(l);
            deadlocks += d;
        }
        let wall = started.elapsed();
        Ok(Replay {
            concurrency,
            entries: latencies.len(),
            wall,
            rate: latencies.len() as f64 / wall.as_secs_f64(),
            p50_ms: percentile_ms(&mut latencies, 0.5),
            p90_ms: percentile_ms(&mut latencies, 0.9),
            deadlocks,
        })
    }

    /// Every paid operation of `mix` has exactly one live entry, the initial one allocated
    /// to its order and the others unallocated, for the order's customer; nothing else has one.
    pub async fn check_exactly_once(&self, mix: &Mix, orders: &[String]) -> anyhow::Result<Check> {
        let uids: Vec<&str> = mix.ops.iter().map(|o| o.uid.as_str()).collect();
        let v = self
            .ok(
                reqwest::Method::POST,
                "/api/method/frappe.client.get_list",
                Some(&json!({
                    "doctype": "Payment Entry",
                    "fields": ["name", "reference_no", "docstatus", "party", "paid_amount", "unallocated_amount"],
                    "filters": [["reference_no", "in", uids], ["docstatus", "!=", 2]],
                    "limit_page_length": 0,
                })),
            )
            .await?;
        let rows = v["message"].as_array().cloned().unwrap_or_default();
        let mut by_ref: HashMap<String, Vec<Value>> = HashMap::new();
        for r in rows {
            by_ref
                .entry(r["reference_no"].as_str().unwrap_or("").to_string())
                .or_default()
                .push(r);
        }
        let customers = self.customers_of(orders).await?;
        let mut problems = Vec::new();
        let mut booked = 0;
        for op in &mix.ops {
            let found = by_ref.get(&op.uid).map(Vec::as_slice).unwrap_or_default();
            match (op.status == 200, found) {
                (false, []) => {}
                (false, _) => problems.push(format!("{}: not paid but booked", op.uid)),
                (true, []) => problems.push(format!("{}: missing", op.uid)),
                (true, [e]) => {
                    booked += 1;
                    let unallocated = e["unallocated_amount"].as_f64().unwrap_or(-1.0);
                    let paid = e["paid_amount"].as_f64().unwrap_or(-1.0);
                    let right = if op.initial {
                        unallocated.abs() < 0.005
                    } else {
                        (unallocated - paid).abs() < 0.005
                    };
                    if !right {
                        problems.push(format!("{}: wrong allocation", op.uid));
                    }
                    if e["docstatus"] != 1 {
                        problems.push(format!("{}: not submitted", op.uid));
                    }
                    if customers.get(&orders[op.order]).map(String::as_str) != e["party"].as_str() {
                        problems.push(format!("{}: wrong party", op.uid));
                    }
                }
                (true, many) => problems.push(format!("{}: {} entries", op.uid, many.len())),
            }
        }
        Ok(Check { booked, problems })
    }

    async fn customers_of(&self, orders: &[String]) -> anyhow::Result<HashMap<String, String>> {
        let v = self
            .ok(
                reqwest::Method::POST,
                "/api/method/frappe.client.get_list",
                Some(&json!({
                    "doctype": "Sales Order",
                    "fields": ["name", "customer"],
                    "filters": [["name", "in", orders]],
                    "limit_page_length": 0,
                })),
            )
            .await?;
        Ok(v["message"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some((
                    r["name"].as_str()?.to_string(),
                    r["customer"].as_str()?.to_string(),
                ))
            })
            .collect())
    }
}

fn percentile_ms(latencies: &mut [Duration], p: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    latencies.sort();
    let i = ((latencies.len() - 1) as f64 * p).round() as usize;
    latencies[i].as_secs_f64() * 1000.0
}

/// An error body, short: Frappe's exception line if there is one.
fn brief(v: &Value) -> String {
    let s = v["exception"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| v.to_string());
    s.chars().take(300).collect()
}

fn urlencode(s: &str) -> String {
    s.replace('%', "%25")
        .replace(' ', "%20")
        .replace('/', "%2F")
}
