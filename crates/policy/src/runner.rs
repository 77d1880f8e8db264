//! The episode runner: the one loop over [`Environment::step`] in the project.
//!
//! Episodes run in parallel on scoped threads, each worker with its own environment and the
//! policy shared. Results are handed to a sink in task order as soon as every earlier episode
//! is done, so a transcript file written from the sink grows while the run goes on, a killed
//! run keeps what was written, and the file is byte-identical whatever the worker count: each
//! episode's seed comes from the run seed and its task id, never from scheduling.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};
use stepagent_env::{EnvError, Environment, TaskId, World};
use thiserror::Error;

use crate::react::{self, Example, HistoryConfig, INVALID_FORMAT};
use crate::{ActContext, Message, Policy, PolicyError};

/// How episodes are run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Worker threads (default 0: one per available core).
    pub workers: usize,
    /// Agent turns after which an episode ends unsolved (default: the world's own limit).
    /// Replies without an action count as turns.
    pub max_steps: Option<usize>,
    /// The run seed; each episode's seed is derived from it and the task id (default 0).
    pub seed: u64,
    /// How much history the policy sees (default: all of it).
    pub history: HistoryConfig,
}

impl RunConfig {
    /// The worker count to use for `jobs` episodes.
    pub fn worker_count(&self, jobs: usize) -> usize {
        let want = if self.workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            self.workers
        };
        want.min(jobs).max(1)
    }
}

/// Why an episode stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeEnd {
    /// The world said the episode is over (solved or failed for good).
    Done,
    /// The step limit was reached first.
    MaxSteps,
}

/// One finished episode and its transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// The world's name.
    pub world: String,
    /// The task.
    pub task: TaskId,
    /// The world's label for the task's type.
    pub task_type: String,
    /// The policy's name.
    pub policy: String,
    /// The episode seed (passed to [`Environment::reset`]).
    pub seed: u64,
    /// The whole conversation: prompt head, first observation, then every agent turn and the
    /// observation that answered it (the last observation included).
    pub conversation: Vec<Message>,
    /// Turns before the first observation (instruction, `OK`, in-context examples).
    pub prompt_turns: usize,
    /// The sum of the step rewards.
    pub reward: f64,
    /// The world's success test held at the end.
    pub won: bool,
    /// Agent turns taken.
    pub steps: usize,
    /// Turns whose action the world did not accept.
    pub invalid_actions: usize,
    /// Turns with no parseable action.
    pub format_errors: usize,
    /// Why it stopped.
    pub end: EpisodeEnd,
}

/// What stopped a run.
#[derive(Debug, Error)]
pub enum RunError {
    /// The world failed (not a bad action: those are answered with observations).
    #[error("task {task}: {source}")]
    Env {
        /// The task.
        task: TaskId,
        /// The world's error.
        source: EnvError,
    },
    /// The policy could not produce a turn.
    #[error("task {task}: {source}")]
    Policy {
        /// The task.
        task: TaskId,
        /// The policy's error.
        source: PolicyError,
    },
    /// The sink (a transcript file, a progress display) failed.
    #[error("writing results: {0}")]
    Sink(Box<dyn std::error::Error + Send + Sync>),
}

/// A sink for finished episodes, called in task order on the caller's thread.
pub type Sink<'s> = dyn FnMut(&Episode) -> Result<(), RunError> + 's;

/// The seed of the episode on `task` in a run seeded `run_seed`.
pub fn episode_seed(run_seed: u64, task: TaskId) -> u64 {
    let split = task.split as u64;
    splitmix64(splitmix64(run_seed ^ splitmix64(split + 1)) ^ task.index as u64)
}

/// The seed of one act: the same episode and step always give the same seed.
pub fn act_seed(episode_seed: u64, step: usize) -> u64 {
    splitmix64(episode_seed ^ splitmix64(step as u64 + 0x5151))
}

/// SplitMix64's output function: a cheap bijective mixer, so nearby inputs give unrelated seeds.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An episode being played.
struct Playing {
    task: TaskId,
    task_type: String,
    seed: u64,
    conversation: Vec<Message>,
    head: usize,
    steps: usize,
    invalid_actions: usize,
    format_errors: usize,
    reward: f64,
    won: bool,
    end: EpisodeEnd,
    /// The world ended it or the step limit was reached.
    over: bool,
}

/// Runs a policy in a world.
pub struct Runner<'a> {
    world: &'a dyn World,
    policy: &'a dyn Policy,
    cfg: RunConfig,
    examples: Vec<Example>,
}

impl<'a> Runner<'a> {
    /// A runner of `policy` in `world`.
    pub fn new(world: &'a dyn World, policy: &'a dyn Policy, cfg: RunConfig) -> Self {
        Runner { world, policy, cfg, examples: Vec::new() }
    }

    /// Shows these in-context examples between the instruction and every task.
    pub fn with_examples(mut self, examples: Vec<Example>) -> Self {
        self.examples = examples;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &RunConfig {
        &self.cfg
    }

    /// The step limit in force.
    pub fn max_steps(&self) -> usize {
        self.cfg.max_steps.unwrap_or_else(|| self.world.max_steps())
    }

    /// Plays one episode on `env`.
    pub fn run_one(&self, env: &mut dyn Environment, task: TaskId) -> Result<Episode, RunError> {
        let mut playing = self.start(env, task)?;
        while !playing.over {
            let reply = {
                let shown = self.shown(&playing);
                let ctx = self.context(&playing, &shown, &*env);
                self.policy.act(&ctx).map_err(|source| RunError::Policy { task, source })?
            };
            self.advance(env, &mut playing, &reply)?;
        }
        Ok(self.finish(playing))
    }

    /// Resets `env` for `task` and opens the episode's conversation.
    fn start(&self, env: &mut dyn Environment, task: TaskId) -> Result<Playing, RunError> {
        let env_err = |source| RunError::Env { task, source };
        let task_type = self.world.task_type(task).map_err(env_err)?;
        let seed = episode_seed(self.cfg.seed, task);
        let first = env.reset(task, seed).map_err(env_err)?;
        let (conversation, head) = react::opening(self.world.instruction(), &self.examples, &first);
        Ok(Playing {
            task,
            task_type,
            seed,
            conversation,
            head,
            steps: 0,
            invalid_actions: 0,
            format_errors: 0,
            reward: 0.0,
            won: false,
            end: EpisodeEnd::MaxSteps,
            over: self.max_steps() == 0,
        })
    }

    /// The part of the conversation the policy is shown (the history window).
    fn shown<'p>(&self, playing: &'p Playing) -> std::borrow::Cow<'p, [Message]> {
        if self.cfg.history.is_unlimited() {
            return std::borrow::Cow::Borrowed(&playing.conversation);
        }
        let keep =
            react::window(&playing.conversation, playing.head, &self.cfg.history, &react::chars);
        std::borrow::Cow::Owned(keep.into_iter().map(|i| playing.conversation[i].clone()).collect())
    }

    fn context<'c>(
        &self,
        playing: &Playing,
        shown: &'c [Message],
        env: &'c dyn Environment,
    ) -> ActContext<'c> {
        ActContext {
            conversation: shown,
            env,
            task: playing.task,
            seed: act_seed(playing.seed, playing.steps),
        }
    }

    /// Takes the agent's `reply` as the next turn: steps the world with its action (or answers
    /// a reply without one with the invalid-format observation) and notes whether it is over.
    fn advance(
        &self,
        env: &mut dyn Environment,
        playing: &mut Playing,
        reply: &str,
    ) -> Result<(), RunError> {
        let task = playing.task;
        let reply = react::clean_reply(reply);
        let action = react::parse_action(&reply);
        playing.conversation.push(Message::assistant(reply));
        playing.steps += 1;
        match action {
            None => {
                playing.format_errors += 1;
                playing.conversation.push(react::observation_turn(INVALID_FORMAT));
            }
            Some(action) => {
                let out = env.step(&action).map_err(|source| RunError::Env { task, source })?;
                playing.invalid_actions += usize::from(!out.valid);
                playing.reward += out.reward;
                playing.won |= out.won;
                playing.conversation.push(react::observation_turn(&out.observation));
                if out.done {
                    playing.end = EpisodeEnd::Done;
                    playing.over = true;
                }
            }
        }
        if playing.steps >= self.max_steps() {
            playing.over = true;
        }
        Ok(())
    }

    fn finish(&self, p: Playing) -> Episode {
        tracing::debug!(task = %p.task, p.steps, p.won, "episode finished");
        Episode {
            world: self.world.name().to_string(),
            task: p.task,
            task_type: p.task_type,
            policy: self.policy.name(),
            seed: p.seed,
            conversation: p.conversation,
            prompt_turns: p.head,
            reward: p.reward,
            won: p.won,
            steps: p.steps,
            invalid_actions: p.invalid_actions,
            format_errors: p.format_errors,
            end: p.end,
        }
    }

    /// Plays every task in `tasks`, in parallel, handing each finished episode to `sink` in
    /// task order. Returns the episodes in task order. The first error stops the run (the
    /// episodes already handed to the sink stay handed).
    ///
    /// A policy with a [`Policy::batch_width`] above one plays that many episodes in lockstep
    /// on this thread instead ([`Runner::run_lockstep`]).
    pub fn run(&self, tasks: &[TaskId], sink: &mut Sink<'_>) -> Result<Vec<Episode>, RunError> {
        let width = self.policy.batch_width().min(tasks.len());
        if width > 1 {
            return self.run_lockstep(tasks, width, sink);
        }
        let workers = self.cfg.worker_count(tasks.len());
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let mut done = Vec::with_capacity(tasks.len());
        let mut first_error = None;
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel::<Result<(usize, Episode), RunError>>();
            for _ in 0..workers {
                let tx = tx.clone();
                let (next, stop) = (&next, &stop);
                s.spawn(move || {
                    let mut env = match self.world.new_env() {
                        Ok(env) => env,
                        Err(source) => {
                            let task = tasks
                                .first()
                                .copied()
                                .unwrap_or(TaskId::new(stepagent_env::Split::Train, 0));
                            let _ = tx.send(Err(RunError::Env { task, source }));
                            return;
                        }
                    };
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&task) = tasks.get(i) else { break };
                        let result = self.run_one(&mut *env, task).map(|e| (i, e));
                        if tx.send(result).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut pending = BTreeMap::new();
            for msg in rx {
                match msg {
                    Ok((i, episode)) => {
                        pending.insert(i, episode);
                        while let Some(episode) = pending.remove(&done.len()) {
                            if first_error.is_none() {
                                if let Err(e) = sink(&episode) {
                                    first_error = Some(e);
                                    stop.store(true, Ordering::Relaxed);
                                }
                            }
                            done.push(episode);
                        }
                    }
                    Err(e) => {
                        if first_error.is_none() {
                            first_error = Some(e);
                        }
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
        match first_error {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// Plays `width` episodes at a time in lockstep: each round asks the policy for the next
    /// turn of every running episode in one [`Policy::act_batch`] call (a language model then
    /// decodes them as one batch), steps each world, and starts the next task in a finished
    /// episode's place. Which episodes share a round depends only on the episodes themselves,
    /// so a rerun gives the same transcripts. Episodes reach `sink` in task order.
    pub fn run_lockstep(
        &self,
        tasks: &[TaskId],
        width: usize,
        sink: &mut Sink<'_>,
    ) -> Result<Vec<Episode>, RunError> {
        let first_task =
            tasks.first().copied().unwrap_or(TaskId::new(stepagent_env::Split::Train, 0));
        let mut envs = (0..width.max(1))
            .map(|_| self.world.new_env())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| RunError::Env { task: first_task, source })?;
        let mut slots: Vec<Option<(usize, Playing)>> = envs.iter().map(|_| None).collect();
        let (mut next, mut done, mut finished) =
            (0, Vec::with_capacity(tasks.len()), BTreeMap::new());
        loop {
            for (slot, env) in slots.iter_mut().zip(envs.iter_mut()) {
                while slot.is_none() && next < tasks.len() {
                    let playing = self.start(&mut **env, tasks[next])?;
                    if playing.over {
                        finished.insert(next, self.finish(playing));
                    } else {
                        *slot = Some((next, playing));
                    }
                    next += 1;
                }
            }
            let running: Vec<usize> = (0..slots.len()).filter(|&k| slots[k].is_some()).collect();
            if running.is_empty() {
                break;
            }
            let replies = {
                let playing: Vec<&Playing> =
                    running.iter().filter_map(|&k| slots[k].as_ref().map(|s| &s.1)).collect();
                let shown: Vec<_> = playing.iter().map(|p| self.shown(p)).collect();
                let ctxs: Vec<ActContext<'_>> = running
                    .iter()
                    .zip(&playing)
                    .zip(&shown)
                    .map(|((&k, p), view)| self.context(p, view, &*envs[k]))
                    .collect();
                self.policy.act_batch(&ctxs)
            };
            if replies.len() != running.len() {
                let task = slots[running[0]].as_ref().map(|s| s.1.task).unwrap_or(first_task);
                let message =
                    format!("{} replies to {} conversations", replies.len(), running.len());
                let source = PolicyError::Backend { policy: self.policy.name(), message };
                return Err(RunError::Policy { task, source });
            }
            for (&k, reply) in running.iter().zip(replies) {
                let Some((index, mut playing)) = slots[k].take() else { continue };
                let task = playing.task;
                let reply = reply.map_err(|source| RunError::Policy { task, source })?;
                self.advance(&mut *envs[k], &mut playing, &reply)?;
                if playing.over {
                    finished.insert(index, self.finish(playing));
                } else {
                    slots[k] = Some((index, playing));
                }
            }
            while let Some(episode) = finished.remove(&done.len()) {
                sink(&episode)?;
                done.push(episode);
            }
        }
        while let Some(episode) = finished.remove(&done.len()) {
            sink(&episode)?;
            done.push(episode);
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::{ExpertPolicy, RandomPolicy};
    use crate::toy::LineWorld;
    use stepagent_env::Split;

    fn tasks(n: usize) -> Vec<TaskId> {
        (0..n).map(|i| TaskId::new(Split::Unseen, i)).collect()
    }

    #[test]
    fn expert_solves_line_world() {
        let world = LineWorld::default();
        let runner = Runner::new(&world, &ExpertPolicy, RunConfig::default());
        let eps = runner.run(&tasks(20), &mut |_| Ok(())).unwrap();
        assert_eq!(eps.len(), 20);
        assert!(eps.iter().all(|e| e.won && e.end == EpisodeEnd::Done && e.reward == 1.0));
        assert!(eps.iter().all(|e| e.invalid_actions == 0 && e.format_errors == 0));
        // Goal 3 + i % 6: i + 1 moves... plus one stop.
        assert_eq!(eps[0].steps, 4);
        assert_eq!(eps[0].conversation[0].content, world.instruction());
        assert_eq!(eps[0].conversation[1].content, "OK");
        assert!(eps[0].conversation[3].content.starts_with("Thought: "));
        assert_eq!(eps[0].conversation[4].content, "Observation: You are on cell 1.");
    }

    #[test]
    fn sink_sees_task_order_and_results_do_not_depend_on_workers() {
        let world = LineWorld::default();
        let mut runs = Vec::new();
        for workers in [1, 3, 8] {
            let cfg = RunConfig { workers, seed: 7, ..RunConfig::default() };
            let runner = Runner::new(&world, &RandomPolicy, cfg);
            let mut order = Vec::new();
            let eps = runner
                .run(&tasks(30), &mut |e| {
                    order.push(e.task.index);
                    Ok(())
                })
                .unwrap();
            assert_eq!(order, (0..30).collect::<Vec<_>>());
            runs.push(eps);
        }
        assert_eq!(runs[0], runs[1]);
        assert_eq!(runs[0], runs[2]);
        // Random play differs between seeds, or the seed plumbing is broken.
        let other =
            Runner::new(&world, &RandomPolicy, RunConfig { seed: 8, ..RunConfig::default() })
                .run(&tasks(30), &mut |_| Ok(()))
                .unwrap();
        assert_ne!(runs[0], other);
    }

    /// Random play that asks for its turns in batches and records each batch's size.
    struct BatchedRandom {
        width: usize,
        sizes: std::sync::Mutex<Vec<usize>>,
    }
    impl Policy for BatchedRandom {
        fn name(&self) -> String {
            RandomPolicy.name()
        }
        fn act(&self, _: &ActContext<'_>) -> Result<String, PolicyError> {
            panic!("a batching policy is asked through act_batch");
        }
        fn batch_width(&self) -> usize {
            self.width
        }
        fn act_batch(&self, ctxs: &[ActContext<'_>]) -> Vec<Result<String, PolicyError>> {
            self.sizes.lock().unwrap().push(ctxs.len());
            ctxs.iter().map(|c| RandomPolicy.act(c)).collect()
        }
    }

    #[test]
    fn lockstep_batches_give_the_threaded_runs_episodes_in_task_order() {
        let world = LineWorld::default();
        let cfg = RunConfig { seed: 7, max_steps: Some(6), ..RunConfig::default() };
        let threaded =
            Runner::new(&world, &RandomPolicy, cfg.clone()).run(&tasks(13), &mut |_| Ok(()));
        let policy = BatchedRandom { width: 4, sizes: Default::default() };
        let mut order = Vec::new();
        let batched = Runner::new(&world, &policy, cfg)
            .run(&tasks(13), &mut |e| {
                order.push(e.task.index);
                Ok(())
            })
            .unwrap();
        assert_eq!(batched, threaded.unwrap());
        assert_eq!(order, (0..13).collect::<Vec<_>>());
        let sizes = policy.sizes.lock().unwrap().clone();
        assert_eq!(sizes[0], 4, "the first round asks for four turns at once: {sizes:?}");
        assert!(sizes.iter().all(|&n| (1..=4).contains(&n)), "{sizes:?}");
        let turns: usize = batched.iter().map(|e| e.steps).sum();
        assert_eq!(sizes.iter().sum::<usize>(), turns, "one reply per turn played");
    }

    struct Mute;
    impl Policy for Mute {
        fn name(&self) -> String {
            "mute".into()
        }
        fn act(&self, _: &ActContext<'_>) -> Result<String, PolicyError> {
            Ok("Thought: I have nothing to do.<|im_end|>".into())
        }
    }

    #[test]
    fn format_errors_count_as_steps_and_hit_the_limit() {
        let world = LineWorld::default();
        let cfg = RunConfig { max_steps: Some(5), ..RunConfig::default() };
        let ep = Runner::new(&world, &Mute, cfg)
            .run_one(&mut *world.new_env().unwrap(), TaskId::new(Split::Seen, 0))
            .unwrap();
        assert_eq!(ep.steps, 5);
        assert_eq!(ep.format_errors, 5);
        assert_eq!(ep.end, EpisodeEnd::MaxSteps);
        assert!(!ep.won);
        assert_eq!(ep.conversation[3].content, "Thought: I have nothing to do.");
        assert_eq!(ep.conversation[4].content, format!("Observation: {INVALID_FORMAT}"));
    }

    #[test]
    fn sink_error_stops_the_run() {
        let world = LineWorld::default();
        let runner =
            Runner::new(&world, &ExpertPolicy, RunConfig { workers: 2, ..RunConfig::default() });
        let mut seen = 0;
        let err = runner
            .run(&tasks(40), &mut |_| {
                seen += 1;
                if seen == 3 {
                    Err(RunError::Sink("disk full".into()))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert!(err.to_string().contains("disk full"));
        assert_eq!(seen, 3);
    }

    #[test]
    fn policy_error_names_the_task() {
        let world = LineWorld { tasks: 3, max_steps: 50 };
        let mut replay = crate::policies::ReplayPolicy::new("replay");
        replay.insert(TaskId::new(Split::Unseen, 0), vec!["Action: move right".into()]);
        let err = Runner::new(&world, &replay, RunConfig::default())
            .run(&tasks(1), &mut |_| Ok(()))
            .unwrap_err();
        assert!(err.to_string().contains("unseen/0"), "{err}");
        assert!(err.to_string().contains("recording has 1 steps"), "{err}");
    }

    #[test]
    fn history_window_limits_what_the_policy_sees() {
        struct Peek(std::sync::Mutex<Vec<usize>>);
        impl Policy for Peek {
            fn name(&self) -> String {
                "peek".into()
            }
            fn act(&self, ctx: &ActContext<'_>) -> Result<String, PolicyError> {
                self.0.lock().unwrap().push(ctx.conversation.len());
                Ok("Action: look".into())
            }
        }
        let world = LineWorld { tasks: 1, max_steps: 8 };
        let peek = Peek(Default::default());
        let cfg = RunConfig {
            history: HistoryConfig { keep_last_turns: Some(4), max_chars: None },
            ..RunConfig::default()
        };
        let ep = Runner::new(&world, &peek, cfg).run(&tasks(1), &mut |_| Ok(())).unwrap().remove(0);
        assert_eq!(ep.conversation.len(), 3 + 2 * 8);
        assert_eq!(*peek.0.lock().unwrap(), vec![3, 5, 7, 7, 7, 7, 7, 7]);
    }

    #[test]
    fn replay_reproduces_a_transcript() {
        let world = LineWorld::default();
        let expert = Runner::new(&world, &ExpertPolicy, RunConfig::default())
            .run(&tasks(5), &mut |_| Ok(()))
            .unwrap();
        let mut replay = crate::policies::ReplayPolicy::new("replay");
        for e in &expert {
            replay.insert_conversation(e.task, &e.conversation);
        }
        let again = Runner::new(&world, &replay, RunConfig::default())
            .run(&tasks(5), &mut |_| Ok(()))
            .unwrap();
        for (a, b) in expert.iter().zip(&again) {
            assert_eq!(a.conversation, b.conversation);
            assert!(b.won);
        }
    }
}
