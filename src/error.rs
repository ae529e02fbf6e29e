//! User-facing errors.
//!
//! Bad input from a user is reported with a specific SQLSTATE through
//! [`UserError`]; `error!`/`panic!` (SQLSTATE XX000) is kept for broken
//! invariants only.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// A report for the user (an ERROR, or a NOTICE): a SQLSTATE, a message,
/// optional detail and hint.
pub struct UserError(ErrorReport);

impl UserError {
    #[track_caller]
    pub fn new(code: PgSqlErrorCode, message: impl Into<String>) -> Self {
        UserError(ErrorReport::new(code, message.into(), "imgsim"))
    }

    pub fn detail(self, detail: impl Into<String>) -> Self {
        UserError(self.0.set_detail(detail))
    }

    pub fn hint(self, hint: impl Into<String>) -> Self {
        UserError(self.0.set_hint(hint))
    }

    /// Report it at NOTICE level instead (the statement goes on).
    pub fn notice(self) {
        self.0.report(PgLogLevel::NOTICE);
    }

    /// Raise the error. pgrx turns an ERROR into a Rust panic: it unwinds
    /// the Rust frames (running their `Drop`s, which is how a page write
    /// guard aborts its WAL record) up to the `#[pg_guard]` boundary of the
    /// callback, which re-raises it with `ereport`; Postgres then longjmps to
    /// its own error handler. So this never returns.
    pub fn raise(self) -> ! {
        self.0.report(PgLogLevel::ERROR);
        unreachable!("ereport(ERROR) returned")
    }
}
