//! `grokscope chart`: a line chart of any long-format CSV file (one row per observation), such as
//! the ones the experiment scripts under `sweeps/` write. One line per value of the series
//! columns; each point is the mean of the y column over the rows that share its line and x value
//! (seeds, for instance).
//!
//! ```text
//! grokscope chart --csv loops.csv --x loops --y acc --series split \
//!     --where split=test_inferred_iid --where split=test_inferred_iid_2hop --out loops.png
//! ```

use anyhow::{bail, Context, Result};
use plot::line_chart::{LineChart, Series};
use plot::style::palette_color;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Draw a line chart of a CSV file's columns.
#[derive(clap::Args, Debug, Clone)]
pub struct ChartArgs {
    /// The CSV file: a header row, then one row per observation
    #[arg(long, value_name = "FILE")]
    pub csv: PathBuf,
    /// Column of the horizontal axis (numbers)
    #[arg(long, value_name = "COLUMN")]
    pub x: String,
    /// Column of the vertical axis (numbers); rows sharing a line and an x value are averaged
    #[arg(long, value_name = "COLUMN")]
    pub y: String,
    /// Columns whose values name the lines, one line per combination [default: one line]
    #[arg(long, value_name = "COLUMN,…", value_delimiter = ',')]
    pub series: Vec<String>,
    /// Keep only the rows whose COLUMN is VALUE; repeated for one column, any of the values
    #[arg(long = "where", value_name = "COLUMN=VALUE")]
    pub filters: Vec<String>,
    /// Title [default: "Y against X"]
    #[arg(long)]
    pub title: Option<String>,
    /// Range of the vertical axis [default: from the data]
    #[arg(long, value_name = "LO,HI", value_delimiter = ',')]
    pub y_range: Option<Vec<f64>>,
    /// The PNG file to write
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// One line of the chart: its name and its (x, mean y) points in increasing x.
#[derive(Debug, PartialEq)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub fn run(args: &ChartArgs) -> Result<()> {
    let (header, rows) = read_table(&args.csv)?;
    let lines = lines(&header, &rows, args).with_context(|| args.csv.display().to_string())?;
    let title = args
        .title
        .clone()
        .unwrap_or_else(|| format!("{} against {}", args.y, args.x));
    let mut chart = LineChart::new(title, args.x.clone(), args.y.clone());
    match args.y_range.as_deref() {
        None => {}
        Some(&[lo, hi]) if lo < hi => chart = chart.y_range(lo, hi),
        Some(range) => bail!("--y-range {range:?}: expected LO,HI with LO < HI"),
    }
    for (i, line) in lines.iter().enumerate() {
        chart = chart.series(Series::new(
            line.name.clone(),
            line.points.clone(),
            palette_color(i),
        ));
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    chart.save(&args.out, chart.default_size())?;
    println!("wrote {} ({} lines)", args.out.display(), lines.len());
    Ok(())
}

/// The header and rows of the CSV file at `path`.
fn read_table(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    let mut reader = csv::Reader::from_path(path).with_context(|| path.display().to_string())?;
    let header = reader.headers()?.iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| Ok(r?.iter().map(String::from).collect()))
        .collect::<Result<_, csv::Error>>()
        .with_context(|| path.display().to_string())?;
    Ok((header, rows))
}

/// The columns a chart reads and the rows it keeps, resolved against a header.
struct Selection<'a> {
    x: usize,
    y: usize,
    /// Series columns: index and name.
    series: Vec<(usize, &'a str)>,
    /// Column → the values a kept row may have there.
    filters: BTreeMap<usize, Vec<&'a str>>,
}

impl<'a> Selection<'a> {
    /// Resolves `args`' column names against `header`; an unknown name is an error.
    fn new(header: &[String], args: &'a ChartArgs) -> Result<Selection<'a>> {
        let column = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .with_context(|| format!("no column `{name}` (columns: {})", header.join(", ")))
        };
        let series = args
            .series
            .iter()
            .map(|s| Ok((column(s)?, s.as_str())))
            .collect::<Result<_>>()?;
        let mut filters: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
        for filter in &args.filters {
            let (name, value) = filter
                .split_once('=')
                .with_context(|| format!("--where {filter}: expected COLUMN=VALUE"))?;
            filters.entry(column(name)?).or_default().push(value);
        }
        Ok(Selection {
            x: column(&args.x)?,
            y: column(&args.y)?,
            series,
            filters,
        })
    }

    /// Whether `row` passes the filters and has an x and a y value.
    fn keeps(&self, row: &[String]) -> bool {
        let wanted = self
            .filters
            .iter()
            .all(|(&c, values)| values.contains(&row[c].as_str()));
        wanted && !row[self.x].is_empty() && !row[self.y].is_empty()
    }

    /// The name of `row`'s line: `col=value, …` of the series columns, or `y_name` without any.
    fn line_name(&self, row: &[String], y_name: &str) -> String {
        if self.series.is_empty() {
            return y_name.to_string();
        }
        let parts: Vec<String> = self
            .series
            .iter()
            .map(|&(c, s)| format!("{s}={}", row[c]))
            .collect();
        parts.join(", ")
    }
}

/// The chart's lines from `rows` under `header`: rows kept by the filters and with both an x and
/// a y value (an empty cell is a missing value, e.g. a milestone not reached), grouped by the series
/// columns (names `col=value, …`, or the y column's name without series), y averaged per x.
pub fn lines(header: &[String], rows: &[Vec<String>], args: &ChartArgs) -> Result<Vec<Line>> {
    let selection = Selection::new(header, args)?;
    let mut points: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (i, row) in rows
        .iter()
        .enumerate()
        .filter(|(_, row)| selection.keeps(row))
    {
        let number = |c: usize| {
            let value = row[c].parse::<f64>().ok().filter(|v| v.is_finite());
            value.with_context(|| {
                format!(
                    "row {}: {} = {:?} is not a number",
                    i + 2,
                    header[c],
                    row[c]
                )
            })
        };
        let name = selection.line_name(row, &args.y);
        points
            .entry(name)
            .or_default()
            .push((number(selection.x)?, number(selection.y)?));
    }
    if points.is_empty() {
        bail!("no row with an x and a y value is left after the --where filters");
    }
    let line = |(name, points)| Line {
        name,
        points: mean_per_x(points),
    };
    Ok(points.into_iter().map(line).collect())
}

/// The mean y of each distinct x, in increasing x.
fn mean_per_x(mut points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
        .chunk_by(|a, b| a.0 == b.0)
        .map(|same_x| (same_x[0].0, util::stats::mean(same_x.iter().map(|p| p.1))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(series: &[&str], filters: &[&str]) -> ChartArgs {
        ChartArgs {
            csv: PathBuf::new(),
            x: "loops".into(),
            y: "acc".into(),
            series: series.iter().map(|s| s.to_string()).collect(),
            filters: filters.iter().map(|s| s.to_string()).collect(),
            title: None,
            y_range: None,
            out: PathBuf::new(),
        }
    }

    fn table() -> (Vec<String>, Vec<Vec<String>>) {
        let header = ["seed", "loops", "split", "acc"].map(String::from).to_vec();
        let rows = [
            "1,2,a,0.5",
            "2,2,a,0.7",
            "1,1,a,0.1",
            "1,1,b,0.9",
            "2,1,b,0.8",
            "1,3,c,1",
            "2,3,c,",
        ];
        let rows = rows
            .iter()
            .map(|r| r.split(',').map(String::from).collect())
            .collect();
        (header, rows)
    }

    #[test]
    fn one_line_per_series_value_with_the_mean_per_x() {
        let (header, rows) = table();
        let got = lines(&header, &rows, &args(&["split"], &["split=a", "split=b"])).unwrap();
        let want = [
            ("split=a", vec![(1.0, 0.1), (2.0, 0.6)]),
            ("split=b", vec![(1.0, 0.85)]),
        ];
        assert_eq!(got.len(), want.len());
        for (line, (name, points)) in got.iter().zip(want) {
            assert_eq!(line.name, name);
            assert_eq!(line.points.len(), points.len());
            for (&(x, y), (wx, wy)) in line.points.iter().zip(points) {
                assert!(x == wx && (y - wy).abs() < 1e-12, "{line:?}");
            }
        }
        let single = lines(&header, &rows, &args(&[], &[])).unwrap();
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].name, "acc");
        assert_eq!(single[0].points.len(), 3);
    }

    #[test]
    fn bad_columns_filters_and_values_are_named() {
        let (header, mut rows) = table();
        let err =
            |a: &ChartArgs, rows: &[Vec<String>]| lines(&header, rows, a).unwrap_err().to_string();
        assert!(err(&args(&["nope"], &[]), &rows).contains("no column `nope`"));
        assert!(err(&args(&[], &["split"]), &rows).contains("expected COLUMN=VALUE"));
        assert!(err(&args(&[], &["split=z"]), &rows).contains("no row with an x and a y value"));
        rows[2][3] = "high".into();
        assert!(err(&args(&[], &[]), &rows).contains("row 4: acc = \"high\""));
    }
}
