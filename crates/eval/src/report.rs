//! Reports: per split, overall and per task type; JSON and markdown; comparisons.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::ci::{Mean, Rate};
use crate::metrics::{Metrics, Outcome};

/// The figures of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitReport {
    /// The split.
    pub split: String,
    /// Over all its episodes.
    pub overall: Metrics,
    /// By task type.
    pub per_type: BTreeMap<String, Metrics>,
}

/// An evaluation's report: what was run and what came out. `report.json` is this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The world.
    pub world: String,
    /// The policy's name.
    pub policy: String,
    /// The run seed.
    pub seed: u64,
    /// The step limit in force.
    pub max_steps: usize,
    /// One entry per split, in the order evaluated.
    pub splits: Vec<SplitReport>,
}

impl Report {
    /// Builds the report from episode outcomes; splits appear in order of first appearance.
    pub fn from_outcomes(
        world: &str,
        policy: &str,
        seed: u64,
        max_steps: usize,
        outcomes: &[Outcome],
    ) -> Self {
        let mut order: Vec<&str> = Vec::new();
        for o in outcomes {
            if !order.contains(&o.split.as_str()) {
                order.push(&o.split);
            }
        }
        let splits = order
            .into_iter()
            .map(|split| {
                let mine: Vec<&Outcome> = outcomes.iter().filter(|o| o.split == split).collect();
                let mut types: BTreeMap<String, Vec<&Outcome>> = BTreeMap::new();
                for o in &mine {
                    types.entry(o.task_type.clone()).or_default().push(o);
                }
                SplitReport {
                    split: split.to_string(),
                    overall: Metrics::of(mine.iter().copied()),
                    per_type: types.into_iter().map(|(k, v)| (k, Metrics::of(v))).collect(),
                }
            })
            .collect();
        Report { world: world.into(), policy: policy.into(), seed, max_steps, splits }
    }

    /// The split called `name`.
    pub fn split(&self, name: &str) -> Option<&SplitReport> {
        self.splits.iter().find(|s| s.split == name)
    }

    /// `report.json`'s text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports always serialise") + "\n"
    }

    /// `report.md`'s text: a table per split, overall first, then each task type.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Evaluation: `{}` in `{}`\n", self.policy, self.world);
        let _ = writeln!(
            s,
            "Seed {}, at most {} steps per episode. Brackets: 95% confidence intervals (Wilson for rates, t for means; step rates pool all steps).\n",
            self.seed, self.max_steps
        );
        for sp in &self.splits {
            let _ = writeln!(s, "## {}\n", sp.split);
            s.push_str("| task type | episodes | success | mean reward | mean steps | invalid actions | format errors |\n");
            s.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
            row(&mut s, "**all**", &sp.overall);
            for (t, m) in &sp.per_type {
                row(&mut s, t, m);
            }
            s.push('\n');
        }
        s
    }
}

fn row(s: &mut String, name: &str, m: &Metrics) {
    let _ = writeln!(
        s,
        "| {name} | {} | {} | {} | {} | {} | {} |",
        m.episodes,
        pct(&m.success),
        mean(&m.reward, 2),
        mean(&m.steps, 1),
        pct(&m.invalid_action_rate),
        pct(&m.format_error_rate)
    );
}

/// `40.0% [21.9, 61.3]`.
pub fn pct(r: &Rate) -> String {
    format!("{:.1}% [{:.1}, {:.1}]", 100.0 * r.rate, 100.0 * r.lo, 100.0 * r.hi)
}

fn mean(m: &Mean, digits: usize) -> String {
    format!("{:.d$} [{:.d$}, {:.d$}]", m.mean, m.lo, m.hi, d = digits)
}

/// The difference of two success rates, B − A, with a 95% Newcombe (hybrid Wilson)
/// interval: it stays inside [−1, 1] and behaves at rates of 0 and 1, where the Wald
/// interval for a difference does not.
pub fn rate_difference(a: &Rate, b: &Rate) -> (f64, f64, f64) {
    let d = b.rate - a.rate;
    let lo = d - ((b.rate - b.lo).powi(2) + (a.hi - a.rate).powi(2)).sqrt();
    let hi = d + ((b.hi - b.rate).powi(2) + (a.rate - a.lo).powi(2)).sqrt();
    (d, lo.max(-1.0), hi.min(1.0))
}

/// Per-split deltas from report `a` to report `b` (B − A) as markdown: overall figures, and
/// the success rate per task type. Splits in only one report are listed as such.
pub fn compare_markdown(a: &Report, b: &Report, a_name: &str, b_name: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Comparison: B − A\n\n- A: `{}` in `{}` ({a_name})\n- B: `{}` in `{}` ({b_name})\n",
        a.policy, a.world, b.policy, b.world
    );
    if a.world != b.world {
        s.push_str("**Warning:** the reports are of different worlds.\n\n");
    }
    for sa in &a.splits {
        let Some(sb) = b.split(&sa.split) else {
            let _ = writeln!(s, "## {}\n\nonly in A\n", sa.split);
            continue;
        };
        let _ = writeln!(s, "## {}\n", sa.split);
        s.push_str("| metric | A | B | B − A |\n|---|---:|---:|---:|\n");
        let (d, lo, hi) = rate_difference(&sa.overall.success, &sb.overall.success);
        let sig = if lo > 0.0 || hi < 0.0 { " *" } else { "" };
        let _ = writeln!(
            s,
            "| success | {} | {} | {:+.1} pts [{:+.1}, {:+.1}]{sig} |",
            pct(&sa.overall.success),
            pct(&sb.overall.success),
            100.0 * d,
            100.0 * lo,
            100.0 * hi
        );
        let (ma, mb) = (&sa.overall, &sb.overall);
        let _ = writeln!(
            s,
            "| mean reward | {:.3} | {:.3} | {:+.3} |",
            ma.reward.mean,
            mb.reward.mean,
            mb.reward.mean - ma.reward.mean
        );
        let _ = writeln!(
            s,
            "| mean steps | {:.1} | {:.1} | {:+.1} |",
            ma.steps.mean,
            mb.steps.mean,
            mb.steps.mean - ma.steps.mean
        );
        for (name, ra, rb) in [
            ("invalid actions", &ma.invalid_action_rate, &mb.invalid_action_rate),
            ("format errors", &ma.format_error_rate, &mb.format_error_rate),
        ] {
            let _ = writeln!(
                s,
                "| {name} | {:.1}% | {:.1}% | {:+.1} pts |",
                100.0 * ra.rate,
                100.0 * rb.rate,
                100.0 * (rb.rate - ra.rate)
            );
        }
        let types: std::collections::BTreeSet<&String> =
            sa.per_type.keys().chain(sb.per_type.keys()).collect();
        s.push_str("\n| task type | A success | B success | B − A |\n|---|---:|---:|---:|\n");
        for t in types {
            match (sa.per_type.get(t), sb.per_type.get(t)) {
                (Some(x), Some(y)) => {
                    let _ = writeln!(
                        s,
                        "| {t} | {:.1}% ({}) | {:.1}% ({}) | {:+.1} pts |",
                        100.0 * x.success.rate,
                        x.episodes,
                        100.0 * y.success.rate,
                        y.episodes,
                        100.0 * (y.success.rate - x.success.rate)
                    );
                }
                (Some(x), None) => {
                    let _ = writeln!(
                        s,
                        "| {t} | {:.1}% ({}) | – | – |",
                        100.0 * x.success.rate,
                        x.episodes
                    );
                }
                (None, Some(y)) => {
                    let _ = writeln!(
                        s,
                        "| {t} | – | {:.1}% ({}) | – |",
                        100.0 * y.success.rate,
                        y.episodes
                    );
                }
                (None, None) => {}
            }
        }
        s.push('\n');
    }
    for sb in &b.splits {
        if a.split(&sb.split).is_none() {
            let _ = writeln!(s, "## {}\n\nonly in B\n", sb.split);
        }
    }
    s.push_str("`*`: the 95% interval of the difference (Newcombe) excludes zero.\n");
    s
}

/// Several policies' success side by side, per split and task type: the expert-vs-random
/// summary. Reports are matched by split and task type; all should be of one world.
pub fn versus_markdown(reports: &[&Report]) -> String {
    let mut s = String::new();
    let Some(first) = reports.first() else { return s };
    let _ = writeln!(
        s,
        "Success rate in `{}` with 95% Wilson intervals, per split and task type.\n",
        first.world
    );
    s.push_str("| split | task type | episodes |");
    for r in reports {
        let _ = write!(s, " {} |", r.policy);
    }
    s.push_str("\n|---|---|---:|");
    for _ in reports {
        s.push_str("---:|");
    }
    s.push('\n');
    for sp in &first.splits {
        let mut line = |name: &str, pick: &dyn Fn(&SplitReport) -> Option<Metrics>| {
            let eps = pick(sp).map(|m| m.episodes).unwrap_or(0);
            let _ = write!(s, "| {} | {name} | {eps} |", sp.split);
            for r in reports {
                match r.split(&sp.split).and_then(pick) {
                    Some(m) => {
                        let _ = write!(s, " {} |", pct(&m.success));
                    }
                    None => s.push_str(" – |"),
                }
            }
            s.push('\n');
        };
        line("**all**", &|x: &SplitReport| Some(x.overall));
        for t in sp.per_type.keys() {
            line(t, &|x: &SplitReport| x.per_type.get(t).copied());
        }
    }
    s
}
