//! Integration tests: the real paysync pipeline and binary against the simulator over loopback HTTP.
//!
//! One test binary (one link step) with a module per feature, as in zero-to-production.

mod audit;
mod bad_input;
mod calls;
mod classify;
mod cli;
mod daemon;
mod db_outage;
mod duplicates;
mod explain;
mod faults;
mod fees;
mod fixtures;
mod fuzz;
mod helpers;
mod hostile;
mod mercadopago;
mod multi_instance;
mod ordering;
mod postgres;
mod real_erpnext;
mod real_erpnext_mercadopago;
mod real_erpnext_rebook;
mod real_erpnext_reversal;
mod rebook;
mod reversals;
mod series;
mod sim;
mod slowloris;
mod storage;
mod sync;
mod tcp_proxy;
