//! One writer per output folder, and the clean-up of what killed writers leave behind.
//!
//! [`FolderLock`] is an advisory `flock` on `DIR/.grokscope.lock`: the kernel releases it when the
//! holder exits or is killed, so a lock left by a dead process never blocks. The file holds the
//! holder's pid (for the error a second writer gets) and is removed when the holder drops it,
//! with the folder itself when the lock created it and nothing was written there.
//! [`remove_stale_temps`] deletes the `.NAME.tmp-PID` files and folders of atomic writes whose
//! process is gone. Unix only (`flock(2)`, `kill(2)`).

use crate::error::{io_err, Result, TrainError};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside a locked folder.
pub const LOCK_FILE: &str = ".grokscope.lock";

/// An exclusive advisory lock on a folder, held until dropped.
#[derive(Debug)]
pub struct FolderLock {
    file: File,
    path: PathBuf,
    /// The folder, when `acquire` created it.
    created: Option<PathBuf>,
}

impl FolderLock {
    /// Takes the lock of `dir` (creating the folder) without waiting. Fails with
    /// [`TrainError::Locked`] naming the holder's pid when another live process holds it.
    pub fn acquire(dir: &Path) -> Result<FolderLock> {
        let created = (!dir.is_dir()).then(|| dir.to_path_buf());
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(LOCK_FILE);
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err(&path))?;
            if !try_flock(&file).map_err(io_err(&path))? {
                return Err(TrainError::Locked {
                    dir: dir.to_path_buf(),
                    pid: holder_pid(&mut file),
                });
            }
            // The holder removes the file before unlocking: a lock taken on a removed file is
            // no lock, so try again on the file now at `path`.
            if same_file(&file, &path) {
                file.set_len(0)
                    .and_then(|()| write!(file, "{}", std::process::id()))
                    .and_then(|()| file.flush())
                    .map_err(io_err(&path))?;
                return Ok(FolderLock {
                    file,
                    path,
                    created,
                });
            }
        }
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // Removed while still locked (see `acquire`); the lock goes with the file handle.
        let _ = fs::remove_file(&self.path);
        let _ = self.file.flush();
        if let Some(dir) = &self.created {
            // Fails, as it should, unless the folder is empty.
            let _ = fs::remove_dir(dir);
        }
    }
}

/// The pid the holder of the locked `file` wrote into it. The holder writes it just after taking
/// the lock, so an empty file is read again for up to about 200 ms; `None` if it stays unreadable.
fn holder_pid(file: &mut File) -> Option<u32> {
    for _ in 0..20 {
        let mut text = String::new();
        if file.seek(SeekFrom::Start(0)).is_ok() && file.read_to_string(&mut text).is_ok() {
            if let Ok(pid) = text.trim().parse() {
                return Some(pid);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

/// `flock(LOCK_EX | LOCK_NB)`: true when taken, false when another open file holds it.
fn try_flock(file: &File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(err),
    }
}

/// Whether `path` still names the open `file` (same device and inode).
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether a process with this pid exists (`kill(pid, 0)` does not fail with ESRCH).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let sent = unsafe { libc::kill(pid, 0) } == 0;
    sent || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Removes the files and folders in `dir` named `.{prefix}….tmp-PID` (the temporaries of atomic
/// writes) whose process PID no longer runs, and returns how many it removed. A missing `dir`
/// holds none.
pub fn remove_stale_temps(dir: &Path, prefix: &str) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let Some(pid) = temp_owner(&entry.file_name().to_string_lossy(), prefix) else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        let path = entry.path();
        let result = if entry.file_type().map_err(io_err(&path))?.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        result.map_err(io_err(&path))?;
        removed += 1;
    }
    Ok(removed)
}

/// Removes the staging folders `.NAME.tmp-PID` that killed writes of the folder `dir` (named
/// NAME) left beside it, as [`remove_stale_temps`] does.
pub fn remove_stale_staging(dir: &Path) -> Result<usize> {
    let Some(name) = dir.file_name() else {
        return Ok(0);
    };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    remove_stale_temps(parent, &format!("{}.", name.to_string_lossy()))
}

/// The PID of a temporary named `.{prefix}….tmp-PID`, `None` for any other name.
fn temp_owner(name: &str, prefix: &str) -> Option<u32> {
    let (_, pid) = name
        .strip_prefix('.')
        .filter(|n| n.starts_with(prefix))?
        .rsplit_once(".tmp-")?;
    pid.parse().ok()
}
