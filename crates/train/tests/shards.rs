//! The data-parallel team ([`train::shards::Team`]): every task runs exactly once, and a panicking
//! task is reported to the caller. (Its gradients are tested in `train.rs`.)

use std::sync::atomic::{AtomicUsize, Ordering};
use tch::Device;
use train::shards::Team;

fn team(threads: usize) -> Team {
    Team::new(threads, Device::Cpu).expect("libtorch runs on libgomp on Linux")
}

#[test]
fn teams_need_two_threads_and_the_cpu() {
    assert!(Team::new(1, Device::Cpu).is_none());
    assert!(Team::new(2, Device::Cuda(0)).is_none());
    assert_eq!(team(3).threads(), 3);
}

#[test]
fn every_task_runs_once_and_a_panic_reaches_the_caller() {
    for (threads, tasks) in [(2, 2), (2, 7), (3, 1), (4, 0)] {
        let runs: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
        team(threads).run(tasks, &|i| {
            runs[i].fetch_add(1, Ordering::SeqCst);
        });
        assert!(runs.iter().all(|r| r.load(Ordering::SeqCst) == 1));
    }
    let done = AtomicUsize::new(0);
    let result = std::panic::catch_unwind(|| {
        team(2).run(5, &|i| {
            assert_ne!(i, 3, "task 3 fails");
            done.fetch_add(1, Ordering::SeqCst);
        })
    });
    let message = result.unwrap_err();
    let message = message.downcast_ref::<String>().map_or("", String::as_str);
    assert!(message.contains("task 3 fails"), "{message}");
    assert_eq!(done.load(Ordering::SeqCst), 4, "the other tasks still ran");
}
