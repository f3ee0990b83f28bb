//! Whether the journal's path can be opened at all, checked before anything else touches it, so a
//! missing directory or a permission problem is reported for what it is (not retryable, naming the path)
//! rather than as a transient I/O error of a later step.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::Path;

use crate::store::{AccessProblem, StoreError};

/// Checks that the directory of `path` exists and that the journal file can be opened (read-write
/// unless `read_only`; created when missing and writable).
pub(super) fn check(path: &Path, read_only: bool) -> Result<(), StoreError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Err(inaccessible(path, AccessProblem::MissingDirectory)),
        Err(error) => return Err(classify(path, &error)),
    }
    let opened = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .create(!read_only)
        .truncate(false)
        .open(path);
    match opened {
        Ok(_) => Ok(()),
        // A read-only open of a missing file: reported by the open itself.
        Err(error) if read_only && error.kind() == ErrorKind::NotFound => Ok(()),
        Err(error) => Err(classify(path, &error)),
    }
}

/// The typed error for an I/O error met while opening `path`.
fn classify(path: &Path, error: &std::io::Error) -> StoreError {
    match error.kind() {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
            inaccessible(path, AccessProblem::PermissionDenied)
        }
        ErrorKind::NotFound | ErrorKind::NotADirectory => {
            inaccessible(path, AccessProblem::MissingDirectory)
        }
        _ => StoreError::Io {
            operation: "opening the journal file",
            message: format!("{}: {error}", path.display()),
        },
    }
}

fn inaccessible(path: &Path, problem: AccessProblem) -> StoreError {
    StoreError::Inaccessible {
        path: path.display().to_string(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_and_missing_directories_are_typed_and_not_retryable() {
        let path = Path::new("/srv/journal.db");
        for (kind, problem) in [
            (ErrorKind::PermissionDenied, AccessProblem::PermissionDenied),
            (ErrorKind::NotFound, AccessProblem::MissingDirectory),
        ] {
            let error = classify(path, &std::io::Error::from(kind));
            assert!(!error.is_retryable(), "{error}");
            assert!(error.to_string().contains("/srv/journal.db"), "{error}");
            assert!(
                matches!(error, StoreError::Inaccessible { problem: got, .. } if got == problem)
            );
        }
        assert!(classify(path, &std::io::Error::from(ErrorKind::Interrupted)).is_retryable());
    }
}
