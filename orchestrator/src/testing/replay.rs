//! The replay checker for tests and CI: [`replay_check`] over a journal file, a PostgreSQL URL or a
//! directory of exported fixtures.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::Engine;
use crate::error::Error;
use crate::export::{ExportError, MAX_EXPORT_BYTES, RunExport};
use crate::replay::{ReplayReport, ReplaySource};
use crate::store::{RunQuery, SqliteStore, Store};

/// The most fixture files [`replay_check`] reads from one directory.
pub const MAX_FIXTURE_FILES: usize = 100_000;

/// Where [`replay_check`] reads histories.
#[derive(Clone)]
#[non_exhaustive]
pub enum HistorySource {
    /// Every run of an SQLite journal file (opened read-only).
    JournalFile(PathBuf),
    /// Every run of a PostgreSQL journal (feature `postgres`).
    Postgres(String),
    /// Every `*.json` export (see [`export`](crate::export)) in a directory, e.g.
    /// `tests/fixtures/replay/` — not recursive, in file name order.
    FixtureDir(PathBuf),
    /// Exports already loaded.
    Exports(Vec<RunExport>),
    /// Every run of a store opened by the caller (e.g. a PostgreSQL store on a given schema).
    Store(Arc<dyn Store>),
}

impl std::fmt::Debug for HistorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HistorySource::JournalFile(path) => f.debug_tuple("JournalFile").field(path).finish(),
            HistorySource::Postgres(_) => f.write_str("Postgres(<url>)"),
            HistorySource::FixtureDir(path) => f.debug_tuple("FixtureDir").field(path).finish(),
            HistorySource::Exports(exports) => write!(f, "Exports({} histories)", exports.len()),
            HistorySource::Store(_) => f.write_str("Store(..)"),
        }
    }
}

/// Why [`replay_check`] could not check (problems of single runs are in the report instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayCheckError {
    /// The engine or the store failed.
    #[error(transparent)]
    Engine(#[from] Error),
    /// A fixture file or directory could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A fixture file is not a valid export.
    #[error("fixture `{}`: {source}", path.display())]
    Fixture {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        source: ExportError,
    },
    /// The directory holds more than [`MAX_FIXTURE_FILES`] files.
    #[error("`{}` holds more than {MAX_FIXTURE_FILES} files", path.display())]
    TooManyFixtures {
        /// The directory.
        path: PathBuf,
    },
    /// The source needs a feature this build lacks.
    #[error("{0}")]
    Unsupported(String),
}

/// Replays every history of `source` on `engine`'s registered workflows (the current code) and
/// reports each run that would hit nondeterminism (with the step, the recorded call and the new
/// call), that no longer decodes or whose workflow type is gone, and which runs take a `patched`
/// branch. Nothing is executed or written. See [`Engine::replay_check`] and `docs/testing.md`
/// (recipe: export production histories into `tests/fixtures/`, check them in CI).
///
/// # Errors
///
/// A [`ReplayCheckError`] when the source cannot be read.
///
/// ```no_run
/// # async fn check(engine: orchestrator::Engine) -> Result<(), Box<dyn std::error::Error>> {
/// use orchestrator::testing::{HistorySource, replay_check};
///
/// let report = replay_check(&engine, HistorySource::FixtureDir("tests/fixtures/replay".into())).await?;
/// assert!(report.is_ok(), "{report}");
/// # Ok(())
/// # }
/// ```
pub async fn replay_check(
    engine: &Engine,
    source: HistorySource,
) -> Result<ReplayReport, ReplayCheckError> {
    let source = match source {
        HistorySource::JournalFile(path) => {
            let store: Arc<dyn Store> = Arc::new(
                SqliteStore::open_read_only(&path)
                    .await
                    .map_err(Error::from)?,
            );
            ReplaySource::Store(store, RunQuery::new())
        }
        HistorySource::Postgres(url) => ReplaySource::Store(postgres(&url).await?, RunQuery::new()),
        HistorySource::FixtureDir(dir) => ReplaySource::Exports(read_fixtures(&dir)?),
        HistorySource::Exports(exports) => ReplaySource::Exports(exports),
        HistorySource::Store(store) => ReplaySource::Store(store, RunQuery::new()),
    };
    Ok(engine.replay_check(source).await?)
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str) -> Result<Arc<dyn Store>, ReplayCheckError> {
    let store = crate::store::PostgresStore::connect(url)
        .await
        .map_err(Error::from)?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_url: &str) -> Result<Arc<dyn Store>, ReplayCheckError> {
    Err(ReplayCheckError::Unsupported(
        "reading a PostgreSQL journal needs orchestrator's `postgres` feature".to_string(),
    ))
}

/// Reads every `*.json` export of `dir`, in file name order.
pub fn read_fixtures(dir: &Path) -> Result<Vec<RunExport>, ReplayCheckError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReplayCheckError::Io { path, source }
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_some_and(|ext| ext == "json") && path.is_file() {
            paths.push(path);
            if paths.len() > MAX_FIXTURE_FILES {
                return Err(ReplayCheckError::TooManyFixtures {
                    path: dir.to_path_buf(),
                });
            }
        }
    }
    paths.sort();
    let mut exports = Vec::with_capacity(paths.len());
    for path in paths {
        let size = std::fs::metadata(&path).map_err(io(&path))?.len();
        if size > MAX_EXPORT_BYTES as u64 {
            return Err(ReplayCheckError::Fixture {
                path,
                source: ExportError::TooLarge {
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    max: MAX_EXPORT_BYTES,
                },
            });
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let export = RunExport::from_json(&bytes).map_err(|source| ReplayCheckError::Fixture {
            path: path.clone(),
            source,
        })?;
        exports.push(export);
    }
    Ok(exports)
}
