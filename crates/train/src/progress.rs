//! What the user sees while training: an indicatif bar (step, loss, key accuracies, steps/s), or
//! plain log lines with `--quiet` (and whenever stderr is not a terminal).

use crate::eval::SplitMetrics;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// Short names of the splits shown in the bar and the log lines.
const KEY_SPLITS: [(&str, &str); 3] = [
    ("train_inferred", "train"),
    ("test_inferred_iid", "id"),
    ("test_inferred_ood", "ood"),
];

/// Progress display for one run.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    last_accs: String,
    started: Instant,
    start_step: u64,
}

impl Progress {
    /// A bar from `start_step` to `total` steps, or plain lines when `quiet` or not on a terminal.
    pub fn new(start_step: u64, total: u64, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{bar:30} {pos}/{len} {per_sec:>10} eta {eta:>4} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_position(start_step);
            bar.reset_eta();
            bar
        });
        Progress {
            bar,
            total,
            last_accs: String::new(),
            started: Instant::now(),
            start_step,
        }
    }

    /// A message line that does not disturb the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Called every `log_every` steps with the latest training loss.
    pub fn tick(&self, step: u64, loss: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(step);
            bar.set_message(format!("loss {loss:.4} {}", self.last_accs));
        }
    }

    /// Called after each evaluation; prints a line in plain mode (and at checkpoints in bar mode).
    pub fn eval(
        &mut self,
        step: u64,
        epoch: f64,
        train_loss: f64,
        metrics: &[SplitMetrics],
        checkpoint: bool,
    ) {
        self.last_accs = KEY_SPLITS
            .iter()
            .filter_map(|(split, short)| {
                metrics
                    .iter()
                    .find(|m| m.name == *split)
                    .map(|m| format!("{short} {:.3}", m.acc))
            })
            .collect::<Vec<_>>()
            .join(" ");
        let rate = fmt_rate(self.steps_per_sec(step));
        let line = format!(
            "step {step}/{} epoch {epoch:.1} loss {train_loss:.4} {} ({rate}){}",
            self.total,
            self.last_accs,
            if checkpoint { " [checkpoint]" } else { "" }
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(step);
                bar.set_message(format!("loss {train_loss:.4} {}", self.last_accs));
                if checkpoint {
                    bar.println(line);
                }
            }
            None => eprintln!("{line}"),
        }
    }

    /// Steps per second since the display started (evaluation included).
    pub fn steps_per_sec(&self, step: u64) -> f64 {
        (step - self.start_step) as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A speed for people: `11.3 steps/s`, or `9.84 s/step` below one step per second.
pub fn fmt_rate(steps_per_sec: f64) -> String {
    if steps_per_sec >= 1.0 || steps_per_sec <= 0.0 {
        format!("{steps_per_sec:.1} steps/s")
    } else {
        format!("{:.2} s/step", 1.0 / steps_per_sec)
    }
}
