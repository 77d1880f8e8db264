//! Every method after SFT end to end on a tiny random model and the toy line world (seconds
//! each): the stages and metrics each writes, resuming an interrupted stage to the same
//! result, health alarms that stop a stage, and `compare` over a few methods.

mod common;

use std::path::Path;

use common::{tiny_lm, world};
use serde_json::Value;
use stepagent_train::compare::{run_compare, CompareConfig, CompareEvent};
use stepagent_train::config::{Finetune, Method, TrainConfig};
use stepagent_train::health::HealthAction;
use stepagent_train::pipeline::{run_pipeline, Event, Summary};
use stepagent_train::run::{MetricsLog, RunDir};
use stepagent_train::TrainError;

/// A run of `method` sized for seconds: 4 training tasks, 2 SFT epochs, one cycle, two seen
/// evaluation episodes.
fn cfg(name: &str, method: Method) -> TrainConfig {
    let mut c =
        TrainConfig::from_toml(&format!("name = \"{name}\"\n[data]\nworld = \"line\"")).unwrap();
    c.method = method;
    c.cycles = 1;
    c.model.finetune = Finetune::Lora;
    c.model.lora.rank = 4;
    c.model.save_final = false;
    c.data.train_tasks = 4;
    c.data.heldout_tasks = 2;
    c.data.workers = 1;
    c.sft.epochs = 2;
    c.sft.batch = 2;
    c.sft.optim.lr = 3e-3;
    c.inspect.max_new_tokens = 12;
    c.eval.max_new_tokens = 12;
    c.eval.seen_tasks = 2;
    c.eval.base = false;
    c.eval.train_agreement = false;
    c.inverse.disc.batch = 4;
    c.inverse.ppo.minibatch = 4;
    c.ppo.iterations = 2;
    c.ppo.tasks = 2;
    c.ppo.samples = 2;
    c.ppo.max_new_tokens = 12;
    c.ppo.max_steps = Some(4);
    c.ppo.update.epochs = 1;
    c.eto.max_new_tokens = 12;
    c.eto.max_steps = Some(4);
    c.rft.samples = 2;
    c.rft.max_new_tokens = 12;
    c.rft.max_steps = Some(4);
    c.ipr.tasks = 2;
    c.ipr.steps_per_trajectory = 2;
    c.ipr.rollouts = 2;
    c.ipr.max_new_tokens = 12;
    c.ipr.max_steps = Some(4);
    c
}

fn run(
    dir: &Path,
    c: &TrainConfig,
    stop: &mut dyn FnMut(&Event<'_>) -> bool,
) -> Result<Summary, TrainError> {
    let run = RunDir::open(dir, c, false)?;
    run_pipeline(c, &run, &|| Ok(tiny_lm(3)), &world(), &mut |e| {
        if stop(e) {
            Err(TrainError::Config { key: "test".into(), message: "killed".into() })
        } else {
            Ok(())
        }
    })
}

fn records(dir: &Path, stage: &str, kind: &str) -> Vec<Value> {
    MetricsLog::read_all(&dir.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter(|r| r["stage"] == stage && r["kind"] == kind)
        .collect()
}

/// Runs `method` for one cycle and checks the common outputs: the curve ends at `cycle-1`,
/// the listed stages are finished, and the report was written.
fn one_cycle(method: Method, stages: &[&str]) -> (tempfile::TempDir, Summary) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r");
    let s = run(&dir, &cfg("r", method), &mut |_| false).unwrap();
    let labels: Vec<&str> = s.curve.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["sft", "cycle-1"], "{method:?}");
    for st in stages {
        assert!(dir.join("stages").join(st).is_dir(), "{method:?}: no stage {st}");
    }
    assert!(dir.join("report.md").exists() && dir.join("summary.json").exists());
    assert!(s.curve[1].seen.is_some(), "{method:?}: the cycle is evaluated in the world");
    (tmp, s)
}

#[test]
fn stepagent_inverse_trains_a_discriminator_then_ppo_on_its_rewards() {
    let (tmp, s) =
        one_cycle(Method::StepagentInverse, &["cycle-1-inspect", "cycle-1-disc", "cycle-1-ppo"]);
    let dir = tmp.path().join("r");
    let disc = records(&dir, "cycle-1-disc", "disc");
    assert_eq!(disc.len(), 1);
    let (acc, auc) = (disc[0]["accuracy"].as_f64().unwrap(), disc[0]["auc"].as_f64().unwrap());
    assert!((0.0..=1.0).contains(&acc) && (0.0..=1.0).contains(&auc), "{disc:?}");
    assert!(!records(&dir, "cycle-1-disc", "disc/epoch").is_empty());
    let ppo = records(&dir, "cycle-1-ppo", "ppo/update");
    assert_eq!(ppo.len(), 1);
    // log D < 0: every sampled step was rewarded by the discriminator.
    assert!(ppo[0]["reward"].as_f64().unwrap() < 0.0, "{:?}", ppo[0]);
    assert!(ppo[0]["steps"].as_u64().unwrap() > 0 && ppo[0]["loss"].as_f64().unwrap().is_finite());
    assert!(dir.join("stages/cycle-1-ppo/value.safetensors").exists(), "GAE's value head saved");
    assert_eq!(s.inspections.len(), 1);
    assert!(s.updates > 0);
    assert!(s.training.iter().any(|(n, _)| n == "cycle-1-disc"));
}

#[test]
fn outcome_ppo_learns_from_whole_episodes() {
    let (tmp, s) = one_cycle(Method::Ppo, &["cycle-1-ppo"]);
    let dir = tmp.path().join("r");
    let its = records(&dir, "cycle-1-ppo", "ppo/iteration");
    assert_eq!(its.len(), 2, "two iterations");
    for it in &its {
        // 2 tasks × 2 samples, each a multi-turn episode of at most 4 turns.
        assert_eq!(it["rollouts"], 4);
        let turns = it["turns"].as_u64().unwrap();
        assert!((4..=16).contains(&turns), "{it}");
        assert!((0.0..=1.0).contains(&it["success_rate"].as_f64().unwrap()));
        assert!(it["value_loss"].is_null(), "a group baseline has no critic");
    }
    assert_eq!(s.updates as u64, its[1]["steps"].as_u64().unwrap());
}

#[test]
fn eto_pairs_failed_explorations_with_the_expert() {
    let (tmp, _) = one_cycle(Method::Eto, &["cycle-1-explore", "cycle-1-train"]);
    let dir = tmp.path().join("r");
    let ex = records(&dir, "cycle-1-explore", "explore");
    assert_eq!(ex[0]["episodes"], 4);
    let pairs: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("stages/cycle-1-explore/pairs.json")).unwrap(),
    )
    .unwrap();
    let failures =
        ex[0]["episodes"].as_f64().unwrap() * (1.0 - ex[0]["success_rate"].as_f64().unwrap());
    assert_eq!(pairs.len() as f64, failures.round(), "one pair per failed exploration");
    // The tiny model fails every task, so every exploration is a pair.
    assert_eq!(pairs.len(), 4);
    let epochs = records(&dir, "cycle-1-train", "dpo/epoch");
    assert_eq!(epochs.len(), 1);
    // ETO's first iteration: β = 0.1, reference = the policy itself, so the loss starts at
    // ln 2 on the first step.
    let first = &records(&dir, "cycle-1-train", "dpo/step")[0];
    assert!((first["dpo_loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-3, "{first}");
}

#[test]
fn rft_samples_n_episodes_per_task_and_reports_best_of_n() {
    // The tiny model wins nothing; with the expert trajectories added the fine-tuning runs.
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg("r", Method::Rft);
    c.rft.include_expert = true;
    let s = run(&tmp.path().join("r"), &c, &mut |_| false).unwrap();
    let dir = tmp.path().join("r");
    let st = records(&dir, "cycle-1-sample", "sample");
    assert_eq!(st[0]["episodes"], 8, "4 tasks × 2 samples");
    let (rate, best) =
        (st[0]["success_rate"].as_f64().unwrap(), st[0]["best_of_n"].as_f64().unwrap());
    assert!(best >= rate, "best-of-N is never below the per-episode rate: {}", st[0]);
    let successes =
        st[0]["successes"].as_u64().unwrap() + st[0]["unusable_successes"].as_u64().unwrap();
    assert_eq!(successes as f64, (rate * 8.0).round());
    assert!(dir.join("stages/cycle-1-train/trainable.safetensors").exists());
    assert_eq!(records(&dir, "cycle-1-train", "sft/epoch").len(), 1);
    let (name, last) = s.training.last().unwrap();
    assert_eq!(name, "cycle-1-train");
    assert_eq!(last["best_of_n"], st[0]["best_of_n"]);
    assert_eq!(s.curve.last().unwrap().label, "cycle-1");
}

#[test]
fn ipr_keeps_pairs_where_step_reward_and_outcome_agree() {
    let (tmp, _) = one_cycle(Method::Ipr, &["cycle-1-explore", "cycle-1-train"]);
    let dir = tmp.path().join("r");
    let ex = &records(&dir, "cycle-1-explore", "explore")[0];
    let judged = ex["kept"].as_u64().unwrap()
        + ex["step_reward_disagrees"].as_u64().unwrap()
        + ex["outcome_disagrees"].as_u64().unwrap();
    assert_eq!(judged + ex["diverged"].as_u64().unwrap(), 4, "2 trajectories × 2 steps: {ex}");
    assert_eq!(ex["kept"], ex["pairs"]);
    assert_eq!(ex["monte_carlo_episodes"].as_u64().unwrap(), 2 * 2 * judged);
    // The expert's last action ends its episode with a win, so its step reward is 1 while
    // the tiny agent's is 0: that step is always kept.
    assert!(ex["pairs"].as_u64().unwrap() > 0, "{ex}");
    let e = &records(&dir, "cycle-1-train", "dpo/epoch")[0];
    // DPO + NLL: the loss carries the chosen side's NLL.
    assert!(e["nll"].as_f64().unwrap() > 0.0, "{e}");
    let (loss, dpo, nll) =
        (e["loss"].as_f64().unwrap(), e["dpo_loss"].as_f64().unwrap(), e["nll"].as_f64().unwrap());
    assert!((loss - dpo - nll).abs() < 1e-3, "{e}");
}

#[test]
fn an_interrupted_ppo_stage_resumes_to_the_same_result() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = cfg("p", Method::Ppo);
    c.cycles = 2;
    let whole = run(&tmp.path().join("whole"), &c, &mut |_| false).unwrap();
    let dir = tmp.path().join("resumed");
    // Killed after the first iteration of cycle 2 …
    let err = run(&dir, &c, &mut |e| {
        matches!(e, Event::Metrics(v) if v["kind"] == "ppo/iteration" && v["stage"] == "cycle-2-ppo")
    })
    .unwrap_err();
    assert!(err.to_string().contains("killed"));
    assert!(dir.join("stages/cycle-2-ppo.partial/units.jsonl").exists());
    // … then it continues at the second iteration.
    let mut redone = 0;
    let resumed = run(&dir, &c, &mut |e| {
        if let Event::Metrics(v) = e {
            if v["kind"] == "ppo/iteration" {
                redone += 1;
            }
        }
        false
    })
    .unwrap();
    assert_eq!(redone, 1, "only the unfinished iteration runs again");
    assert_eq!(resumed.curve, whole.curve);
    assert_eq!(resumed.training, whole.training);
    assert_eq!(resumed.updates, whole.updates);
}

#[test]
fn an_interrupted_ipr_exploration_resumes_to_the_same_result() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg("i", Method::Ipr);
    let whole = run(&tmp.path().join("whole"), &c, &mut |_| false).unwrap();
    let dir = tmp.path().join("resumed");
    run(&dir, &c, &mut |e| matches!(e, Event::Unit { stage: "cycle-1-explore", done: 1, .. }))
        .unwrap_err();
    let resumed = run(&dir, &c, &mut |_| false).unwrap();
    assert_eq!(resumed.curve, whole.curve);
    assert_eq!(resumed.training, whole.training);
    let a = std::fs::read(tmp.path().join("whole/stages/cycle-1-explore/pairs.json")).unwrap();
    let b = std::fs::read(dir.join("stages/cycle-1-explore/pairs.json")).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_health_alarm_under_stop_ends_the_stage_and_the_method() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("h");
    let mut c = cfg("h", Method::Ppo);
    c.cycles = 2;
    c.ppo.iterations = 3;
    c.ppo.update.optim.lr = 1e-2;
    // Any drift from the SFT reference trips the KL alarm; the first iteration samples from
    // the SFT model itself (KL 0), so the alarm fires at the second.
    c.health.kl_max = 1e-9;
    c.health.action = HealthAction::Stop;
    let s = run(&dir, &c, &mut |_| false).unwrap();
    let why = s.stopped.clone().expect("stopped");
    assert!(why.contains("cycle-1-ppo") && why.contains("KL"), "{why}");
    assert_eq!(records(&dir, "cycle-1-ppo", "ppo/iteration").len(), 2);
    assert!(dir.join("stages/cycle-1-ppo/stopped.json").exists());
    assert!(!dir.join("stages/cycle-2-ppo").exists(), "no cycle after the stop");
    assert_eq!(s.curve.last().unwrap().label, "cycle-1", "the stopped cycle is evaluated");
    assert_eq!(s.alarms.len(), 1);
    assert_eq!(s.alarms[0]["alarm"], "kl-exploding");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("Stopped early") && md.contains("kl-exploding"), "{md}");
    // Under `warn` the same run logs the alarms and goes on.
    let mut w = c.clone();
    w.name = "w".into();
    w.health.action = HealthAction::Warn;
    let s = run(&tmp.path().join("w"), &w, &mut |_| false).unwrap();
    assert!(s.stopped.is_none() && s.alarms.len() >= 2, "{:?}", s.alarms);
    assert_eq!(s.curve.last().unwrap().label, "cycle-2");
}

const COMPARE: &str = r#"
name = "cmp"
methods = ["eto", "rft"]
cycles = 1

[[worlds]]
name = "line"

[model]
finetune = "lora"
save_final = false

[model.lora]
rank = 4

[data]
train_tasks = 4
heldout_tasks = 2
workers = 1

[sft]
epochs = 2
batch = 2

[eval]
seen_tasks = 2
max_new_tokens = 12
train_agreement = false

[eto]
max_new_tokens = 12
max_steps = 4

[rft]
samples = 2
max_new_tokens = 12
max_steps = 4
"#;

#[test]
fn compare_shares_one_sft_run_writes_the_table_and_skips_finished_methods() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = CompareConfig::from_toml(COMPARE).unwrap();
    let open =
        |_: &stepagent_train::compare::CompareWorld| Ok(stepagent_env::registry::shared(world()));
    let mut events = Vec::new();
    let table = run_compare(&cfg, tmp.path(), &|| Ok(tiny_lm(3)), &open, false, &mut |e| {
        match e {
            CompareEvent::RunStart { method, .. } => events.push(format!("start {}", method.key())),
            CompareEvent::RunSkipped { method, .. } => {
                events.push(format!("skip {}", method.key()))
            }
            CompareEvent::Pipeline(Event::StageStart { stage, .. }) => {
                events.push(stage.to_string())
            }
            _ => {}
        }
        Ok(())
    })
    .unwrap();
    // SFT ran once, in the shared run; the methods started from its stages.
    assert_eq!(events.iter().filter(|e| *e == "sft").count(), 1, "{events:?}");
    assert_eq!(events.iter().filter(|e| *e == "expert").count(), 1, "{events:?}");
    let root = tmp.path().join("cmp");
    let a = std::fs::read(root.join("line/sft/stages/sft/trainable.safetensors")).unwrap();
    for m in ["eto", "rft"] {
        let b =
            std::fs::read(root.join(format!("line/{m}/stages/sft/trainable.safetensors"))).unwrap();
        assert_eq!(a, b, "{m} starts from the shared SFT weights");
    }
    let labels: Vec<&str> = table.rows.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["base", "SFT", "RFT", "ETO"]);
    assert_eq!(table.columns, [("line".to_string(), "seen".to_string())]);
    assert!(table.rows.iter().all(|r| r.cells.len() == 1 && r.cells[0].is_some()));
    let md = std::fs::read_to_string(root.join("compare/table.md")).unwrap();
    assert!(md.contains("| method | line / seen |"), "{md}");
    let sft_cell = table.rows[1].cells[0].as_ref().unwrap();
    let want = format!("| SFT | {:.1}% ± ", 100.0 * sft_cell.success.rate);
    assert!(md.contains(&want), "{md}");
    // Agreement beside success: every row measured on the same held-out prefixes.
    assert!(md.contains("| method | line agreement | line expert log-prob |"), "{md}");
    let steps: Vec<usize> =
        table.rows.iter().map(|r| r.agreement[0].as_ref().expect("measured").steps).collect();
    assert!(steps[0] > 0 && steps.iter().all(|&n| n == steps[0]), "{steps:?}");
    let a = table.rows[1].agreement[0].unwrap();
    let want = format!("({}/{}) | {:.2} |", a.agreed, a.steps, a.mean_expert_logp);
    assert!(md.contains(&want), "{md}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("compare/table.json")).unwrap())
            .unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), 4);

    // Rerun: every run finished, so each is skipped and no stage runs.
    events.clear();
    let again = run_compare(&cfg, tmp.path(), &|| Ok(tiny_lm(3)), &open, false, &mut |e| {
        match e {
            CompareEvent::RunSkipped { method, .. } => {
                events.push(format!("skip {}", method.key()))
            }
            CompareEvent::RunStart { method, .. } => events.push(format!("start {}", method.key())),
            CompareEvent::Pipeline(Event::StageStart { stage, .. }) => {
                events.push(stage.to_string())
            }
            _ => {}
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(events, ["skip sft", "skip rft", "skip eto"]);
    assert_eq!(again, table);
}

#[test]
fn compare_configs_name_what_is_wrong() {
    let bad = |from: &str, to: &str| {
        assert!(COMPARE.contains(from), "{from}");
        CompareConfig::from_toml(&COMPARE.replacen(from, to, 1)).unwrap_err().to_string()
    };
    let e = bad("methods = [\"eto\", \"rft\"]", "methods = [\"eto\", \"dpo\"]");
    assert!(e.contains("methods") && e.contains("dpo"), "{e}");
    let e = bad("cycles = 1", "cycles = 1\nmethod = \"ppo\"");
    assert!(e.contains("`method`"), "{e}");
    let e = bad("[data]", "[data]\nworld = \"line\"");
    assert!(e.contains("data.world"), "{e}");
    let e = bad("[eto]", "[eto]\nbetta = 0.2");
    assert!(e.contains("betta"), "{e}");
    let e = bad("seen_tasks = 2", "seen_tasks = 0");
    assert!(e.contains("splits") || e.contains("eval.seen_tasks"), "{e}");
    let e = bad("methods = [\"eto\", \"rft\"]", "methods = [\"eto\", \"eto\"]");
    assert!(e.contains("twice"), "{e}");
    let e = bad("samples = 2", "samples = 0");
    assert!(e.contains("rft.samples"), "{e}");
}
