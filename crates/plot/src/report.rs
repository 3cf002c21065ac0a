//! `index.html` for a run: a table of key numbers and every figure with its caption. It uses
//! relative image paths and no scripts, so it opens straight from the file system.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use crate::data::{Metrics, Saturation};
use crate::error::{PlotError, Result};
use crate::figures::{Figure, RunInputs, Section};

/// The test split whose accuracy marks generalisation, and the level that counts as reached.
pub const TEST_ID_SPLIT: &str = "test_inferred_iid";
pub const TEST_ID_TARGET: f64 = 0.9;

/// The numbers a reader wants first.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyNumbers {
    pub last_step: u64,
    /// `(split, step, accuracy)` of each split's last evaluation.
    pub final_accuracy: Vec<(String, u64, f64)>,
    pub saturation: Option<Saturation>,
    /// First step where test_inferred_iid accuracy ≥ 0.9.
    pub test_id_reached: Option<u64>,
    /// Best test_inferred_iid accuracy and its step.
    pub test_id_best: Option<(u64, f64)>,
    pub weight_norm_at_saturation: Option<f64>,
    pub weight_norm_last: Option<(u64, f64)>,
}

impl KeyNumbers {
    /// Computes the key numbers from metrics.csv.
    pub fn from_metrics(metrics: &Metrics) -> KeyNumbers {
        let saturation = metrics.saturation();
        let test_column = format!("{TEST_ID_SPLIT}_acc");
        let test_id_best = metrics.column(&test_column).and_then(|values| {
            metrics
                .steps
                .iter()
                .zip(values)
                .filter(|(_, v)| v.is_finite())
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(s, v)| (*s, *v))
        });
        KeyNumbers {
            last_step: metrics.steps.last().copied().unwrap_or(0),
            final_accuracy: metrics
                .splits
                .iter()
                .filter_map(|s| {
                    metrics
                        .last_value(&format!("{s}_acc"))
                        .map(|(step, acc)| (s.clone(), step, acc))
                })
                .collect(),
            weight_norm_at_saturation: saturation
                .as_ref()
                .and_then(|s| metrics.value_at("weight_norm", s.step)),
            saturation,
            test_id_reached: metrics.first_step_at_least(&test_column, TEST_ID_TARGET),
            test_id_best,
            weight_norm_last: metrics.last_value("weight_norm"),
        }
    }
}

/// Writes `out_dir/index.html` showing `figures` (which should lie under `out_dir`) and the key
/// numbers of the run; returns the path written.
pub fn write_report(inputs: &RunInputs, out_dir: &Path, figures: &[Figure]) -> Result<PathBuf> {
    let metrics = Metrics::read(&inputs.metrics)?;
    let numbers = KeyNumbers::from_metrics(&metrics);
    std::fs::create_dir_all(out_dir).map_err(|source| PlotError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut sections: Vec<Section> = figures.iter().map(|f| f.section).collect();
    sections.sort();
    sections.dedup();

    let mut html = page_header(inputs);
    html.push_str(&navigation(&sections));
    html.push_str(&key_numbers_table(&numbers));
    html.push_str(&missing_note(inputs));
    html.push_str(&figure_sections(&sections, figures, out_dir)?);
    if let Some(config) = read_config(&inputs.run_dir) {
        let _ = writeln!(
            html,
            "<h2 id=\"configuration\">Run configuration</h2>\n<details>\n<summary>config.json\
             </summary>\n<pre>{}</pre>\n</details>",
            escape(&config)
        );
    }
    html.push_str(
        "<footer>Written by <code>grokscope report</code> from the CSV files above; \
                   re-run it to refresh.</footer>\n</body>\n</html>\n",
    );

    let path = out_dir.join("index.html");
    std::fs::write(&path, html).map_err(|source| PlotError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// The run's name: its folder's name, else the folder as given.
fn run_name(inputs: &RunInputs) -> String {
    inputs
        .run_dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| inputs.run_dir.display().to_string())
}

/// The document's head, the page title and the line naming the folders and files drawn from.
fn page_header(inputs: &RunInputs) -> String {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>grokscope report: {name}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <h1>grokscope report: {name}</h1>\n",
        name = escape(&run_name(inputs))
    );
    let _ = writeln!(
        html,
        "<p class=\"meta\">Run folder <code>{}</code>, analysis folder <code>{}</code>. Drawn \
         from {}.</p>",
        escape(&inputs.run_dir.display().to_string()),
        escape(&inputs.analysis_dir.display().to_string()),
        inputs
            .files()
            .iter()
            .map(|p| format!(
                "<code>{}</code>",
                escape(&p.file_name().unwrap_or_default().to_string_lossy())
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    html
}

/// Links to the key numbers and to each section.
fn navigation(sections: &[Section]) -> String {
    let mut html = String::from("<nav><a href=\"#key-numbers\">Key numbers</a>");
    for section in sections {
        let _ = write!(
            html,
            " · <a href=\"#{}\">{}</a>",
            section_id(*section),
            escape(section.title())
        );
    }
    html.push_str("</nav>\n");
    html
}

/// A note naming the analysis files not found; empty when all are there.
fn missing_note(inputs: &RunInputs) -> String {
    let missing = missing_analyses(inputs);
    if missing.is_empty() {
        return String::new();
    }
    format!(
        "<p class=\"note\">Not found in the analysis folder: {}. Run <code>grokscope \
         trace</code> (and <code>grokscope probe</code> / <code>dla</code>) to add those \
         figures.</p>\n",
        missing.join(", ")
    )
}

/// One heading per section with its figures, numbered from 1 across sections, each image linked
/// by its path relative to `out_dir`.
fn figure_sections(sections: &[Section], figures: &[Figure], out_dir: &Path) -> Result<String> {
    let mut html = String::new();
    let mut number = 0;
    for section in sections {
        let _ = writeln!(
            html,
            "<h2 id=\"{}\">{}</h2>",
            section_id(*section),
            escape(section.title())
        );
        for figure in figures.iter().filter(|f| f.section == *section) {
            number += 1;
            let href = url_path(&relative_path(&figure.path, out_dir)?);
            let _ = writeln!(
                html,
                "<figure id=\"figure-{number}\">\n<a href=\"{href}\"><img src=\"{href}\" \
                 alt=\"{alt}\"></a>\n<figcaption><b>Figure {number}.</b> {caption}</figcaption>\n\
                 </figure>",
                alt = escape(first_sentence(&figure.caption)),
                caption = escape(&figure.caption)
            );
        }
    }
    Ok(html)
}

const STYLE: &str = "body { font-family: 'DejaVu Sans', 'Segoe UI', Helvetica, Arial, sans-serif; \
color: #222; max-width: 1280px; margin: 2em auto; padding: 0 1.5em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta, .note, footer { color: #555; font-size: 0.92em; }
nav { margin: 1em 0; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 0.35em 0.9em; text-align: left; \
vertical-align: top; }
figure { margin: 1.8em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { max-width: 62em; color: #333; font-size: 0.95em; margin-top: 0.4em; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; }
footer { margin-top: 3em; }
";

/// The "Key numbers" heading and table: one (name, value) row each, in HTML.
fn key_numbers_table(n: &KeyNumbers) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    for (split, step, acc) in &n.final_accuracy {
        rows.push((
            format!("Final accuracy, <code>{}</code>", escape(split)),
            format!("{acc:.3} <span class=\"meta\">(step {step})</span>"),
        ));
    }
    rows.push(("Training saturated".to_string(), saturation_cell(n)));
    let test_label = format!("<code>{TEST_ID_SPLIT}</code> first ≥ {TEST_ID_TARGET}");
    rows.push((test_label, test_id_cell(n)));
    rows.push((
        "Weight norm at saturation".to_string(),
        match (&n.saturation, n.weight_norm_at_saturation) {
            (Some(s), Some(norm)) => {
                format!("{norm:.2} <span class=\"meta\">(step {})</span>", s.step)
            }
            _ => "—".to_string(),
        },
    ));
    rows.push(("Weight norm now".to_string(), weight_norm_now_cell(n)));
    rows.push(("Last step".to_string(), n.last_step.to_string()));
    let mut html = String::from("<h2 id=\"key-numbers\">Key numbers</h2>\n<table>\n<tbody>\n");
    for (name, value) in rows {
        let _ = writeln!(html, "<tr><th>{name}</th><td>{value}</td></tr>");
    }
    html.push_str("</tbody>\n</table>\n");
    html
}

/// The step where training saturated, its split and threshold, or that it never did.
fn saturation_cell(n: &KeyNumbers) -> String {
    match &n.saturation {
        Some(s) => format!(
            "step {} <span class=\"meta\">(<code>{}</code> accuracy first ≥ {}{})</span>",
            s.step,
            escape(&s.split),
            s.threshold,
            if s.threshold < 0.99 {
                "; it never reached 0.99"
            } else {
                ""
            }
        ),
        None => "not reached (training accuracy never ≥ 0.95)".to_string(),
    }
}

/// The step the in-distribution test split reached its target (with its ratio to the saturation
/// step), else its best accuracy, else that the column is missing.
fn test_id_cell(n: &KeyNumbers) -> String {
    match (n.test_id_reached, &n.test_id_best) {
        (Some(step), _) => {
            let ratio = n
                .saturation
                .as_ref()
                .filter(|s| s.step > 0)
                .map(|s| {
                    format!(
                        " <span class=\"meta\">({:.1}× the saturation step)</span>",
                        step as f64 / s.step as f64
                    )
                })
                .unwrap_or_default();
            format!("step {step}{ratio}")
        }
        (None, Some((step, best))) => {
            format!("not reached <span class=\"meta\">(best {best:.3} at step {step})</span>")
        }
        (None, None) => format!("no <code>{TEST_ID_SPLIT}_acc</code> column"),
    }
}

/// The last weight norm, its step and its ratio to the norm at saturation.
fn weight_norm_now_cell(n: &KeyNumbers) -> String {
    match n.weight_norm_last {
        Some((step, norm)) => {
            let change = n
                .weight_norm_at_saturation
                .filter(|s| *s > 0.0)
                .map(|s| format!(", {:.2}× the value at saturation", norm / s))
                .unwrap_or_default();
            format!("{norm:.2} <span class=\"meta\">(step {step}{change})</span>")
        }
        None => "—".to_string(),
    }
}

fn missing_analyses(inputs: &RunInputs) -> Vec<String> {
    [
        ("lens.csv", &inputs.lens),
        ("patch.csv", &inputs.patch),
        ("attribution.csv", &inputs.attribution),
        ("dla.csv", &inputs.dla),
        ("probe.csv", &inputs.probe),
        ("attention.csv", &inputs.attention),
    ]
    .into_iter()
    .filter(|(_, found)| found.is_none())
    .map(|(name, _)| format!("<code>{name}</code>"))
    .collect()
}

fn read_config(run_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(run_dir.join("config.json")).ok()?;
    Some(
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or(text),
    )
}

fn section_id(section: Section) -> &'static str {
    match section {
        Section::Training => "training",
        Section::LogitLens => "logit-lens",
        Section::CausalTracing => "causal-tracing",
        Section::AttributionPatching => "attribution-patching",
        Section::DirectLogitAttribution => "direct-logit-attribution",
        Section::Probes => "probes",
        Section::Attention => "attention",
    }
}

/// `path` relative to the folder `base` (both must exist).
fn relative_path(path: &Path, base: &Path) -> Result<PathBuf> {
    let canonical = |p: &Path| {
        p.canonicalize().map_err(|source| PlotError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    let (path, base) = (canonical(path)?, canonical(base)?);
    let path_parts: Vec<Component> = path.components().collect();
    let base_parts: Vec<Component> = base.components().collect();
    let common = path_parts
        .iter()
        .zip(&base_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut relative = PathBuf::new();
    for _ in common..base_parts.len() {
        relative.push("..");
    }
    for part in &path_parts[common..] {
        relative.push(part.as_os_str());
    }
    Ok(relative)
}

/// A relative path as a URL path: `/` separators, unsafe bytes percent-encoded.
fn url_path(path: &Path) -> String {
    let mut url = String::new();
    for (i, part) in path.components().enumerate() {
        if i > 0 {
            url.push('/');
        }
        for byte in part.as_os_str().to_string_lossy().bytes() {
            if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                url.push(byte as char);
            } else {
                let _ = write!(url, "%{byte:02X}");
            }
        }
    }
    url
}

/// The caption up to its first full stop, as the image's alternative text.
fn first_sentence(caption: &str) -> &str {
    caption.find(". ").map_or(caption, |end| &caption[..=end])
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn url_paths_encode_spaces() {
        assert_eq!(url_path(Path::new("a b/c.png")), "a%20b/c.png");
    }
}
