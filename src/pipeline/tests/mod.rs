//! Unit tests of the parts of the engine that decide things, against the in-memory fakes of
//! `fakes.rs` and a real SQLite ledger on a temporary file.

mod gate;
mod ordering;
mod write;
