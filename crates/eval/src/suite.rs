//! Running an evaluation: which tasks, the run, and the files it writes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stepagent_data::TranscriptWriter;
use stepagent_env::{Split, TaskId, World};
use stepagent_policy::react::Example;
use stepagent_policy::runner::{Episode, RunConfig, RunError, Runner};
use stepagent_policy::Policy;

use crate::convert::transcript_of;
use crate::metrics::Outcome;
use crate::report::Report;
use crate::EvalError;

/// What to evaluate on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// The splits (default: seen and unseen, ALFWorld's two held-out sets).
    pub splits: Vec<Split>,
    /// The first `n` tasks of each split (default: all of them).
    pub n: Option<usize>,
    /// How episodes are run.
    pub run: RunConfig,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { splits: vec![Split::Seen, Split::Unseen], n: None, run: RunConfig::default() }
    }
}

impl EvalConfig {
    /// The tasks, split by split: the first `n` of each (fewer where a split is smaller).
    pub fn tasks(&self, world: &dyn World) -> Vec<TaskId> {
        self.splits
            .iter()
            .flat_map(|&split| {
                let len = world.num_tasks(split);
                let n = self.n.map_or(len, |n| n.min(len));
                (0..n).map(move |i| TaskId::new(split, i))
            })
            .collect()
    }
}

/// The files an evaluation writes into its output directory.
pub struct OutputFiles {
    /// `transcripts.jsonl`: one episode a line, in task order, written as episodes finish.
    pub transcripts: PathBuf,
    /// `report.json`.
    pub report_json: PathBuf,
    /// `report.md`.
    pub report_md: PathBuf,
}

impl OutputFiles {
    /// The files in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        OutputFiles {
            transcripts: dir.join("transcripts.jsonl"),
            report_json: dir.join("report.json"),
            report_md: dir.join("report.md"),
        }
    }
}

/// Evaluates `policy` in `world`. With `out_dir`, writes `transcripts.jsonl` (streamed),
/// `report.json` and `report.md` there, creating the directory. `on_episode` sees each
/// episode as it is handed over, in task order (for progress displays).
pub fn evaluate(
    world: &dyn World,
    policy: &dyn Policy,
    cfg: &EvalConfig,
    out_dir: Option<&Path>,
    on_episode: &mut dyn FnMut(&Episode),
) -> Result<Report, EvalError> {
    evaluate_with_examples(world, policy, cfg, &[], out_dir, on_episode)
}

/// [`evaluate`], showing the agent `examples` as in-context turns before every task.
pub fn evaluate_with_examples(
    world: &dyn World,
    policy: &dyn Policy,
    cfg: &EvalConfig,
    examples: &[Example],
    out_dir: Option<&Path>,
    on_episode: &mut dyn FnMut(&Episode),
) -> Result<Report, EvalError> {
    let tasks = cfg.tasks(world);
    let files = out_dir.map(OutputFiles::in_dir);
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir)
            .map_err(|source| EvalError::Io { path: dir.to_path_buf(), source })?;
    }
    let mut writer = match &files {
        Some(f) => Some(TranscriptWriter::create(&f.transcripts)?),
        None => None,
    };
    let runner = Runner::new(world, policy, cfg.run.clone()).with_examples(examples.to_vec());
    let mut outcomes = Vec::with_capacity(tasks.len());
    tracing::info!(world = world.name(), policy = %policy.name(), episodes = tasks.len(), "evaluating");
    runner.run(&tasks, &mut |e| {
        if let Some(w) = writer.as_mut() {
            w.write(&transcript_of(e)).map_err(|err| RunError::Sink(Box::new(err)))?;
        }
        outcomes.push(Outcome::from(e));
        on_episode(e);
        Ok(())
    })?;
    let report = Report::from_outcomes(
        world.name(),
        &policy.name(),
        cfg.run.seed,
        runner.max_steps(),
        &outcomes,
    );
    if let Some(f) = &files {
        write_atomic(&f.report_json, &report.to_json())?;
        write_atomic(&f.report_md, &report.to_markdown())?;
    }
    Ok(report)
}

/// Writes through a temporary file renamed into place, so a report on disk is always whole.
pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<(), EvalError> {
    let io = |source| EvalError::Io { path: path.to_path_buf(), source };
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads a `report.json`.
pub fn load_report(path: &Path) -> Result<Report, EvalError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| EvalError::Io { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text)
        .map_err(|e| EvalError::BadReport { path: path.to_path_buf(), message: e.to_string() })
}

/// The first `k` records of an SFT file as in-context examples (each conversation from its
/// first observation on).
pub fn examples_from_file(path: &Path, k: usize) -> Result<Vec<Example>, EvalError> {
    let data = stepagent_data::Dataset::load(path)?;
    let file = path.display().to_string();
    let stepagent_data::Dataset::Sft { records, .. } = data else {
        return Err(EvalError::BadReplay {
            file,
            record: 0,
            id: String::new(),
            message: format!("in-context examples come from SFT data, not {}", data.kind()),
        });
    };
    records
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, r)| {
            let conv: Vec<_> = r.conversations.iter().map(crate::convert::message_of).collect();
            Example::from_eto_conversation(&conv).map_err(|e| EvalError::BadReplay {
                file: file.clone(),
                record: i,
                id: r.id.clone(),
                message: e.to_string(),
            })
        })
        .collect()
}
