//! The process's exit codes, shared by every command (`cli`) and by `paysync demo` (`demo`).
//!
//! Owns: what each code means. Must not decide which one a run ends with; each command does.

/// No errors.
pub const EXIT_OK: u8 = 0;
/// Some operations failed (they stay retryable) or a check failed.
pub const EXIT_FAILED: u8 = 1;
/// A configuration or usage error.
pub const EXIT_CONFIG: u8 = 2;
