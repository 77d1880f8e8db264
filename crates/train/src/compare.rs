//! `stepagent compare`: several methods on the same footing. Per world, ONE expert dataset,
//! ONE base model and ONE SFT checkpoint (an `sft` run) are shared: each method's run
//! directory is seeded with that run's finished stages (`expert`, `eval-base`, `sft`,
//! `eval-sft`), so every method starts from the same weights and its pipeline skips them.
//! Budgets match by cycles (`cycles` of the template: each method's K rounds of collecting
//! data and updating the policy); the optimizer steps each method took are recorded beside
//! its results.
//!
//! Layout of `runs/<name>/`: `config.toml` (the comparison config), `<world>/sft/` (the
//! shared run), `<world>/<method>/` (one run per method, with its own report and plots),
//! and `compare/` with `table.md`, `table.json` and `curves.svg`. A method whose run
//! finished (its `summary.json` exists) is not run again.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use stepagent_env::{Split, World, WorldRef};
use stepagent_eval::ci::Rate;
use stepagent_eval::pct;

use crate::agreement::Agreement;
use crate::config::{Method, TrainConfig};
use crate::pipeline::{read_json, run_pipeline, write_json, EvalPoint, Event, LoadModel, Summary};
use crate::report::{write_compare_figure, ComparePanel};
use crate::run::{write_atomic, RunDir};
use crate::TrainError;

/// A world of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareWorld {
    /// Its registry name (or `line`, the toy world).
    pub name: String,
    /// Its options (the world's own keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<toml::Table>,
}

/// A comparison: which methods on which worlds, and the run template they share.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompareConfig {
    /// The comparison's name: it is written into `runs/<name>/`.
    pub name: String,
    /// Methods besides the base model and SFT, which are always rows.
    pub methods: Vec<Method>,
    /// Splits shown as columns; each needs its `eval.<split>_tasks` above 0. Default both
    /// splits that have evaluation episodes configured.
    pub splits: Vec<Split>,
    /// Worlds: columns (with the splits) and one shared SFT run each.
    pub worlds: Vec<CompareWorld>,
    /// Every other key: a `stepagent train` config without `name`, `method` and
    /// `data.world` (set per run).
    pub run: TrainConfig,
}

impl CompareConfig {
    /// Parses a comparison config; unknown keys and bad values are named.
    pub fn from_toml(text: &str) -> Result<Self, TrainError> {
        let bad = |key: &str, m: String| TrainError::Config { key: key.into(), message: m };
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| bad("<file>", e.to_string().trim().to_string()))?;
        let name = match table.get("name") {
            Some(toml::Value::String(s)) => s.clone(),
            _ => return Err(bad("name", "required: the comparison's name (a string)".into())),
        };
        let methods: Vec<Method> = take(&mut table, "methods")?.ok_or_else(|| {
            bad("methods", "required: the methods to compare, e.g. [\"ppo\", \"eto\"]".into())
        })?;
        let worlds: Vec<CompareWorld> = take(&mut table, "worlds")?
            .ok_or_else(|| bad("worlds", "required: [[worlds]] tables with a `name`".into()))?;
        let splits: Option<Vec<Split>> = take(&mut table, "splits")?;
        for key in ["method"] {
            if table.contains_key(key) {
                return Err(bad(
                    key,
                    "not allowed in a comparison: the methods are listed in `methods`".into(),
                ));
            }
        }
        if let Some(toml::Value::Table(d)) = table.get("data") {
            for key in ["world", "world_options"] {
                if d.contains_key(key) {
                    return Err(bad(
                        &format!("data.{key}"),
                        "not allowed in a comparison: list the worlds in [[worlds]]".into(),
                    ));
                }
            }
        }
        let run: TrainConfig = table
            .try_into()
            .map_err(|e: toml::de::Error| bad("<file>", e.to_string().trim().to_string()))?;
        let splits = splits.unwrap_or_else(|| {
            let mut s = Vec::new();
            if run.eval.seen_tasks > 0 {
                s.push(Split::Seen);
            }
            if run.eval.unseen_tasks > 0 {
                s.push(Split::Unseen);
            }
            s
        });
        let cfg = CompareConfig { name, methods, worlds, splits, run };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what parsing cannot, naming the key.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.run.validate()?;
        if self.methods.is_empty() {
            return Err(TrainError::config("methods", "list at least one method"));
        }
        for (i, m) in self.methods.iter().enumerate() {
            if *m == Method::Sft {
                return Err(TrainError::config(
                    "methods",
                    "`sft` is always a row (the shared SFT run); list the other methods",
                ));
            }
            if self.methods[..i].contains(m) {
                return Err(TrainError::config(
                    "methods",
                    format!("`{}` is listed twice", m.key()),
                ));
            }
        }
        if self.worlds.is_empty() {
            return Err(TrainError::config("worlds", "list at least one world"));
        }
        for (i, w) in self.worlds.iter().enumerate() {
            if w.name.is_empty()
                || !w.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
            {
                return Err(TrainError::config(
                    &format!("worlds[{i}].name"),
                    "must be letters, digits, `-` or `_`",
                ));
            }
            if self.worlds[..i].iter().any(|o| o.name == w.name) {
                return Err(TrainError::config(
                    &format!("worlds[{i}].name"),
                    format!("`{}` is listed twice", w.name),
                ));
            }
        }
        if self.splits.is_empty() {
            return Err(TrainError::config(
                "splits",
                "no split to compare on: set eval.seen_tasks or eval.unseen_tasks above 0",
            ));
        }
        for s in &self.splits {
            let (key, n) = match s {
                Split::Seen => ("eval.seen_tasks", self.run.eval.seen_tasks),
                Split::Unseen => ("eval.unseen_tasks", self.run.eval.unseen_tasks),
                Split::Train => {
                    return Err(TrainError::config(
                        "splits",
                        "compare on `seen` or `unseen`, not the training split",
                    ))
                }
            };
            if n == 0 {
                return Err(TrainError::config(
                    key,
                    format!("must be above 0 to compare on the `{}` split", split_name(*s)),
                ));
            }
        }
        Ok(())
    }

    /// The run config of `method` (`sft`: the shared run) on world `w`.
    pub fn run_config(&self, w: &CompareWorld, method: Method) -> TrainConfig {
        let mut c = self.run.clone();
        c.name = format!("{}-{}-{}", self.name, w.name, method.key());
        c.method = method;
        c.data.world = Some(w.name.clone());
        c.data.world_options = w.options.clone();
        c
    }
}

/// Removes `key` from `table` and reads it as `T`, naming the key when it does not fit.
fn take<T: serde::de::DeserializeOwned>(
    table: &mut toml::Table,
    key: &str,
) -> Result<Option<T>, TrainError> {
    match table.remove(key) {
        None => Ok(None),
        Some(v) => v.try_into().map(Some).map_err(|e: toml::de::Error| TrainError::Config {
            key: key.into(),
            message: e.to_string().trim().to_string(),
        }),
    }
}

fn split_name(s: Split) -> &'static str {
    match s {
        Split::Train => "train",
        Split::Seen => "seen",
        Split::Unseen => "unseen",
    }
}

/// What a comparison reports as it goes.
#[derive(Debug)]
pub enum CompareEvent<'a> {
    /// A run (the shared SFT one or a method's) starts or continues.
    RunStart {
        /// The world.
        world: &'a str,
        /// The method (`sft` for the shared run).
        method: Method,
    },
    /// A run had finished before and was skipped.
    RunSkipped {
        /// The world.
        world: &'a str,
        /// The method.
        method: Method,
    },
    /// An event of the running pipeline.
    Pipeline(&'a Event<'a>),
}

/// Stages of the shared run every method's run starts with.
const SHARED_STAGES: [&str; 4] = ["expert", "eval-base", "sft", "eval-sft"];

/// Copies the shared run's finished stages (and its metrics, once) into a method's run, each
/// stage copied beside its place and renamed into it, so a kill leaves no half stage.
fn seed_from_shared(shared: &Path, method: &Path) -> Result<(), TrainError> {
    let stages = method.join("stages");
    std::fs::create_dir_all(&stages).map_err(|e| TrainError::file(&stages, e))?;
    for name in SHARED_STAGES {
        let (src, dst) = (shared.join("stages").join(name), stages.join(name));
        if !src.is_dir() || dst.exists() {
            continue;
        }
        let tmp = stages.join(format!("{name}.seeding"));
        let _ = std::fs::remove_dir_all(&tmp);
        copy_dir(&src, &tmp)?;
        std::fs::rename(&tmp, &dst).map_err(|e| TrainError::file(&dst, e))?;
    }
    let metrics = method.join("metrics.jsonl");
    if !metrics.exists() {
        let from = shared.join("metrics.jsonl");
        let text = std::fs::read(&from).map_err(|e| TrainError::file(&from, e))?;
        write_atomic(&metrics, &text)?;
    }
    Ok(())
}

fn copy_dir(src: &Path, dst: &Path) -> Result<(), TrainError> {
    std::fs::create_dir_all(dst).map_err(|e| TrainError::file(dst, e))?;
    for entry in std::fs::read_dir(src).map_err(|e| TrainError::file(src, e))? {
        let entry = entry.map_err(|e| TrainError::file(src, e))?;
        let to = dst.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else {
            std::fs::copy(entry.path(), &to).map_err(|e| TrainError::file(&to, e))?;
        }
    }
    Ok(())
}

/// Runs one pipeline unless its summary exists; returns the summary.
fn run_one(
    dir: &Path,
    cfg: &TrainConfig,
    world_name: &str,
    load: LoadModel<'_>,
    world: &dyn World,
    force: bool,
    observer: &mut dyn FnMut(&CompareEvent<'_>) -> Result<(), TrainError>,
) -> Result<Summary, TrainError> {
    let run = RunDir::open(dir, cfg, force)?;
    let done = dir.join("summary.json");
    if done.exists() {
        observer(&CompareEvent::RunSkipped { world: world_name, method: cfg.method })?;
        return read_json(&done);
    }
    observer(&CompareEvent::RunStart { world: world_name, method: cfg.method })?;
    run_pipeline(cfg, &run, load, world, &mut |e| observer(&CompareEvent::Pipeline(e)))
}

/// A world's runs: the shared SFT run and each method's, in table order.
struct WorldRuns {
    shared: Summary,
    methods: Vec<(Method, Summary)>,
}

/// One cell: success on a split at an evaluation point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Success with its 95% Wilson interval.
    pub success: Rate,
    /// Mean final reward.
    pub mean_reward: Option<f64>,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// `base`, `sft`, or the method's key.
    pub method: String,
    /// The label shown.
    pub label: String,
    /// One cell per column (`None`: not measured).
    pub cells: Vec<Option<Cell>>,
    /// Agreement with the expert on the held-out prefixes, per world (`None`: not measured).
    #[serde(default)]
    pub agreement: Vec<Option<Agreement>>,
    /// Optimizer steps on the policy after SFT, per world.
    pub updates: Vec<usize>,
    /// Why the method stopped early, per world.
    pub stopped: Vec<Option<String>>,
}

/// The comparison's table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// The comparison's name.
    pub name: String,
    /// Columns as `(world, split)`.
    pub columns: Vec<(String, String)>,
    /// Rows: base, SFT, then the methods in a fixed order.
    pub rows: Vec<Row>,
}

fn cell(p: Option<&EvalPoint>, split: Split) -> Option<Cell> {
    let p = p?;
    let (s, r) = match split {
        Split::Seen => (p.seen, p.seen_reward),
        _ => (p.unseen, p.unseen_reward),
    };
    s.map(|(k, n)| Cell { success: Rate::new(k as u64, n as u64), mean_reward: r })
}

/// Runs (or continues) the comparison into `runs/<name>/` and writes its table. `load`
/// gives the base model; `open_world` the world of a [`CompareWorld`].
pub fn run_compare(
    cfg: &CompareConfig,
    runs: &Path,
    load: LoadModel<'_>,
    open_world: &dyn Fn(&CompareWorld) -> Result<WorldRef, TrainError>,
    force: bool,
    observer: &mut dyn FnMut(&CompareEvent<'_>) -> Result<(), TrainError>,
) -> Result<Table, TrainError> {
    cfg.validate()?;
    let root = runs.join(&cfg.name);
    RunDir::open(&root, cfg, force)?;
    let methods: Vec<Method> =
        Method::ALL.into_iter().filter(|m| cfg.methods.contains(m)).collect();
    // Per world: the shared run's summary, then each method's.
    let mut results: Vec<WorldRuns> = Vec::new();
    for w in &cfg.worlds {
        let world = open_world(w)?;
        let shared_dir = root.join(&w.name).join("sft");
        let shared = run_one(
            &shared_dir,
            &cfg.run_config(w, Method::Sft),
            &w.name,
            load,
            world.as_ref(),
            force,
            observer,
        )?;
        let mut per = Vec::new();
        for &m in &methods {
            let dir = root.join(&w.name).join(m.key());
            seed_from_shared(&shared_dir, &dir)?;
            let s = run_one(
                &dir,
                &cfg.run_config(w, m),
                &w.name,
                load,
                world.as_ref(),
                force,
                observer,
            )?;
            per.push((m, s));
        }
        results.push(WorldRuns { shared, methods: per });
    }
    let table = build_table(cfg, &methods, &results);
    let out = root.join("compare");
    std::fs::create_dir_all(&out).map_err(|e| TrainError::file(&out, e))?;
    write_json(&out.join("table.json"), &table)?;
    let mut panels = Vec::new();
    for (w, r) in cfg.worlds.iter().zip(&results) {
        for &s in &cfg.splits {
            let mut lines = vec![("SFT".to_string(), r.shared.curve.as_slice())];
            lines
                .extend(r.methods.iter().map(|(m, s)| (m.label().to_string(), s.curve.as_slice())));
            panels.push(ComparePanel {
                title: format!("{} / {}", w.name, split_name(s)),
                unseen: s == Split::Unseen,
                methods: lines,
            });
        }
    }
    let drew = write_compare_figure(&out.join("curves.svg"), &panels)?;
    let md = table_markdown(cfg, &table, &results, drew);
    write_atomic(&out.join("table.md"), md.as_bytes())?;
    Ok(table)
}

fn build_table(cfg: &CompareConfig, methods: &[Method], results: &[WorldRuns]) -> Table {
    let mut columns = Vec::new();
    for w in &cfg.worlds {
        for &s in &cfg.splits {
            columns.push((w.name.clone(), split_name(s).to_string()));
        }
    }
    let find = |c: &[EvalPoint], label: &str| c.iter().rfind(|p| p.label == label).cloned();
    let base: Vec<Option<EvalPoint>> =
        results.iter().map(|r| find(&r.shared.curve, "base")).collect();
    let sft: Vec<Option<EvalPoint>> =
        results.iter().map(|r| find(&r.shared.curve, "sft")).collect();
    let mut rows = vec![
        make_row(cfg, "base", "base", &|wi| (base[wi].clone(), 0, None)),
        make_row(cfg, "sft", "SFT", &|wi| (sft[wi].clone(), 0, None)),
    ];
    for (mi, m) in methods.iter().enumerate() {
        rows.push(make_row(cfg, m.key(), m.label(), &|wi| {
            let s = &results[wi].methods[mi].1;
            (s.curve.last().cloned(), s.updates, s.stopped.clone())
        }));
    }
    Table { name: cfg.name.clone(), columns, rows }
}

/// What a row shows of world `wi`: its evaluation point, policy updates and early stop.
type RowSource<'a> = dyn Fn(usize) -> (Option<EvalPoint>, usize, Option<String>) + 'a;

fn make_row(cfg: &CompareConfig, method: &str, label: &str, point: &RowSource<'_>) -> Row {
    let mut cells = Vec::new();
    let (mut agreement, mut updates, mut stopped) = (Vec::new(), Vec::new(), Vec::new());
    for wi in 0..cfg.worlds.len() {
        let (p, u, st) = point(wi);
        for &s in &cfg.splits {
            cells.push(cell(p.as_ref(), s));
        }
        agreement.push(p.map(|p| p.heldout).filter(|a| a.steps > 0));
        updates.push(u);
        stopped.push(st);
    }
    Row { method: method.into(), label: label.into(), cells, agreement, updates, stopped }
}

fn cell_text(c: &Option<Cell>) -> String {
    match c {
        None => "–".into(),
        Some(c) => {
            let r = &c.success;
            format!(
                "{:.1}% ± {:.1} [{:.1}, {:.1}] ({}/{})",
                100.0 * r.rate,
                100.0 * (r.hi - r.lo) / 2.0,
                100.0 * r.lo,
                100.0 * r.hi,
                r.k,
                r.n
            )
        }
    }
}

/// The paper's convergence measure beside success: on the held-out expert prefixes, how
/// often the greedy action is the expert's, and the mean log-prob of the expert's turn.
fn agreement_markdown(cfg: &CompareConfig, table: &Table) -> String {
    let mut md = String::from(
        "\n## Agreement with the expert\n\nOn the held-out expert prefixes after the last \
         cycle: the greedy action equals the expert's (95% Wilson interval), and the mean \
         log-prob of the expert's whole turn (higher: closer to the expert).\n\n| method |",
    );
    for w in &cfg.worlds {
        let _ = write!(md, " {} agreement | {} expert log-prob |", w.name, w.name);
    }
    md.push_str("\n|---|");
    md.push_str(&"---|---|".repeat(cfg.worlds.len()));
    md.push('\n');
    for r in &table.rows {
        let _ = write!(md, "| {} |", r.label);
        for a in &r.agreement {
            match a {
                None => md.push_str(" – | – |"),
                Some(a) => {
                    let rate = Rate::new(a.agreed as u64, a.steps as u64);
                    let _ = write!(
                        md,
                        " {} ({}/{}) | {:.2} |",
                        pct(&rate),
                        a.agreed,
                        a.steps,
                        a.mean_expert_logp
                    );
                }
            }
        }
        md.push('\n');
    }
    md
}

fn table_markdown(cfg: &CompareConfig, table: &Table, results: &[WorldRuns], drew: bool) -> String {
    let mut md = format!("# Comparison `{}`\n\n", cfg.name);
    md.push_str(
        "Success after the last cycle, with the 95% Wilson interval (± half its width, then the \
         interval). Every method starts from the same SFT checkpoint of its world and runs the \
         same number of cycles.\n\n",
    );
    md.push_str(&format!("Cycles per method: {}.\n\n", cfg.run.cycles));
    md.push_str("");
    md.push_str("| method |");
    for (w, s) in &table.columns {
        md.push_str(&format!(" {w} / {s} |"));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(table.columns.len()));
    md.push('\n');
    for r in &table.rows {
        let mark = if r.stopped.iter().any(Option::is_some) { " †" } else { "" };
        md.push_str(&format!("| {}{mark} |", r.label));
        for c in &r.cells {
            md.push_str(&format!(" {} |", cell_text(c)));
        }
        md.push('\n');
    }
    md.push_str(&agreement_markdown(cfg, table));
    md.push_str(
        "\n## Budgets\n\nOptimizer steps on the policy after SFT, per world.\n\n| method |",
    );
    for w in &cfg.worlds {
        md.push_str(&format!(" {} |", w.name));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(cfg.worlds.len()));
    md.push('\n');
    for r in table.rows.iter().skip(2) {
        md.push_str(&format!("| {} |", r.label));
        for u in &r.updates {
            md.push_str(&format!(" {u} |"));
        }
        md.push('\n');
    }
    let stops: Vec<String> = table
        .rows
        .iter()
        .flat_map(|r| r.stopped.iter().flatten().map(move |s| format!("- {}: {s}", r.label)))
        .collect();
    if !stops.is_empty() {
        md.push_str("\n† stopped early by a health alarm:\n\n");
        md.push_str(&stops.join("\n"));
        md.push('\n');
    }
    md.push_str("\n## Runs\n\n");
    for (w, r) in cfg.worlds.iter().zip(results) {
        md.push_str(&format!("- {} / SFT: [report](../{}/sft/report.md)\n", w.name, w.name));
        for (m, _) in &r.methods {
            md.push_str(&format!(
                "- {} / {}: [report](../{}/{}/report.md)\n",
                w.name,
                m.label(),
                w.name,
                m.key()
            ));
        }
    }
    if drew {
        md.push_str("\n![Success per method](curves.svg)\n");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped comparison configs parse, list every method, and write back as a config
    /// that parses to the same thing (what the run directory stores).
    #[test]
    fn the_shipped_comparison_configs_parse() {
        for (file, text) in [
            ("line-compare.toml", include_str!("../../../configs/line-compare.toml")),
            ("household-compare.toml", include_str!("../../../configs/household-compare.toml")),
        ] {
            let c = CompareConfig::from_toml(text).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(c.methods.len(), 6, "{file}");
            assert_eq!(c.splits, [Split::Seen, Split::Unseen], "{file}");
            let r = c.run_config(&c.worlds[0], Method::Ipr);
            assert_eq!(
                (r.method, r.data.world.as_deref()),
                (Method::Ipr, Some(c.worlds[0].name.as_str()))
            );
            toml::to_string_pretty(&c).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
        let h = CompareConfig::from_toml(include_str!("../../../configs/household-compare.toml"))
            .unwrap();
        assert_eq!((h.run.ipr.rollouts, h.run.eto.betas.as_slice()), (2, &[0.1, 0.5][..]));
    }
}
