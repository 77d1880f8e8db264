//! StepAgent-Inverse's discriminator: D_φ(h, a) = σ(w · x + b), where x is the final hidden
//! state of the last token of the assistant turn a after history h, read by a
//! [`ScalarHead`] over an LM backbone (the SFT model by default, trained through its LoRA
//! adapters or left frozen).
//!
//! It learns, by binary cross-entropy, to tell the expert's step (label 1) from the agent's
//! step (label 0) after the same expert prefix, so the only thing it can key on is the action
//! itself. Its judgement becomes the step reward r(h, a) that PPO maximises; when the agent's
//! steps are indistinguishable from the expert's (D = ½ everywhere), the reward no longer
//! pulls: the GAIL fixed point the method's theory claim is about.
//!
//! The end-of-turn marker is the token read because it is the first position that has seen
//! the whole action (a head on the action's first token would not see the action at all).

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};
use stepagent_lm::{OptimConfig, ScalarHead};
use stepagent_policy::Message;

use crate::epochs::Schedule;
use crate::inspect::{groups, Group, StepTriple};
use crate::model::StepModel;
use crate::optim::Optimizer;
use crate::sft::validate_optim;
use crate::traj::Trajectory;
use crate::TrainError;

/// How the discriminator's judgement becomes a step reward. With x the head's logit and
/// D = σ(x):
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RewardTransform {
    /// r = log D = −softplus(−x) ≤ 0 (the paper's reading, our default): every step costs,
    /// expert-like steps cost least, which favours ending episodes early.
    #[default]
    #[serde(rename = "log-d")]
    LogD,
    /// r = −log(1 − D) = softplus(x) ≥ 0 (GAIL's original): every step earns, which favours
    /// long episodes.
    #[serde(rename = "neg-log-one-minus-d")]
    NegLogOneMinusD,
    /// r = log D − log(1 − D) = x (AIRL's): signed, no bias towards long or short episodes.
    #[serde(rename = "logit")]
    Logit,
}

/// `log(1 + e^x)`, stable for large |x|.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

impl RewardTransform {
    /// The step reward of a discriminator logit `x` (D = σ(x)).
    pub fn reward(self, x: f64) -> f64 {
        match self {
            RewardTransform::LogD => -softplus(-x),
            RewardTransform::NegLogOneMinusD => softplus(x),
            RewardTransform::Logit => x,
        }
    }
}

/// Discriminator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscConfig {
    /// Train the backbone's trainable variables (its LoRA adapters, or all weights under full
    /// fine-tuning) with the head; false trains the head alone on frozen features. Default true.
    pub train_backbone: bool,
    /// Passes over the step triples per discriminator phase. Default 1.
    pub epochs: usize,
    /// Triples per optimizer step (each gives one expert and one agent step). Default 8.
    pub batch: usize,
    /// Triples of one trajectory judged in one packed forward: the expert trajectory is read
    /// once and each agent turn is packed after its prefix, so a shared history costs one
    /// read. With gradients, memory grows with the trajectory's length plus these turns. 0:
    /// all of a batch's triples of a trajectory in one pass. Default 0.
    pub pairs_per_pass: usize,
    /// The step reward made of D. Default `log-d`.
    pub reward: RewardTransform,
    /// AdamW and its schedule. Default lr 1e-4, clip 1.0.
    pub optim: OptimConfig,
    /// Seed of the head's initial weights. Default 0.
    pub head_seed: u64,
    /// Seed of the shuffling. Default 0.
    pub seed: u64,
    /// The triples of every k-th expert trajectory (the k-th, 2k-th, … of the training data)
    /// are held out of D's training and measure its accuracy and AUC, so no measured step
    /// shares a prefix with a trained one. 0 holds nothing out (D is then measured on the
    /// triples it trained on). Default 5 (a fifth held out).
    pub heldout_every: usize,
}

impl Default for DiscConfig {
    fn default() -> Self {
        DiscConfig {
            train_backbone: true,
            epochs: 1,
            batch: 8,
            pairs_per_pass: 0,
            reward: RewardTransform::LogD,
            optim: OptimConfig { lr: 1e-4, ..OptimConfig::default() },
            head_seed: 0,
            seed: 0,
            heldout_every: 5,
        }
    }
}

impl DiscConfig {
    /// Checks the values, naming the bad key.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.batch == 0 {
            return Err(TrainError::config("disc.batch", "must be at least 1"));
        }
        if self.heldout_every == 1 {
            return Err(TrainError::config(
                "disc.heldout_every",
                "1 would hold every triple out; use 0 (none) or at least 2",
            ));
        }
        validate_optim(&self.optim, "disc.optim")
    }
}

/// One step to judge: an assistant turn `action` after `history` (which ends with the
/// observation it answers).
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// The messages before the turn.
    pub history: &'a [Message],
    /// The assistant turn's text.
    pub action: &'a str,
}

impl Step<'_> {
    /// Its length in characters, history and action: what sorts steps into batches of
    /// similar token lengths.
    fn len(&self) -> usize {
        self.history.iter().map(|m| m.content.len()).sum::<usize>() + self.action.len()
    }
}

/// The triples D trains on and the ones held out to measure it, by
/// [`DiscConfig::heldout_every`]: those of every `every`-th trajectory of `trajectories`
/// (by position) are held out. A triple whose trajectory is not there goes to training
/// (where pairing it reports the error).
pub fn split_heldout(
    trajectories: &[Trajectory],
    triples: &[StepTriple],
    every: usize,
) -> (Vec<StepTriple>, Vec<StepTriple>) {
    let held: std::collections::HashSet<&str> = trajectories
        .iter()
        .enumerate()
        .filter(|(i, _)| every > 0 && (i + 1) % every == 0)
        .map(|(_, t)| t.id.as_str())
        .collect();
    triples.iter().cloned().partition(|t| !held.contains(t.trajectory.as_str()))
}

/// What a pass over labelled steps measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DiscMetrics {
    /// Mean binary cross-entropy per step.
    pub loss: f64,
    /// Fraction of steps on the right side of D = ½ (expert above, agent below).
    pub accuracy: f64,
    /// Probability that a random expert step scores above a random agent step (ties count
    /// half); `None` without both kinds.
    pub auc: Option<f64>,
    /// Mean D on the expert steps.
    pub expert_d: f64,
    /// Mean D on the agent steps.
    pub agent_d: f64,
    /// Triples (each an expert and an agent step).
    pub pairs: usize,
}

/// Exact area under the ROC curve of scores of positives against negatives: the fraction of
/// (positive, negative) pairs ordered correctly, ties counted half (the Mann–Whitney U over
/// mid-ranks). `None` when either side is empty.
pub fn auc(positive: &[f64], negative: &[f64]) -> Option<f64> {
    if positive.is_empty() || negative.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> =
        positive.iter().map(|&s| (s, true)).chain(negative.iter().map(|&s| (s, false))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Mid-ranks (1-based) of each run of equal scores, summed over the positives.
    let mut rank_sum = 0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mid * all[i..=j].iter().filter(|x| x.1).count() as f64;
        i = j + 1;
    }
    let (p, n) = (positive.len() as f64, negative.len() as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Mean binary cross-entropy of logits against 0/1 labels: y·softplus(−x) + (1−y)·softplus(x),
/// differentiable in `logits`.
pub fn bce_with_logits(logits: &Tensor, labels: &[f32]) -> Result<Tensor, TrainError> {
    let n = labels.len();
    if logits.dims() != [n] || n == 0 {
        return Err(TrainError::config(
            "disc",
            format!("{} labels for logits of shape {:?}", n, logits.dims()),
        ));
    }
    let y = Tensor::from_slice(labels, n, logits.device())?;
    // softplus(−x) = softplus(x) − x, so the loss is softplus(x) − y·x.
    let soft = (logits.relu()? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    Ok((soft - (logits * y)?)?.mean_all()?)
}

/// The discriminator: a backbone and a scalar head. See the module docs.
pub struct Discriminator<M> {
    /// The LM the head reads (its own copy of the SFT model, or a borrowed policy).
    pub backbone: M,
    /// The head on the end-of-turn hidden state.
    pub head: ScalarHead,
    /// Settings.
    pub cfg: DiscConfig,
}

impl<M: StepModel> Discriminator<M> {
    /// A discriminator over `backbone` with a fresh head.
    pub fn new(backbone: M, cfg: DiscConfig) -> Result<Self, TrainError> {
        cfg.validate()?;
        let head = ScalarHead::new(backbone.hidden_size(), cfg.head_seed, &backbone.device())?;
        Ok(Discriminator { backbone, head, cfg })
    }

    /// The variables it trains: the head's and, with `train_backbone`, the backbone's.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let mut v = self.head.vars();
        if self.cfg.train_backbone {
            v.extend(self.backbone.trainable());
        }
        v
    }

    /// An optimizer over [`Discriminator::vars`] with the configured settings.
    pub fn optimizer(&self) -> Result<Optimizer, TrainError> {
        Optimizer::new(self.vars(), self.cfg.optim.clone())
    }

    /// The logit x of D = σ(x) for each step, `(steps,)`, from one batched forward.
    pub fn logits(&self, steps: &[Step<'_>], grad: bool) -> Result<Tensor, TrainError> {
        let convs: Vec<Vec<Message>> = steps
            .iter()
            .map(|s| {
                let mut c = s.history.to_vec();
                c.push(Message::assistant(s.action));
                c
            })
            .collect();
        let turns: Vec<[usize; 1]> = steps.iter().map(|s| [s.history.len()]).collect();
        let items: Vec<(&[Message], &[usize])> =
            convs.iter().zip(&turns).map(|(c, t)| (c.as_slice(), &t[..])).collect();
        let backbone_grad = grad && self.cfg.train_backbone;
        let mut h = self.backbone.turn_end_hidden(&items, backbone_grad)?;
        if !backbone_grad {
            h = h.detach();
        }
        Ok(self.head.forward(&h)?)
    }

    /// D for each step.
    pub fn probs(&self, steps: &[Step<'_>]) -> Result<Vec<f64>, TrainError> {
        let x = self.logits(steps, false)?.to_vec1::<f32>()?;
        Ok(x.iter().map(|&x| 1.0 / (1.0 + (-x as f64).exp())).collect())
    }

    /// The step reward of each step, by the configured transform.
    pub fn rewards(&self, steps: &[Step<'_>]) -> Result<Vec<f64>, TrainError> {
        let x = self.logits(steps, false)?.to_vec1::<f32>()?;
        Ok(x.iter().map(|&x| self.cfg.reward.reward(x as f64)).collect())
    }

    /// Fills each rollout's turn rewards with the step reward of that turn after its
    /// history (StepAgent-Inverse's reward for PPO), `batch` steps per forward.
    pub fn reward_rollouts(&self, rollouts: &mut [crate::ppo::Rollout]) -> Result<(), TrainError> {
        let step = |&(i, k): &(usize, usize)| {
            let (c, t) = (&rollouts[i].conversation, rollouts[i].turns[k]);
            Step { history: &c[..t], action: &c[t].content }
        };
        let mut at: Vec<(usize, usize)> = rollouts
            .iter()
            .enumerate()
            .flat_map(|(i, r)| (0..r.turns.len()).map(move |k| (i, k)))
            .collect();
        // Similar lengths share a batched forward (less padding); each reward goes back to
        // its turn below.
        at.sort_by_cached_key(|a| step(a).len());
        let mut rewards = Vec::with_capacity(at.len());
        for chunk in at.chunks(2 * self.cfg.batch.max(1)) {
            let steps: Vec<Step<'_>> = chunk.iter().map(step).collect();
            rewards.extend(self.rewards(&steps)?);
        }
        for r in rollouts.iter_mut() {
            r.rewards.resize(r.turns.len(), 0.0);
        }
        for (&(i, k), v) in at.iter().zip(rewards) {
            rollouts[i].rewards[k] = v;
        }
        Ok(())
    }

    /// One pass over `triples` (shuffled by `seed` and `epoch`), one optimizer step per
    /// `batch` triples; each triple's expert step is labelled 1 and its agent step 0. Returns
    /// the pass's running metrics (measured before each update).
    pub fn train_epoch(
        &self,
        trajectories: &[Trajectory],
        triples: &[StepTriple],
        opt: &mut Optimizer,
        epoch: usize,
    ) -> Result<DiscMetrics, TrainError> {
        self.cfg.validate()?;
        let order = self.schedule(trajectories, triples)?.order(epoch);
        let mut acc = Accum::default();
        for batch in order.chunks(self.cfg.batch) {
            self.accumulate_batch(trajectories, triples, batch, opt, &mut acc)?;
            opt.step()?;
        }
        Ok(acc.metrics())
    }

    /// The gradients of one batch of `triples` (given by index), accumulated into `opt`
    /// without a step: for a caller that runs its own (resumable) epoch loop. Returns the
    /// batch's metrics, measured before the update.
    pub fn accumulate(
        &self,
        trajectories: &[Trajectory],
        triples: &[StepTriple],
        batch: &[usize],
        opt: &mut Optimizer,
    ) -> Result<DiscMetrics, TrainError> {
        let mut acc = Accum::default();
        self.accumulate_batch(trajectories, triples, batch, opt, &mut acc)?;
        Ok(acc.metrics())
    }

    /// Forward and backward passes of the triples `batch` (indices into `triples`), one
    /// packed pass per trajectory and `pairs_per_pass` triples, each pass weighted by its
    /// share of the batch.
    fn accumulate_batch(
        &self,
        trajectories: &[Trajectory],
        triples: &[StepTriple],
        batch: &[usize],
        opt: &mut Optimizer,
        acc: &mut Accum,
    ) -> Result<(), TrainError> {
        for g in groups(trajectories, triples, batch.iter().copied())? {
            for pass in g.passes(triples, self.cfg.pairs_per_pass) {
                let x = self.pair_logits(&pass, triples, true)?;
                let labels: Vec<f32> = pass.triples.iter().flat_map(|_| [1.0, 0.0]).collect();
                let loss = bce_with_logits(&x, &labels)?;
                // The pass's mean over its steps is the mean of its pairs' means.
                acc.loss += loss.to_scalar::<f32>()? as f64 * pass.triples.len() as f64;
                x.to_vec1::<f32>()?.chunks(2).for_each(|pair| acc.push(pair));
                let share = pass.triples.len() as f64 / batch.len() as f64;
                opt.accumulate(&(loss * share)?.backward()?)?;
            }
        }
        Ok(())
    }

    /// The logits of the triples of `pass` (one trajectory's) as
    /// `[expert₀, agent₀, expert₁, agent₁, …]`, from one forward over the trajectory with the
    /// agent's turns packed after their prefixes.
    fn pair_logits(
        &self,
        pass: &Group<'_>,
        triples: &[StepTriple],
        grad: bool,
    ) -> Result<Tensor, TrainError> {
        let turns: Vec<usize> = pass.triples.iter().map(|&i| triples[i].turn).collect();
        let branches: Vec<(usize, &str)> =
            pass.triples.iter().map(|&i| (triples[i].turn, triples[i].agent.as_str())).collect();
        let backbone_grad = grad && self.cfg.train_backbone;
        let conv = &pass.traj.conversation;
        let (expert, agent) =
            self.backbone.branch_end_hidden(conv, &turns, &branches, backbone_grad)?;
        let (n, width) = expert.dims2()?;
        let mut h = Tensor::stack(&[&expert, &agent], 1)?.reshape((2 * n, width))?;
        if !backbone_grad {
            h = h.detach();
        }
        Ok(self.head.forward(&h)?)
    }

    /// The epochs' shape: `batch` triples per optimizer step, taken trajectory by trajectory
    /// (the trajectories shuffled, each one's triples together in turn order), so that a
    /// batch holds the triples of one or two trajectories and reads each of them once.
    pub(crate) fn schedule(
        &self,
        trajectories: &[Trajectory],
        triples: &[StepTriple],
    ) -> Result<Schedule, TrainError> {
        let c = &self.cfg;
        let groups = groups(trajectories, triples, 0..triples.len())?
            .into_iter()
            .map(|g| {
                let mut t = g.triples;
                t.sort_by_key(|&i| triples[i].turn);
                t
            })
            .collect();
        Ok(Schedule {
            epochs: c.epochs,
            items: triples.len(),
            batch: c.batch,
            seed: c.seed,
            groups: Some(groups),
        })
    }

    /// `cfg.epochs` passes of [`Discriminator::train_epoch`]; each pass's metrics.
    pub fn train(
        &self,
        trajectories: &[Trajectory],
        triples: &[StepTriple],
        opt: &mut Optimizer,
    ) -> Result<Vec<DiscMetrics>, TrainError> {
        (0..self.cfg.epochs).map(|e| self.train_epoch(trajectories, triples, opt, e)).collect()
    }

    /// Loss, accuracy and AUC on `triples` (held-out ones, typically), without updates; one
    /// packed pass per trajectory.
    pub fn evaluate(
        &self,
        trajectories: &[Trajectory],
        triples: &[StepTriple],
    ) -> Result<DiscMetrics, TrainError> {
        let mut acc = Accum::default();
        for g in groups(trajectories, triples, 0..triples.len())? {
            let x = self.pair_logits(&g, triples, false)?;
            let labels: Vec<f32> = g.triples.iter().flat_map(|_| [1.0, 0.0]).collect();
            let loss = bce_with_logits(&x, &labels)?.to_scalar::<f32>()? as f64;
            acc.loss += loss * g.triples.len() as f64;
            x.to_vec1::<f32>()?.chunks(2).for_each(|pair| acc.push(pair));
        }
        Ok(acc.metrics())
    }
}

/// Running sums over (expert, agent) logit pairs.
#[derive(Default)]
struct Accum {
    /// Sum over pairs of each pair's mean loss.
    loss: f64,
    expert: Vec<f64>,
    agent: Vec<f64>,
}

impl Accum {
    /// One pair's logits `[expert, agent]`.
    fn push(&mut self, x: &[f32]) {
        self.expert.push(x[0] as f64);
        self.agent.push(x[1] as f64);
    }

    fn metrics(&self) -> DiscMetrics {
        let n = self.expert.len();
        if n == 0 {
            return DiscMetrics::default();
        }
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let right = self.expert.iter().filter(|&&x| x > 0.0).count()
            + self.agent.iter().filter(|&&x| x < 0.0).count();
        DiscMetrics {
            loss: self.loss / n as f64,
            accuracy: right as f64 / (2 * n) as f64,
            auc: auc(&self.expert, &self.agent),
            expert_d: self.expert.iter().map(|&x| sig(x)).sum::<f64>() / n as f64,
            agent_d: self.agent.iter().map(|&x| sig(x)).sum::<f64>() / n as f64,
            pairs: n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// x = 2: D = σ(2) = 0.880797078
    ///   log D = −ln(1 + e^{−2}) = −ln(1.135335283) = −0.126928011
    ///   −log(1 − D) = ln(1 + e^{2}) = ln(8.389056099) = 2.126928011
    ///   log D − log(1 − D) = 2
    /// x = −30 (saturated): log D = −30.000000000000093 ≈ −30, −log(1−D) = ln(1 + e^{−30})
    /// ≈ 9.357622968840175e-14.
    #[test]
    fn reward_transforms_by_hand() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(RewardTransform::LogD.reward(2.0), -0.126_928_011));
        assert!(close(RewardTransform::NegLogOneMinusD.reward(2.0), 2.126_928_011));
        assert_eq!(RewardTransform::Logit.reward(2.0), 2.0);
        assert!(close(RewardTransform::LogD.reward(-30.0), -30.0));
        let tiny = RewardTransform::NegLogOneMinusD.reward(-30.0);
        assert!(tiny > 0.0 && tiny < 1e-13, "{tiny}");
        // log D − log(1 − D) is the difference of the other two, whatever x.
        for x in [-3.0, -0.5, 0.0, 0.7, 4.0] {
            let diff = RewardTransform::LogD.reward(x) + RewardTransform::NegLogOneMinusD.reward(x);
            assert!(close(diff, RewardTransform::Logit.reward(x)), "{x}");
        }
        let t: RewardTransform = serde_json::from_str("\"neg-log-one-minus-d\"").unwrap();
        assert_eq!(t, RewardTransform::NegLogOneMinusD);
    }

    /// Positives {0.9, 0.5, 0.5}, negatives {0.5, 0.1}: of the 6 pairs, 0.9 beats both (2),
    /// each 0.5 beats 0.1 (2) and ties 0.5 (2 × ½ = 1): AUC = 5/6.
    #[test]
    fn auc_by_hand() {
        let a = auc(&[0.9, 0.5, 0.5], &[0.5, 0.1]).unwrap();
        assert!((a - 5.0 / 6.0).abs() < 1e-12, "{a}");
        assert_eq!(auc(&[1.0, 2.0], &[0.0, -1.0]), Some(1.0));
        assert_eq!(auc(&[0.0], &[1.0, 2.0]), Some(0.0));
        assert_eq!(auc(&[3.0, 3.0], &[3.0]), Some(0.5));
        assert_eq!(auc(&[], &[1.0]), None);
    }

    /// The mid-rank formula against the pair count it stands for, on random scores drawn
    /// from a few values (so ties are common).
    #[test]
    fn auc_equals_the_pairwise_count() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for _ in 0..200 {
            let mut draw = |n: usize| -> Vec<f64> {
                (0..n).map(|_| rng.gen_range(0..5) as f64 / 4.0).collect()
            };
            let (n, m) = (1 + (draw(1)[0] * 8.0) as usize, 1 + (draw(1)[0] * 8.0) as usize);
            let (p, q) = (draw(n), draw(m));
            let mut wins = 0.0;
            for a in &p {
                for b in &q {
                    wins += if a > b {
                        1.0
                    } else if a == b {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
            let want = wins / (p.len() * q.len()) as f64;
            assert!((auc(&p, &q).unwrap() - want).abs() < 1e-12, "{p:?} {q:?}");
        }
    }

    /// logits (2, −1), labels (1, 0):
    ///   softplus(−2) = ln(1 + e^{−2}) = 0.126928011; softplus(−1) = ln(1 + e^{−1}) = 0.313261687
    ///   mean = 0.220094849
    ///   ∂/∂x₁ = (σ(2) − 1)/2 = −0.059601461; ∂/∂x₂ = σ(−1)/2 = 0.134470711
    #[test]
    fn bce_by_hand() {
        let x = Var::from_slice(&[2f32, -1.0], 2, &Device::Cpu).unwrap();
        let l = bce_with_logits(x.as_tensor(), &[1.0, 0.0]).unwrap();
        assert!((l.to_scalar::<f32>().unwrap() - 0.220_094_85).abs() < 1e-6);
        let g = l.backward().unwrap().get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert!((g[0] + 0.059_601_46).abs() < 1e-6 && (g[1] - 0.134_470_71).abs() < 1e-6, "{g:?}");
        assert!(bce_with_logits(x.as_tensor(), &[1.0]).is_err());
    }

    #[test]
    fn config_rejects_unknown_keys_and_zero_batch() {
        assert!(serde_json::from_str::<DiscConfig>(r#"{"bacth": 2}"#).is_err());
        let c: DiscConfig = serde_json::from_str(r#"{"reward": "logit"}"#).unwrap();
        assert_eq!((c.reward, c.batch, c.train_backbone), (RewardTransform::Logit, 8, true));
        assert!(DiscConfig { batch: 0, ..DiscConfig::default() }.validate().is_err());
        let e = DiscConfig { heldout_every: 1, ..DiscConfig::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("heldout_every"), "{e}");
    }
}
