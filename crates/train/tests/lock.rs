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
