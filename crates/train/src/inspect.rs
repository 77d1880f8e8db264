//! Inspection: the current policy acts on every expert prefix h*_t (recorded observations,
//! no environment call) and each of its actions that differs from the expert's becomes a
//! step triple (h*_t, a*_t, â_t) with its provenance.

use serde::{Deserialize, Serialize};
use stepagent_env::World;
use stepagent_lm::SamplingConfig;
use stepagent_policy::react;

use crate::model::StepModel;
use crate::run::UnitLog;
use crate::traj::{normalise_action, normalise_turn, Trajectory};
use crate::TrainError;

/// What counts as "the same action as the expert's".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compare {
    /// The action line only, normalised (our default: a different thought with the same
    /// action is no mistake).
    #[default]
    Action,
    /// Thought and action, normalised.
    ThoughtAndAction,
}

/// Inspection settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InspectConfig {
    /// Samples N per expert step. Default 1 (our reading of the paper).
    pub samples: usize,
    /// Sampling temperature τ. Default 1.0.
    pub temperature: f64,
    /// Nucleus sampling threshold. Default 1.0 (off).
    pub top_p: f64,
    /// Longest sampled turn, in tokens. Default 96.
    pub max_new_tokens: usize,
    /// What must differ for a triple to be kept. Default `action`.
    pub compare: Compare,
    /// Keep one triple per distinct agent turn at a step (N > 1 may repeat itself). Default true.
    pub dedup: bool,
    /// Seed of the sampling (mixed with the cycle, trajectory and step). Default 0.
    pub seed: u64,
    /// Replay the expert prefix in the world to record whether the agent's action was
    /// admissible (when the trajectory's world and task are known). Default true.
    pub check_admissible: bool,
}

impl Default for InspectConfig {
    fn default() -> Self {
        InspectConfig {
            samples: 1,
            temperature: 1.0,
            top_p: 1.0,
            max_new_tokens: 96,
            compare: Compare::Action,
            dedup: true,
            seed: 0,
            check_admissible: true,
        }
    }
}

impl InspectConfig {
    /// Checks the values, naming the bad key.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.samples == 0 {
            return Err(TrainError::config("inspect.samples", "must be at least 1"));
        }
        if self.temperature < 0.0 {
            return Err(TrainError::config("inspect.temperature", "must be >= 0"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(TrainError::config("inspect.top_p", "must be in (0, 1]"));
        }
        if self.max_new_tokens == 0 {
            return Err(TrainError::config("inspect.max_new_tokens", "must be at least 1"));
        }
        Ok(())
    }
}

/// Where a triple came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The policy checkpoint that sampled the agent turn.
    pub checkpoint: String,
    /// Sampling temperature.
    pub temperature: f64,
    /// The seed of this sample.
    pub seed: u64,
    /// Samples drawn at this step (N).
    pub samples: usize,
    /// Whether the agent's action was admissible in the world at this step; `None` when the
    /// world could not be replayed (unknown world or task) or the turn had no action.
    pub admissible: Option<bool>,
}

/// One step triple (h*_t, a*_t, â_t): the history is the trajectory's conversation before
/// message `turn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTriple {
    /// The trajectory's id.
    pub trajectory: String,
    /// Message index of the expert turn in the trajectory's conversation.
    pub turn: usize,
    /// Step number (0-based) among the trajectory's actions.
    pub step: usize,
    /// The expert's turn a*.
    pub expert: String,
    /// The agent's turn â.
    pub agent: String,
    /// The expert's action.
    pub expert_action: String,
    /// The agent's action, if its turn had one.
    pub agent_action: Option<String>,
    /// Provenance.
    pub provenance: Provenance,
}

/// Step triples of one expert trajectory, by index into the list they come from: what one
/// packed pass reads (the trajectory once, the agent's turns as branches off it).
pub(crate) struct Group<'a> {
    pub traj: &'a Trajectory,
    /// Indices into the triple list.
    pub triples: Vec<usize>,
}

impl<'a> Group<'a> {
    /// Passes of at most `per_pass` triples (0: one pass), in turn order so that a pass's
    /// shared history is as short as its latest triple allows.
    pub(crate) fn passes(&self, all: &[StepTriple], per_pass: usize) -> Vec<Group<'a>> {
        let mut triples = self.triples.clone();
        triples.sort_by_key(|&i| all[i].turn);
        let size = if per_pass == 0 { triples.len().max(1) } else { per_pass };
        triples.chunks(size).map(|c| Group { traj: self.traj, triples: c.to_vec() }).collect()
    }
}

/// Triples `which` (indices into `triples`) grouped by trajectory, in order of first
/// appearance; a triple naming a trajectory that is not there, or a turn past its end, is an
/// error naming both.
pub(crate) fn groups<'a>(
    trajectories: &'a [Trajectory],
    triples: &[StepTriple],
    which: impl IntoIterator<Item = usize>,
) -> Result<Vec<Group<'a>>, TrainError> {
    let by_id: std::collections::HashMap<&str, &Trajectory> =
        trajectories.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut out: Vec<Group<'a>> = Vec::new();
    let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for i in which {
        let tr = &triples[i];
        let bad = |message: &str| TrainError::Trajectory {
            id: tr.trajectory.clone(),
            turn: Some(tr.turn),
            message: message.into(),
        };
        let traj = *by_id.get(tr.trajectory.as_str()).ok_or_else(|| {
            bad("a step triple names a trajectory that is not in the expert data")
        })?;
        if tr.turn >= traj.conversation.len() {
            return Err(bad("the triple's turn is past the end of the trajectory"));
        }
        let k = *at.entry(traj.id.as_str()).or_insert_with(|| {
            out.push(Group { traj, triples: Vec::new() });
            out.len() - 1
        });
        out[k].triples.push(i);
    }
    Ok(out)
}

/// Inspection totals for one trajectory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InspectStats {
    /// Steps inspected.
    pub steps: usize,
    /// Samples drawn.
    pub samples: usize,
    /// Samples equal to the expert (dropped).
    pub agreed: usize,
    /// Triples kept.
    pub triples: usize,
}

/// A trajectory's result, as stored in the unit log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InspectUnit {
    /// The triples.
    pub triples: Vec<StepTriple>,
    /// Totals.
    pub stats: InspectStats,
}

/// A seed from its parts (SplitMix64 mixing, so nearby parts give unrelated seeds).
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for &p in parts {
        let mut z = (h ^ p).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h = z ^ (z >> 31);
    }
    h
}

/// A stable 64-bit hash of a string (FNV-1a), for seeds derived from ids.
pub fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Whether each agent action was admissible at its step, by replaying the expert's actions
/// in the world. `None` entries where it cannot be known.
fn admissibility(
    world: Option<&dyn World>,
    traj: &Trajectory,
    agent_actions: &[Vec<Option<String>>],
) -> Vec<Vec<Option<bool>>> {
    let unknown: Vec<Vec<Option<bool>>> =
        agent_actions.iter().map(|a| vec![None; a.len()]).collect();
    let (Some(world), Some(origin)) = (world, traj.origin.as_ref()) else { return unknown };
    if origin.world != world.name() {
        return unknown;
    }
    let replay = || -> Result<Vec<Vec<Option<bool>>>, stepagent_env::EnvError> {
        let mut env = world.new_env()?;
        env.reset(origin.task, origin.seed)?;
        let mut out = Vec::with_capacity(agent_actions.len());
        for (expert, agents) in traj.expert_actions().iter().zip(agent_actions) {
            let admissible: Vec<String> =
                env.admissible_actions().iter().map(|a| normalise_action(a)).collect();
            out.push(
                agents
                    .iter()
                    .map(|a| a.as_ref().map(|a| admissible.contains(&normalise_action(a))))
                    .collect(),
            );
            let step = env.step(expert)?;
            if step.done {
                break;
            }
        }
        out.resize(agent_actions.len(), Vec::new());
        Ok(out)
    };
    match replay() {
        Ok(mut a) => {
            for (row, agents) in a.iter_mut().zip(agent_actions) {
                row.resize(agents.len(), None);
            }
            a
        }
        Err(e) => {
            tracing::warn!(trajectory = %traj.id, error = %e, "cannot replay in the world; admissibility unknown");
            unknown
        }
    }
}

/// Inspects one trajectory: N samples at every step from one prefill.
pub fn inspect_trajectory(
    model: &dyn StepModel,
    traj: &Trajectory,
    cfg: &InspectConfig,
    cycle: usize,
    checkpoint: &str,
    world: Option<&dyn World>,
) -> Result<InspectUnit, TrainError> {
    let turns = traj.step_turns();
    let n = cfg.samples;
    let seeds: Vec<u64> = (0..turns.len() * n)
        .map(|i| mix_seed(&[cfg.seed, cycle as u64, hash_str(&traj.id), i as u64]))
        .collect();
    let sampling = SamplingConfig {
        top_p: cfg.top_p,
        ..SamplingConfig::react_turn(cfg.temperature, cfg.max_new_tokens)
    };
    let samples = model.sample_at_turns(&traj.conversation, &turns, n, &sampling, &seeds)?;
    let actions: Vec<Vec<Option<String>>> =
        samples.iter().map(|s| s.iter().map(|t| react::parse_action(t)).collect()).collect();
    let admissible = if cfg.check_admissible {
        admissibility(world, traj, &actions)
    } else {
        actions.iter().map(|a| vec![None; a.len()]).collect()
    };
    let mut unit = InspectUnit::default();
    for (step, (&turn, texts)) in turns.iter().zip(&samples).enumerate() {
        let expert = &traj.conversation[turn].content;
        let expert_action = react::parse_action(expert).unwrap_or_default();
        let mut seen: Vec<String> = Vec::new();
        unit.stats.steps += 1;
        for (j, text) in texts.iter().enumerate() {
            unit.stats.samples += 1;
            let agent_action = actions[step][j].clone();
            let same = match cfg.compare {
                Compare::Action => agent_action
                    .as_ref()
                    .is_some_and(|a| normalise_action(a) == normalise_action(&expert_action)),
                Compare::ThoughtAndAction => normalise_turn(text) == normalise_turn(expert),
            };
            if same {
                unit.stats.agreed += 1;
                continue;
            }
            let key = normalise_turn(text);
            if cfg.dedup && seen.contains(&key) {
                continue;
            }
            seen.push(key);
            unit.triples.push(StepTriple {
                trajectory: traj.id.clone(),
                turn,
                step,
                expert: expert.clone(),
                agent: react::clean_reply(text),
                expert_action: expert_action.clone(),
                agent_action,
                provenance: Provenance {
                    checkpoint: checkpoint.to_string(),
                    temperature: cfg.temperature,
                    seed: seeds[step * n + j],
                    samples: n,
                    admissible: admissible[step][j],
                },
            });
        }
    }
    unit.stats.triples = unit.triples.len();
    Ok(unit)
}

#[allow(clippy::too_many_arguments)]
/// Inspects every trajectory, one unit of `log` each: trajectories already logged (a run
/// killed midway) are not sampled again. Returns all triples in trajectory order and the
/// totals. `progress` is told each finished trajectory; its error stops the stage.
pub fn inspect_all(
    model: &dyn StepModel,
    trajectories: &[Trajectory],
    cfg: &InspectConfig,
    cycle: usize,
    checkpoint: &str,
    world: Option<&dyn World>,
    log: &mut UnitLog<InspectUnit>,
    progress: &mut dyn FnMut(usize, usize) -> Result<(), TrainError>,
) -> Result<(Vec<StepTriple>, InspectStats), TrainError> {
    cfg.validate()?;
    let mut triples = Vec::new();
    let mut total = InspectStats::default();
    for (i, traj) in trajectories.iter().enumerate() {
        let unit = match log.get(&traj.id) {
            Some(u) => u.clone(),
            None => {
                let u = inspect_trajectory(model, traj, cfg, cycle, checkpoint, world)?;
                log.record(&traj.id, u.clone())?;
                u
            }
        };
        total.steps += unit.stats.steps;
        total.samples += unit.stats.samples;
        total.agreed += unit.stats.agreed;
        total.triples += unit.stats.triples;
        triples.extend(unit.triples);
        progress(i + 1, trajectories.len())?;
    }
    Ok((triples, total))
}
