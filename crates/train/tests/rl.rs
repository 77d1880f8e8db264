//! The RL pieces on a tiny random model and the toy line world (seconds each): the model
//! seam's per-token scores agree with its summed ones, the discriminator learns to tell the
//! expert's steps from random ones, PPO moves probability towards the rewarded action, and
//! trajectory-level DPO (ETO) sums every assistant turn and raises its margin.

mod common;

use common::{expert, tiny_lm};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use stepagent_env::Split;
use stepagent_lm::{LoraConfig, OptimConfig, SamplingConfig};
use stepagent_policy::{react, Message};
use stepagent_train::baselines::eto::{eto_loss, eto_pair, EtoConfig};
use stepagent_train::baselines::ipr::{ipr_loss, IprConfig};
use stepagent_train::baselines::{reference_logps, TrajPair};
use stepagent_train::disc::{split_heldout, DiscConfig, Discriminator, Step};
use stepagent_train::health::{HealthConfig, HealthMonitor, HealthSample};
use stepagent_train::inspect::{Provenance, StepTriple};
use stepagent_train::model::{snapshot_vars, StepModel};
use stepagent_train::optim::Optimizer;
use stepagent_train::ppo::{
    rollout_logprobs, sample_step_rollouts, Advantage, Ppo, PpoConfig, Rollout,
};
use stepagent_train::traj::{normalise_action, Trajectory};

#[test]
fn per_token_scores_add_up_to_the_turn_scores_and_carry_gradients() {
    let mut lm = tiny_lm(5);
    lm.enable_lora(&LoraConfig { rank: 4, ..LoraConfig::default() }).unwrap();
    let t = &expert(Split::Train, 2);
    let items: Vec<(&[Message], Vec<usize>)> =
        t.iter().map(|t| (t.conversation.as_slice(), t.step_turns())).collect();
    let items: Vec<(&[Message], &[usize])> =
        items.iter().map(|(c, s)| (*c, s.as_slice())).collect();
    let summed = lm.score_turns_at(&items, false).unwrap();
    let tok = lm.turn_token_logprobs(&items, true, true).unwrap();
    let lp = tok.logp.to_vec1::<f32>().unwrap();
    let want = summed.logp.to_vec1::<f32>().unwrap();
    assert_eq!(tok.ranges.len(), want.len());
    for (k, r) in tok.ranges.iter().enumerate() {
        assert_eq!(r.len(), summed.tokens[k]);
        let got: f32 = lp[r.clone()].iter().sum();
        assert!((got - want[k]).abs() < 1e-3, "turn {k}: {got} vs {}", want[k]);
    }
    // A token's entropy lies in [0, ln |V|].
    let ln_v = (lm.tokenizer.vocab_size() as f32).ln();
    assert!(tok.entropy.iter().all(|&e| (-1e-4..=ln_v + 1e-4).contains(&e)));
    assert_eq!(tok.hidden.as_ref().unwrap().dims(), [lp.len(), lm.hidden_size()]);
    let end = lm.turn_end_hidden(&items, false).unwrap();
    assert_eq!(end.dims(), [want.len(), lm.hidden_size()]);
    // The per-token log-probs reach the LoRA adapters (B starts at 0, so A's gradient is 0;
    // B's is not).
    let g = tok.logp.sum_all().unwrap().backward().unwrap();
    let b = lm.trainable().into_iter().find(|(n, _)| n.ends_with("lora_B")).unwrap().1;
    let gb = g.get(b.as_tensor()).unwrap().abs().unwrap().sum_all().unwrap();
    assert!(gb.to_scalar::<f32>().unwrap() > 0.0);
}

/// Wrong turns an untrained agent might write (no action, a wrong action, gibberish).
const WRONG: [&str; 6] = [
    "Thought: I am lost.\nAction: look",
    "Thought: go back.\nAction: move left",
    "Thought: the goal is there.",
    "Action: jump",
    "Thought: keep going.\nAction: stop",
    "move move the line OK",
];

/// `k` random wrong turns at every step of every trajectory, as inspection triples.
fn random_triples(trajs: &[Trajectory], k: usize, seed: u64) -> Vec<StepTriple> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for t in trajs {
        for (step, turn) in t.step_turns().into_iter().enumerate() {
            let expert = t.conversation[turn].content.clone();
            let expert_action = react::parse_action(&expert).unwrap();
            let wrong: Vec<&str> = WRONG
                .iter()
                .copied()
                .filter(|w| {
                    react::parse_action(w).map(|a| normalise_action(&a))
                        != Some(normalise_action(&expert_action))
                })
                .collect();
            for agent in wrong.choose_multiple(&mut rng, k) {
                out.push(StepTriple {
                    trajectory: t.id.clone(),
                    turn,
                    step,
                    expert: expert.clone(),
                    agent: agent.to_string(),
                    expert_action: expert_action.clone(),
                    agent_action: react::parse_action(agent),
                    provenance: Provenance {
                        checkpoint: "test".into(),
                        temperature: 1.0,
                        seed: 0,
                        samples: k,
                        admissible: None,
                    },
                });
            }
        }
    }
    out
}

#[test]
fn the_discriminator_separates_expert_from_random_actions() {
    let mut backbone = tiny_lm(6);
    backbone.enable_lora(&LoraConfig { rank: 4, ..LoraConfig::default() }).unwrap();
    let train = expert(Split::Train, 8);
    let held = expert(Split::Seen, 4);
    let (train_t, held_t) = (random_triples(&train, 1, 1), random_triples(&held, 2, 2));
    let cfg = DiscConfig {
        epochs: 4,
        batch: 2,
        pairs_per_pass: 2,
        optim: OptimConfig { lr: 3e-3, ..OptimConfig::default() },
        ..DiscConfig::default()
    };
    let disc = Discriminator::new(backbone, cfg).unwrap();
    let before = disc.evaluate(&train, &train_t).unwrap();
    let mut opt = disc.optimizer().unwrap();
    let epochs = disc.train(&train, &train_t, &mut opt).unwrap();
    assert_eq!(epochs.len(), 4);
    let after = disc.evaluate(&train, &train_t).unwrap();
    let heldout = disc.evaluate(&held, &held_t).unwrap();
    eprintln!("before {before:?}\nepochs {epochs:?}\nafter {after:?}\nheld-out {heldout:?}");
    assert!(after.accuracy > 0.9, "train accuracy {:.3} → {:.3}", before.accuracy, after.accuracy);
    assert!(after.loss < 0.5 * before.loss, "loss {:.3} → {:.3}", before.loss, after.loss);
    assert!(epochs.last().unwrap().loss < epochs[0].loss);
    assert!(after.expert_d > 0.5 && after.agent_d < 0.5);
    assert!(heldout.auc.unwrap() > 0.8, "held-out AUC {:?}", heldout.auc);
    // Its reward (log D) prefers the expert's step.
    let tr = &train_t[0];
    let traj = train.iter().find(|t| t.id == tr.trajectory).unwrap();
    let h = &traj.conversation[..tr.turn];
    let r = disc
        .rewards(&[Step { history: h, action: &tr.expert }, Step { history: h, action: &tr.agent }])
        .unwrap();
    assert!(r[0] > r[1] && r.iter().all(|&x| x <= 0.0), "{r:?}");
}

#[test]
fn the_discriminator_is_measured_on_the_triples_of_held_out_trajectories() {
    let train = expert(Split::Train, 10);
    let triples = random_triples(&train, 1, 3);
    // Every 5th trajectory: positions 4 and 9.
    let (fit, held) = split_heldout(&train, &triples, 5);
    let out = [train[4].id.as_str(), train[9].id.as_str()];
    assert!(!held.is_empty() && held.iter().all(|t| out.contains(&t.trajectory.as_str())));
    assert!(!fit.is_empty() && fit.iter().all(|t| !out.contains(&t.trajectory.as_str())));
    let per = |id: &str| triples.iter().filter(|t| t.trajectory == id).count();
    assert_eq!(held.len(), per(out[0]) + per(out[1]));
    assert_eq!(fit.len() + held.len(), triples.len());
    // 0 holds nothing out.
    let (all, none) = split_heldout(&train, &triples, 0);
    assert_eq!((all.len(), none.len()), (triples.len(), 0));
}

#[test]
fn judging_a_trajectory_packed_equals_judging_each_step_alone() {
    let train = expert(Split::Train, 3);
    let triples = random_triples(&train, 2, 4);
    let disc = Discriminator::new(tiny_lm(7), DiscConfig::default()).unwrap();
    let packed = disc.evaluate(&train, &triples).unwrap();
    let (mut expert_d, mut agent_d) = (0.0, 0.0);
    for tr in &triples {
        let traj = train.iter().find(|t| t.id == tr.trajectory).unwrap();
        let history = &traj.conversation[..tr.turn];
        let p = disc
            .probs(&[Step { history, action: &tr.expert }, Step { history, action: &tr.agent }])
            .unwrap();
        expert_d += p[0] / triples.len() as f64;
        agent_d += p[1] / triples.len() as f64;
    }
    assert_eq!(packed.pairs, triples.len());
    assert!((packed.expert_d - expert_d).abs() < 1e-5, "{} vs {expert_d}", packed.expert_d);
    assert!((packed.agent_d - agent_d).abs() < 1e-5, "{} vs {agent_d}", packed.agent_d);
}

#[test]
fn a_head_only_discriminator_leaves_its_backbone_alone() {
    let mut backbone = tiny_lm(7);
    backbone.enable_lora(&LoraConfig { rank: 4, ..LoraConfig::default() }).unwrap();
    let train = expert(Split::Train, 3);
    let triples = random_triples(&train, 1, 3);
    let cfg = DiscConfig {
        train_backbone: false,
        optim: OptimConfig { lr: 1e-2, ..OptimConfig::default() },
        ..DiscConfig::default()
    };
    // Borrowed: a head on the policy's own features.
    let disc = Discriminator::new(&backbone, cfg).unwrap();
    assert_eq!(disc.vars().len(), 2);
    let lora = snapshot_vars(&backbone.trainable()).unwrap();
    let head = disc.head.weight.as_tensor().to_vec2::<f32>().unwrap();
    let mut opt = disc.optimizer().unwrap();
    disc.train_epoch(&train, &triples, &mut opt, 0).unwrap();
    for ((_, v), t) in backbone.trainable().iter().zip(&lora) {
        let d = (v.as_tensor() - t).unwrap().abs().unwrap().sum_all().unwrap();
        assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
    }
    assert_ne!(disc.head.weight.as_tensor().to_vec2::<f32>().unwrap(), head);
}

/// At step 0 of each trajectory: the favoured turn (reward 1) and a turn without an action
/// (reward 0, invalid), in one group.
fn bandit(trajs: &[Trajectory]) -> Vec<Rollout> {
    let mut out = Vec::new();
    for (g, t) in trajs.iter().enumerate() {
        let turn = t.step_turns()[0];
        for (k, (text, reward)) in
            [("Thought: go on.\nAction: move right", 1.0), ("Thought: I am lost.", 0.0)]
                .into_iter()
                .enumerate()
        {
            let mut c = t.conversation[..turn].to_vec();
            c.push(Message::assistant(text));
            out.push(Rollout {
                id: format!("{}/{k}", t.id),
                conversation: c,
                turns: vec![turn],
                rewards: vec![reward],
                invalid: vec![react::parse_action(text).is_none()],
                group: g,
            });
        }
    }
    out
}

/// Mean log-prob of the favoured and of the other turn.
fn bandit_logps(lm: &dyn StepModel, rollouts: &[Rollout]) -> (f64, f64) {
    let lp = rollout_logprobs(lm, rollouts, 4).unwrap();
    let sums: Vec<f64> = lp.iter().map(|l| l.iter().map(|&x| x as f64).sum()).collect();
    let n = sums.len() as f64 / 2.0;
    let fav = sums.iter().step_by(2).sum::<f64>() / n;
    let other = sums.iter().skip(1).step_by(2).sum::<f64>() / n;
    (fav, other)
}

#[test]
fn ppo_with_a_fixed_reward_raises_the_favoured_action() {
    for advantage in [Advantage::Group, Advantage::Gae] {
        let mut lm = tiny_lm(8);
        lm.enable_lora(&LoraConfig { rank: 4, ..LoraConfig::default() }).unwrap();
        let rollouts = bandit(&expert(Split::Train, 4));
        // The reference is the policy before training.
        let reference = rollout_logprobs(&lm, &rollouts, 4).unwrap();
        let (fav0, other0) = bandit_logps(&lm, &rollouts);
        let cfg = PpoConfig {
            advantage,
            epochs: 2,
            minibatch: 4,
            optim: OptimConfig { lr: 3e-3, ..OptimConfig::default() },
            ..PpoConfig::default()
        };
        let mut ppo = Ppo::new(&lm, cfg).unwrap();
        let mut metrics = Vec::new();
        for _ in 0..4 {
            metrics.push(ppo.update(&rollouts, &reference).unwrap());
        }
        let (fav1, other1) = bandit_logps(&lm, &rollouts);
        eprintln!("{advantage:?}: favoured {fav0:.3} → {fav1:.3}, other {other0:.3} → {other1:.3}");
        eprintln!("first {:?}\nlast {:?}", metrics[0], metrics[3]);
        assert!(fav1 > fav0 + 0.5, "{advantage:?}: favoured log-prob {fav0:.3} → {fav1:.3}");
        assert!(fav1 - other1 > fav0 - other0 + 1.0, "{advantage:?}: margin");
        let (first, last) = (&metrics[0], &metrics[3]);
        // Sampled under the reference itself: no KL yet; then the policy moves away.
        assert!(first.kl.abs() < 1e-4 && last.kl > first.kl, "KL {} → {}", first.kl, last.kl);
        assert_eq!((first.reward, first.invalid_rate), (0.5, 0.5));
        assert_eq!((first.rollouts, first.turns, first.steps), (8, 8, 4));
        assert!(first.entropy > 0.0 && first.response_tokens > 3.0);
        assert!((0.0..=1.0).contains(&last.clip_fraction) && last.nonfinite == 0);
        assert_eq!(first.value_loss.is_some(), advantage == Advantage::Gae);
        // The watched numbers of a healthy run raise no alarm.
        let mut health = HealthMonitor::new(HealthConfig::default()).unwrap();
        for (i, m) in metrics.iter().enumerate() {
            let v = health.observe(&HealthSample::from_ppo(i, m));
            assert!(v.alarms.is_empty(), "{:?}", v.alarms);
        }
    }
}

#[test]
fn sampled_step_rollouts_are_rewarded_by_the_discriminator_and_trained_on() {
    let mut lm = tiny_lm(9);
    lm.enable_lora(&LoraConfig { rank: 4, ..LoraConfig::default() }).unwrap();
    let disc = Discriminator::new(tiny_lm(10), DiscConfig::default()).unwrap();
    let train = expert(Split::Train, 2);
    let sampling = SamplingConfig { temperature: 1.0, max_new_tokens: 12, ..Default::default() };
    let mut rollouts = sample_step_rollouts(&lm, &train, 3, &sampling, 0).unwrap();
    let steps: usize = train.iter().map(|t| t.step_turns().len()).sum();
    assert_eq!(rollouts.len(), 3 * steps);
    // Three samples per step share a group; groups differ between steps.
    assert!(rollouts.chunks(3).enumerate().all(|(g, c)| c.iter().all(|r| r.group == g)));
    disc.reward_rollouts(&mut rollouts).unwrap();
    for r in &rollouts {
        let t = r.turns[0];
        let h = &r.conversation[..t];
        let want = disc.rewards(&[Step { history: h, action: &r.conversation[t].content }]);
        assert!((r.rewards[0] - want.unwrap()[0]).abs() < 1e-4, "{}", r.id);
        assert!(r.rewards[0] < 0.0, "log D is negative");
    }
    let reference = rollout_logprobs(&lm, &rollouts, 4).unwrap();
    let cfg = PpoConfig { advantage: Advantage::Group, epochs: 1, ..PpoConfig::default() };
    let m = Ppo::new(&lm, cfg).unwrap().update(&rollouts, &reference).unwrap();
    assert_eq!(m.rollouts, rollouts.len());
    assert!(m.loss.is_finite() && m.reward < 0.0, "{m:?}");
    // A reference of the wrong length is refused by the rollout's id.
    let mut bad = reference.clone();
    bad[1].pop();
    let err = Ppo::new(&lm, PpoConfig::default()).unwrap().update(&rollouts, &bad).unwrap_err();
    assert!(err.to_string().contains(&rollouts[1].id), "{err}");
}

#[test]
fn step_rollouts_of_one_trajectory_score_and_train_packed_as_each_alone() {
    let policy = |seed| {
        let mut lm = tiny_lm(seed);
        lm.enable_lora(&LoraConfig { rank: 4, ..LoraConfig::default() }).unwrap();
        // Adapters away from zero, so that the update's gradients reach every weight.
        for (_, v) in lm.trainable() {
            v.set(&(v.as_tensor() + 0.01).unwrap()).unwrap();
        }
        lm
    };
    let lm = policy(11);
    let train = expert(Split::Train, 2);
    let sampling = SamplingConfig { temperature: 1.0, max_new_tokens: 12, ..Default::default() };
    let mut rollouts = sample_step_rollouts(&lm, &train, 2, &sampling, 3).unwrap();
    for (k, r) in rollouts.iter_mut().enumerate() {
        r.rewards = vec![(k % 3) as f64 - 1.0];
    }
    // Packed (one pass per trajectory) against each rollout as its own sequence.
    let packed = rollout_logprobs(&lm, &rollouts, 4).unwrap();
    for (r, p) in rollouts.iter().zip(&packed) {
        let items = [(r.conversation.as_slice(), r.turns.as_slice())];
        let alone = lm.turn_token_logprobs(&items, false, false).unwrap();
        let alone = alone.logp.to_vec1::<f32>().unwrap();
        assert_eq!(alone.len(), p.len(), "{}", r.id);
        assert!(alone.iter().zip(p).all(|(a, b)| (a - b).abs() < 1e-4), "{}", r.id);
    }
    // One GAE update with packed minibatches against one without: the same result.
    let cfg = PpoConfig { epochs: 2, minibatch: 4, ..PpoConfig::default() };
    let (a, b) = (policy(11), policy(11));
    let ma = Ppo::new(&a, cfg.clone()).unwrap().update(&rollouts, &packed).unwrap();
    let mb = Ppo::new(&b, cfg).unwrap().packing(false).update(&rollouts, &packed).unwrap();
    assert_eq!(ma.steps, mb.steps);
    for (x, y) in
        [(ma.loss, mb.loss), (ma.pg_loss, mb.pg_loss), (ma.clip_fraction, mb.clip_fraction)]
    {
        assert!((x - y).abs() < 1e-4, "{ma:?}\nvs {mb:?}");
    }
    let moved = snapshot_vars(&a.trainable()).unwrap();
    let want = snapshot_vars(&b.trainable()).unwrap();
    for (x, y) in moved.iter().zip(&want) {
        let d = (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "weights differ by {d}");
    }
}

#[test]
fn whole_episodes_are_multi_turn_rollouts_with_the_outcome_on_the_last_turn() {
    use stepagent_env::TaskId;
    use stepagent_policy::policies::ExpertPolicy;
    use stepagent_policy::runner::{RunConfig, Runner};
    let w = common::world();
    let tasks: Vec<TaskId> = (0..3).map(|i| TaskId::new(Split::Train, i)).collect();
    let cfg = RunConfig { workers: 1, ..RunConfig::default() };
    let episodes = Runner::new(&w, &ExpertPolicy, cfg).run(&tasks, &mut |_| Ok(())).unwrap();
    let rollouts: Vec<Rollout> =
        episodes.iter().enumerate().map(|(g, e)| Rollout::from_episode(e, g)).collect();
    // Task 1 has its goal at cell 2: right, right, stop.
    assert_eq!(rollouts[1].turns.len(), 3);
    assert_eq!(rollouts[1].rewards, [0.0, 0.0, 1.0]);
    assert_eq!(rollouts[1].invalid, [false; 3]);
    let mut lm = tiny_lm(12);
    lm.enable_lora(&LoraConfig { rank: 4, ..LoraConfig::default() }).unwrap();
    let reference = rollout_logprobs(&lm, &rollouts, 2).unwrap();
    for (r, re) in rollouts.iter().zip(&reference) {
        let tokens: usize = lm.turn_tokens(&r.conversation, &r.turns).unwrap().iter().sum();
        assert_eq!(re.len(), tokens, "{}", r.id);
    }
    let cfg = PpoConfig { minibatch: 2, epochs: 1, ..PpoConfig::default() };
    let m = Ppo::new(&lm, cfg).unwrap().update(&rollouts, &reference).unwrap();
    let turns: usize = rollouts.iter().map(|r| r.turns.len()).sum();
    assert_eq!((m.turns, m.reward, m.steps), (turns, 1.0, 2));
    assert!(m.value_loss.unwrap().is_finite() && m.loss.is_finite());
}

/// An exploration of the first trajectory that wanders (`look` until the step limit).
fn failed_exploration(t: &Trajectory) -> Vec<Message> {
    let mut c = t.conversation[..=t.prompt_turns].to_vec();
    for _ in 0..8 {
        c.push(Message::assistant("Thought: I am lost.\nAction: look"));
        c.push(Message::user("You are on cell 0."));
    }
    c
}

#[test]
fn eto_dpo_sums_every_assistant_turn_and_raises_its_margin() {
    let mut lm = tiny_lm(11);
    lm.enable_full_finetuning().unwrap();
    let trajs = expert(Split::Train, 3);
    let cfg = EtoConfig::default();
    let pairs: Vec<TrajPair> = trajs
        .iter()
        .map(|t| eto_pair(t, &failed_exploration(t), 0.0, 1.0, &cfg).unwrap().unwrap())
        .collect();
    let reference = reference_logps(&lm, &pairs).unwrap();
    // The summed log-prob of a side is the sum of its turns' scores, one by one.
    for (p, r) in pairs.iter().zip(&reference) {
        for (chosen, want) in [(true, r.chosen), (false, r.rejected)] {
            let (conv, turns) = p.side(chosen);
            let mut total = 0f32;
            for &t in &turns {
                let s = lm.score_turns_at(&[(conv.as_slice(), &[t][..])], false).unwrap();
                total += s.logp.to_vec1::<f32>().unwrap()[0];
            }
            assert!((total - want).abs() < 1e-2, "{total} vs {want}");
        }
    }
    // Against itself the policy has margin 0 and loss ln 2 = 0.693147.
    let (_, m) = eto_loss(&lm, &pairs, &reference, &cfg, 1.0).unwrap();
    assert!((m.loss - std::f64::consts::LN_2).abs() < 1e-4 && m.margin.abs() < 1e-4, "{m:?}");
    // IPR's loss adds the chosen side's per-token NLL: here −log π(chosen)/|chosen| per pair.
    let (_, ipr) = ipr_loss(&lm, &pairs, &reference, &IprConfig::default(), 1.0).unwrap();
    let mut nll = 0f64;
    for (p, r) in pairs.iter().zip(&reference) {
        let (conv, turns) = p.side(true);
        let tokens: usize = lm.turn_tokens(&conv, &turns).unwrap().iter().sum();
        nll += -(r.chosen as f64) / tokens as f64 / pairs.len() as f64;
    }
    assert!((ipr.nll - nll).abs() < 1e-3 && (ipr.loss - ipr.dpo_loss - nll).abs() < 1e-3);
    let mut opt =
        Optimizer::new(lm.trainable(), OptimConfig { lr: 1e-3, ..OptimConfig::default() }).unwrap();
    for _ in 0..5 {
        let (loss, _) = eto_loss(&lm, &pairs, &reference, &cfg, 1.0).unwrap();
        opt.accumulate(&loss.backward().unwrap()).unwrap();
        opt.step().unwrap();
    }
    let (_, after) = eto_loss(&lm, &pairs, &reference, &cfg, 1.0).unwrap();
    assert!(after.margin > 0.5 && after.loss < m.loss, "{after:?}");
    assert_eq!(after.accuracy, 1.0);
}
