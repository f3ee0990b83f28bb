//! One process per journal file, one engine per process: an exclusive lock on a sidecar file, and a
//! flag on it.
//!
//! SQLite itself would let two processes share the file, but two engines resuming the same runs would
//! both execute them. So a journal is owned by one process at a time: the first `SqliteStore::open` of
//! a path in a process takes an exclusive `flock` on `<path>.owner` (and writes its pid there); a second
//! process gets [`StoreError::AlreadyOpen`]. Opens of the same path inside one process share the lock
//! (tools, tests, an engine restarted in-process). The lock is released when the last store of the
//! process using it is dropped or closed (`SqliteStore::close`), or when the process dies, however it
//! dies.
//!
//! Inside the process, the lock also records whether an engine drives the journal: a second engine
//! claiming it gets [`StoreError::EngineRunning`] (see [`OwnerLock::claim_engine`]), so two engines of
//! one process never drive the same runs.
//!
//! A lock file this open created is removed again if the journal then cannot be opened (a directory,
//! a foreign or corrupt file): nothing is left beside a file the store refused to touch.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use crate::store::{EngineClaim, StoreError};

/// Held while a store of this process uses the journal.
#[derive(Debug)]
pub(super) struct OwnerLock {
    _file: File,
    /// The journal, as the caller named it (for error messages).
    journal: String,
    /// The lock file.
    path: PathBuf,
    /// Whether this process created the lock file (so may remove it if the journal is refused).
    created: bool,
    /// Whether an engine of this process drives the journal.
    engine: AtomicBool,
}

type Registry = Mutex<HashMap<PathBuf, Weak<OwnerLock>>>;

fn registry() -> MutexGuard<'static, HashMap<PathBuf, Weak<OwnerLock>>> {
    static LOCKS: OnceLock<Registry> = OnceLock::new();
    LOCKS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The sidecar lock file of a journal.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".owner");
    PathBuf::from(name)
}

/// Opens (creating if missing) the lock file; `true` if this call created it.
fn open_lock_file(path: &Path) -> std::io::Result<(File, bool)> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    match options.clone().create_new(true).open(path) {
        Ok(file) => Ok((file, true)),
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {
            options.open(path).map(|file| (file, false))
        }
        Err(error) => Err(error),
    }
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
    let mut locks = registry();
    if let Some(lock) = locks.get(&key).and_then(Weak::upgrade) {
        return Ok(lock);
    }
    let lock_file = lock_path(&key);
    let (mut file, created) = open_lock_file(&lock_file).map_err(io)?;
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
    let lock = Arc::new(OwnerLock {
        _file: file,
        journal: path.display().to_string(),
        path: lock_file,
        created,
        engine: AtomicBool::new(false),
    });
    locks.retain(|_, lock| lock.strong_count() > 0);
    locks.insert(key, Arc::downgrade(&lock));
    Ok(lock)
}

/// Gives up ownership after the journal could not be opened: if nothing else of this process uses
/// the lock and this process created the lock file, the file is removed (still locked, so no other
/// process can have taken it meanwhile).
pub(super) fn abandon(lock: Arc<OwnerLock>) {
    let _locks = registry();
    if let Some(lock) = Arc::into_inner(lock)
        && lock.created
    {
        let _ = std::fs::remove_file(&lock.path);
    }
}

impl OwnerLock {
    /// Reserves the journal for one engine of this process, until the claim is dropped.
    pub(super) fn claim_engine(self: &Arc<Self>) -> Result<EngineClaim, StoreError> {
        if self.engine.swap(true, Ordering::AcqRel) {
            return Err(StoreError::EngineRunning {
                path: self.journal.clone(),
            });
        }
        let lock = Arc::downgrade(self);
        Ok(EngineClaim::new(move || {
            if let Some(lock) = lock.upgrade() {
                lock.engine.store(false, Ordering::Release);
            }
        }))
    }
}
