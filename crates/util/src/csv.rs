//! CSV records written as the `csv` crate's default writer writes them (comma-separated,
//! `\n`-terminated, a field quoted only when it holds a comma, a quote, `\r` or `\n`, quotes
//! doubled inside, and a record of one empty field written as `""`), so that files written here
//! and files written through `csv::Writer` are byte-identical.

use std::fmt::Write;

/// The leading columns of a training run's `metrics.csv` (written by the `train` crate, read by
/// `plot` and the sweeps); accuracy, loss and gold probability per split follow.
pub const METRICS_COLUMNS: [&str; 6] = [
    "step",
    "epoch",
    "lr",
    "train_loss",
    "grad_norm",
    "weight_norm",
];

/// One CSV record with its terminating newline.
pub fn record<S: AsRef<str>>(fields: impl IntoIterator<Item = S>) -> String {
    let fields: Vec<S> = fields.into_iter().collect();
    if let [only] = fields.as_slice() {
        if only.as_ref().is_empty() {
            return "\"\"\n".to_string();
        }
    }
    let mut line = String::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        push_field(&mut line, field.as_ref());
    }
    line.push('\n');
    line
}

/// A whole CSV file: the header record, then one record per row.
pub fn table<S: AsRef<str>>(header: &[S], rows: &[Vec<String>]) -> String {
    let mut text = record(header);
    for row in rows {
        text.push_str(&record(row));
    }
    text
}

/// Appends `field`, quoted when it holds a special character.
fn push_field(line: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        let _ = write!(line, "\"{}\"", field.replace('"', "\"\""));
    } else {
        line.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(record(["a", "1.5", ""]), "a,1.5,\n");
        assert_eq!(
            record(["x,y", "say \"hi\"", "l\n2"]),
            "\"x,y\",\"say \"\"hi\"\"\",\"l\n2\"\n"
        );
        assert_eq!(record([""]), "\"\"\n");
        assert_eq!(
            table(&["h1", "h2"], &[vec!["1".into(), "2".into()]]),
            "h1,h2\n1,2\n"
        );
    }
}
