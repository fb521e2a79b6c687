//! What can go wrong writing the demo's data.

use std::io;
use std::path::PathBuf;

/// An error writing the demo's data set. File errors name the path and keep the I/O error
/// as their source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The output folder has someone else's files in it: the demo never clobbers them.
    #[error("{} exists and was not made by credwarden demo; choose another folder", .0.display())]
    ForeignFolder(PathBuf),
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot clear {}", path.display())]
    Clear {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn read(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Read { path, source }
    }

    pub(crate) fn create(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Create { path, source }
    }

    pub(crate) fn clear(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Clear { path, source }
    }

    pub(crate) fn write(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Write { path, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
