//! Owner-only files. What credwarden writes says who asked for what and which credentials
//! were stolen (the broker's audit store with its `-wal` and `-shm`, state files, findings):
//! such files are created owner-only (0600), in directories created owner-only (0700). A
//! file that already exists with group or other permission bits is narrowed to 0600, and
//! stderr says so.

use std::path::Path;

use crate::error::SinkError;

fn io(what: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> SinkError {
    let path = p.to_path_buf();
    move |source| SinkError::File { what, path, source }
}

/// Create the missing directories above `path` (0700 each).
pub fn create_parent(path: &Path) -> Result<(), SinkError> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if parent.exists() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(parent)
        .map_err(io("cannot create the folder", parent))
}

/// Open `path` for appending, created 0600 if missing.
pub fn open_append(path: &Path) -> Result<std::fs::File, SinkError> {
    create_parent(path)?;
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let file = o.open(path).map_err(io("cannot open", path))?;
    narrow(path)?;
    Ok(file)
}

/// Make sure the SQLite database at `path` exists owner-only before SQLite opens it: SQLite
/// gives its `-wal` and `-shm` files the database file's permissions.
pub fn prepare_database(path: &Path) -> Result<(), SinkError> {
    drop(open_append(path)?);
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = Path::new(&side);
        if side.exists() {
            narrow(side)?;
        }
    }
    Ok(())
}

/// Take away group and other permissions from an existing regular file.
pub fn narrow(path: &Path) -> Result<(), SinkError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(io("cannot read the mode of", path))?;
        let mode = meta.permissions().mode();
        // Only regular files: `/dev/stdout` as a findings file is the terminal's or a pipe's.
        if meta.is_file() && mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(io("cannot narrow the mode of", path))?;
            eprintln!(
                "credwarden: {} was readable by others (mode {:o}); it is 0600 now",
                path.display(),
                mode & 0o777
            );
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_and_folders_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/deeper/findings.jsonl");
        drop(open_append(&path).unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let loose = dir.path().join("loose.sqlite");
        std::fs::write(&loose, b"").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        prepare_database(&loose).unwrap();
        assert_eq!(mode(&loose), 0o600);
    }
}
