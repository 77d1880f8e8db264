//! A run's human-readable report: `report.md` and SVG plots under `plots/`, written into the
//! run directory from `summary.json`'s [`Summary`] and the records of `metrics.jsonl`.
//!
//! - `report.md`: the evaluation curve (expert agreement and success with 95% Wilson
//!   intervals), inspection totals per cycle, last-epoch training metrics per stage, wall time
//!   per stage, and links to the plots.
//! - `plots/training-loss.svg`: loss per epoch (and per optimizer step when step records
//!   exist) for SFT and every reflection stage, the stages laid end to end.
//! - `plots/dpo.svg`: the implicit-reward margin and accuracy per reflection epoch.
//! - `plots/curve.svg`: agreement and success per evaluation point.
//!
//! A plot without data is skipped and the report says so. Everything is derived from files
//! the run already keeps, so the report can be rewritten at any time, e.g. after a resume.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;
use stepagent_eval::ci::Rate;
use stepagent_eval::{pct, Metrics};

use crate::agreement::Agreement;
use crate::inspect::InspectStats;
use crate::pipeline::{EvalPoint, Summary};
use crate::run::write_atomic;
use crate::TrainError;

/// The training-loss plot, relative to the run directory.
pub const TRAINING_LOSS_PLOT: &str = "plots/training-loss.svg";
/// The step-DPO plot, relative to the run directory.
pub const DPO_PLOT: &str = "plots/dpo.svg";
/// The evaluation-curve plot, relative to the run directory.
pub const CURVE_PLOT: &str = "plots/curve.svg";

/// Writes `report.md` and the plots into `run_dir` (each file atomically) from `summary` and
/// `run_dir/metrics.jsonl` (a missing metrics file only skips the plots drawn from it).
/// Returns the paths written.
pub fn write_report(run_dir: &Path, summary: &Summary) -> Result<Vec<PathBuf>, TrainError> {
    let metrics = read_metrics(&run_dir.join("metrics.jsonl"))?;
    let plots_dir = run_dir.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|e| TrainError::file(&plots_dir, e))?;

    let mut written = Vec::new();
    let mut plots = Vec::new();
    for (rel, figure) in [
        (TRAINING_LOSS_PLOT, training_loss_figure(&metrics)),
        (DPO_PLOT, dpo_figure(&metrics)),
        (CURVE_PLOT, curve_figure(summary)),
    ] {
        let outcome = match figure {
            Ok(fig) => {
                let path = run_dir.join(rel);
                render_figure(&path, &fig)?;
                written.push(path);
                PlotOutcome::Drawn { rel, title: fig.title }
            }
            Err(reason) => PlotOutcome::Skipped { rel, reason },
        };
        plots.push(outcome);
    }

    let path = run_dir.join("report.md");
    write_atomic(&path, report_markdown(summary, &metrics, &plots).as_bytes())?;
    written.insert(0, path);
    Ok(written)
}

// ---------------------------------------------------------------------------------------
// metrics.jsonl

/// The records of `metrics.jsonl`.
#[derive(Debug, Default)]
struct MetricsFile {
    /// Whether the file exists.
    found: bool,
    /// Parsed records, in file order.
    records: Vec<Value>,
    /// Lines that are not JSON objects (a line being appended as we read, say).
    unreadable: usize,
}

fn read_metrics(path: &Path) -> Result<MetricsFile, TrainError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(MetricsFile::default()),
        Err(e) => return Err(TrainError::file(path, e)),
    };
    let mut file = MetricsFile { found: true, ..MetricsFile::default() };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => file.records.push(v),
            // A report is not worth failing over a bad line; the report counts them.
            _ => file.unreadable += 1,
        }
    }
    Ok(file)
}

/// The records of one stage, of one kind, ordered by their unit number.
#[derive(Debug)]
struct StageRecords<'a> {
    stage: String,
    records: Vec<&'a Value>,
}

/// Records whose kind ends with `suffix` (`/epoch`, `/step`), grouped by stage in the order
/// the stages first appear, sorted by the numeric field `key`. Of records sharing a stage
/// and key the last wins: a resumed run redoes the unit it was killed in and logs it again.
fn stage_records<'a>(records: &'a [Value], suffix: &str, key: &str) -> Vec<StageRecords<'a>> {
    let mut order: Vec<String> = Vec::new();
    let mut by_stage: BTreeMap<String, BTreeMap<u64, &'a Value>> = BTreeMap::new();
    for r in records {
        let kind = r["kind"].as_str().unwrap_or_default();
        let (Some(stage), Some(k)) = (r["stage"].as_str(), r[key].as_u64()) else {
            continue;
        };
        if !kind.ends_with(suffix) {
            continue;
        }
        if !by_stage.contains_key(stage) {
            order.push(stage.to_string());
        }
        by_stage.entry(stage.to_string()).or_default().insert(k, r);
    }
    order
        .into_iter()
        .map(|stage| {
            let records = by_stage.remove(&stage).unwrap_or_default().into_values().collect();
            StageRecords { stage, records }
        })
        .collect()
}

/// Whether a stage is a reflection stage (`cycle-K-reflect`).
fn is_reflect(stage: &str) -> bool {
    stage.ends_with("-reflect")
}

// ---------------------------------------------------------------------------------------
// Figures (data only; drawing is below)

/// One line of a chart.
#[derive(Debug, Clone, Default)]
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    /// Vertical interval bars `(x, lo, hi)`, drawn in the series' colour.
    bars: Vec<(f64, f64, f64)>,
}

impl Series {
    fn named(name: impl Into<String>) -> Self {
        Series { name: name.into(), ..Series::default() }
    }

    /// Adds a point unless it is not finite (plotters cannot place NaN or infinity).
    fn push(&mut self, x: f64, y: f64) {
        if x.is_finite() && y.is_finite() {
            self.points.push((x, y));
        }
    }
}

/// One chart of a figure.
#[derive(Debug, Default)]
struct Panel {
    title: String,
    x_desc: String,
    y_desc: String,
    series: Vec<Series>,
    /// Names of the integer x positions 0, 1, … (empty: plain numbers on the x axis).
    x_names: Vec<String>,
    /// A fixed y range (rates); `None` fits the data.
    y_range: Option<(f64, f64)>,
    /// Rising data wants its legend low, falling data high.
    legend_low: bool,
}

/// A figure: panels stacked vertically in one SVG file.
#[derive(Debug)]
struct Figure {
    title: String,
    panels: Vec<Panel>,
}

/// A figure, or why there is none.
type FigureOrReason = Result<Figure, String>;

/// What became of one plot, for the report's links.
#[derive(Debug)]
enum PlotOutcome {
    Drawn { rel: &'static str, title: String },
    Skipped { rel: &'static str, reason: String },
}

/// Loss per epoch and per step, every training stage laid end to end on one axis so the
/// run reads left to right (SFT, then cycle 1's reflection, …).
fn training_loss_figure(metrics: &MetricsFile) -> FigureOrReason {
    let epochs = stage_records(&metrics.records, "/epoch", "epoch");
    let steps = stage_records(&metrics.records, "/step", "step");
    let mut panels = Vec::new();
    let step_series = step_loss_series(&steps);
    if !step_series.is_empty() {
        panels.push(Panel {
            title: "loss per optimizer step".into(),
            x_desc: "step (stages in order)".into(),
            y_desc: "loss".into(),
            series: step_series,
            ..Panel::default()
        });
    }
    let epoch_series = epoch_loss_series(&epochs, &steps);
    if !epoch_series.is_empty() {
        panels.push(Panel {
            title: "loss per epoch".into(),
            x_desc: "epoch (stages in order)".into(),
            y_desc: "loss".into(),
            series: epoch_series,
            ..Panel::default()
        });
    }
    if panels.is_empty() {
        return Err(no_records_reason(metrics, "training step or epoch records with a loss"));
    }
    Ok(Figure { title: "Training loss".into(), panels })
}

fn no_records_reason(metrics: &MetricsFile, what: &str) -> String {
    if metrics.found {
        format!("metrics.jsonl has no {what}")
    } else {
        "metrics.jsonl is missing".into()
    }
}

/// One series per stage: its step losses at x = steps of the earlier stages + its step.
fn step_loss_series(steps: &[StageRecords<'_>]) -> Vec<Series> {
    let mut offset = 0.0;
    let mut out = Vec::new();
    for s in steps {
        let mut series = Series::named(format!("{} step loss", s.stage));
        let mut last = 0.0;
        for r in &s.records {
            let step = r["step"].as_f64().unwrap_or(0.0);
            if let Some(loss) = r["loss"].as_f64() {
                series.push(offset + step, loss);
            }
            last = step.max(last);
        }
        offset += last;
        if !series.points.is_empty() {
            out.push(series);
        }
    }
    out
}

/// Per stage, the epoch loss (the epoch record's own, else the mean of that epoch's step
/// losses: SFT's epoch records carry only the held-out NLL) and, where recorded, the
/// held-out expert NLL, at x = epochs of the earlier stages + epoch number (from 1).
fn epoch_loss_series(epochs: &[StageRecords<'_>], steps: &[StageRecords<'_>]) -> Vec<Series> {
    let mut offset = 0.0;
    let mut out = Vec::new();
    for s in epochs {
        let stage_steps = steps.iter().find(|t| t.stage == s.stage);
        let mut loss = Series::named(format!("{} loss", s.stage));
        let mut heldout = Series::named(format!("{} held-out expert NLL", s.stage));
        let mut last = 0.0;
        for r in &s.records {
            let epoch = r["epoch"].as_f64().unwrap_or(0.0) + 1.0;
            let value = r["loss"].as_f64().or_else(|| {
                stage_steps.and_then(|t| mean_step_loss(t, r["epoch"].as_u64().unwrap_or(0)))
            });
            if let Some(v) = value {
                loss.push(offset + epoch, v);
            }
            if let Some(v) = r["heldout_expert_nll"].as_f64() {
                heldout.push(offset + epoch, v);
            }
            last = epoch.max(last);
        }
        offset += last;
        out.extend([loss, heldout].into_iter().filter(|s| !s.points.is_empty()));
    }
    out
}

fn mean_step_loss(steps: &StageRecords<'_>, epoch: u64) -> Option<f64> {
    let losses: Vec<f64> = steps
        .records
        .iter()
        .filter(|r| r["epoch"].as_u64() == Some(epoch))
        .filter_map(|r| r["loss"].as_f64())
        .collect();
    (!losses.is_empty()).then(|| losses.iter().sum::<f64>() / losses.len() as f64)
}

/// Step-DPO's implicit reward per reflection epoch, cycles in order: the margin with the
/// rewards it is the difference of, and the fraction of pairs it orders rightly.
fn dpo_figure(metrics: &MetricsFile) -> FigureOrReason {
    let epochs: Vec<StageRecords<'_>> = stage_records(&metrics.records, "/epoch", "epoch")
        .into_iter()
        .filter(|s| is_reflect(&s.stage))
        .collect();
    let mut names = Vec::new();
    let mut margin = Series::named("margin");
    let mut chosen = Series::named("expert-turn reward");
    let mut rejected = Series::named("agent-turn reward");
    let mut accuracy = Series::named("accuracy");
    for s in &epochs {
        let cycle = s.stage.trim_end_matches("-reflect");
        for r in &s.records {
            let x = names.len() as f64;
            names.push(format!("{cycle} e{}", r["epoch"].as_u64().unwrap_or(0) + 1));
            let field = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
            margin.push(x, field("margin"));
            chosen.push(x, field("chosen_reward"));
            rejected.push(x, field("rejected_reward"));
            accuracy.push(x, field("accuracy"));
        }
    }
    if margin.points.is_empty() && accuracy.points.is_empty() {
        return Err(no_records_reason(metrics, "reflection epoch records (no cycle ran)"));
    }
    let rewards: Vec<Series> =
        [margin, chosen, rejected].into_iter().filter(|s| !s.points.is_empty()).collect();
    let panels = vec![
        Panel {
            title: "implicit reward β·log(π/π_ref)".into(),
            x_desc: "reflection epoch".into(),
            y_desc: "reward".into(),
            series: rewards,
            x_names: names.clone(),
            ..Panel::default()
        },
        Panel {
            title: "implicit-reward accuracy (expert turn preferred)".into(),
            x_desc: "reflection epoch".into(),
            y_desc: "fraction of pairs".into(),
            series: vec![accuracy],
            x_names: names,
            y_range: Some((0.0, 1.0)),
            legend_low: true,
        },
    ];
    Ok(Figure { title: "Step-DPO".into(), panels })
}

/// Reads one rate off an evaluation point, when it has it.
type RateOf = fn(&EvalPoint) -> Option<Rate>;

/// Agreement and success per evaluation point, in percent with their 95% Wilson intervals.
fn curve_figure(summary: &Summary) -> FigureOrReason {
    if summary.curve.is_empty() {
        return Err("the summary has no evaluation points".into());
    }
    let mut series = vec![rate_series("held-out agreement", &summary.curve, |p| {
        Some(agreement_rate(&p.heldout))
    })];
    let optional: [(&str, RateOf); 3] = [
        ("train agreement", |p| p.train.as_ref().map(agreement_rate)),
        ("seen success", |p| p.seen.map(success_rate)),
        ("unseen success", |p| p.unseen.map(success_rate)),
    ];
    for (name, rate) in optional {
        let s = rate_series(name, &summary.curve, rate);
        if !s.points.is_empty() {
            series.push(s);
        }
    }
    spread_bars(&mut series);
    let panel = Panel {
        title: "agreement with the expert and task success (95% Wilson intervals)".into(),
        x_desc: "evaluation point".into(),
        y_desc: "%".into(),
        series,
        x_names: summary.curve.iter().map(|p| p.label.clone()).collect(),
        y_range: Some((0.0, 100.0)),
        legend_low: true,
    };
    Ok(Figure { title: "Evaluation curve".into(), panels: vec![panel] })
}

/// One chart of a method comparison: a line per method, success per evaluation point.
#[derive(Debug)]
pub struct ComparePanel<'a> {
    /// The chart's title (world and split).
    pub title: String,
    /// Success on unseen tasks (else seen).
    pub unseen: bool,
    /// Each method's label and evaluation curve (base, sft, cycle-1 …).
    pub methods: Vec<(String, &'a [EvalPoint])>,
}

/// Draws the comparison figure (one panel per world and split, 95% Wilson bars) into
/// `path`, atomically; nothing is drawn when no panel has data.
pub fn write_compare_figure(path: &Path, panels: &[ComparePanel<'_>]) -> Result<bool, TrainError> {
    let mut out = Vec::new();
    for p in panels {
        let mut series: Vec<Series> = p
            .methods
            .iter()
            .map(|(name, curve)| {
                let unseen = p.unseen;
                rate_series(name, curve, move |q| {
                    if unseen { q.unseen } else { q.seen }.map(success_rate)
                })
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        spread_bars(&mut series);
        let longest = p.methods.iter().map(|(_, c)| *c).max_by_key(|c| c.len()).unwrap_or(&[]);
        out.push(Panel {
            title: p.title.clone(),
            x_desc: "evaluation point".into(),
            y_desc: "success %".into(),
            series,
            x_names: longest.iter().map(|q| q.label.clone()).collect(),
            y_range: Some((0.0, 100.0)),
            legend_low: true,
        });
    }
    if out.is_empty() {
        return Ok(false);
    }
    render_figure(path, &Figure { title: "Success per method".into(), panels: out })?;
    Ok(true)
}

fn rate_series(
    name: &str,
    curve: &[EvalPoint],
    rate: impl Fn(&EvalPoint) -> Option<Rate>,
) -> Series {
    let mut s = Series::named(name);
    for (i, p) in curve.iter().enumerate() {
        // A rate over nothing says nothing; leave the point out rather than draw 0%.
        if let Some(r) = rate(p).filter(|r| r.n > 0) {
            s.push(i as f64, 100.0 * r.rate);
            s.bars.push((i as f64, 100.0 * r.lo, 100.0 * r.hi));
        }
    }
    s
}

/// Shifts each series' interval bars sideways a little, so bars of different series at the
/// same point do not hide each other.
fn spread_bars(series: &mut [Series]) {
    let n = series.len() as f64;
    for (i, s) in series.iter_mut().enumerate() {
        let dx = (i as f64 - (n - 1.0) / 2.0) * 0.05;
        for bar in &mut s.bars {
            bar.0 += dx;
        }
    }
}

fn agreement_rate(a: &Agreement) -> Rate {
    Rate::new(a.agreed as u64, a.steps as u64)
}

fn success_rate((wins, n): (usize, usize)) -> Rate {
    Rate::new(wins as u64, n as u64)
}

// ---------------------------------------------------------------------------------------
// Drawing

/// Distinct, print-safe colours; series beyond them reuse the cycle.
const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// Draws `fig` into an SVG string and writes it atomically to `path`. Text stays `<text>`
/// elements (plotters' font-free layout estimate), so no system font is needed.
fn render_figure(path: &Path, fig: &Figure) -> Result<(), TrainError> {
    let mut svg = String::new();
    let height = 60 + 360 * fig.panels.len() as u32;
    {
        let root = SVGBackend::with_string(&mut svg, (900, height)).into_drawing_area();
        draw_figure(&root, fig).map_err(|e| TrainError::file(path, e))?;
    }
    Ok(write_atomic(path, svg.as_bytes())?)
}

fn draw_figure(root: &DrawingArea<SVGBackend<'_>, Shift>, fig: &Figure) -> DrawResult {
    root.fill(&WHITE)?;
    let body = root.titled(&fig.title, ("sans-serif", 22))?;
    for (area, panel) in body.split_evenly((fig.panels.len(), 1)).iter().zip(&fig.panels) {
        draw_panel(area, panel)?;
    }
    root.present()
}

fn draw_panel(area: &DrawingArea<SVGBackend<'_>, Shift>, panel: &Panel) -> DrawResult {
    let (xs, ys) = panel_ranges(panel);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(xs.0..xs.1, ys.0..ys.1)?;
    let name_at = |x: &f64| tick_name(&panel.x_names, *x);
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(panel.x_desc.as_str()).y_desc(panel.y_desc.as_str());
    if !panel.x_names.is_empty() {
        mesh.x_labels(panel.x_names.len() + 2).x_label_formatter(&name_at);
    }
    mesh.draw()?;
    for (i, s) in panel.series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        // Points as well as lines: a stage with one epoch is a single point.
        chart
            .draw_series(
                LineSeries::new(s.points.iter().copied(), colour.stroke_width(2)).point_size(3),
            )?
            .label(s.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        chart.draw_series(
            s.bars.iter().map(|&(x, lo, hi)| PathElement::new(vec![(x, lo), (x, hi)], colour)),
        )?;
    }
    let position = if panel.legend_low {
        SeriesLabelPosition::LowerRight
    } else {
        SeriesLabelPosition::UpperRight
    };
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

/// The name of integer position `x`, or nothing between positions.
fn tick_name(names: &[String], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    names.get(i as usize).cloned().unwrap_or_default()
}

/// The x and y ranges of a panel: its data (bars included) with a margin, never empty.
fn panel_ranges(panel: &Panel) -> ((f64, f64), (f64, f64)) {
    let points = panel.series.iter().flat_map(|s| s.points.iter().copied());
    let bars =
        panel.series.iter().flat_map(|s| s.bars.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]));
    let (mut x0, mut x1, mut y0, mut y1) =
        (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in points.chain(bars) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let xs = if panel.x_names.is_empty() {
        padded(x0, x1, 0.03)
    } else {
        // Named positions 0..n, with half a slot of room either side.
        (-0.5, panel.x_names.len() as f64 - 0.5)
    };
    (xs, panel.y_range.unwrap_or_else(|| padded(y0, y1, 0.08)))
}

/// `lo..hi` widened by `frac` of its width, and by 1 when it has none (one point).
fn padded(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { (hi - lo) * frac } else { 1.0 };
    (lo - pad, hi + pad)
}

// ---------------------------------------------------------------------------------------
// report.md

fn report_markdown(summary: &Summary, metrics: &MetricsFile, plots: &[PlotOutcome]) -> String {
    let mut md = format!("# Run `{}`\n\n", summary.name);
    md.push_str(&eval_section(&summary.curve));
    md.push_str(&episodes_section(&summary.curve));
    md.push_str(&inspection_section(&summary.inspections));
    md.push_str(&training_section(&summary.training));
    md.push_str(&health_section(summary));
    md.push_str(&timing_section(&summary.seconds));
    md.push_str(&plots_section(plots, metrics));
    md
}

fn eval_section(curve: &[EvalPoint]) -> String {
    let mut md = String::from("## Evaluation\n\n");
    if curve.is_empty() {
        md.push_str("No evaluation points were recorded.\n\n");
        return md;
    }
    md.push_str(
        "Rates are percentages with 95% Wilson intervals and their counts. Agreement: the \
         greedy action equals the expert's on a held-out expert prefix. Expert log-prob: mean \
         log π(a*|h) of the expert's turn (and per token).\n\n",
    );
    md.push_str(
        "| point | held-out agreement | expert log-prob (turn / token) | train agreement \
         | seen success | unseen success | mean reward (seen / unseen) |\n",
    );
    md.push_str("|---|---|---|---|---|---|---|\n");
    for p in curve {
        md.push_str(&eval_row(p));
    }
    md.push('\n');
    md.push_str(&missing_success_note(curve));
    md
}

fn eval_row(p: &EvalPoint) -> String {
    let h = &p.heldout;
    let logp = format!("{:.3} / {:.3}", h.mean_expert_logp, h.mean_expert_token_logp);
    let train = p.train.as_ref().map_or("–".into(), agreement_cell);
    let reward = match (p.seen_reward, p.unseen_reward) {
        (None, None) => "–".to_string(),
        (s, u) => format!("{} / {}", opt_number(s), opt_number(u)),
    };
    format!(
        "| {} | {} | {logp} | {train} | {} | {} | {reward} |\n",
        p.label,
        agreement_cell(h),
        success_cell(p.seen),
        success_cell(p.unseen),
    )
}

fn agreement_cell(a: &Agreement) -> String {
    if a.steps == 0 {
        return "no steps".into();
    }
    format!("{} ({}/{})", pct(&agreement_rate(a)), a.agreed, a.steps)
}

fn success_cell(s: Option<(usize, usize)>) -> String {
    match s {
        None => "–".into(),
        Some((_, 0)) => "no episodes".into(),
        Some((wins, n)) => format!("{} ({wins}/{n}, n = {n})", pct(&success_rate((wins, n)))),
    }
}

fn opt_number(x: Option<f64>) -> String {
    x.map_or("–".into(), |v| format!("{v:.3}"))
}

/// How the agents failed: steps, invalid actions and format errors per point and split (from
/// the evaluation suite's reports, kept with their transcripts in each `*eval*` stage).
fn episodes_section(curve: &[EvalPoint]) -> String {
    let rows: Vec<(&str, &str, &Metrics)> = curve
        .iter()
        .flat_map(|p| {
            let seen = p.seen_metrics.as_ref().map(|m| (p.label.as_str(), "seen", m));
            let unseen = p.unseen_metrics.as_ref().map(|m| (p.label.as_str(), "unseen", m));
            seen.into_iter().chain(unseen)
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "### Episodes\n\nPer step, pooled over the split's episodes: actions the world did not \
         accept, and replies with no parseable `Action:` (transcripts and per-task-type reports \
         in each evaluation stage's `seen/` and `unseen/`).\n\n\
         | point | split | episodes | mean steps | invalid actions | format errors |\n\
         |---|---|---:|---:|---|---|\n",
    );
    for (label, split, m) in rows {
        let _ = writeln!(
            md,
            "| {label} | {split} | {} | {:.1} | {} | {} |",
            m.episodes,
            m.steps.mean,
            pct(&m.invalid_action_rate),
            pct(&m.format_error_rate)
        );
    }
    md.push('\n');
    md
}

/// Says plainly which points have no success figures, and why that happens.
fn missing_success_note(curve: &[EvalPoint]) -> String {
    let without: Vec<&str> = curve
        .iter()
        .filter(|p| p.seen.is_none() && p.unseen.is_none())
        .map(|p| p.label.as_str())
        .collect();
    if without.is_empty() {
        String::new()
    } else if without.len() == curve.len() {
        "No point has success figures: no evaluation episodes were configured \
         (`eval.seen_tasks` and `eval.unseen_tasks` are 0, or the world has no such tasks).\n\n"
            .into()
    } else {
        format!(
            "No success figures for {}: no evaluation episodes ran there.\n\n",
            without.join(", ")
        )
    }
}

fn inspection_section(inspections: &[InspectStats]) -> String {
    let mut md = String::from("## Inspection\n\n");
    if inspections.is_empty() {
        md.push_str("No inspection cycles ran (SFT only, or `cycles = 0`).\n\n");
        return md;
    }
    md.push_str(
        "Per cycle: expert prefixes inspected, the policy's samples, samples equal to the \
         expert's action (dropped), and the step triples kept for reflection.\n\n",
    );
    md.push_str("| cycle | steps | samples | agreed with expert | triples kept |\n");
    md.push_str("|---|---|---|---|---|\n");
    for (k, s) in inspections.iter().enumerate() {
        let agreed = if s.samples == 0 {
            "–".to_string()
        } else {
            format!(
                "{} ({}/{})",
                pct(&Rate::new(s.agreed as u64, s.samples as u64)),
                s.agreed,
                s.samples
            )
        };
        let _ =
            writeln!(md, "| {} | {} | {} | {agreed} | {} |", k + 1, s.steps, s.samples, s.triples);
    }
    md.push('\n');
    md
}

/// Metrics shown first, in this order; any others follow alphabetically.
const METRIC_ORDER: [&str; 9] = [
    "epoch",
    "steps",
    "loss",
    "heldout_expert_nll",
    "margin",
    "accuracy",
    "chosen_reward",
    "rejected_reward",
    "pairs",
];

fn training_section(training: &[(String, Value)]) -> String {
    let mut md = String::from("## Training (last epoch of each stage)\n\n");
    if training.is_empty() {
        md.push_str("No training stage recorded epoch metrics.\n\n");
        return md;
    }
    let columns = metric_columns(training);
    let _ = writeln!(md, "| stage | {} |", columns.join(" | "));
    let _ = writeln!(md, "|---|{}", "---|".repeat(columns.len()));
    for (stage, value) in training {
        let cells: Vec<String> = columns.iter().map(|c| metric_cell(&value[c.as_str()])).collect();
        let _ = writeln!(md, "| {stage} | {} |", cells.join(" | "));
    }
    md.push_str("\n`epoch` counts from 0.\n\n");
    md
}

/// The union of the stages' metric names, known ones first.
fn metric_columns(training: &[(String, Value)]) -> Vec<String> {
    let mut names: Vec<String> = training
        .iter()
        .filter_map(|(_, v)| v.as_object())
        .flat_map(|o| o.keys().cloned())
        .collect();
    names.sort_by_key(|n| {
        (METRIC_ORDER.iter().position(|m| m == n).unwrap_or(METRIC_ORDER.len()), n.clone())
    });
    names.dedup();
    names
}

fn metric_cell(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::Number(n) if n.is_f64() => format!("{:.4}", n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The RL stages' health alarms, and why the method stopped early if it did.
fn health_section(summary: &Summary) -> String {
    let mut md = String::from("## Training health\n\n");
    if let Some(why) = &summary.stopped {
        let _ = writeln!(md, "**Stopped early:** {why}\n");
    }
    if summary.alarms.is_empty() {
        md.push_str("No health alarm was raised.\n\n");
        return md;
    }
    md.push_str("| stage | alarm | what |\n|---|---|---|\n");
    for a in &summary.alarms {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            a["stage"].as_str().unwrap_or("?"),
            a["alarm"].as_str().unwrap_or("?"),
            a["message"].as_str().unwrap_or("")
        );
    }
    md.push('\n');
    md
}

fn timing_section(seconds: &[(String, f64)]) -> String {
    let mut md = String::from("## Wall time\n\n");
    if seconds.is_empty() {
        md.push_str("No stage times were recorded.\n\n");
        return md;
    }
    md.push_str("| stage | time |\n|---|---|\n");
    for (stage, s) in seconds {
        let _ = writeln!(md, "| {stage} | {} |", duration(*s));
    }
    let total: f64 = seconds.iter().map(|(_, s)| s).sum();
    let _ = writeln!(md, "| **total** | **{}** |", duration(total));
    md.push_str("\nA stage finished by an earlier process shows the time it took then.\n\n");
    md
}

/// Seconds as people read them: `42.0 s`, `3 min 07 s`, `2 h 05 min`.
fn duration(secs: f64) -> String {
    let whole = secs.max(0.0).round() as u64;
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else if whole < 3600 {
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        format!("{} h {:02} min", whole / 3600, (whole % 3600) / 60)
    }
}

fn plots_section(plots: &[PlotOutcome], metrics: &MetricsFile) -> String {
    let mut md = String::from("## Plots\n\n");
    for p in plots {
        let _ = match p {
            PlotOutcome::Drawn { rel, title } => {
                writeln!(md, "- [{title}]({rel})\n\n  ![{title}]({rel})")
            }
            PlotOutcome::Skipped { rel, reason } => writeln!(md, "- `{rel}` skipped: {reason}."),
        };
    }
    if metrics.unreadable > 0 {
        let _ = writeln!(
            md,
            "\n{} line(s) of metrics.jsonl were not JSON records and were ignored.",
            metrics.unreadable
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agreement(agreed: usize, steps: usize) -> Agreement {
        Agreement {
            steps,
            agreed,
            rate: agreed as f64 / steps as f64,
            mean_expert_logp: -4.25,
            mean_expert_token_logp: -0.5,
        }
    }

    /// Three points: base without episodes, then sft and cycle-1 with success figures.
    fn summary() -> Summary {
        Summary {
            name: "demo".into(),
            curve: vec![
                EvalPoint { label: "base".into(), heldout: agreement(8, 20), ..Default::default() },
                EvalPoint {
                    label: "sft".into(),
                    heldout: agreement(12, 16),
                    train: Some(agreement(15, 20)),
                    seen: Some((15, 20)),
                    unseen: Some((3, 10)),
                    seen_reward: Some(0.8),
                    unseen_reward: Some(0.35),
                    unseen_metrics: Some(unseen_episodes()),
                    ..Default::default()
                },
                EvalPoint {
                    label: "cycle-1".into(),
                    heldout: agreement(14, 16),
                    seen: Some((16, 20)),
                    unseen: Some((4, 10)),
                    ..Default::default()
                },
            ],
            inspections: vec![InspectStats { steps: 40, samples: 80, agreed: 20, triples: 60 }],
            training: vec![
                ("sft".into(), json!({"epoch": 1, "steps": 4, "heldout_expert_nll": 0.8125})),
                (
                    "cycle-1-reflect".into(),
                    json!({"epoch": 0, "steps": 2, "loss": 0.6, "margin": 0.25, "accuracy": 0.75}),
                ),
            ],
            seconds: vec![("sft".into(), 30.0), ("cycle-1-reflect".into(), 200.0)],
            ..Default::default()
        }
    }

    /// 10 unseen episodes of 5 steps, 3 won, half of them with one invalid action.
    fn unseen_episodes() -> Metrics {
        let outcomes: Vec<stepagent_eval::Outcome> = (0..10)
            .map(|i| stepagent_eval::Outcome {
                split: "unseen".into(),
                task_type: "pick".into(),
                won: i < 3,
                reward: if i < 3 { 1.0 } else { 0.0 },
                steps: 5,
                invalid_actions: i % 2,
                format_errors: 0,
            })
            .collect();
        Metrics::of(&outcomes)
    }

    /// SFT: 2 epochs of 2 steps; step 2 was logged, the run killed, and redone (loss 2.0
    /// replaces 9.0). Reflection: 1 epoch of 2 steps. Plus other kinds and a torn line.
    fn metrics_lines() -> String {
        let records = [
            json!({"stage": "eval-base", "kind": "eval", "label": "base"}),
            json!({"stage": "sft", "kind": "sft/step", "epoch": 0, "step": 1, "loss": 1.0}),
            json!({"stage": "sft", "kind": "sft/step", "epoch": 0, "step": 2, "loss": 9.0}),
            json!({"stage": "sft", "kind": "sft/step", "epoch": 0, "step": 2, "loss": 2.0}),
            json!({"stage": "sft", "kind": "sft/epoch", "epoch": 0, "steps": 2, "heldout_expert_nll": 1.1}),
            json!({"stage": "sft", "kind": "sft/step", "epoch": 1, "step": 3, "loss": 0.75}),
            json!({"stage": "sft", "kind": "sft/step", "epoch": 1, "step": 4, "loss": 0.25}),
            json!({"stage": "sft", "kind": "sft/epoch", "epoch": 1, "steps": 4, "heldout_expert_nll": 0.8125}),
            json!({"stage": "sft", "kind": "stage", "seconds": 30.0}),
            json!({"stage": "cycle-1-inspect", "kind": "inspect", "steps": 40}),
            json!({"stage": "cycle-1-reflect", "kind": "reflect/step", "epoch": 0, "step": 1, "loss": 0.69}),
            json!({"stage": "cycle-1-reflect", "kind": "reflect/step", "epoch": 0, "step": 2, "loss": 0.5}),
            json!({"stage": "cycle-1-reflect", "kind": "reflect/epoch", "epoch": 0, "steps": 2,
                   "loss": 0.6, "margin": 0.25, "accuracy": 0.75,
                   "chosen_reward": 0.1, "rejected_reward": -0.15}),
        ];
        let mut text: String = records.iter().map(|r| format!("{r}\n")).collect();
        text.push_str("{\"stage\": \"cycle-1-ev");
        text
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn assert_svg(path: &Path, names: &[&str]) {
        let svg = read(path);
        let head = svg.trim_start();
        assert!(head.starts_with("<svg") || head.starts_with("<?xml"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for n in names {
            assert!(svg.contains(n), "{} lacks {n:?}", path.display());
        }
    }

    #[test]
    fn health_alarms_and_an_early_stop_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = summary();
        write_report(dir.path(), &s).unwrap();
        assert!(read(&dir.path().join("report.md")).contains("No health alarm was raised."));
        s.alarms = vec![json!({"stage": "cycle-1-ppo", "kind": "health", "step": 3,
            "alarm": "kl-exploding", "message": "step 3: KL to the reference 1.500 > 1"})];
        s.stopped = Some("stage cycle-1-ppo stopped by health alarm".into());
        write_report(dir.path(), &s).unwrap();
        let md = read(&dir.path().join("report.md"));
        assert!(
            md.contains("| cycle-1-ppo | kl-exploding | step 3: KL to the reference 1.500 > 1 |"),
            "{md}"
        );
        assert!(md.contains("**Stopped early:** stage cycle-1-ppo stopped by health alarm"));
    }

    #[test]
    fn report_has_the_table_rows_with_wilson_intervals() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("metrics.jsonl"), metrics_lines()).unwrap();
        let written = write_report(dir.path(), &summary()).unwrap();
        assert_eq!(written.len(), 4, "{written:?}");
        let md = read(&dir.path().join("report.md"));
        assert!(md.starts_with("# Run `demo`"));
        // Wilson 95% by hand (z = 1.96): 8/20 → [0.2188, 0.6134]; 15/20 → [0.5313, 0.8881];
        // 3/10 → [0.1078, 0.6032]; 12/16 → [0.5050, 0.8982].
        assert!(
            md.contains("| base | 40.0% [21.9, 61.3] (8/20) | -4.250 / -0.500 | – | – | – | – |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| sft | 75.0% [50.5, 89.8] (12/16) | -4.250 / -0.500 \
                 | 75.0% [53.1, 88.8] (15/20) | 75.0% [53.1, 88.8] (15/20, n = 20) \
                 | 30.0% [10.8, 60.3] (3/10, n = 10) | 0.800 / 0.350 |"
            ),
            "{md}"
        );
        assert!(md.contains("No success figures for base"), "{md}");
        // Episodes: 5 of 50 steps invalid, Wilson [4.3, 21.4]; 0 of 50 format errors [0, 7.1].
        assert!(
            md.contains("| sft | unseen | 10 | 5.0 | 10.0% [4.3, 21.4] | 0.0% [0.0, 7.1] |"),
            "{md}"
        );
        // Inspection: 20 of 80 samples agreed, 25% with Wilson [16.8, 35.5].
        assert!(md.contains("| 1 | 40 | 80 | 25.0% [16.8, 35.5] (20/80) | 60 |"), "{md}");
        assert!(
            md.contains(
                "| stage | epoch | steps | loss | heldout_expert_nll | margin | accuracy |"
            ),
            "{md}"
        );
        assert!(md.contains("| sft | 1 | 4 | – | 0.8125 | – | – |"), "{md}");
        assert!(md.contains("| cycle-1-reflect | 0 | 2 | 0.6000 | – | 0.2500 | 0.7500 |"), "{md}");
        assert!(md.contains("| sft | 30.0 s |") && md.contains("| **total** | **3 min 50 s** |"));
        for rel in [TRAINING_LOSS_PLOT, DPO_PLOT, CURVE_PLOT] {
            assert!(md.contains(&format!("]({rel})")), "no link to {rel}");
        }
        assert!(md.contains("1 line(s) of metrics.jsonl"), "{md}");
    }

    #[test]
    fn plots_are_svg_with_their_series() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("metrics.jsonl"), metrics_lines()).unwrap();
        write_report(dir.path(), &summary()).unwrap();
        assert_svg(
            &dir.path().join(TRAINING_LOSS_PLOT),
            &[
                "Training loss",
                "sft step loss",
                "sft loss",
                "sft held-out expert NLL",
                "cycle-1-reflect loss",
            ],
        );
        assert_svg(
            &dir.path().join(DPO_PLOT),
            &["margin", "accuracy", "expert-turn reward", "cycle-1 e1"],
        );
        assert_svg(
            &dir.path().join(CURVE_PLOT),
            &["held-out agreement", "train agreement", "seen success", "unseen success", "cycle-1"],
        );
    }

    #[test]
    fn a_resumed_epoch_counts_once_and_sft_epoch_loss_is_its_steps_mean() {
        let records: Vec<Value> =
            metrics_lines().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let epochs = stage_records(&records, "/epoch", "epoch");
        let steps = stage_records(&records, "/step", "step");
        assert_eq!(steps[0].records.len(), 4);
        let series = epoch_loss_series(&epochs, &steps);
        let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["sft loss", "sft held-out expert NLL", "cycle-1-reflect loss"]);
        // Epoch 1 of SFT: mean of 1.0 and the redone 2.0; the reflection's epoch follows.
        assert_eq!(series[0].points, [(1.0, 1.5), (2.0, 0.5)]);
        assert_eq!(series[2].points, [(3.0, 0.6)]);
        let step = step_loss_series(&steps);
        assert_eq!(step[1].points, [(5.0, 0.69), (6.0, 0.5)]);
    }

    #[test]
    fn a_summary_without_success_or_metrics_still_reports() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = summary();
        for p in &mut s.curve {
            (p.seen, p.unseen, p.seen_reward, p.unseen_reward) = (None, None, None, None);
        }
        s.inspections.clear();
        let written = write_report(dir.path(), &s).unwrap();
        assert_eq!(written, [dir.path().join("report.md"), dir.path().join(CURVE_PLOT)]);
        let md = read(&written[0]);
        assert!(md.contains("No point has success figures: no evaluation episodes"), "{md}");
        assert!(md.contains("No inspection cycles ran"), "{md}");
        assert!(
            md.contains("`plots/training-loss.svg` skipped: metrics.jsonl is missing."),
            "{md}"
        );
        assert!(md.contains("`plots/dpo.svg` skipped"), "{md}");
        assert_svg(&written[1], &["held-out agreement"]);
        let curve = read(&written[1]);
        assert!(!curve.contains("seen success"));
    }

    #[test]
    fn an_empty_summary_yields_a_report_with_every_plot_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("metrics.jsonl"), "").unwrap();
        let written = write_report(dir.path(), &Summary::default()).unwrap();
        assert_eq!(written, [dir.path().join("report.md")]);
        let md = read(&written[0]);
        assert!(md.contains("No evaluation points were recorded."));
        assert!(md.contains("metrics.jsonl has no training step or epoch records"), "{md}");
        assert!(md.contains("the summary has no evaluation points"), "{md}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(42.04), "42.0 s");
        assert_eq!(duration(187.0), "3 min 07 s");
        assert_eq!(duration(7500.0), "2 h 05 min");
    }
}
