//! The ledger's file on disk: created private, and watched for being deleted or replaced.
//!
//! SQLite keeps writing to the file it opened even after the path names another file or none:
//! a ledger deleted (or replaced by a restored backup, or an empty one) under a running daemon
//! would silently take bookings no one will ever read, while a new process on the same path
//! sees another ledger — the duplicate check of the next run would rest on the ERP alone. So
//! the file's identity (device + inode) is remembered at open and checked before every use.

use std::fs::{OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{error, warn};

use crate::store::StoreError;

/// Create the ledger file (empty: SQLite takes it as a new database) readable by its owner only,
/// whatever the umask. SQLite gives the `-wal` and `-shm` files it creates beside it the same
/// mode (it copies the database file's). An existing file is left as it is.
pub(super) fn create_private(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        // The umask can only have removed bits; set exactly 0600 anyway.
        Ok(f) => f.set_permissions(Permissions::from_mode(0o600)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The file a ledger opened, by identity.
#[derive(Debug)]
pub(super) struct LedgerFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Set while the path does not name the opened file (logged once per loss).
    lost: AtomicBool,
}

impl LedgerFile {
    /// The file `path` names now (call right after SQLite opened it).
    pub(super) fn of(path: &Path) -> io::Result<LedgerFile> {
        let m = std::fs::metadata(path)?;
        Ok(LedgerFile {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
            lost: AtomicBool::new(false),
        })
    }

    /// `Ok` while the path still names the file that was opened. One stat(2): a few microseconds,
    /// against tens for the cheapest query.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        let problem = match std::fs::metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => None,
            Ok(m) => Some(format!(
                "the path now names another file (inode {} instead of {})",
                m.ino(),
                self.ino
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some("the file is gone".into()),
            // Cannot tell: fail closed all the same.
            Err(e) => Some(format!("cannot check the file: {e}")),
        };
        match problem {
            None => {
                if self.lost.swap(false, Ordering::AcqRel) {
                    warn!(path = %self.path.display(), "the ledger file is back; using it again");
                }
                Ok(())
            }
            Some(what) => {
                if !self.lost.swap(true, Ordering::AcqRel) {
                    error!(
                        path = %self.path.display(), problem = %what,
                        "ledger file deleted or replaced while in use: nothing is booked or stored until it is back or paysync is restarted"
                    );
                }
                Err(StoreError::Replaced {
                    path: self.path.display().to_string(),
                    what,
                })
            }
        }
    }
}
