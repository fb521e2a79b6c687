//! Files the broker writes hold who asked for what (the audit store, its `-wal` and `-shm`,
//! the findings): they are created owner-only (0600), in directories created owner-only
//! (0700). A file that already exists with group or other permission bits is narrowed to
//! 0600, and the server's log says so.

use std::path::Path;

use crate::error::ConfigError;

fn io(p: &Path, e: std::io::Error) -> ConfigError {
    ConfigError::Io {
        what: p.display().to_string(),
        source: e,
    }
}

/// Create the missing directories above `path` (0700 each).
pub fn create_parent(path: &Path) -> Result<(), ConfigError> {
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
    b.create(parent).map_err(|e| io(parent, e))
}

/// Open `path` for appending, created 0600 if missing.
pub fn open_append(path: &Path) -> Result<std::fs::File, ConfigError> {
    create_parent(path)?;
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let file = o.open(path).map_err(|e| io(path, e))?;
    narrow(path)?;
    Ok(file)
}

/// Make sure the SQLite database at `path` exists owner-only before SQLite opens it: SQLite
/// gives its `-wal` and `-shm` files the database file's permissions.
pub fn prepare_database(path: &Path) -> Result<(), ConfigError> {
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
fn narrow(path: &Path) -> Result<(), ConfigError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| io(path, e))?;
        let mode = meta.permissions().mode();
        // Only regular files: `findings = "/dev/stdout"` is the terminal's or a pipe's.
        if meta.is_file() && mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io(path, e))?;
            eprintln!(
                "broker: {} was readable by others (mode {:o}); it is 0600 now",
                path.display(),
                mode & 0o777
            );
        }
    }
    Ok(())
}
