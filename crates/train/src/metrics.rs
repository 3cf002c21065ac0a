//! `metrics.csv` and `layer_norms.csv`: append-only CSV files, one row per evaluation, flushed row
//! by row. On resume, rows after the resumed step are dropped so that a resumed run writes exactly
//! the rows an uninterrupted run would have.

use crate::error::{io_err, Result, TrainError};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// An append-only CSV file whose first column is the step.
pub struct CsvLog {
    path: PathBuf,
    file: File,
    columns: usize,
}

impl CsvLog {
    /// Opens `path` for appending rows under `header`. Rows whose step is greater than `keep_upto`
    /// are dropped (all rows when `keep_upto` is 0); an existing file must have the same header.
    pub fn open(path: &Path, header: &[String], keep_upto: u64) -> Result<CsvLog> {
        let mut text = util::csv::record(header);
        let header_line = text.trim_end().to_string();
        if path.exists() {
            let old = std::fs::read_to_string(path).map_err(io_err(path))?;
            let mut lines = old.lines();
            let old_header = lines.next().unwrap_or_default();
            if old_header != header_line {
                return Err(TrainError::Mismatch(format!(
                    "{} has columns `{old_header}`, this run writes `{header_line}` (the dataset's \
                     splits differ from the ones the run was started with)",
                    path.display()
                )));
            }
            for line in lines {
                let step = line.split(',').next().and_then(|s| s.parse::<u64>().ok());
                match step {
                    Some(s) if s <= keep_upto && line.split(',').count() == header.len() => {
                        text.push_str(line);
                        text.push('\n');
                    }
                    _ => {}
                }
            }
        }
        util::fs::write_atomic(path, text.as_bytes()).map_err(io_err(path))?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        Ok(CsvLog {
            path: path.to_path_buf(),
            file,
            columns: header.len(),
        })
    }

    /// Appends one row (already formatted fields) and flushes it to the file.
    pub fn row(&mut self, fields: &[String]) -> Result<()> {
        debug_assert_eq!(fields.len(), self.columns);
        let line = util::csv::record(fields);
        self.file
            .write_all(line.as_bytes())
            .map_err(io_err(&self.path))?;
        self.file.flush().map_err(io_err(&self.path))
    }
}

/// Formats a metric value: the shortest decimal that reads back as the same f32.
pub fn fmt_value(x: f64) -> String {
    format!("{}", x as f32)
}
