//! Reading the tidy CSV files of docs/architecture.md. Every error names the file, and the line
//! and column where that applies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{PlotError, Result};

/// A CSV file held as strings, with typed cell access.
struct CsvTable {
    path: PathBuf,
    header: Vec<String>,
    /// `(line number in the file, record)`.
    rows: Vec<(u64, csv::StringRecord)>,
}

impl CsvTable {
    fn read(path: &Path) -> Result<CsvTable> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|e| csv_error(path, e))?;
        let header = reader
            .headers()
            .map_err(|e| csv_error(path, e))?
            .iter()
            .map(str::to_string)
            .collect::<Vec<_>>();
        if header.iter().all(String::is_empty) {
            return Err(PlotError::BadFile {
                path: path.to_path_buf(),
                message: "empty file (no header line)".to_string(),
            });
        }
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| csv_error(path, e))?;
            let line = record.position().map_or(0, |p| p.line());
            rows.push((line, record));
        }
        Ok(CsvTable {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    fn column(&self, name: &str) -> Result<Column> {
        self.header
            .iter()
            .position(|h| h == name)
            .map(|index| Column {
                index,
                name: name.to_string(),
            })
            .ok_or_else(|| PlotError::MissingColumn {
                path: self.path.clone(),
                column: name.to_string(),
                header: self.header.join(","),
            })
    }

    /// The columns `names`, in order (the first missing one is the error).
    fn columns<const N: usize>(&self, names: [&str; N]) -> Result<[Column; N]> {
        let found = names
            .iter()
            .map(|name| self.column(name))
            .collect::<Result<Vec<_>>>()?;
        Ok(found
            .try_into()
            .unwrap_or_else(|_| unreachable!("one column per name")))
    }

    /// Every row read by `row(index, columns)` with the columns `names` resolved first.
    fn parse_rows<const N: usize, T>(
        &self,
        names: [&str; N],
        row: impl Fn(usize, &[Column; N]) -> Result<T>,
    ) -> Result<Vec<T>> {
        let columns = self.columns(names)?;
        (0..self.rows.len()).map(|r| row(r, &columns)).collect()
    }

    fn text(&self, row: usize, col: &Column) -> String {
        self.rows[row].1.get(col.index).unwrap_or("").to_string()
    }

    fn bad(&self, row: usize, col: &Column, expected: &'static str) -> PlotError {
        PlotError::BadValue {
            path: self.path.clone(),
            line: self.rows[row].0,
            column: col.name.clone(),
            value: self.text(row, col),
            expected,
        }
    }

    /// A non-negative integer cell.
    fn int(&self, row: usize, col: &Column) -> Result<u64> {
        let text = self.text(row, col);
        text.parse::<u64>()
            .map_err(|_| self.bad(row, col, "a non-negative integer"))
    }

    /// A number cell; empty and `nan` cells read as NaN (no value).
    fn float(&self, row: usize, col: &Column) -> Result<f64> {
        let text = self.text(row, col);
        if text.is_empty() || text.eq_ignore_ascii_case("nan") {
            return Ok(f64::NAN);
        }
        text.parse::<f64>()
            .map_err(|_| self.bad(row, col, "a number"))
    }

    /// A non-empty text cell.
    fn name(&self, row: usize, col: &Column) -> Result<String> {
        let text = self.text(row, col);
        if text.is_empty() {
            Err(self.bad(row, col, "a non-empty name"))
        } else {
            Ok(text)
        }
    }
}

struct Column {
    index: usize,
    name: String,
}

fn csv_error(path: &Path, err: csv::Error) -> PlotError {
    let line = err.position().map_or(0, |p| p.line());
    match err.into_kind() {
        csv::ErrorKind::Io(source) => PlotError::Io {
            path: path.to_path_buf(),
            source,
        },
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => PlotError::BadRow {
            path: path.to_path_buf(),
            line,
            message: format!("{len} fields where the header has {expected_len}"),
        },
        kind => PlotError::BadRow {
            path: path.to_path_buf(),
            line,
            message: format!("{kind:?}"),
        },
    }
}

pub use util::csv::METRICS_COLUMNS;
pub use util::schema::{LensRow, PatchRow};

/// Split names in the order figures and tables list them; others follow in file order.
const SPLIT_ORDER: [&str; 5] = [
    "train_inferred",
    "test_inferred_iid",
    "test_inferred_ood",
    "id_atomic",
    "ood_atomic",
];

/// metrics.csv: one row per evaluation, sorted by step (a repeated step keeps its last row).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub path: PathBuf,
    pub steps: Vec<u64>,
    /// Splits that have `S_acc`, `S_loss` and `S_p` columns, in display order.
    pub splits: Vec<String>,
    columns: BTreeMap<String, Vec<f64>>,
}

/// The step where training accuracy first reached a threshold: the paper's "start of grokking".
#[derive(Clone, Debug, PartialEq)]
pub struct Saturation {
    pub step: u64,
    /// 0.99, or 0.95 when 0.99 was never reached.
    pub threshold: f64,
    /// The split whose accuracy was used (`train_inferred`).
    pub split: String,
}

impl Metrics {
    /// Reads and checks metrics.csv.
    pub fn read(path: &Path) -> Result<Metrics> {
        let table = CsvTable::read(path)?;
        let fixed = METRICS_COLUMNS
            .iter()
            .map(|c| table.column(c))
            .collect::<Result<Vec<_>>>()?;
        let splits = split_names(&table, path)?;
        if table.rows.is_empty() {
            return Err(PlotError::BadFile {
                path: path.to_path_buf(),
                message: "no rows (has training evaluated yet?)".to_string(),
            });
        }
        let mut value_columns = fixed[1..]
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>();
        for split in &splits {
            for suffix in ["_acc", "_loss", "_p"] {
                value_columns.push(format!("{split}{suffix}"));
            }
        }
        let value_columns = value_columns
            .iter()
            .map(|c| table.column(c))
            .collect::<Result<Vec<_>>>()?;
        let mut by_step: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for row in 0..table.rows.len() {
            let step = table.int(row, &fixed[0])?;
            let values = value_columns
                .iter()
                .map(|c| table.float(row, c))
                .collect::<Result<Vec<_>>>()?;
            by_step.insert(step, values);
        }
        let steps = by_step.keys().copied().collect();
        let columns = value_columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), by_step.values().map(|v| v[i]).collect()))
            .collect();
        Ok(Metrics {
            path: path.to_path_buf(),
            steps,
            splits,
            columns,
        })
    }

    /// The values of a column, one per step.
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.columns.get(name).map(Vec::as_slice)
    }

    /// `(step, value)` points of a column.
    pub fn points(&self, name: &str) -> Vec<(f64, f64)> {
        self.column(name).map_or_else(Vec::new, |values| {
            self.steps
                .iter()
                .zip(values)
                .map(|(s, v)| (*s as f64, *v))
                .collect()
        })
    }

    /// First step at which `column` is at least `threshold`.
    pub fn first_step_at_least(&self, column: &str, threshold: f64) -> Option<u64> {
        let values = self.column(column)?;
        self.steps
            .iter()
            .zip(values)
            .find(|(_, v)| **v >= threshold)
            .map(|(s, _)| *s)
    }

    /// The last recorded (non-NaN) value of `column` and its step.
    pub fn last_value(&self, column: &str) -> Option<(u64, f64)> {
        let values = self.column(column)?;
        self.steps
            .iter()
            .zip(values)
            .rev()
            .find(|(_, v)| !v.is_nan())
            .map(|(s, v)| (*s, *v))
    }

    /// The value of `column` at exactly `step`.
    pub fn value_at(&self, column: &str, step: u64) -> Option<f64> {
        let i = self.steps.binary_search(&step).ok()?;
        self.column(column).map(|v| v[i]).filter(|v| !v.is_nan())
    }

    /// The split that stands for training accuracy: `train_inferred`, else the first split whose
    /// name starts with `train`.
    pub fn train_split(&self) -> Option<&str> {
        self.splits
            .iter()
            .find(|s| *s == "train_inferred")
            .or_else(|| self.splits.iter().find(|s| s.starts_with("train")))
            .map(String::as_str)
    }

    /// First step where training accuracy reached 0.99, or 0.95 if it never reached 0.99
    /// ([`util::saturation::first_saturated`]).
    pub fn saturation(&self) -> Option<Saturation> {
        let split = self.train_split()?;
        let values = self.column(&format!("{split}_acc"))?;
        let points = self
            .steps
            .iter()
            .copied()
            .zip(values.iter().map(|&v| Some(v)));
        let (step, threshold) = util::saturation::first_saturated(points)?;
        Some(Saturation {
            step,
            threshold,
            split: split.to_string(),
        })
    }
}

/// The splits of metrics.csv (each `<split>_acc` column, which needs `<split>_loss` and
/// `<split>_p` too), in [`SPLIT_ORDER`]; an error when there is none.
fn split_names(table: &CsvTable, path: &Path) -> Result<Vec<String>> {
    let mut splits = Vec::new();
    for name in &table.header {
        if let Some(split) = name.strip_suffix("_acc") {
            for suffix in ["_loss", "_p"] {
                table.column(&format!("{split}{suffix}"))?;
            }
            splits.push(split.to_string());
        }
    }
    if splits.is_empty() {
        return Err(PlotError::BadFile {
            path: path.to_path_buf(),
            message: format!(
                "no per-split columns `<split>_acc` (the header has: {})",
                table.header.join(",")
            ),
        });
    }
    splits.sort_by_key(|s| {
        SPLIT_ORDER
            .iter()
            .position(|o| o == s)
            .unwrap_or(usize::MAX)
    });
    Ok(splits)
}

/// A row of layer_norms.csv.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormRow {
    pub step: u64,
    pub component: String,
    pub norm: f64,
}

/// Reads layer_norms.csv (`step,component,norm`).
pub fn read_layer_norms(path: &Path) -> Result<Vec<LayerNormRow>> {
    let t = CsvTable::read(path)?;
    t.parse_rows(
        ["step", "component", "norm"],
        |r, [step, component, norm]| {
            Ok(LayerNormRow {
                step: t.int(r, step)?,
                component: t.name(r, component)?,
                norm: t.float(r, norm)?,
            })
        },
    )
}

/// Reads lens.csv or probe.csv (`step,layer,position,target,metric,value`).
pub fn read_lens(path: &Path) -> Result<Vec<LensRow>> {
    let t = CsvTable::read(path)?;
    let names = ["step", "layer", "position", "target", "metric", "value"];
    t.parse_rows(
        names,
        |r, [step, layer, position, target, metric, value]| {
            Ok(LensRow {
                step: t.int(r, step)?,
                corruption: None,
                layer: t.int(r, layer)? as usize,
                position: t.name(r, position)?,
                target: t.name(r, target)?,
                metric: t.name(r, metric)?,
                value: t.float(r, value)?,
            })
        },
    )
}

/// Reads patch.csv (`step,corruption,direction,component,layer,position,metric,value`).
pub fn read_patch(path: &Path) -> Result<Vec<PatchRow>> {
    read_patch_like(path, false)
}

/// Reads attribution.csv: the patch.csv columns plus `method`.
pub fn read_attribution(path: &Path) -> Result<Vec<PatchRow>> {
    read_patch_like(path, true)
}

fn read_patch_like(path: &Path, with_method: bool) -> Result<Vec<PatchRow>> {
    let t = CsvTable::read(path)?;
    let names = [
        "step",
        "corruption",
        "direction",
        "component",
        "layer",
        "position",
        "metric",
        "value",
    ];
    let columns = t.columns(names)?;
    let method = if with_method {
        Some(t.column("method")?)
    } else {
        None
    };
    let [step, corruption, direction, component, layer, position, metric, value] = &columns;
    (0..t.rows.len())
        .map(|r| {
            Ok(PatchRow {
                step: t.int(r, step)?,
                corruption: t.name(r, corruption)?,
                direction: t.name(r, direction)?,
                component: t.name(r, component)?,
                layer: t.int(r, layer)? as usize,
                position: t.name(r, position)?,
                metric: t.name(r, metric)?,
                value: t.float(r, value)?,
                method: method.as_ref().map(|m| t.name(r, m)).transpose()?,
            })
        })
        .collect()
}

/// A row of dla.csv.
#[derive(Clone, Debug, PartialEq)]
pub struct DlaRow {
    pub step: u64,
    pub component: String,
    pub value: f64,
}

/// Reads dla.csv (`step,component,value`).
pub fn read_dla(path: &Path) -> Result<Vec<DlaRow>> {
    let t = CsvTable::read(path)?;
    t.parse_rows(
        ["step", "component", "value"],
        |r, [step, component, value]| {
            Ok(DlaRow {
                step: t.int(r, step)?,
                component: t.name(r, component)?,
                value: t.float(r, value)?,
            })
        },
    )
}

/// The `example` cell of attention.csv rows that hold the mean over the sampled prompts.
pub const MEAN_EXAMPLE: &str = "mean";

/// A row of attention.csv.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionRow {
    pub step: u64,
    /// The example's line in examples.jsonl; `None` for the mean over the examples
    /// ([`MEAN_EXAMPLE`]).
    pub example: Option<u64>,
    pub layer: usize,
    pub head: usize,
    pub query: String,
    pub key: String,
    pub value: f64,
}

/// Reads attention.csv (`step,example,layer,head,query,key,value`; `example` is an integer or
/// [`MEAN_EXAMPLE`]).
pub fn read_attention(path: &Path) -> Result<Vec<AttentionRow>> {
    let t = CsvTable::read(path)?;
    let names = ["step", "example", "layer", "head", "query", "key", "value"];
    t.parse_rows(
        names,
        |r, [step, example, layer, head, query, key, value]| {
            Ok(AttentionRow {
                step: t.int(r, step)?,
                example: match t.text(r, example).as_str() {
                    MEAN_EXAMPLE => None,
                    _ => Some(t.int(r, example)?),
                },
                layer: t.int(r, layer)? as usize,
                head: t.int(r, head)? as usize,
                query: t.name(r, query)?,
                key: t.name(r, key)?,
                value: t.float(r, value)?,
            })
        },
    )
}

/// Sort key that puts token roles in prompt order (`h, r1, r2, …` / `a, q, e1, mask, e2`);
/// a set such as `e1+mask` sorts by its first role; unknown names sort after the known ones.
pub(crate) fn role_rank(name: &str) -> usize {
    let first = name.split(['+', ',', '&', ' ']).next().unwrap_or(name);
    match first {
        "h" | "a" => 0,
        "q" => 1,
        "e1" => 2,
        "mask" => 3,
        "e2" => 4,
        _ => first
            .strip_prefix('r')
            .and_then(|k| k.parse::<usize>().ok())
            .unwrap_or(1000),
    }
}

/// Distinct values in order of first appearance.
pub(crate) fn distinct<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for v in values {
        if !seen.iter().any(|s| s == v) {
            seen.push(v.to_string());
        }
    }
    seen
}

/// Distinct role names sorted in prompt order (ties keep their first appearance).
pub(crate) fn roles_in_order<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut roles = distinct(values);
    roles.sort_by_key(|r| role_rank(r));
    roles
}

/// `path` if it is an existing file.
pub(crate) fn existing(path: PathBuf) -> Option<PathBuf> {
    path.is_file().then_some(path)
}
