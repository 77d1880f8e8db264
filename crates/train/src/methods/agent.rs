//! The policy as an agent in the world: sampling (or greedy) turns from the engine, and a
//! script of recorded turns played before the agent takes over (IPR's expert replay).

use stepagent_env::TaskId;
use stepagent_lm::{EpisodeCaches, Lm, SamplingConfig};
use stepagent_policy::{ActContext, Policy, PolicyError, Role};

use crate::inspect::mix_seed;
use crate::traj::Trajectory;

/// The engine as an agent. `salt` is mixed into every act seed (and the episode's cache key),
/// so several episodes of one task from the same world state sample different turns. Made
/// anew whenever the weights change: no KV cache outlives the weights it was computed with.
pub struct LmAgent<'a> {
    lm: &'a Lm,
    sampling: SamplingConfig,
    caches: EpisodeCaches,
    salt: u64,
}

impl<'a> LmAgent<'a> {
    /// An agent sampling from `lm` with `sampling`, salted by `salt`.
    pub fn new(lm: &'a Lm, sampling: SamplingConfig, salt: u64) -> Self {
        LmAgent { lm, sampling, caches: EpisodeCaches::new(2), salt }
    }
}

impl Policy for LmAgent<'_> {
    fn name(&self) -> String {
        format!("lm:{}", stepagent_lm::ChatModel::name(self.lm))
    }

    fn act(&self, ctx: &ActContext<'_>) -> Result<String, PolicyError> {
        let key = format!("{}#{}", ctx.task, self.salt);
        let seed = mix_seed(&[self.salt, ctx.seed]);
        let out = self
            .caches
            .generate(self.lm, &key, ctx.conversation, &self.sampling, seed)
            .map_err(|e| PolicyError::Backend { policy: self.name(), message: e.to_string() })?;
        Ok(out.text.trim().to_string())
    }
}

/// Plays recorded turns first (the expert's actions 1..t, say), then hands over to `then`.
/// The step is read off the conversation: its assistant turns after the opening's.
pub struct Scripted<'a> {
    /// Assistant turns of the opening (the `OK`, examples), not steps.
    opening: usize,
    /// The turns to play, in order.
    script: Vec<String>,
    /// Who acts after the script (none: the script must cover the episode).
    then: Option<&'a dyn Policy>,
}

impl<'a> Scripted<'a> {
    /// The first `steps` expert turns of `t`, then `then`.
    pub fn expert_prefix(t: &Trajectory, steps: usize, then: Option<&'a dyn Policy>) -> Self {
        let script =
            t.step_turns().iter().take(steps).map(|&i| t.conversation[i].content.clone()).collect();
        Scripted { opening: super::opening_assistant_turns(t), script, then }
    }

    /// The same with `turn` played after the expert's prefix (the agent's action at step t).
    pub fn with_turn(mut self, turn: String) -> Self {
        self.script.push(turn);
        self
    }
}

impl Policy for Scripted<'_> {
    fn name(&self) -> String {
        match self.then {
            Some(p) => format!("script+{}", p.name()),
            None => "script".into(),
        }
    }

    fn act(&self, ctx: &ActContext<'_>) -> Result<String, PolicyError> {
        let taken = ctx.conversation.iter().filter(|m| m.role == Role::Assistant).count();
        let step = taken.saturating_sub(self.opening);
        if let Some(turn) = self.script.get(step) {
            return Ok(turn.clone());
        }
        match self.then {
            Some(p) => p.act(ctx),
            None => Err(no_turn(&self.name(), ctx.task, step)),
        }
    }
}

fn no_turn(policy: &str, task: TaskId, step: usize) -> PolicyError {
    PolicyError::NoAction {
        policy: policy.to_string(),
        task,
        reason: format!("the script ends before step {step}"),
    }
}
