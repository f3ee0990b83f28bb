//! One process per journal file: an exclusive lock on a sidecar file.
//!
//! SQLite itself would let two processes share the file, but two engines resuming the same runs would
//! both execute them. So a journal is owned by one process at a time: the first `SqliteStore::open` of
//! a path in a process takes an exclusive `flock` on `<path>.owner` (and writes its pid there); a second
//! process gets [`StoreError::AlreadyOpen`]. Opens of the same path inside one process share the lock
//! (an engine restarted in-process, tests). The lock is released when the last store of the process
//! using it is dropped, or when the process dies, however it dies.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::store::StoreError;

/// Held while a store of this process uses the journal.
#[derive(Debug)]
pub(super) struct OwnerLock {
    _file: File,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<OwnerLock>>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Weak<OwnerLock>>>> = OnceLock::new();
    LOCKS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The sidecar lock file of a journal.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".owner");
    PathBuf::from(name)
}

/// Takes (or shares, within this process) ownership of the journal at `path`.
pub(super) fn acquire(path: &Path) -> Result<Arc<OwnerLock>, StoreError> {
    let io = |error: std::io::Error| StoreError::Io {
        operation: "locking the journal file",
        message: format!("{}: {error}", path.display()),
    };
    // The journal may not exist yet: canonicalize its directory.
    let key = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => {
            dir.canonicalize().map_err(io)?.join(name)
        }
        _ => std::env::current_dir().map_err(io)?.join(path),
    };
    let mut locks = registry()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(lock) = locks.get(&key).and_then(Weak::upgrade) {
        return Ok(lock);
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path(&key))
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            return Err(StoreError::AlreadyOpen {
                path: path.display().to_string(),
                owner: owner.trim().to_string(),
            });
        }
        Err(TryLockError::Error(error)) => return Err(io(error)),
    }
    // Record who owns it, for the next process's error message.
    let _ = file.set_len(0);
    let _ = file.seek(SeekFrom::Start(0));
    let _ = write!(file, "pid {}", std::process::id());
    let lock = Arc::new(OwnerLock { _file: file });
    locks.retain(|_, lock| lock.strong_count() > 0);
    locks.insert(key, Arc::downgrade(&lock));
    Ok(lock)
}
