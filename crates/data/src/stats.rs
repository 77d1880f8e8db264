use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::{Dataset, Speaker, Turn};

/// Count, min, mean and max of a quantity over records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// How many values.
    pub count: usize,
    /// The smallest.
    pub min: f64,
    /// The mean.
    pub mean: f64,
    /// The largest.
    pub max: f64,
}

impl Summary {
    /// The summary of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let (mut n, mut sum, mut min, mut max) = (0usize, 0.0, f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            n += 1;
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
        if n == 0 {
            Summary::default()
        } else {
            Summary { count: n, min, mean: sum / n as f64, max }
        }
    }
}

/// Figures for one task type.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupStats {
    /// Records of this type.
    pub records: usize,
    /// Agent steps per record.
    pub steps: Summary,
    /// Records that succeeded, where the data says (transcripts).
    pub successes: Option<usize>,
}

/// What [`stats()`] reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// `SFT`, `DPO` or `transcripts`.
    pub kind: String,
    /// Records.
    pub records: usize,
    /// Turns per record (DPO: prompt + chosen).
    pub turns: Summary,
    /// Agent steps per record: assistant turns after ETO's "OK" (DPO: in `chosen`).
    pub steps: Summary,
    /// Characters per record.
    pub chars: Summary,
    /// Whitespace-separated words per record: a stand-in for tokens until a tokenizer is
    /// loaded (for English ReAct text, tokens ≈ 1.3 × words).
    pub words: Summary,
    /// Records that succeeded and records that say, where the data says (transcripts; SFT
    /// records with a `reward`, counting reward 1 as success).
    pub success: Option<(usize, usize)>,
    /// Mean reward, where the data has one.
    pub mean_reward: Option<f64>,
    /// By task type (transcripts' `task_type`; SFT's `task_type` key or ALFWorld's
    /// `game_file` prefix); records of no known type are under `unknown`.
    pub per_type: BTreeMap<String, GroupStats>,
}

struct Row {
    turns: usize,
    steps: usize,
    chars: usize,
    words: usize,
    kind: String,
    reward: Option<f64>,
    success: Option<bool>,
}

fn sizes(turns: &[&[Turn]]) -> (usize, usize) {
    let all = turns.iter().flat_map(|t| t.iter());
    all.fold((0, 0), |(c, w), t| {
        (c + t.content.chars().count(), w + t.content.split_whitespace().count())
    })
}

/// Summarises a dataset.
pub fn stats(data: &Dataset) -> Stats {
    let rows: Vec<Row> = match data {
        Dataset::Sft { records, .. } => records
            .iter()
            .map(|r| {
                let (chars, words) = sizes(&[&r.conversations]);
                let reward = r.extra.get("reward").and_then(serde_json::Value::as_f64);
                Row {
                    turns: r.conversations.len(),
                    steps: r
                        .conversations
                        .iter()
                        .skip(2)
                        .filter(|t| t.role == Speaker::Assistant)
                        .count(),
                    chars,
                    words,
                    kind: r.task_type().unwrap_or_else(|| "unknown".into()),
                    reward,
                    success: reward.map(|x| x >= 1.0),
                }
            })
            .collect(),
        Dataset::Dpo { records, .. } => records
            .iter()
            .map(|r| {
                let (chars, words) = sizes(&[&r.prompt, &r.chosen, &r.rejected]);
                let kind = r.extra.get("task_type").and_then(serde_json::Value::as_str);
                Row {
                    turns: r.prompt.len() + r.chosen.len(),
                    steps: r.chosen.iter().filter(|t| t.role == Speaker::Assistant).count(),
                    chars,
                    words,
                    kind: kind.unwrap_or("unknown").to_string(),
                    reward: None,
                    success: None,
                }
            })
            .collect(),
        Dataset::Transcripts(ts) => ts
            .iter()
            .map(|t| {
                let (chars, words) = sizes(&[&t.conversations]);
                Row {
                    turns: t.conversations.len(),
                    steps: t.steps,
                    chars,
                    words,
                    kind: t.task_type.clone(),
                    reward: Some(t.reward),
                    success: Some(t.success),
                }
            })
            .collect(),
    };
    let f = |g: fn(&Row) -> usize| Summary::of(rows.iter().map(|r| g(r) as f64));
    let judged: Vec<bool> = rows.iter().filter_map(|r| r.success).collect();
    let rewards: Vec<f64> = rows.iter().filter_map(|r| r.reward).collect();
    let mut per_type: BTreeMap<String, GroupStats> = BTreeMap::new();
    for kind in rows.iter().map(|r| r.kind.clone()) {
        per_type.entry(kind).or_default();
    }
    for (kind, g) in per_type.iter_mut() {
        let mine: Vec<&Row> = rows.iter().filter(|r| &r.kind == kind).collect();
        g.records = mine.len();
        g.steps = Summary::of(mine.iter().map(|r| r.steps as f64));
        let s: Vec<bool> = mine.iter().filter_map(|r| r.success).collect();
        g.successes = (!s.is_empty()).then(|| s.iter().filter(|&&x| x).count());
    }
    Stats {
        kind: data.kind().to_string(),
        records: rows.len(),
        turns: f(|r| r.turns),
        steps: f(|r| r.steps),
        chars: f(|r| r.chars),
        words: f(|r| r.words),
        success: (!judged.is_empty())
            .then(|| (judged.iter().filter(|&&x| x).count(), judged.len())),
        mean_reward: (!rewards.is_empty())
            .then(|| rewards.iter().sum::<f64>() / rewards.len() as f64),
        per_type,
    }
}

impl Stats {
    /// A markdown report.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{} records ({} data)\n", self.records, self.kind);
        let _ = writeln!(s, "| per record | min | mean | max |\n|---|---:|---:|---:|");
        for (name, x) in [
            ("turns", self.turns),
            ("agent steps", self.steps),
            ("characters", self.chars),
            ("words (≈ tokens / 1.3; no tokenizer loaded)", self.words),
        ] {
            let _ = writeln!(s, "| {name} | {:.0} | {:.1} | {:.0} |", x.min, x.mean, x.max);
        }
        s.push('\n');
        match self.success {
            Some((k, n)) => {
                let _ =
                    writeln!(s, "success: {k}/{n} ({:.1}%)", 100.0 * k as f64 / n.max(1) as f64);
            }
            None => s.push_str("success: not recorded (expert data carries no outcome)\n"),
        }
        if let Some(r) = self.mean_reward {
            let _ = writeln!(s, "mean reward: {r:.3}");
        }
        let _ =
            writeln!(s, "\n| task type | records | mean steps | success |\n|---|---:|---:|---:|");
        for (kind, g) in &self.per_type {
            let succ = match g.successes {
                Some(k) => format!("{k}/{}", g.records),
                None => "–".into(),
            };
            let _ = writeln!(s, "| {kind} | {} | {:.1} | {succ} |", g.records, g.steps.mean);
        }
        s
    }
}
