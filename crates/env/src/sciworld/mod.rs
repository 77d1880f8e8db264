//! ScienceWorld, the real simulator: the jar from the `scienceworld` 1.2.3 wheel, run by
//! Java and driven over py4j's protocol straight from Rust. See `README.md` in this folder
//! for why there is no bridge process.
//!
//! Episodes follow ETO: the `easy` simplifications (teleport, open doors and containers, self-
//! watering pots, no electrical actions where a task does not need them), the first
//! observation is the task description (the simulator's "look around" has been taken, as the
//! Python API's `reset` does), per-task step budgets from ETO's `max_steps.json`, and the
//! reward on the final step is the best score reached (ETO keeps the running maximum), as a
//! fraction: the simulator's 0–100 scaled to [0, 1]. An episode is won when the simulator
//! marks the task completed with a score of 100.
//!
//! Splits: see [`tasks::TaskSet`]. The simulator is deterministic; `seed` is ignored.

mod expert;
pub mod jvm;
mod py4j;
pub mod tasks;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::jvm::{Jvm, Launch, Pool};
use self::py4j::{Arg, Value};
use self::tasks::{Instance, TaskSet};
use crate::registry::{self, WorldOptions};
use crate::{EnvError, Environment, ExpertStep, Split, StepOutcome, TaskId, World, WorldRef};

/// The registry name.
pub const NAME: &str = "sciworld";

/// Options of the `sciworld` world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SciWorldConfig {
    /// Which task lists to serve: `eto` (default: ETO's 24 tasks, 194 seen, 211 unseen) or
    /// `all` (30 tasks, the simulator's whole splits).
    pub tasks: TaskSet,
    /// The simulator's simplifications, comma-separated; default `easy`, as ETO.
    pub simplification: String,
    /// The Java executable; default `java`.
    pub java: String,
    /// Options for the JVM; default `["-Xmx1g"]`.
    pub java_opts: Vec<String>,
    /// A `scienceworld.jar` to use instead of the cached download.
    pub jar: Option<PathBuf>,
    /// The Python used once to `pip download` the wheel; default `python3`.
    pub python: String,
    /// Seconds to wait for one simulator call before failing; default 300 (loading a task
    /// with its gold path can take several seconds on a cold JVM).
    pub timeout_secs: u64,
    /// Idle JVMs kept warm for the next episode; default 4.
    pub keep_idle: usize,
    /// Overrides every task's step budget (ETO's per-task budgets when unset).
    pub max_steps: Option<usize>,
    /// Start a fresh JVM for every `reset`. The simulator draws from randomness global to its
    /// JVM, so an episode's details (object order, gold path) depend on the episodes that JVM
    /// ran before, as with the official Python API; a fresh JVM makes every episode depend on
    /// its task alone, at the price of a JVM start (seconds) per episode. Default false.
    pub fresh_jvm_per_episode: bool,
}

impl Default for SciWorldConfig {
    fn default() -> Self {
        SciWorldConfig {
            tasks: TaskSet::Eto,
            simplification: "easy".to_string(),
            java: "java".to_string(),
            java_opts: vec!["-Xmx1g".to_string()],
            jar: None,
            python: "python3".to_string(),
            timeout_secs: 300,
            keep_idle: 4,
            max_steps: None,
            fresh_jvm_per_episode: false,
        }
    }
}

/// Registry hook.
pub fn open(options: &WorldOptions) -> Result<WorldRef, EnvError> {
    let config: SciWorldConfig = registry::parse_options(NAME, options)?;
    Ok(Arc::new(SciWorld::new(config)?))
}

/// The ScienceWorld world.
pub struct SciWorld {
    shared: Arc<Shared>,
}

struct Shared {
    config: SciWorldConfig,
    launch: Launch,
    splits: [Vec<Instance>; 3],
    pool: Pool,
}

impl SciWorld {
    /// Finds (or downloads) the jar; JVMs start with the first environment.
    pub fn new(config: SciWorldConfig) -> Result<Self, EnvError> {
        for s in config.simplification.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            const KNOWN: &[&str] = &[
                "easy",
                "teleportAction",
                "selfWateringFlowerPots",
                "openContainers",
                "openDoors",
                "noElectricalAction",
            ];
            if !KNOWN.contains(&s) {
                return Err(EnvError::BadOptions {
                    world: NAME.to_string(),
                    message: format!("simplification `{s}` is not one of {}", KNOWN.join(", ")),
                });
            }
        }
        let jar = match &config.jar {
            Some(jar) if jar.is_file() => jar.clone(),
            Some(jar) => {
                return Err(EnvError::BadOptions {
                    world: NAME.to_string(),
                    message: format!("jar: {} is not a file", jar.display()),
                })
            }
            None => jvm::ensure_jar(&jvm::cache_dir(), &config.python)?,
        };
        let launch = Launch {
            java: config.java.clone(),
            jar,
            java_opts: config.java_opts.clone(),
            timeout: Duration::from_secs(config.timeout_secs.max(1)),
        };
        let pool = Pool::new(launch.clone(), config.keep_idle);
        let splits = tasks::instances(config.tasks);
        Ok(SciWorld { shared: Arc::new(Shared { config, launch, splits, pool }) })
    }

    /// The simulator task and variation behind `task`.
    pub fn instance(&self, task: TaskId) -> Result<Instance, EnvError> {
        self.shared.instance(task)
    }

    /// Process ids of the JVMs kept idle, for leak checks.
    pub fn idle_jvm_pids(&self) -> Vec<u32> {
        self.shared.pool.idle_pids()
    }

    /// A fresh environment, typed (the trait's `new_env` boxes it).
    pub fn env(&self) -> Result<SciEnv, EnvError> {
        Ok(SciEnv {
            shared: self.shared.clone(),
            jvm: Mutex::new(Some(self.shared.pool.take()?)),
            episode: None,
            actions: Mutex::new(None),
        })
    }
}

impl Shared {
    fn split(&self, split: Split) -> &[Instance] {
        match split {
            Split::Train => &self.splits[0],
            Split::Seen => &self.splits[1],
            Split::Unseen => &self.splits[2],
        }
    }

    fn instance(&self, task: TaskId) -> Result<Instance, EnvError> {
        let list = self.split(task.split);
        list.get(task.index).copied().ok_or_else(|| EnvError::NoSuchTask {
            world: NAME.to_string(),
            split: task.split.to_string(),
            task: task.to_string(),
            len: list.len(),
        })
    }

    fn max_steps(&self, inst: Instance) -> usize {
        self.config.max_steps.unwrap_or(inst.spec.max_steps)
    }
}

const INSTRUCTION: &str = "You are a helpful assistant doing a science experiment in a simulated house.
The house has these rooms: kitchen, foundry, workshop, bathroom, outside, living room, bedroom, greenhouse, art studio, hallway.
Explore to find the objects the experiment needs. You can teleport to any room in one step, and every container and door is already open.

Actions you can take:
open OBJ / close OBJ: open or close a container
activate OBJ / deactivate OBJ: switch a device on or off
connect OBJ to OBJ / disconnect OBJ: wire electrical components
use OBJ [on OBJ]: use a device or an item
look around: describe the room you are in
examine OBJ: describe an object in detail
look at OBJ: describe what a container holds
read OBJ: read a note or a book
move OBJ to OBJ: put an object into a container
pick up OBJ: put an object in your inventory
pour OBJ into OBJ: pour a liquid into a container
mix OBJ: mix the contents of a container
teleport to LOC: go to a room at once
focus on OBJ: declare the object the task is about (only do this when sure)
wait: do nothing for 10 steps
wait1: do nothing for 1 step

Reply in this format:
Thought: your reasoning
Action: exactly one action";

impl World for SciWorld {
    fn name(&self) -> &str {
        NAME
    }

    fn instruction(&self) -> &str {
        INSTRUCTION
    }

    fn num_tasks(&self, split: Split) -> usize {
        self.shared.split(split).len()
    }

    fn task_type(&self, task: TaskId) -> Result<String, EnvError> {
        Ok(self.shared.instance(task)?.spec.name.to_string())
    }

    /// The largest per-task budget; each episode ends at its own task's budget.
    fn max_steps(&self) -> usize {
        self.shared
            .split(Split::Train)
            .iter()
            .map(|i| self.shared.max_steps(*i))
            .max()
            .unwrap_or(100)
    }

    fn new_env(&self) -> Result<Box<dyn Environment>, EnvError> {
        Ok(Box::new(self.env()?))
    }
}

/// One ScienceWorld episode, holding one JVM for as long as it lives.
pub struct SciEnv {
    shared: Arc<Shared>,
    // A Mutex because `admissible_actions` takes `&self` yet talks to the JVM.
    jvm: Mutex<Option<Jvm>>,
    episode: Option<Episode>,
    actions: Mutex<Option<Vec<String>>>,
}

struct Episode {
    inst: Instance,
    goal: String,
    gold: Vec<String>,
    // Still on the gold path: the expert can only continue a gold prefix.
    on_gold: bool,
    steps: usize,
    max_steps: usize,
    best: f64,
    score: f64,
    done: bool,
    won: bool,
}

impl SciEnv {
    fn with_jvm<T>(&self, f: impl FnOnce(&mut Jvm) -> Result<T, EnvError>) -> Result<T, EnvError> {
        let mut guard = self.jvm.lock().unwrap_or_else(|p| p.into_inner());
        let jvm = guard
            .as_mut()
            .ok_or_else(|| EnvError::Backend("the ScienceWorld JVM failed earlier".into()))?;
        let result = f(jvm);
        if let Err(e) = &result {
            // A failed call leaves the connection in an unknown state: drop (and kill) the JVM.
            let tail = jvm.stderr_tail();
            *guard = None;
            return Err(EnvError::Backend(format!("{e} (JVM stderr: {tail})")));
        }
        result
    }

    /// The simulator's score now, 0–100 (negative when the task was failed).
    pub fn score(&self) -> Option<f64> {
        self.episode.as_ref().map(|e| e.score * 100.0)
    }

    /// The gold path the simulator generated for the current task.
    pub fn gold_path(&self) -> &[String] {
        self.episode.as_ref().map(|e| e.gold.as_slice()).unwrap_or(&[])
    }

    /// The task being played.
    pub fn instance(&self) -> Option<Instance> {
        self.episode.as_ref().map(|e| e.inst)
    }

    /// The simulator's own train / dev / test variations of the loaded task, as the jar
    /// reports them (`getVariationsTrain/Dev/Test`).
    pub fn simulator_splits(&self) -> Result<[Vec<usize>; 3], EnvError> {
        self.with_jvm(|jvm| {
            let mut out: [Vec<usize>; 3] = Default::default();
            for (slot, method) in
                out.iter_mut().zip(["getVariationsTrain", "getVariationsDev", "getVariationsTest"])
            {
                let sim = jvm.sim.clone();
                let Value::Ref(list) = jvm.conn.call(&sim, method, &[])? else {
                    return Err(EnvError::Backend(format!(
                        "ScienceWorld `{method}` did not return a list"
                    )));
                };
                let text = jvm.conn.call(&list, "toString", &[]);
                jvm.conn.release(&list)?;
                let Value::Str(text) = text? else {
                    return Err(EnvError::Backend(format!(
                        "ScienceWorld `{method}`: toString gave no string"
                    )));
                };
                *slot = text
                    .trim_matches(['[', ']'])
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        EnvError::Backend(format!("ScienceWorld `{method}` gave `{text}`: {e}"))
                    })?;
            }
            Ok(out)
        })
    }
}

fn call_str(jvm: &mut Jvm, method: &str, args: &[Arg<'_>]) -> Result<String, EnvError> {
    let sim = jvm.sim.clone();
    match jvm.conn.call(&sim, method, args)? {
        Value::Str(s) => Ok(s),
        Value::Nothing => Ok(String::new()),
        other => Err(EnvError::Backend(format!(
            "ScienceWorld `{method}` returned {other:?}, not a string"
        ))),
    }
}

fn call_list(jvm: &mut Jvm, method: &str) -> Result<Vec<String>, EnvError> {
    let sim = jvm.sim.clone();
    let list = jvm.conn.call(&sim, method, &[])?;
    jvm.conn.string_list(list, method)
}

fn score_and_completed(jvm: &mut Jvm) -> Result<(f64, bool), EnvError> {
    let sim = jvm.sim.clone();
    let score = match jvm.conn.call(&sim, "getScore", &[])? {
        Value::Double(d) => d,
        Value::Int(i) => i as f64,
        other => {
            return Err(EnvError::Backend(format!("ScienceWorld `getScore` returned {other:?}")))
        }
    };
    let completed = match jvm.conn.call(&sim, "getCompleted", &[])? {
        Value::Bool(b) => b,
        other => {
            return Err(EnvError::Backend(format!(
                "ScienceWorld `getCompleted` returned {other:?}"
            )))
        }
    };
    // The Python API reports round(100 * score); keep that rounding, as a fraction.
    Ok(((score * 100.0).round() / 100.0, completed))
}

/// Answers that mean the simulator did nothing with the input.
fn is_invalid(observation: &str) -> bool {
    let o = observation.trim_start();
    o.starts_with("No known action matches that input")
        || o.starts_with("Ambiguous request")
        || o.starts_with("Unknown action")
}

impl Environment for SciEnv {
    fn reset(&mut self, task: TaskId, _seed: u64) -> Result<String, EnvError> {
        let inst = self.shared.instance(task)?;
        let simplification = self.shared.config.simplification.clone();
        if self.shared.config.fresh_jvm_per_episode {
            let fresh = Jvm::start(&self.shared.launch)?;
            *self.jvm.lock().unwrap_or_else(|p| p.into_inner()) = Some(fresh);
        }
        let (goal, gold) = self.with_jvm(|jvm| {
            let loaded = call_str(
                jvm,
                "load",
                &[
                    Arg::Str(inst.spec.name),
                    Arg::Int(inst.variation as i64),
                    Arg::Str(&simplification),
                    Arg::Bool(true),
                ],
            )?;
            if loaded.trim_start().starts_with("ERROR") || loaded.contains("Unknown") {
                return Err(EnvError::Backend(format!(
                    "loading {} variation {}: {}",
                    inst.spec.name,
                    inst.variation,
                    loaded.trim()
                )));
            }
            let gold = call_list(jvm, "getGoldActionSequence")?;
            call_str(jvm, "reset", &[])?;
            call_str(jvm, "step", &[Arg::Str("look around")])?;
            let goal = call_str(jvm, "freeActionTaskDesc", &[])?;
            Ok((goal, gold))
        })?;
        let goal = goal.trim().trim_start_matches("Task Description:").trim().to_string();
        *self.actions.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.episode = Some(Episode {
            inst,
            goal: goal.clone(),
            gold,
            on_gold: true,
            steps: 0,
            max_steps: self.shared.max_steps(inst),
            best: 0.0,
            score: 0.0,
            done: false,
            won: false,
        });
        Ok(goal)
    }

    fn step(&mut self, action: &str) -> Result<StepOutcome, EnvError> {
        let running = self.episode.as_ref().map(|e| !e.done);
        match running {
            None => return Err(EnvError::NotRunning("step called before reset")),
            Some(false) => return Err(EnvError::NotRunning("step called after the episode ended")),
            Some(true) => {}
        }
        let action = action.trim();
        let (observation, (score, completed)) = self.with_jvm(|jvm| {
            let obs = call_str(jvm, "step", &[Arg::Str(action)])?;
            Ok((obs, score_and_completed(jvm)?))
        })?;
        *self.actions.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let ep = self.episode.as_mut().expect("checked above");
        if ep.on_gold && ep.gold.get(ep.steps).map(String::as_str) != Some(action) {
            ep.on_gold = false;
        }
        ep.steps += 1;
        ep.score = score;
        ep.best = ep.best.max(score);
        ep.won = completed && score >= 1.0;
        ep.done = completed || score < 0.0 || ep.steps >= ep.max_steps;
        let reward = if ep.done { ep.best.clamp(0.0, 1.0) } else { 0.0 };
        Ok(StepOutcome {
            valid: !is_invalid(&observation),
            observation: observation.trim_end().to_string(),
            reward,
            done: ep.done,
            won: ep.won,
            steps: ep.steps,
        })
    }

    fn admissible_actions(&self) -> Vec<String> {
        if self.episode.is_none() {
            return Vec::new();
        }
        let mut cached = self.actions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(actions) = cached.as_ref() {
            return actions.clone();
        }
        match self.with_jvm(|jvm| call_list(jvm, "getValidActionObjectCombinations")) {
            Ok(actions) => {
                *cached = Some(actions.clone());
                actions
            }
            Err(e) => {
                tracing::warn!("ScienceWorld valid actions: {e}");
                Vec::new()
            }
        }
    }

    fn expert_step(&self) -> Option<ExpertStep> {
        let ep = self.episode.as_ref()?;
        if ep.done || !ep.on_gold {
            return None;
        }
        let action = ep.gold.get(ep.steps)?;
        Some(ExpertStep {
            thought: expert::thought(&ep.goal, ep.steps, action),
            action: action.clone(),
        })
    }

    fn steps(&self) -> usize {
        self.episode.as_ref().map_or(0, |e| e.steps)
    }
}

impl Drop for SciEnv {
    fn drop(&mut self) {
        let jvm = self.jvm.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut jvm) = jvm {
            if jvm.alive() {
                self.shared.pool.give_back(jvm);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_answers_are_recognised() {
        assert!(is_invalid("No known action matches that input."));
        assert!(is_invalid(
            "Ambiguous request: Please enter the number for the action you intended"
        ));
        assert!(!is_invalid("You teleport to the kitchen."));
    }

    #[test]
    fn options_are_checked() {
        let bad = serde_json::json!({"simplificaton": "easy"});
        let err = registry::parse_options::<SciWorldConfig>(NAME, &bad).unwrap_err().to_string();
        assert!(err.contains("simplificaton"), "{err}");
        let cfg = SciWorldConfig { simplification: "easy,fast".into(), ..Default::default() };
        let err = SciWorld::new(cfg).err().expect("unknown simplification").to_string();
        assert!(err.contains("`fast`"), "{err}");
        let cfg = SciWorldConfig { jar: Some("/nonexistent/sw.jar".into()), ..Default::default() };
        let err = SciWorld::new(cfg).err().expect("missing jar").to_string();
        assert!(err.contains("/nonexistent/sw.jar"), "{err}");
    }

    #[test]
    fn missing_java_names_the_package() {
        let dir = std::env::temp_dir().join(format!("sw-nojava-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jar = dir.join("scienceworld.jar");
        std::fs::write(&jar, b"not a jar").unwrap();
        let cfg = SciWorldConfig {
            jar: Some(jar),
            java: "/nonexistent/java".into(),
            ..Default::default()
        };
        let world = SciWorld::new(cfg).unwrap();
        let err = world.env().err().expect("no java").to_string();
        assert!(err.contains("apt-get install openjdk-17-jre-headless"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
