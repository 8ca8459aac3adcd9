//! paysync books every paid payment-gateway operation (Mobbex) into an ERP (ERPNext) as exactly
//! one submitted Payment Entry.
//!
//! # Layout
//! - [`domain`]: operations, sales orders, payment entries and the pure booking rules (no I/O).
//! - [`source`]: payment sources behind the `PaymentSource` trait (`source::mobbex`).
//! - [`erp`]: ERPs behind the `Erp` trait (`erp::erpnext`, Frappe error decoding).
//! - [`store`]: the ledger, one trait per concern (`Decisions`, `Polls`, `Inbox`, `Leases`) under
//!   the `Ledger` umbrella (`store::sqlite`).
//! - [`pipeline`]: the one place where booking happens: batched lookups, per-order ordering, writes.
//! - [`config`]: typed configuration, loaded and validated once.
//! - [`schedule`]: cron expressions.
//! - [`redact`]: masking secrets (URL credentials) in anything printed or logged.
//! - Cross-cutting, one way each: [`retry`] (every backoff schedule and API retry), [`clock`]
//!   (where "now" comes from), [`http_client`] (what both HTTP adapters share).
//! - [`app`]: wiring concrete implementations together.
//! - [`cli`], [`telemetry`], [`summary`], [`status`], [`exit`]: the binary's edge (`summary`'s
//!   closing table and `status`'s report are what `cli` and `demo` print).
//! - The simulator of the Mobbex and ERPNext HTTP APIs (tests, benchmarks, `demo`) is its own crate,
//!   `paysync_sim` (`crates/paysync-sim/`), which never depends on this one.
//! - [`demo`]: `paysync demo`.
//!
//! See ARCHITECTURE.md for the main flow and the invariants.

pub mod app;
pub mod audit;
pub mod claims;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod domain;
pub mod erp;
pub mod exit;
pub mod explain;
pub mod http_client;
pub mod metrics;
pub mod pipeline;
pub mod redact;
pub mod retry;
pub mod schedule;
pub mod source;
pub mod status;
pub mod store;
pub mod summary;
pub mod telemetry;
