//! Causal tracing (patch.csv) and attribution patching (attribution.csv): layer × position heatmaps
//! per corruption, per-head heatmaps, the circuit (each corrupted token's own position) at two
//! checkpoints and its change (the paper's Fig. 4b/5b), and exact versus attribution patching.

use std::collections::BTreeMap;
use std::path::Path;

use crate::colormap::ColorScale;
use crate::data::{distinct, read_attribution, read_patch, roles_in_order, PatchRow};
use crate::error::Result;
use crate::figures::{
    choose_step, metric_label, metric_scale, panels_scale, rows_where, saturation_step, slug,
    spread_steps, step_panels, CellLabels, Figure, FigureOptions, Section, LAYER_AXIS,
};
use crate::small_multiples::Panel;

/// Most checkpoints shown as small multiples.
const MAX_PANELS: usize = 8;

/// Figures from patch.csv, for each direction (noising first) and its primary metric
/// (causal strength for noising, restoration for denoising):
/// `patch_<direction>_<corruption>_step<N>.png` (layer × position, one panel per component),
/// `patch_heads_<direction>_<corruption>_step<N>.png` (layer × head) when heads were patched, and
/// the circuit figures `circuit_<direction>_…` (own position of each corrupted token, residual
/// stream): the two compared steps, their difference on a diverging map, and all steps.
pub fn causal_tracing(
    patch_csv: &Path,
    out_dir: &Path,
    options: &FigureOptions,
) -> Result<Vec<Figure>> {
    per_direction(&read_patch(patch_csv)?, |direction, of_direction| {
        let metrics = distinct(of_direction.iter().map(|r| r.metric.as_str()));
        let metric = primary_metric(direction, &metrics);
        let selected = rows_where(of_direction, |r| r.metric == metric);
        let mut figures = Vec::new();
        if let Some((context, at_step)) =
            Context::at_chosen_step(&selected, direction, &metric, out_dir, options.step)
        {
            for corruption in roles_in_order(at_step.iter().map(|r| r.corruption.as_str())) {
                let of_corruption = rows_where(&at_step, |r| r.corruption == corruption);
                figures.extend(context.per_corruption(&corruption, &of_corruption)?);
                figures.extend(context.per_head(&corruption, &of_corruption)?);
            }
            figures.extend(circuit_figures(
                &selected, direction, &metric, out_dir, options,
            )?);
        }
        Ok(figures)
    })
}

/// Figures from attribution.csv: for each direction, corruption and metric at one step,
/// `attribution_<direction>_<corruption>_<metric>_step<N>.png` with one row of panels per method
/// (exact, attribution) and one column per component, on one colour scale; the caption gives the
/// Spearman rank correlation between the methods.
pub fn attribution_patching(
    attribution_csv: &Path,
    out_dir: &Path,
    options: &FigureOptions,
) -> Result<Vec<Figure>> {
    per_direction(
        &read_attribution(attribution_csv)?,
        |direction, of_direction| attribution_figures(direction, of_direction, out_dir, options),
    )
}

/// The attribution figures of one direction's rows: one per corruption and metric, at the step
/// chosen by `options.step`.
fn attribution_figures(
    direction: &str,
    rows: &[&PatchRow],
    out_dir: &Path,
    options: &FigureOptions,
) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for corruption in roles_in_order(rows.iter().map(|r| r.corruption.as_str())) {
        let of_corruption = rows_where(rows, |r| {
            r.corruption == corruption && !is_head(&r.component)
        });
        for metric in distinct(of_corruption.iter().map(|r| r.metric.as_str())) {
            let selected = rows_where(&of_corruption, |r| r.metric == metric);
            if let Some((context, at_step)) =
                Context::at_chosen_step(&selected, direction, &metric, out_dir, options.step)
            {
                figures.push(context.attribution(&corruption, &at_step)?);
            }
        }
    }
    Ok(figures)
}

/// What a single-step patching figure needs to know.
struct Context<'a> {
    direction: &'a str,
    metric: &'a str,
    step: u64,
    /// Caption sentence when the step shown is not the one asked for; else empty.
    note: String,
    out_dir: &'a Path,
}

impl<'a> Context<'a> {
    /// The context of `rows` (one direction and metric) at the checkpoint [`choose_step`] picks
    /// for `wanted`, with the rows at that checkpoint; `None` when `rows` is empty.
    fn at_chosen_step<'r>(
        rows: &[&'r PatchRow],
        direction: &'a str,
        metric: &'a str,
        out_dir: &'a Path,
        wanted: Option<u64>,
    ) -> Option<(Context<'a>, Vec<&'r PatchRow>)> {
        let (step, note) = choose_step(&sorted_steps(rows), wanted)?;
        let context = Context {
            direction,
            metric,
            step,
            note,
            out_dir,
        };
        Some((context, rows_where(rows, |r| r.step == step)))
    }

    /// One row of panels per method (exact, attribution) and one column per component, each
    /// `[layer][position]`, with the methods' rank agreement in the caption.
    fn attribution(&self, corruption: &str, rows: &[&PatchRow]) -> Result<Figure> {
        let (direction, metric, step, note) = (self.direction, self.metric, self.step, &self.note);
        let components = components_in_order(rows);
        let grid = Grid::new(rows, |r| {
            (
                format!("{}|{}", r.method.as_deref().unwrap_or(""), r.component),
                r.position.clone(),
            )
        });
        let panels = method_panels(&grid, &methods_in_order(rows), &components);
        let scale = panels_scale(metric, &panels);
        let label = metric_label(metric);
        let path = self.out_dir.join(format!(
            "attribution_{}_{}_{}_step{step}.png",
            slug(direction),
            slug(corruption),
            slug(metric)
        ));
        grid.labels(LAYER_AXIS, "position (token role)", label.clone())
            .save_panels(
                &path,
                format!("Attribution patching ({direction}): corrupt {corruption}, step {step}"),
                panels,
                scale,
                Some(components.len()),
            )?;
        let agreement = method_agreement(&grid, &components);
        Ok(Figure {
            path,
            caption: format!(
            "{label} per layer and position when each state is patched ({}), with {corruption} \
             corrupted, at checkpoint {step}: exact activation patching against its \
             gradient-based approximation.{agreement}{note}",
            direction_text(direction)
        ),
            section: Section::AttributionPatching,
        })
    }

    /// Layer × position for each non-head component: one heatmap, or one panel per component.
    fn per_corruption(&self, corruption: &str, rows: &[&PatchRow]) -> Result<Option<Figure>> {
        let rows: Vec<&PatchRow> = rows_where(rows, |r| !is_head(&r.component));
        if rows.is_empty() {
            return Ok(None);
        }
        let components = components_in_order(&rows);
        let grid = Grid::new(&rows, |r| (r.component.clone(), r.position.clone()));
        let label = metric_label(self.metric);
        let labels = grid.labels(LAYER_AXIS, "patched position (token role)", label.clone());
        let title = format!(
            "Causal tracing ({}): corrupt {corruption}, step {}",
            self.direction, self.step
        );
        let path = self.out_dir.join(format!(
            "patch_{}_{}_step{}.png",
            slug(self.direction),
            slug(corruption),
            self.step
        ));
        let scale = metric_scale(self.metric, rows.iter().map(|r| r.value));
        if let [component] = components.as_slice() {
            let title = format!("{title} ({})", component_label(component));
            labels.save_heatmap(&path, title, grid.matrix(component), scale)?;
        } else {
            let panels = components
                .iter()
                .map(|c| Panel {
                    title: component_label(c),
                    values: grid.matrix(c),
                })
                .collect();
            labels.save_panels(&path, title, panels, scale, Some(components.len()))?;
        }
        Ok(Some(Figure {
            path,
            caption: format!(
                "{label} when the {} at each layer (rows) and position (columns) is patched ({}), \
                 with {corruption} corrupted; checkpoint {}.{}{}",
                components
                    .iter()
                    .map(|c| component_label(c))
                    .collect::<Vec<_>>()
                    .join(" / "),
                direction_text(self.direction),
                self.step,
                metric_explanation(self.metric),
                self.note
            ),
            section: Section::CausalTracing,
        }))
    }

    /// Block × head, one panel per position.
    fn per_head(&self, corruption: &str, rows: &[&PatchRow]) -> Result<Option<Figure>> {
        let rows: Vec<&PatchRow> = rows_where(rows, |r| is_head(&r.component));
        if rows.is_empty() {
            return Ok(None);
        }
        let mut heads = distinct(rows.iter().map(|r| head_index(&r.component)));
        heads.sort_by_key(|h| h.parse::<usize>().unwrap_or(usize::MAX));
        let positions = roles_in_order(rows.iter().map(|r| r.position.as_str()));
        let grid = Grid::new(&rows, |r| {
            (r.position.clone(), head_index(&r.component).to_string())
        });
        let grid = Grid {
            columns: heads,
            ..grid
        };
        let label = metric_label(self.metric);
        let title = format!(
            "Causal tracing per head ({}): corrupt {corruption}, step {}",
            self.direction, self.step
        );
        let scale = metric_scale(self.metric, rows.iter().map(|r| r.value));
        let path = self.out_dir.join(format!(
            "patch_heads_{}_{}_step{}.png",
            slug(self.direction),
            slug(corruption),
            self.step
        ));
        let panels: Vec<Panel> = positions
            .iter()
            .map(|p| Panel {
                title: format!("position {p}"),
                values: grid.matrix(p),
            })
            .collect();
        grid.labels("block", "head", label.clone())
            .save_panels(&path, title, panels, scale, None)?;
        Ok(Some(Figure {
            path,
            caption: format!(
                "{label} when one attention head's output at one position is patched ({}), per \
                 block (rows) and head (columns), with {corruption} corrupted; checkpoint {}.{}{}",
                direction_text(self.direction),
                self.step,
                metric_explanation(self.metric),
                self.note
            ),
            section: Section::CausalTracing,
        }))
    }
}

/// The attribution file's methods, exact first, then attribution, then any other.
fn methods_in_order(rows: &[&PatchRow]) -> Vec<String> {
    let mut methods = distinct(rows.iter().filter_map(|r| r.method.as_deref()));
    methods.sort_by_key(|m| match m.as_str() {
        "exact" => 0,
        "attribution" => 1,
        _ => 2,
    });
    methods
}

/// One `[layer][position]` panel per (method, component), method-major, from a grid keyed
/// `method|component`.
fn method_panels(grid: &Grid, methods: &[String], components: &[String]) -> Vec<Panel> {
    let mut panels = Vec::new();
    for method in methods {
        for component in components {
            panels.push(Panel {
                title: format!("{method} · {}", component_label(component)),
                values: grid.matrix(&format!("{method}|{component}")),
            });
        }
    }
    panels
}

/// The caption sentence giving the Spearman rank correlation between exact and attribution
/// patching over the cells both have; empty with fewer than 3 such cells.
fn method_agreement(grid: &Grid, components: &[String]) -> String {
    let (exact, approx): (Vec<f64>, Vec<f64>) = components
        .iter()
        .flat_map(|c| {
            let exact = grid.matrix(&format!("exact|{c}"));
            let approx = grid.matrix(&format!("attribution|{c}"));
            exact
                .into_iter()
                .flatten()
                .zip(approx.into_iter().flatten())
                .collect::<Vec<_>>()
        })
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .unzip();
    let rho = (exact.len() >= 3)
        .then(|| util::stats::spearman(&exact, &approx))
        .flatten();
    match rho {
        Some(rho) => format!(
            " Spearman rank correlation between exact and attribution patching over these cells: \
             {rho:.2}."
        ),
        None => String::new(),
    }
}

/// Column axis of every circuit figure.
const CIRCUIT_AXIS: &str = "corrupted token (its own position patched)";

/// The circuit view: for each corruption, the residual stream at the corrupted token's own
/// position, per layer; at two steps, their difference, and over all steps.
fn circuit_figures(
    rows: &[&PatchRow],
    direction: &str,
    metric: &str,
    out_dir: &Path,
    options: &FigureOptions,
) -> Result<Vec<Figure>> {
    let in_circuit = at_own_positions(rows);
    if in_circuit.is_empty() {
        return Ok(Vec::new());
    }
    let circuit = Circuit::new(&in_circuit, direction, metric, out_dir);
    if circuit.steps.len() < 2 {
        return Ok(vec![circuit.single_step()?]);
    }
    let compared = circuit.compared_steps(options);
    let mut figures = Vec::new();
    if compared.from != compared.to {
        figures.push(circuit.pair(&compared)?);
        figures.push(circuit.change(&compared)?);
    }
    figures.push(circuit.over_steps(&compared)?);
    Ok(figures)
}

/// The residual-stream rows patched at each corruption's own position (see [`own_position_of`]).
fn at_own_positions<'r>(rows: &[&'r PatchRow]) -> Vec<&'r PatchRow> {
    let resid: Vec<&PatchRow> = rows_where(rows, |r| r.component == "resid");
    let mut own_position = BTreeMap::new();
    for corruption in roles_in_order(resid.iter().map(|r| r.corruption.as_str())) {
        let positions = distinct(
            resid
                .iter()
                .filter(|r| r.corruption == corruption)
                .map(|r| r.position.as_str()),
        );
        if let Some(p) = own_position_of(&corruption, &positions) {
            own_position.insert(corruption, p);
        }
    }
    resid
        .into_iter()
        .filter(|r| own_position.get(&r.corruption) == Some(&r.position))
        .collect()
}

/// The circuit of one direction and metric: per step, `[layer][corruption]` values of the
/// residual stream at each corrupted token's own position.
struct Circuit<'a> {
    /// Panels keyed by step, columns the corruptions.
    grid: Grid,
    steps: Vec<u64>,
    direction: &'a str,
    metric: &'a str,
    /// The metric's axis label.
    label: String,
    /// The caption sentences explaining columns, direction and metric.
    explain: String,
    out_dir: &'a Path,
}

/// The two checkpoints a circuit change compares, with the caption text saying why.
struct ComparedSteps {
    from: u64,
    from_reason: String,
    to: u64,
    to_note: String,
}

impl<'a> Circuit<'a> {
    fn new(rows: &[&PatchRow], direction: &'a str, metric: &'a str, out_dir: &'a Path) -> Self {
        Circuit {
            grid: Grid::new(rows, |r| (r.step.to_string(), r.corruption.clone())),
            steps: sorted_steps(rows),
            direction,
            metric,
            label: metric_label(metric),
            explain: format!(
                " Columns: the corrupted token; the residual stream at its own position is \
                 patched ({}).{}",
                direction_text(direction),
                metric_explanation(metric)
            ),
            out_dir,
        }
    }

    /// Layer and column labels with `quantity` on the colour bar.
    fn labels(&self, quantity: String) -> CellLabels {
        self.grid.labels(LAYER_AXIS, CIRCUIT_AXIS, quantity)
    }

    /// `[layer][corruption]` at `step`.
    fn matrix(&self, step: u64) -> Vec<Vec<f64>> {
        self.grid.matrix(&step.to_string())
    }

    /// `circuit_<direction>_step<N>.png`, when only one step was traced.
    fn single_step(&self) -> Result<Figure> {
        let (direction, label, explain) = (self.direction, &self.label, &self.explain);
        let step = self.steps[0];
        let values = self.matrix(step);
        let scale = metric_scale(self.metric, values.iter().flatten().copied());
        let path = self
            .out_dir
            .join(format!("circuit_{}_step{step}.png", slug(direction)));
        let title = format!("Circuit ({direction}): {label}, step {step}");
        self.labels(label.clone())
            .save_heatmap(&path, title, values, scale)?;
        Ok(Figure {
            path,
            caption: format!("{label} per layer at checkpoint {step}.{explain}"),
            section: Section::CausalTracing,
        })
    }

    /// The steps asked for, else the saturation checkpoint (else the first) and the last.
    fn compared_steps(&self, options: &FigureOptions) -> ComparedSteps {
        let steps = &self.steps;
        let (to, to_note) =
            choose_step(steps, options.change_to).unwrap_or((steps[0], String::new()));
        let (from, from_reason) = match options.change_from {
            Some(wanted) => {
                let (step, note) =
                    choose_step(steps, Some(wanted)).unwrap_or((steps[0], String::new()));
                (step, format!("as asked.{note}"))
            }
            None => match (
                &options.saturation,
                saturation_step(steps, options.saturation.as_ref()),
            ) {
                (Some(sat), Some(step)) if step != to => (
                    step,
                    format!(
                        "the first traced checkpoint at or after step {}, where {} accuracy \
                         reached ≥ {} (the paper's start of grokking).",
                        sat.step, sat.split, sat.threshold
                    ),
                ),
                _ => (steps[0], "the first traced checkpoint.".to_string()),
            },
        };
        ComparedSteps {
            from,
            from_reason,
            to,
            to_note,
        }
    }

    /// `circuit_<direction>_step<A>_and_step<B>.png`: the two compared steps side by side.
    fn pair(&self, compared: &ComparedSteps) -> Result<Figure> {
        let (direction, label, explain) = (self.direction, &self.label, &self.explain);
        let (from, to) = (compared.from, compared.to);
        let (before, after) = (self.matrix(from), self.matrix(to));
        let scale = metric_scale(self.metric, before.iter().chain(&after).flatten().copied());
        let panels = vec![
            Panel {
                title: format!("step {from}"),
                values: before,
            },
            Panel {
                title: format!("step {to}"),
                values: after,
            },
        ];
        let path = self.out_dir.join(format!(
            "circuit_{}_step{from}_and_step{to}.png",
            slug(direction)
        ));
        let title = format!("Circuit ({direction}): {label}, step {from} and step {to}");
        self.labels(label.clone())
            .save_panels(&path, title, panels, scale, Some(2))?;
        Ok(Figure {
            path,
            caption: format!(
                "{label} per layer at step {from} ({}) and at step {to}.{explain}{}",
                compared.from_reason, compared.to_note
            ),
            section: Section::CausalTracing,
        })
    }

    /// `circuit_change_<direction>_step<A>_to_step<B>.png`: later minus earlier, diverging at 0.
    fn change(&self, compared: &ComparedSteps) -> Result<Figure> {
        let (direction, label, explain) = (self.direction, &self.label, &self.explain);
        let (from, to) = (compared.from, compared.to);
        let change: Vec<Vec<f64>> = self
            .matrix(from)
            .iter()
            .zip(&self.matrix(to))
            .map(|(b, a)| b.iter().zip(a).map(|(b, a)| a - b).collect())
            .collect();
        let scale = ColorScale::diverging_from(change.iter().flatten().copied());
        let path = self.out_dir.join(format!(
            "circuit_change_{}_step{from}_to_step{to}.png",
            slug(direction)
        ));
        let title = format!("Circuit change ({direction}): step {to} − step {from}");
        self.labels(format!("Δ {label}"))
            .save_heatmap(&path, title, change, scale)?;
        Ok(Figure {
            path,
            caption: format!(
                "Change in {label} from step {from} ({}) to step {to}, per layer and corrupted \
                 token, on a diverging scale centred at 0: green cells matter more at step {to}, \
                 orange cells less. The paper's Fig. 4b/5b: during grokking the causal link from \
                 the middle-layer r1 state (composition) or the e1 and a states (comparison) to \
                 the prediction strengthens.{explain}{}",
                compared.from_reason, compared.to_note
            ),
            section: Section::CausalTracing,
        })
    }

    /// `circuit_<direction>_over_steps.png`: up to [`MAX_PANELS`] steps, the compared ones kept.
    fn over_steps(&self, compared: &ComparedSteps) -> Result<Figure> {
        let (direction, label, explain) = (self.direction, &self.label, &self.explain);
        let shown = spread_steps(&self.steps, MAX_PANELS, &[compared.from, compared.to]);
        let panels = step_panels(&shown, |s| self.matrix(s));
        let scale = panels_scale(self.metric, &panels);
        let path = self
            .out_dir
            .join(format!("circuit_{}_over_steps.png", slug(direction)));
        let title = format!("Circuit over training ({direction}): {label}");
        self.labels(label.clone())
            .save_panels(&path, title, panels, scale, None)?;
        Ok(Figure {
            path,
            caption: format!(
                "{label} per layer at {} of the {} traced checkpoints, on one colour scale.{explain}",
                shown.len(),
                self.steps.len()
            ),
            section: Section::CausalTracing,
        })
    }
}

/// Values indexed by (panel key, layer, column), with the layers and columns present.
struct Grid {
    layers: Vec<usize>,
    columns: Vec<String>,
    values: BTreeMap<(String, usize, String), f64>,
}

impl Grid {
    /// `key` maps a row to its (panel, column).
    fn new(rows: &[&PatchRow], key: impl Fn(&PatchRow) -> (String, String)) -> Grid {
        let mut layers: Vec<usize> = rows.iter().map(|r| r.layer).collect();
        layers.sort_unstable();
        layers.dedup();
        let keyed: Vec<((String, String), f64, usize)> =
            rows.iter().map(|r| (key(r), r.value, r.layer)).collect();
        Grid {
            layers,
            columns: roles_in_order(keyed.iter().map(|k| k.0 .1.as_str())),
            values: keyed
                .into_iter()
                .map(|((panel, column), value, layer)| ((panel, layer, column), value))
                .collect(),
        }
    }

    fn layer_labels(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.to_string()).collect()
    }

    /// The layers as rows and this grid's columns, named `row_axis` and `col_axis`, with
    /// `quantity` on the colour bar.
    fn labels(
        &self,
        row_axis: &'static str,
        col_axis: &'static str,
        quantity: String,
    ) -> CellLabels {
        CellLabels {
            rows: self.layer_labels(),
            columns: self.columns.clone(),
            row_axis,
            col_axis,
            quantity,
        }
    }

    /// `[layer][column]` of one panel; NaN where there is no row.
    fn matrix(&self, panel: &str) -> Vec<Vec<f64>> {
        self.layers
            .iter()
            .map(|&l| {
                self.columns
                    .iter()
                    .map(|c| {
                        self.values
                            .get(&(panel.to_string(), l, c.clone()))
                            .copied()
                            .unwrap_or(f64::NAN)
                    })
                    .collect()
            })
            .collect()
    }
}

fn sorted_steps(rows: &[&PatchRow]) -> Vec<u64> {
    let mut steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
    steps.sort_unstable();
    steps.dedup();
    steps
}

/// The figures `draw` makes of each patching direction's rows of `rows`, direction by direction:
/// noising first, then denoising, then any other.
fn per_direction(
    rows: &[PatchRow],
    draw: impl Fn(&str, &[&PatchRow]) -> Result<Vec<Figure>>,
) -> Result<Vec<Figure>> {
    let mut directions = distinct(rows.iter().map(|r| r.direction.as_str()));
    directions.sort_by_key(|d| match d.as_str() {
        "noising" => 0,
        "denoising" => 1,
        _ => 2,
    });
    let mut figures = Vec::new();
    for direction in directions {
        let of_direction: Vec<&PatchRow> =
            rows.iter().filter(|r| r.direction == direction).collect();
        figures.extend(draw(&direction, &of_direction)?);
    }
    Ok(figures)
}

/// Causal strength for noising (the paper), restoration for denoising, else the first present.
fn primary_metric(direction: &str, metrics: &[String]) -> String {
    let preferred: &[&str] = match direction {
        "denoising" => &["restoration", "logit_diff", "gold_prob", "causal_strength"],
        _ => &["causal_strength", "logit_diff", "gold_prob", "restoration"],
    };
    preferred
        .iter()
        .find(|m| metrics.iter().any(|x| x == *m))
        .map(|m| m.to_string())
        .or_else(|| metrics.first().cloned())
        .unwrap_or_default()
}

fn components_in_order(rows: &[&PatchRow]) -> Vec<String> {
    let mut components = distinct(rows.iter().map(|r| r.component.as_str()));
    components.sort_by_key(|c| match c.as_str() {
        "resid" => 0,
        "attn_out" => 1,
        "mlp_out" => 2,
        _ => 3,
    });
    components
}

fn component_label(component: &str) -> String {
    match component {
        "resid" => "residual stream".to_string(),
        "attn_out" => "attention output".to_string(),
        "mlp_out" => "MLP output".to_string(),
        other => other.to_string(),
    }
}

fn is_head(component: &str) -> bool {
    component.starts_with("head.")
}

fn head_index(component: &str) -> &str {
    component.strip_prefix("head.").unwrap_or(component)
}

/// The position a corruption's token sits at: the position named like it, or a position set
/// containing it (`e1+mask`), or its only position.
fn own_position_of(corruption: &str, positions: &[String]) -> Option<String> {
    positions
        .iter()
        .find(|p| *p == corruption)
        .or_else(|| {
            positions
                .iter()
                .find(|p| p.split(['+', ',', '&', ' ']).any(|part| part == corruption))
        })
        .or(if positions.len() == 1 {
            positions.first()
        } else {
            None
        })
        .cloned()
}

fn direction_text(direction: &str) -> String {
    match direction {
        "noising" => "noising: the corrupted run's state replaces the clean one".to_string(),
        "denoising" => "denoising: the clean run's state replaces the corrupted one".to_string(),
        other => other.to_string(),
    }
}

fn metric_explanation(metric: &str) -> &'static str {
    match metric {
        "causal_strength" => {
            " Causal strength: the fraction of examples whose top-1 prediction is no longer the \
             gold answer after the patch."
        }
        "restoration" => {
            " Restoration: (LD patched − LD corrupted) / (LD clean − LD corrupted) of the logit \
             difference LD; 1 = fully restored."
        }
        _ => "",
    }
}
