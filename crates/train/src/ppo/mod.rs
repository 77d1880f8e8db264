//! PPO for LLM agents: the policy's sampled assistant turns are the actions, their tokens the
//! units of the ratio, the KL and the advantage.
//!
//! A batch of [`Rollout`]s (an expert prefix and one sampled turn for StepAgent-Inverse; a
//! whole episode of sampled turns for outcome PPO) is scored once under the policy as it was
//! when it sampled them (π_old: log-probs, entropy and, with a value head, values), then
//! trained for several epochs of shuffled minibatches on the clipped surrogate
//! (ε = 0.2 by default), a KL penalty to a frozen reference π_ref (per token, k1 or k3) and,
//! with GAE, the value head's squared error. A turn's reward sits on its last token (its
//! end-of-turn marker), which is where the environment or discriminator sees the whole turn.
//!
//! Loss terms are means over the minibatch's tokens, so a long turn weighs as many tokens as
//! it has: the surrogate is per-token, as PPO for LMs usually is.

mod loss;

pub use loss::{
    gae, group_advantages, kl_tokens, kl_value, ppo_clip_loss, token_rewards, value_loss, whiten,
    ClipStats, KlEstimator,
};

use std::ops::Range;

use candle_core::Var;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use stepagent_lm::{OptimConfig, SamplingConfig, ScalarHead};
use stepagent_policy::{react, Message};

use crate::epochs::shuffle_groups;
use crate::inspect::{hash_str, mix_seed};
use crate::model::{StepModel, TokenScores};
use crate::optim::Optimizer;
use crate::sft::validate_optim;
use crate::traj::Trajectory;
use crate::TrainError;

/// Where advantages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Advantage {
    /// A value head on the policy's hidden states and GAE(γ, λ) over each rollout's tokens
    /// (our default: it works with one sample per prefix).
    #[default]
    Gae,
    /// No critic: each rollout's total reward minus the mean of its group (the samples from
    /// the same prefix), on every token of the rollout. Needs several samples per prefix.
    Group,
}

/// Where the KL penalty to the reference enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KlPlacement {
    /// A differentiable term `kl_coef · mean KL` of the loss (our default: the same for both
    /// advantage kinds, and it does not feed noise into the advantages).
    #[default]
    Loss,
    /// A per-token reward −kl_coef · KL at sampling time (InstructGPT's placement); with a
    /// group baseline it lowers the rollout's score.
    Reward,
}

/// PPO settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PpoConfig {
    /// Clip range ε of the ratio. Default 0.2.
    pub clip: f64,
    /// Weight of the KL penalty to the reference. Default 0.05.
    pub kl_coef: f64,
    /// The per-token KL estimator. Default `k3`.
    pub kl_estimator: KlEstimator,
    /// Where the KL penalty enters. Default `loss`.
    pub kl_in: KlPlacement,
    /// Advantage estimation. Default `gae`.
    pub advantage: Advantage,
    /// Discount γ per token (GAE). Default 1.0.
    pub gamma: f64,
    /// GAE's λ. Default 0.95.
    pub lambda: f64,
    /// Whiten GAE advantages over the batch's tokens. Default true.
    pub whiten: bool,
    /// Divide group-baseline advantages by the group's standard deviation. Default true.
    pub std_normalise: bool,
    /// Weight of the value loss (GAE). Default 0.1.
    pub value_coef: f64,
    /// Passes over each batch of rollouts. Default 2.
    pub epochs: usize,
    /// Rollouts per optimizer step. Default 4.
    pub minibatch: usize,
    /// AdamW and its schedule. Default lr 1e-5, clip 1.0.
    pub optim: OptimConfig,
    /// Seed of the value head's initial weights. Default 0.
    pub head_seed: u64,
    /// Seed of the minibatch shuffling. Default 0.
    pub seed: u64,
}

impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            clip: 0.2,
            kl_coef: 0.05,
            kl_estimator: KlEstimator::K3,
            kl_in: KlPlacement::Loss,
            advantage: Advantage::Gae,
            gamma: 1.0,
            lambda: 0.95,
            whiten: true,
            std_normalise: true,
            value_coef: 0.1,
            epochs: 2,
            minibatch: 4,
            optim: OptimConfig { lr: 1e-5, ..OptimConfig::default() },
            head_seed: 0,
            seed: 0,
        }
    }
}

impl PpoConfig {
    /// Checks the values, naming the bad key.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.clip > 0.0 && self.clip < 1.0) {
            return Err(TrainError::config("ppo.clip", "must be in (0, 1)"));
        }
        if !(self.kl_coef >= 0.0 && self.kl_coef.is_finite()) {
            return Err(TrainError::config("ppo.kl_coef", "must be >= 0"));
        }
        if !(0.0..=1.0).contains(&self.gamma) {
            return Err(TrainError::config("ppo.gamma", "must be in [0, 1]"));
        }
        if !(0.0..=1.0).contains(&self.lambda) {
            return Err(TrainError::config("ppo.lambda", "must be in [0, 1]"));
        }
        if self.value_coef < 0.0 {
            return Err(TrainError::config("ppo.value_coef", "must be >= 0"));
        }
        if self.epochs == 0 {
            return Err(TrainError::config("ppo.epochs", "must be at least 1"));
        }
        if self.minibatch == 0 {
            return Err(TrainError::config("ppo.minibatch", "must be at least 1"));
        }
        validate_optim(&self.optim, "ppo.optim")
    }
}

/// Sampled turns to learn from, with their rewards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// For messages and logs (`trajectory/step/sample`, or the episode).
    pub id: String,
    /// History and the policy's sampled turns (with the observations between them in a
    /// multi-turn episode).
    pub conversation: Vec<Message>,
    /// Message indices of the policy's turns that are trained, ascending.
    pub turns: Vec<usize>,
    /// The reward after each of those turns (a step reward; an outcome reward on the last).
    pub rewards: Vec<f64>,
    /// Whether each turn's action was invalid (no `Action:` line, or not admissible).
    pub invalid: Vec<bool>,
    /// Rollouts sampled from the same prefix share a group (the group baseline's unit).
    pub group: usize,
}

impl Rollout {
    /// An episode of the policy in a world as one rollout (outcome PPO): every agent turn
    /// after the prompt is trained, the episode's reward sits on the last one, and a turn
    /// counts as invalid when it has no `Action:` line (the episode records inadmissible
    /// actions only as a count, so those are not flagged per turn).
    pub fn from_episode(e: &stepagent_policy::runner::Episode, group: usize) -> Self {
        let turns: Vec<usize> = (e.prompt_turns..e.conversation.len())
            .filter(|&i| e.conversation[i].role == stepagent_policy::Role::Assistant)
            .collect();
        let mut rewards = vec![0.0; turns.len()];
        if let Some(last) = rewards.last_mut() {
            *last = e.reward;
        }
        let invalid = turns
            .iter()
            .map(|&t| react::parse_action(&e.conversation[t].content).is_none())
            .collect();
        Rollout {
            id: format!("{}/{}/{}", e.world, e.task, e.seed),
            conversation: e.conversation.clone(),
            turns,
            rewards,
            invalid,
            group,
        }
    }

    fn check(&self) -> Result<(), TrainError> {
        let n = self.turns.len();
        if n == 0 || self.rewards.len() != n || self.invalid.len() != n {
            return Err(TrainError::Trajectory {
                id: self.id.clone(),
                turn: None,
                message: format!(
                    "a rollout needs ≥ 1 trained turn and one reward and validity flag per turn \
                     ({n} turns, {} rewards, {} flags)",
                    self.rewards.len(),
                    self.invalid.len()
                ),
            });
        }
        if self.rewards.iter().any(|r| !r.is_finite()) {
            return Err(TrainError::Trajectory {
                id: self.id.clone(),
                turn: None,
                message: format!("non-finite reward in {:?}", self.rewards),
            });
        }
        Ok(())
    }
}

/// `n` samples at every step of every expert trajectory, each a one-turn [`Rollout`] after
/// the expert prefix (StepAgent-Inverse's actions); rewards are 0 until a reward model fills
/// them. Samples of the same step share a group. `seed` is mixed with the trajectory, step
/// and sample.
pub fn sample_step_rollouts<M: StepModel + ?Sized>(
    policy: &M,
    trajectories: &[Trajectory],
    n: usize,
    sampling: &SamplingConfig,
    seed: u64,
) -> Result<Vec<Rollout>, TrainError> {
    let mut out = Vec::new();
    let mut group = 0;
    for traj in trajectories {
        let turns = traj.step_turns();
        let seeds: Vec<u64> =
            (0..turns.len() * n).map(|i| mix_seed(&[seed, hash_str(&traj.id), i as u64])).collect();
        let samples = policy.sample_at_turns(&traj.conversation, &turns, n, sampling, &seeds)?;
        for (step, (&turn, texts)) in turns.iter().zip(samples).enumerate() {
            for (j, text) in texts.into_iter().enumerate() {
                let text = react::clean_reply(&text);
                let mut conversation = traj.conversation[..turn].to_vec();
                let invalid = react::parse_action(&text).is_none();
                conversation.push(Message::assistant(text));
                out.push(Rollout {
                    id: format!("{}/{step}/{j}", traj.id),
                    conversation,
                    turns: vec![turn],
                    rewards: vec![0.0],
                    invalid: vec![invalid],
                    group,
                });
            }
            group += 1;
        }
    }
    Ok(out)
}

/// Per-token log-probs of each rollout's trained turns under `model` (the reference, before
/// training), turn after turn.
pub fn rollout_logprobs<M: StepModel + ?Sized>(
    model: &M,
    rollouts: &[Rollout],
    batch: usize,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let s = score_all(model, rollouts, &families(rollouts), batch, false)?;
    Ok(s.into_iter().map(|c| c.logp).collect())
}

/// Rollouts that one packed pass can score together: the one-turn rollouts whose histories
/// are prefixes of one conversation (the step rollouts of one expert trajectory), the one
/// with the longest history first; every other rollout on its own. Families are listed in
/// order of their first rollout.
fn families(rollouts: &[Rollout]) -> Vec<Vec<usize>> {
    let one_turn = |r: &Rollout| r.turns.len() == 1 && r.turns[0] + 1 == r.conversation.len();
    let mut by_len: Vec<usize> = (0..rollouts.len()).filter(|&i| one_turn(&rollouts[i])).collect();
    by_len.sort_by_key(|&i| std::cmp::Reverse(rollouts[i].turns[0]));
    let mut fams: Vec<Vec<usize>> = Vec::new();
    for i in by_len {
        let h = &rollouts[i].conversation[..rollouts[i].turns[0]];
        let base = |f: &Vec<usize>| &rollouts[f[0]].conversation[..rollouts[f[0]].turns[0]];
        match fams.iter_mut().find(|f| base(f).starts_with(h)) {
            Some(f) => f.push(i),
            None => fams.push(vec![i]),
        }
    }
    fams.extend((0..rollouts.len()).filter(|&i| !one_turn(&rollouts[i])).map(|i| vec![i]));
    fams.sort_by_key(|f| f.iter().min().copied());
    fams
}

/// Scores rollouts `part` (one family's, or any one rollout) in one packed pass: the family's
/// longest conversation read once, each rollout's turn as a branch off its history.
fn score_family<M: StepModel + ?Sized>(
    model: &M,
    rollouts: &[Rollout],
    part: &[usize],
    grad: bool,
    hidden: bool,
) -> Result<(Vec<Scored>, candle_core::Tensor), TrainError> {
    let base = *part.iter().max_by_key(|&&i| rollouts[i].turns[0]).expect("a non-empty part");
    let branches: Vec<(usize, &str)> = part
        .iter()
        .map(|&i| {
            let r = &rollouts[i];
            (r.turns[0], r.conversation[r.turns[0]].content.as_str())
        })
        .collect();
    let s = model.branch_token_logprobs(&rollouts[base].conversation, &branches, grad, hidden)?;
    let logp = s.logp.to_vec1::<f32>()?;
    let out = s
        .ranges
        .iter()
        .map(|q| {
            Ok(Scored {
                logp: logp[q.clone()].to_vec(),
                turns: std::iter::once(0..q.len()).collect(),
                entropy: s.entropy[q.clone()].to_vec(),
                hidden: match &s.hidden {
                    Some(h) => Some(h.narrow(0, q.start, q.len())?),
                    None => None,
                },
            })
        })
        .collect::<Result<Vec<_>, TrainError>>()?;
    Ok((out, s.logp))
}

/// Every rollout's scores without gradients, in rollout order: a family of several rollouts
/// in one packed pass, the others in batches of `batch`.
fn score_all<M: StepModel + ?Sized>(
    model: &M,
    rollouts: &[Rollout],
    fams: &[Vec<usize>],
    batch: usize,
    hidden: bool,
) -> Result<Vec<Scored>, TrainError> {
    let mut out: Vec<Option<Scored>> = (0..rollouts.len()).map(|_| None).collect();
    let mut alone = Vec::new();
    for f in fams {
        if f.len() > 1 {
            let (scored, _) = score_family(model, rollouts, f, false, hidden)?;
            for (&i, s) in f.iter().zip(scored) {
                out[i] = Some(s);
            }
        } else {
            alone.extend(f.iter().copied());
        }
    }
    for chunk in alone.chunks(batch.max(1)) {
        let rs: Vec<&Rollout> = chunk.iter().map(|&i| &rollouts[i]).collect();
        for (&i, s) in chunk.iter().zip(score(model, &rs, false, hidden)?) {
            out[i] = Some(s);
        }
    }
    Ok(out.into_iter().map(|s| s.expect("every rollout scored")).collect())
}

/// One rollout's scores, as plain numbers.
struct Scored {
    logp: Vec<f32>,
    /// Token ranges of its turns in `logp`.
    turns: Vec<Range<usize>>,
    entropy: Vec<f32>,
    /// Hidden states predicting each token, when asked.
    hidden: Option<candle_core::Tensor>,
}

/// Scores rollouts in one batched forward, split back per rollout.
fn score<M: StepModel + ?Sized>(
    model: &M,
    rollouts: &[&Rollout],
    grad: bool,
    hidden: bool,
) -> Result<Vec<Scored>, TrainError> {
    let items: Vec<(&[Message], &[usize])> =
        rollouts.iter().map(|r| (r.conversation.as_slice(), r.turns.as_slice())).collect();
    let s = model.turn_token_logprobs(&items, grad, hidden)?;
    let logp = s.logp.to_vec1::<f32>()?;
    let mut out = Vec::with_capacity(rollouts.len());
    let mut k = 0;
    for r in rollouts {
        let ranges = &s.ranges[k..k + r.turns.len()];
        k += r.turns.len();
        let (start, end) = (ranges[0].start, ranges[ranges.len() - 1].end);
        out.push(Scored {
            logp: logp[start..end].to_vec(),
            turns: ranges.iter().map(|q| q.start - start..q.end - start).collect(),
            entropy: s.entropy[start..end].to_vec(),
            hidden: match &s.hidden {
                Some(h) => Some(h.narrow(0, start, end - start)?),
                None => None,
            },
        });
    }
    Ok(out)
}

/// What the updates of a batch aim at, per rollout and token.
struct Targets {
    /// KL(π_old ‖ π_ref) estimates.
    kl: Vec<Vec<f64>>,
    /// Advantages.
    adv: Vec<Vec<f32>>,
    /// Value targets (GAE; empty otherwise).
    returns: Vec<Vec<f32>>,
}

/// Per-token KL estimates to the reference, advantages and (GAE) value targets of a batch
/// scored under π_old (`values`: the value head's, GAE only).
fn advantages(
    cfg: &PpoConfig,
    rollouts: &[Rollout],
    old: &[Scored],
    reference: &[Vec<f32>],
    values: &[Vec<f64>],
) -> Targets {
    let gae_mode = cfg.advantage == Advantage::Gae;
    // Token rewards: each turn's reward on its last token, the KL penalty on every token
    // when it is a reward.
    let kl: Vec<Vec<f64>> = old
        .iter()
        .zip(reference)
        .map(|(o, re)| {
            o.logp
                .iter()
                .zip(re)
                .map(|(&l, &r)| kl_value(l as f64, r as f64, cfg.kl_estimator))
                .collect()
        })
        .collect();
    let penalty = (cfg.kl_in == KlPlacement::Reward).then_some(cfg.kl_coef);
    let token_rewards: Vec<Vec<f64>> = rollouts
        .iter()
        .zip(old)
        .zip(&kl)
        .map(|((r, o), kl)| token_rewards(&o.turns, &r.rewards, kl, penalty))
        .collect();

    // Advantages (and value targets).
    let (mut adv, returns): (Vec<Vec<f64>>, Vec<Vec<f64>>) = if gae_mode {
        token_rewards.iter().zip(values).map(|(r, v)| gae(r, v, cfg.gamma, cfg.lambda)).unzip()
    } else {
        let scores: Vec<f64> = token_rewards.iter().map(|t| t.iter().sum()).collect();
        let groups: Vec<usize> = rollouts.iter().map(|r| r.group).collect();
        let a = group_advantages(&scores, &groups, cfg.std_normalise);
        (old.iter().zip(a).map(|(o, a)| vec![a; o.logp.len()]).collect(), Vec::new())
    };
    if gae_mode && cfg.whiten {
        let mut flat: Vec<f64> = adv.iter().flatten().copied().collect();
        whiten(&mut flat);
        let mut it = flat.into_iter();
        for a in adv.iter_mut() {
            a.iter_mut().for_each(|x| *x = it.next().expect("same length"));
        }
    }
    let adv32: Vec<Vec<f32>> = adv.iter().map(|a| a.iter().map(|&x| x as f32).collect()).collect();
    let ret32: Vec<Vec<f32>> =
        returns.iter().map(|a| a.iter().map(|&x| x as f32).collect()).collect();

    Targets { kl, adv: adv32, returns: ret32 }
}

/// What one [`Ppo::update`] measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PpoMetrics {
    /// Mean over rollouts of the sum of their turn rewards (before any KL penalty).
    pub reward: f64,
    /// Mean per-token KL(π_old ‖ π_ref) estimate (the configured estimator) at sampling time.
    pub kl: f64,
    /// Fraction of token evaluations whose clipped term was active, over all epochs.
    pub clip_fraction: f64,
    /// Mean per-token entropy of π_old (nats).
    pub entropy: f64,
    /// Mean value loss (GAE only).
    pub value_loss: Option<f64>,
    /// Mean clipped surrogate.
    pub pg_loss: f64,
    /// Mean total loss (surrogate, KL term, weighted value loss).
    pub loss: f64,
    /// Mean k3 estimate of KL(π_old ‖ π_θ) in the last epoch: how far the update moved.
    pub approx_kl: f64,
    /// Mean tokens per trained turn.
    pub response_tokens: f64,
    /// Fraction of trained turns whose action was invalid.
    pub invalid_rate: f64,
    /// Rollouts.
    pub rollouts: usize,
    /// Trained turns.
    pub turns: usize,
    /// Trained tokens.
    pub tokens: usize,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Rollout evaluations left out of the gradient because their loss was not finite.
    pub nonfinite: usize,
}

/// A PPO learner over a policy: its value head (with GAE) and optimizer.
pub struct Ppo<'m, M: ?Sized> {
    policy: &'m M,
    value: Option<ScalarHead>,
    opt: Optimizer,
    cfg: PpoConfig,
    updates: u64,
    /// Train a family's rollouts of a minibatch from one packed forward (see [`Ppo::packing`]).
    packing: bool,
}

impl<'m, M: StepModel + ?Sized> Ppo<'m, M> {
    /// A learner for `policy`; with GAE, a fresh value head on its hidden states (trained
    /// with the policy's variables, sharing its backbone).
    pub fn new(policy: &'m M, cfg: PpoConfig) -> Result<Self, TrainError> {
        cfg.validate()?;
        if policy.trainable().is_empty() {
            return Err(TrainError::config(
                "model.finetune",
                "the policy has no trainable parameters (enable LoRA or full fine-tuning)",
            ));
        }
        let value = match cfg.advantage {
            Advantage::Gae => {
                Some(ScalarHead::new(policy.hidden_size(), cfg.head_seed, &policy.device())?)
            }
            Advantage::Group => None,
        };
        let mut vars = policy.trainable();
        if let Some(v) = &value {
            vars.extend(v.vars().into_iter().map(|(n, v)| (format!("value_head.{n}"), v)));
        }
        let opt = Optimizer::new(vars, cfg.optim.clone())?;
        Ok(Ppo { policy, value, opt, cfg, updates: 0, packing: true })
    }

    /// Whether the rollouts of one family in a minibatch (one-turn rollouts after prefixes of
    /// one conversation: the step rollouts of one expert trajectory) are trained from one
    /// packed forward that reads their shared history once (on by default), or each from its
    /// own forward. The same numbers either way, up to float rounding; off costs more.
    pub fn packing(mut self, on: bool) -> Self {
        self.packing = on;
        self
    }

    /// Per-token scores with gradients of rollouts `part` (one family's, in a minibatch):
    /// one packed forward when there are several and packing is on, one forward each
    /// otherwise.
    fn part_scores(
        &self,
        rollouts: &[Rollout],
        part: &[usize],
        hidden: bool,
    ) -> Result<Vec<(usize, TokenScores)>, TrainError> {
        if part.len() > 1 && self.packing {
            let (scored, logp) = score_family(self.policy, rollouts, part, true, hidden)?;
            let mut at = 0;
            let mut out = Vec::with_capacity(part.len());
            for (&i, sc) in part.iter().zip(scored) {
                let n = sc.logp.len();
                let logp = logp.narrow(0, at, n)?;
                out.push((
                    i,
                    TokenScores {
                        logp,
                        ranges: std::iter::once(0..n).collect(),
                        entropy: sc.entropy,
                        hidden: sc.hidden,
                    },
                ));
                at += n;
            }
            return Ok(out);
        }
        part.iter()
            .map(|&i| {
                let r = &rollouts[i];
                let items = [(r.conversation.as_slice(), r.turns.as_slice())];
                Ok((i, self.policy.turn_token_logprobs(&items, true, hidden)?))
            })
            .collect()
    }

    /// The value head (GAE only).
    pub fn value_head(&self) -> Option<&ScalarHead> {
        self.value.as_ref()
    }

    /// The value head's variables (named `value_head.…`), for checkpoints.
    pub fn value_vars(&self) -> Vec<(String, Var)> {
        self.value
            .iter()
            .flat_map(|v| v.vars())
            .map(|(n, v)| (format!("value_head.{n}"), v))
            .collect()
    }

    /// The optimizer (to save or restore its state).
    pub fn optimizer(&mut self) -> &mut Optimizer {
        &mut self.opt
    }

    /// One PPO iteration on a batch: score under π_old, advantages, then `epochs` passes of
    /// minibatch updates. `reference[i]` holds log π_ref of rollout i's trained tokens
    /// ([`rollout_logprobs`] under the reference).
    pub fn update(
        &mut self,
        rollouts: &[Rollout],
        reference: &[Vec<f32>],
    ) -> Result<PpoMetrics, TrainError> {
        let cfg = self.cfg.clone();
        if rollouts.is_empty() {
            return Err(TrainError::config("ppo", "no rollouts to learn from"));
        }
        if reference.len() != rollouts.len() {
            return Err(TrainError::config("ppo", "one reference log-prob list per rollout"));
        }
        rollouts.iter().try_for_each(Rollout::check)?;
        let gae_mode = cfg.advantage == Advantage::Gae;

        // π_old: log-probs, entropy, values.
        let fams = families(rollouts);
        let family_of: Vec<usize> = {
            let mut f = vec![0; rollouts.len()];
            for (k, fam) in fams.iter().enumerate() {
                fam.iter().for_each(|&i| f[i] = k);
            }
            f
        };
        let old = score_all(self.policy, rollouts, &fams, cfg.minibatch, gae_mode)?;
        for ((r, o), re) in rollouts.iter().zip(&old).zip(reference) {
            if re.len() != o.logp.len() {
                return Err(TrainError::Trajectory {
                    id: r.id.clone(),
                    turn: None,
                    message: format!(
                        "{} reference log-probs for {} trained tokens",
                        re.len(),
                        o.logp.len()
                    ),
                });
            }
        }
        let values: Vec<Vec<f64>> = match &self.value {
            Some(head) => old
                .iter()
                .map(|o| {
                    let h = o.hidden.as_ref().expect("scored with hidden states").detach();
                    Ok(head.forward(&h)?.to_vec1::<f32>()?.iter().map(|&v| v as f64).collect())
                })
                .collect::<Result<_, TrainError>>()?,
            None => Vec::new(),
        };

        let Targets { kl, adv: adv32, returns: ret32 } =
            advantages(&cfg, rollouts, &old, reference, &values);

        // Epochs of minibatch updates.
        let tokens: Vec<usize> = old.iter().map(|o| o.logp.len()).collect();
        let mut m = PpoMetrics::default();
        let (mut clip_tokens, mut evals_tokens) = (0f64, 0f64);
        let (mut vloss_sum, mut last_kl, mut last_kl_tokens) = (0f64, 0f64, 0f64);
        let steps_before = self.opt.steps();
        for epoch in 0..cfg.epochs {
            // The families shuffled, each one's rollouts together (with one-rollout families
            // this is the plain shuffle), so that a minibatch reads a shared history once.
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(mix_seed(&[
                cfg.seed,
                self.updates,
                epoch as u64,
            ]));
            let order = shuffle_groups(&fams, &mut rng);
            let last_epoch = epoch + 1 == cfg.epochs;
            for mb in order.chunks(cfg.minibatch) {
                let total: usize = mb.iter().map(|&i| tokens[i]).sum::<usize>().max(1);
                for part in mb.chunk_by(|&a, &b| family_of[a] == family_of[b]) {
                    // One forward for the part (packed when it holds several rollouts), one
                    // backward of its rollouts' summed losses.
                    let scored = self.part_scores(rollouts, part, gae_mode)?;
                    let mut part_loss: Option<candle_core::Tensor> = None;
                    for (i, s) in scored {
                        let (pg, st) = ppo_clip_loss(&s.logp, &old[i].logp, &adv32[i], cfg.clip)?;
                        let mut loss = pg.clone();
                        if cfg.kl_in == KlPlacement::Loss && cfg.kl_coef > 0.0 {
                            let k = kl_tokens(&s.logp, &reference[i], cfg.kl_estimator)?;
                            loss = (loss + (k.mean_all()? * cfg.kl_coef)?)?;
                        }
                        let mut vl = 0f64;
                        if let (Some(head), Some(h)) = (&self.value, &s.hidden) {
                            let v = value_loss(&head.forward(h)?, &ret32[i])?;
                            vl = v.to_scalar::<f32>()? as f64;
                            loss = (loss + (v * cfg.value_coef)?)?;
                        }
                        let w = tokens[i] as f64;
                        let lv = loss.to_scalar::<f32>()? as f64;
                        if lv.is_finite() {
                            let scaled = (loss * (w / total as f64))?;
                            part_loss = Some(match part_loss {
                                Some(p) => (p + scaled)?,
                                None => scaled,
                            });
                        } else {
                            m.nonfinite += 1;
                        }
                        m.loss += lv * w;
                        m.pg_loss += pg.to_scalar::<f32>()? as f64 * w;
                        vloss_sum += vl * w;
                        clip_tokens += st.clip_fraction * w;
                        evals_tokens += w;
                        if last_epoch {
                            last_kl += st.approx_kl * w;
                            last_kl_tokens += w;
                        }
                    }
                    if let Some(loss) = part_loss {
                        self.opt.accumulate(&loss.backward()?)?;
                    }
                }
                self.opt.step()?;
            }
        }
        self.updates += 1;

        let n_tokens: usize = tokens.iter().sum();
        let n_turns: usize = rollouts.iter().map(|r| r.turns.len()).sum();
        m.loss /= evals_tokens.max(1.0);
        m.pg_loss /= evals_tokens.max(1.0);
        m.value_loss = gae_mode.then(|| vloss_sum / evals_tokens.max(1.0));
        m.clip_fraction = clip_tokens / evals_tokens.max(1.0);
        m.approx_kl = last_kl / last_kl_tokens.max(1.0);
        m.reward = rollouts.iter().map(|r| r.rewards.iter().sum::<f64>()).sum::<f64>()
            / rollouts.len() as f64;
        m.kl = kl.iter().flatten().sum::<f64>() / n_tokens.max(1) as f64;
        m.entropy = old.iter().flat_map(|o| &o.entropy).map(|&e| e as f64).sum::<f64>()
            / n_tokens.max(1) as f64;
        m.response_tokens = n_tokens as f64 / n_turns as f64;
        m.invalid_rate = rollouts.iter().flat_map(|r| &r.invalid).filter(|&&b| b).count() as f64
            / n_turns as f64;
        m.rollouts = rollouts.len();
        m.turns = n_turns;
        m.tokens = n_tokens;
        m.steps = self.opt.steps() - steps_before;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_by_name_and_refuses_bad_values_by_key() {
        let c: PpoConfig = serde_json::from_str(
            r#"{"advantage": "group", "kl_estimator": "k1", "kl_in": "reward"}"#,
        )
        .unwrap();
        assert_eq!(
            (c.advantage, c.kl_estimator, c.kl_in, c.clip),
            (Advantage::Group, KlEstimator::K1, KlPlacement::Reward, 0.2)
        );
        assert!(serde_json::from_str::<PpoConfig>(r#"{"cliprange": 0.1}"#).is_err());
        for (bad, key) in [
            (PpoConfig { clip: 0.0, ..PpoConfig::default() }, "ppo.clip"),
            (PpoConfig { lambda: 1.5, ..PpoConfig::default() }, "ppo.lambda"),
            (PpoConfig { minibatch: 0, ..PpoConfig::default() }, "ppo.minibatch"),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn a_rollout_without_one_reward_per_turn_is_refused_by_id() {
        let r = Rollout {
            id: "line/train/0/1/0".into(),
            conversation: vec![Message::user("o"), Message::assistant("Action: stop")],
            turns: vec![1],
            rewards: vec![],
            invalid: vec![false],
            group: 0,
        };
        assert!(r.check().unwrap_err().to_string().contains("line/train/0/1/0"));
        let nan = Rollout { rewards: vec![f64::NAN], ..r };
        assert!(nan.check().is_err());
    }
}
