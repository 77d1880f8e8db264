//! Learning tests on a tiny random model and the toy line world, built here (seconds): the
//! metrics must move, and a resumed run must end where an uninterrupted one does.

use std::path::Path;

use stepagent_env::Split;
use stepagent_lm::{Lm, OptimConfig};
use stepagent_train::agreement::expert_agreement;
use stepagent_train::config::{Finetune, Method, TrainConfig};
use stepagent_train::dpo::{reference_logps, train_step_dpo, ReflectConfig};
use stepagent_train::inspect::{inspect_all, InspectConfig, InspectUnit};
use stepagent_train::pipeline::{run_pipeline, Event, Summary};
use stepagent_train::run::{RunDir, UnitLog};
use stepagent_train::sft::{expert_nll, train_sft, SftConfig};
use stepagent_train::traj::Trajectory;
use stepagent_train::TrainError;

mod common;
use common::{expert, tiny_lm, world};

fn sft_cfg(epochs: usize) -> SftConfig {
    SftConfig {
        epochs,
        batch: 2,
        optim: OptimConfig { lr: 1e-2, warmup_steps: 1, ..OptimConfig::default() },
        ..SftConfig::default()
    }
}

fn no_metrics(_: &str, _: &serde_json::Value) -> Result<(), TrainError> {
    Ok(())
}

#[test]
fn sft_drives_the_expert_action_nll_down() {
    let mut lm = tiny_lm(1);
    lm.enable_full_finetuning().unwrap();
    let train = expert(Split::Train, 8);
    let held = expert(Split::Seen, 3);
    let before = expert_nll(&lm, &train).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let epochs = train_sft(&lm, &train, &held, &sft_cfg(4), tmp.path(), &mut no_metrics).unwrap();
    let after = expert_nll(&lm, &train).unwrap();
    assert!(after < 0.5 * before, "expert NLL {before:.3} → {after:.3}");
    let held: Vec<f64> = epochs.iter().map(|e| e["heldout_expert_nll"].as_f64().unwrap()).collect();
    assert!(held.last() < held.first(), "held-out NLL per epoch {held:?}");
    assert!(tmp.path().join("trainable.safetensors").exists());
}

fn inspect(
    lm: &Lm,
    train: &[Trajectory],
    dir: &Path,
    cycle: usize,
) -> Vec<stepagent_train::inspect::StepTriple> {
    let cfg = InspectConfig { samples: 2, max_new_tokens: 40, ..InspectConfig::default() };
    let mut log =
        UnitLog::<InspectUnit>::open(&dir.join(format!("inspect-{cycle}.jsonl"))).unwrap();
    let w = world();
    let (triples, stats) =
        inspect_all(lm, train, &cfg, cycle, "test", Some(&w), &mut log, &mut |_, _| Ok(()))
            .unwrap();
    assert_eq!(stats.samples, 2 * stats.steps);
    assert!(triples.iter().all(|t| t.provenance.samples == 2 && t.provenance.temperature == 1.0));
    // The line world is known, so admissibility is known for every parseable action.
    assert!(triples.iter().all(|t| t.agent_action.is_none() == t.provenance.admissible.is_none()));
    triples
}

#[test]
fn step_dpo_raises_the_margin_and_the_agreement_on_training_prefixes() {
    let mut lm = tiny_lm(2);
    lm.enable_full_finetuning().unwrap();
    let train = expert(Split::Train, 8);
    let tmp = tempfile::tempdir().unwrap();
    // A little SFT first so the agent writes ReAct turns at all.
    train_sft(&lm, &train, &[], &sft_cfg(2), &tmp.path().join("sft"), &mut no_metrics).unwrap();
    let before = expert_agreement(&lm, &train, 40).unwrap();
    let triples = inspect(&lm, &train, tmp.path(), 1);
    assert!(!triples.is_empty(), "the half-trained agent should make mistakes");
    let reference = reference_logps(&lm, &train, &triples, 2).unwrap();
    // However a trajectory's pairs are split into passes, each pair scores the same.
    for per_pass in [0, 1] {
        let other = reference_logps(&lm, &train, &triples, per_pass).unwrap();
        for (a, b) in reference.iter().zip(&other) {
            assert!((a.chosen - b.chosen).abs() < 1e-3 && (a.rejected - b.rejected).abs() < 1e-3);
        }
    }
    let cfg = ReflectConfig {
        epochs: 4,
        batch: 2,
        optim: OptimConfig { lr: 3e-3, ..OptimConfig::default() },
        ..ReflectConfig::default()
    };
    let dir = tmp.path().join("reflect");
    let epochs =
        train_step_dpo(&lm, &train, &triples, &reference, &cfg, &dir, &mut no_metrics).unwrap();
    let margins: Vec<f64> = epochs.iter().map(|e| e["margin"].as_f64().unwrap()).collect();
    assert!(
        margins.last().unwrap() > &margins[0] && *margins.last().unwrap() > 0.0,
        "margins {margins:?}"
    );
    let acc = epochs.last().unwrap()["accuracy"].as_f64().unwrap();
    assert!(acc > 0.5, "implicit-reward accuracy {acc}");
    // Turns here are ~25 tokens ("Thought: … Action: move right"): 40 leaves room for the
    // action. This tiny model, two epochs into SFT, writes no correct action before or after
    // the reflection (the rate stays 0), so the sensitive measure is the expert's log-prob.
    // Tried and left out: 40 SFT epochs leave partial agreement, and step-DPO then moved it
    // from 0.28 to 0.62 in one build but from 0.55 to 0 in another (the same seed, float
    // rounding of a kernel's reduction order changed): too chaotic to assert on.
    let after = expert_agreement(&lm, &train, 40).unwrap();
    assert!(after.rate >= before.rate, "agreement {:.3} → {:.3}", before.rate, after.rate);
    assert!(
        after.mean_expert_logp > before.mean_expert_logp,
        "expert log-prob {:.3} → {:.3}",
        before.mean_expert_logp,
        after.mean_expert_logp
    );
}

fn pipeline_cfg(name: &str) -> TrainConfig {
    let mut c =
        TrainConfig::from_toml(&format!("name = \"{name}\"\n[data]\nworld = \"line\"")).unwrap();
    c.method = Method::StepagentImplicit;
    c.cycles = 2;
    c.model.finetune = Finetune::Lora;
    c.model.lora.rank = 4;
    c.model.save_final = false;
    c.data.train_tasks = 6;
    c.data.heldout_tasks = 3;
    c.data.workers = 1;
    c.sft = sft_cfg(3);
    c.inspect.max_new_tokens = 16;
    c.reflect.epochs = 2;
    c.reflect.batch = 2;
    c.eval.max_new_tokens = 16;
    c.eval.seen_tasks = 2;
    c
}

fn run(dir: &Path, stop: &mut dyn FnMut(&Event<'_>) -> bool) -> Result<Summary, TrainError> {
    let cfg = pipeline_cfg("r");
    let run = RunDir::open(dir, &cfg, false)?;
    let w = world();
    run_pipeline(&cfg, &run, &|| Ok(tiny_lm(3)), &w, &mut |e| {
        if stop(e) {
            Err(TrainError::Config { key: "test".into(), message: "killed".into() })
        } else {
            Ok(())
        }
    })
}

#[test]
fn an_interrupted_run_resumes_to_the_same_result() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = run(&tmp.path().join("whole"), &mut |_| false).unwrap();
    assert_eq!(whole.curve.len(), 4, "base, sft, cycle-1, cycle-2");
    assert_eq!(whole.inspections.len(), 2);

    let dir = tmp.path().join("resumed");
    // Killed after SFT's first epoch …
    let err =
        run(&dir, &mut |e| matches!(e, Event::Metrics(v) if v["kind"] == "sft/epoch")).unwrap_err();
    assert!(err.to_string().contains("killed"));
    // … then in the middle of the second cycle's inspection …
    let mut units = 0;
    run(&dir, &mut |e| {
        if let Event::Unit { stage, .. } = e {
            if *stage == "cycle-2-inspect" {
                units += 1;
                return units == 3;
            }
        }
        false
    })
    .unwrap_err();
    assert!(
        dir.join("stages/cycle-1-eval").is_dir() && !dir.join("stages/cycle-2-inspect").is_dir()
    );
    // … and in the second reflection's first epoch.
    run(&dir, &mut |e| matches!(e, Event::Metrics(v) if v["kind"] == "reflect/epoch" && v["stage"] == "cycle-2-reflect"))
        .unwrap_err();
    let resumed = run(&dir, &mut |_| false).unwrap();
    assert_eq!(resumed.curve, whole.curve);
    assert_eq!(resumed.inspections, whole.inspections);
    assert_eq!(resumed.training, whole.training);
    // A changed config is refused by name.
    let mut other = pipeline_cfg("r");
    other.reflect.beta = 0.5;
    let err = RunDir::open(&dir, &other, false).unwrap_err().to_string();
    assert!(err.contains("reflect.beta"), "{err}");
}

#[test]
fn agent_turns_packed_as_branches_score_as_their_own_conversations() {
    use stepagent_policy::Message;
    use stepagent_train::model::StepModel;
    let lm = tiny_lm(4);
    let traj = &expert(Split::Train, 1)[0];
    let conv = &traj.conversation;
    let turns: Vec<usize> =
        (0..conv.len()).filter(|&i| conv[i].role == stepagent_policy::Role::Assistant).collect();
    let branches: Vec<(usize, &str)> = vec![
        (turns[0], "Thought: go back.\nAction: move left"),
        (turns[turns.len() - 1], "Action: stop"),
        (turns[0], "I am lost"),
    ];
    let (chosen, rejected) = lm.score_with_branches(conv, &turns, &branches, false).unwrap();
    let plain = lm.score_turns_at(&[(conv.as_slice(), turns.as_slice())], false).unwrap();
    let diff = |a: &candle_core::Tensor, b: &candle_core::Tensor| {
        (a - b).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    };
    assert!(diff(&chosen.logp, &plain.logp) < 1e-4);
    assert_eq!(chosen.tokens, plain.tokens);
    for (k, &(t, text)) in branches.iter().enumerate() {
        let mut c = conv[..t].to_vec();
        c.push(Message::assistant(text));
        let alone = lm.score_turns_at(&[(c.as_slice(), &[t][..])], false).unwrap();
        let got = rejected.logp.get(k).unwrap().to_scalar::<f32>().unwrap();
        let want = alone.logp.get(0).unwrap().to_scalar::<f32>().unwrap();
        assert!((got - want).abs() < 1e-4, "branch {k}: {got} vs {want}");
        assert_eq!(rejected.tokens[k], alone.tokens[0]);
    }
}
