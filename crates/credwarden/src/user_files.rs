//! The per-user files of the broker client: the sign-in (OIDC tokens) and the credential
//! cache, under `$CREDWARDEN_CACHE_DIR`, else `$XDG_CACHE_HOME/credwarden`, else
//! `~/.cache/credwarden`; the client configuration at `$CREDWARDEN_CLIENT_CONFIG`, else
//! `$XDG_CONFIG_HOME/credwarden/client.toml`, else `~/.config/credwarden/client.toml`.
//!
//! These files hold bearer tokens and AWS credentials, so:
//! - the folder is created 0700; one that is not ours, or that others may write to, is
//!   refused (they could swap our files);
//! - a file is written to a new temporary file created 0600 in the same folder (never
//!   world-readable, not even for a moment), fsynced, then renamed over the old one — a
//!   rename replaces a symbolic link planted at the name instead of writing through it;
//! - a file is read only if it is a regular file (opened with `O_NOFOLLOW`: a symbolic link is
//!   refused), owned by us, and readable by no one else.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The folder of the per-user cache (not created).
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("CREDWARDEN_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("credwarden"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("no cache folder: set $CREDWARDEN_CACHE_DIR (or $HOME)")?;
    Ok(PathBuf::from(home).join(".cache").join("credwarden"))
}

/// The client configuration file's default place.
pub fn client_config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CREDWARDEN_CLIENT_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("credwarden").join("client.toml"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config/credwarden/client.toml"))
}

fn my_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Create `dir` (0700, parents too) or check the one there: ours, and no one else may write
/// to it. Group/other read or search bits on our own folder are taken away.
pub fn private_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true).mode(0o700);
            b.create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            // `recursive` applies the mode to the last folder; umask may have narrowed it
            // further, never widened it.
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
        Ok(m) => {
            if !m.is_dir() {
                bail!(
                    "{} is not a folder (a symbolic link or a file): refusing to keep credentials there",
                    dir.display()
                );
            }
            if m.uid() != my_uid() {
                bail!(
                    "{} belongs to user id {}, not to you: refusing to keep credentials there",
                    dir.display(),
                    m.uid()
                );
            }
            if m.mode() & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("cannot narrow the mode of {}", dir.display()))?;
            }
            Ok(())
        }
    }
}

/// Why a private file was not read.
#[derive(Debug, thiserror::Error)]
pub enum Unsafe {
    #[error("{0} is a symbolic link: refusing to read it (remove it)")]
    Symlink(PathBuf),
    #[error("{0} is not a regular file: refusing to read it")]
    NotFile(PathBuf),
    #[error("{0} belongs to user id {1}, not to you: refusing to read it (remove it)")]
    Owner(PathBuf, u32),
    #[error("{0} is readable by others (mode {1:o}): refusing to use it; remove it and sign in again, its tokens may have been copied")]
    Mode(PathBuf, u32),
    #[error("cannot read {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Read a private file: `Ok(None)` when it does not exist; an [`Unsafe`] error when it is a
/// symbolic link, not ours, or readable by others.
pub fn read_private(path: &Path) -> Result<Option<Vec<u8>>, Unsafe> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Unsafe::Symlink(path.to_path_buf()))
        }
        Err(e) => return Err(Unsafe::Io(path.to_path_buf(), e)),
    };
    // The checks are on the open file, so the file read is the file checked.
    let m = file
        .metadata()
        .map_err(|e| Unsafe::Io(path.to_path_buf(), e))?;
    if !m.is_file() {
        return Err(Unsafe::NotFile(path.to_path_buf()));
    }
    if m.uid() != my_uid() {
        return Err(Unsafe::Owner(path.to_path_buf(), m.uid()));
    }
    if m.mode() & 0o077 != 0 {
        return Err(Unsafe::Mode(path.to_path_buf(), m.mode() & 0o777));
    }
    let mut bytes = Vec::with_capacity(m.len() as usize);
    file.read_to_end(&mut bytes)
        .map_err(|e| Unsafe::Io(path.to_path_buf(), e))?;
    Ok(Some(bytes))
}

/// Replace `path` with `bytes`, atomically, through a new 0600 file in the same folder (the
/// folder is made private first).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    private_dir(dir)?;
    let mut nonce = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}",
        std::process::id(),
        credwarden_core::encoding::hex(&nonce)
    ));
    let written = (|| -> std::io::Result<()> {
        // create_new: never an existing file (or a link planted at the name); the mode is
        // set by open(2) itself, so the file is never readable by others.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// Remove `path` if it exists (a symbolic link is removed, not its target). True if removed.
pub fn remove(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("cache");
        let f = d.join("tokens.json");
        write_private(&f, b"secret").unwrap();
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_private(&f).unwrap().unwrap(), b"secret");
        // Replaced atomically; no temporary file left.
        write_private(&f, b"again").unwrap();
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        // Group-readable: refused.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(read_private(&f), Err(Unsafe::Mode(..))));
        // A symbolic link to another file: refused, and writing replaces the link only.
        let other = dir.path().join("other");
        std::fs::write(&other, "not yours").unwrap();
        std::fs::remove_file(&f).unwrap();
        std::os::unix::fs::symlink(&other, &f).unwrap();
        assert!(matches!(read_private(&f), Err(Unsafe::Symlink(_))));
        write_private(&f, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "not yours");
        assert_eq!(read_private(&f).unwrap().unwrap(), b"new");
        assert_eq!(read_private(&d.join("missing")).unwrap(), None);
    }
}
