//! The folder lock: one holder at a time (a second open of the lock file is refused, naming the
//! holder's pid), released and cleaned up on drop, never blocked by a file a dead process left.

use train::lock::{FolderLock, LOCK_FILE};
use train::TrainError;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("lock-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_held_lock_refuses_a_second_holder_and_names_the_first() {
    let dir = scratch("held");
    let first = FolderLock::acquire(&dir).unwrap();
    let pid = std::process::id().to_string();
    assert_eq!(std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap(), pid);
    match FolderLock::acquire(&dir) {
        Err(err @ TrainError::Locked { .. }) => {
            assert!(
                err.to_string()
                    .contains(&format!("grokscope process {pid}")),
                "{err}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(first);
    assert!(!dir.join(LOCK_FILE).exists(), "the lock file stayed");
    FolderLock::acquire(&dir).unwrap();
}

#[test]
fn a_lock_file_of_a_dead_process_does_not_block() {
    let dir = scratch("stale");
    std::fs::write(dir.join(LOCK_FILE), "2000000000").unwrap();
    let lock = FolderLock::acquire(&dir).unwrap();
    let pid = std::process::id().to_string();
    assert_eq!(std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap(), pid);
    drop(lock);
}

#[test]
fn a_folder_the_lock_created_goes_when_nothing_was_written() {
    let root = scratch("created");
    let (empty, used) = (root.join("empty"), root.join("used"));
    drop(FolderLock::acquire(&empty).unwrap());
    assert!(!empty.exists());
    let lock = FolderLock::acquire(&used).unwrap();
    std::fs::write(used.join("result.csv"), "x\n").unwrap();
    drop(lock);
    assert!(used.join("result.csv").is_file());
}

/// A holder that has taken the lock but not yet written its pid (the moment between `flock` and
/// the write) is still named: the second process waits briefly for the pid.
#[test]
fn a_holder_that_writes_its_pid_late_is_still_named() {
    use std::os::unix::io::AsRawFd;
    let dir = scratch("late-pid");
    let path = dir.join(LOCK_FILE);
    let file = std::fs::File::create(&path).unwrap();
    // SAFETY: flock only reads the descriptor, which `file` keeps open.
    assert_eq!(
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let writer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::write(&path, "424242").unwrap();
        file
    });
    match FolderLock::acquire(&dir) {
        Err(TrainError::Locked { pid, .. }) => assert_eq!(pid, Some(424242)),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(writer.join().unwrap());
}
