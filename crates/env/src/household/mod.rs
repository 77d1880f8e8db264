//! The household world: a native, ALFWorld-faithful text world.
//!
//! ALFWorld's six task types with its goal phrasings; rooms from ALFRED's 120 floor plans
//! (which receptacles, how many, which objects; embedded from the `alfworld` wheel, see
//! `data/household/README.md`); ALFWorld's command grammar and the exact observation texts
//! of its TextWorld engine, as ETO's trajectories show them (without the "You arrive at loc
//! N." prefix). Tasks are generated from (floor plan, task type, goal) by task id, with objects
//! placed by a seeded sampler; the unseen split uses ALFRED's held-out rooms. A task can also
//! be given as a [`SceneSpec`] (JSON), and a recorded ETO trajectory can be turned back into
//! one with [`spec_from_trajectory`].
//!
//! Speed (`cargo bench -p stepagent-env --bench household`, one core of a busy 2-core build
//! machine): about 550k steps/s over the expert's episodes and 4k resets/s.
//!
//! ```
//! use stepagent_env::household::{HouseholdConfig, HouseholdWorld};
//! use stepagent_env::{Split, TaskId, World};
//!
//! let world = HouseholdWorld::new(HouseholdConfig::default()).unwrap();
//! let mut env = world.new_env().unwrap();
//! let first = env.reset(TaskId::new(Split::Train, 0), 0).unwrap();
//! assert!(first.starts_with("You are in the middle of a room."));
//! // The expert solves it.
//! while let Some(turn) = env.expert_step() {
//!     let out = env.step(&turn.action).unwrap();
//!     if out.done {
//!         assert!(out.won);
//!         break;
//!     }
//! }
//! ```

mod catalog;
mod expert;
mod generate;
mod replay;
mod scene;
mod spec;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use replay::{spec_from_trajectory, RecordedStep};
pub use spec::{GoalSpec, ObjectState, ReceptacleSpec, SceneSpec, TaskType};

use crate::registry::{self, WorldOptions};
use crate::{EnvError, Environment, ExpertStep, Split, StepOutcome, TaskId, World, WorldRef};
use expert::ExpertPlan;
use generate::{mix, Generator};
use scene::{Scene, NOTHING_HAPPENS};

/// The registry name.
pub const NAME: &str = "household";

/// ETO's ALFWorld instruction prompt (turn 0), verbatim, its typos included: the agents
/// trained on ETO's data have seen exactly this text.
pub const INSTRUCTION: &str = include_str!("../../data/household/instruction.txt");

/// Options of the household world (`[world.options]` in a TOML config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HouseholdConfig {
    /// Steps after which an episode ends unsolved. Default 40, as ETO runs ALFWorld.
    pub max_steps: usize,
    /// Generated training tasks. Default 10,000.
    pub train_tasks: usize,
    /// Generated held-out tasks in training rooms. Default 1,000.
    pub seen_tasks: usize,
    /// Generated held-out tasks in ALFRED's unseen rooms. Default 1,000.
    pub unseen_tasks: usize,
}

impl Default for HouseholdConfig {
    fn default() -> Self {
        HouseholdConfig {
            max_steps: 40,
            train_tasks: 10_000,
            seen_tasks: 1_000,
            unseen_tasks: 1_000,
        }
    }
}

#[derive(Debug)]
enum Source {
    Generated { generator: &'static Generator, counts: [usize; 3] },
    Specs([Vec<SceneSpec>; 3]),
}

fn split_slot(split: Split) -> usize {
    match split {
        Split::Train => 0,
        Split::Seen => 1,
        Split::Unseen => 2,
    }
}

impl Source {
    fn len(&self, split: Split) -> usize {
        match self {
            Source::Generated { counts, .. } => counts[split_slot(split)],
            Source::Specs(specs) => specs[split_slot(split)].len(),
        }
    }

    fn check(&self, task: TaskId) -> Result<(), EnvError> {
        let len = self.len(task.split);
        if task.index < len {
            Ok(())
        } else {
            Err(EnvError::NoSuchTask {
                world: NAME.into(),
                split: task.split.to_string(),
                task: task.to_string(),
                len,
            })
        }
    }

    fn spec(&self, task: TaskId, seed: u64) -> Result<SceneSpec, EnvError> {
        self.check(task)?;
        match self {
            Source::Generated { generator, .. } => Ok(generator.scene(task, seed)?.1),
            Source::Specs(specs) => Ok(specs[split_slot(task.split)][task.index].clone()),
        }
    }
}

/// The household world: generated ALFWorld-style tasks, or the tasks of given scene specs.
#[derive(Debug, Clone)]
pub struct HouseholdWorld {
    config: HouseholdConfig,
    source: Arc<Source>,
}

impl HouseholdWorld {
    /// The world of generated tasks.
    pub fn new(config: HouseholdConfig) -> Result<HouseholdWorld, EnvError> {
        check_config(&config)?;
        let counts = [config.train_tasks, config.seen_tasks, config.unseen_tasks];
        Ok(HouseholdWorld {
            config,
            source: Arc::new(Source::Generated { generator: Generator::shared(), counts }),
        })
    }

    /// A world whose tasks are the given scenes, each in its split (task indices follow the
    /// order given). The task-count options are ignored.
    pub fn from_specs(
        specs: impl IntoIterator<Item = (Split, SceneSpec)>,
        config: HouseholdConfig,
    ) -> Result<HouseholdWorld, EnvError> {
        check_config(&config)?;
        let mut by_split: [Vec<SceneSpec>; 3] = Default::default();
        for (i, (split, spec)) in specs.into_iter().enumerate() {
            spec.validate().map_err(|e| EnvError::BadSpec(format!("scene {i}: {e}")))?;
            by_split[split_slot(split)].push(spec);
        }
        Ok(HouseholdWorld { config, source: Arc::new(Source::Specs(by_split)) })
    }

    /// The world from registry options (`null` for all defaults).
    pub fn from_options(options: &WorldOptions) -> Result<HouseholdWorld, EnvError> {
        HouseholdWorld::new(registry::parse_options(NAME, options)?)
    }

    /// The options in use.
    pub fn config(&self) -> &HouseholdConfig {
        &self.config
    }

    /// The scene a task starts from with `seed`: to export a generated task as JSON.
    pub fn scene_spec(&self, task: TaskId, seed: u64) -> Result<SceneSpec, EnvError> {
        self.source.spec(task, seed)
    }

    /// The ALFRED floor plan a generated task uses (`None` for a world of given scenes).
    pub fn floor_plan(&self, task: TaskId) -> Result<Option<u32>, EnvError> {
        self.source.check(task)?;
        match &*self.source {
            Source::Generated { generator, .. } => Ok(Some(generator.scene(task, 0)?.0)),
            Source::Specs(_) => Ok(None),
        }
    }

    /// A fresh episode runner with its concrete type.
    pub fn env(&self) -> HouseholdEnv {
        HouseholdEnv {
            source: self.source.clone(),
            max_steps: self.config.max_steps,
            episode: None,
        }
    }
}

fn check_config(config: &HouseholdConfig) -> Result<(), EnvError> {
    if config.max_steps == 0 {
        return Err(EnvError::BadOptions {
            world: NAME.into(),
            message: "max_steps must be at least 1".into(),
        });
    }
    Ok(())
}

/// Opens the world for the registry.
pub fn open(options: &WorldOptions) -> Result<WorldRef, EnvError> {
    Ok(registry::shared(HouseholdWorld::from_options(options)?))
}

impl World for HouseholdWorld {
    fn name(&self) -> &str {
        NAME
    }

    fn instruction(&self) -> &str {
        INSTRUCTION
    }

    fn num_tasks(&self, split: Split) -> usize {
        self.source.len(split)
    }

    fn task_type(&self, task: TaskId) -> Result<String, EnvError> {
        self.source.check(task)?;
        Ok(match &*self.source {
            Source::Generated { .. } => Generator::task_type(task).as_str().to_string(),
            Source::Specs(specs) => {
                specs[split_slot(task.split)][task.index].goal.task_type.as_str().to_string()
            }
        })
    }

    fn max_steps(&self) -> usize {
        self.config.max_steps
    }

    fn new_env(&self) -> Result<Box<dyn Environment>, EnvError> {
        Ok(Box::new(self.env()))
    }
}

#[derive(Debug, Clone)]
struct Episode {
    scene: Scene,
    plan: ExpertPlan,
    steps: usize,
    done: bool,
}

/// One running household episode.
#[derive(Debug, Clone)]
pub struct HouseholdEnv {
    source: Arc<Source>,
    max_steps: usize,
    episode: Option<Episode>,
}

impl HouseholdEnv {
    /// The goal sentence of the current task (after "Your task is to: ").
    pub fn goal_text(&self) -> Option<&str> {
        self.episode.as_ref().map(|e| e.scene.goal.text.as_str())
    }

    /// Whether the current task's goal holds.
    pub fn won(&self) -> bool {
        self.episode.as_ref().is_some_and(|e| e.scene.won())
    }
}

impl Environment for HouseholdEnv {
    fn reset(&mut self, task: TaskId, seed: u64) -> Result<String, EnvError> {
        let spec = self.source.spec(task, seed)?;
        let scene = Scene::from_spec(&spec)?;
        let plan = ExpertPlan::new(&scene, mix(Generator::task_hash(task) ^ mix(seed)));
        let first = scene.first_observation();
        self.episode = Some(Episode { scene, plan, steps: 0, done: false });
        Ok(first)
    }

    fn step(&mut self, action: &str) -> Result<StepOutcome, EnvError> {
        let ep = self
            .episode
            .as_mut()
            .ok_or(EnvError::NotRunning("household: step called before reset"))?;
        if ep.done {
            return Err(EnvError::NotRunning(
                "household: the episode is over; reset to start another",
            ));
        }
        ep.steps += 1;
        let (observation, valid) = match ep.scene.act(action) {
            Some(obs) => (obs, true),
            None => (NOTHING_HAPPENS.to_string(), false),
        };
        let won = valid && ep.scene.won();
        ep.done = won || ep.steps >= self.max_steps;
        Ok(StepOutcome {
            observation,
            reward: if won { 1.0 } else { 0.0 },
            done: ep.done,
            won,
            valid,
            steps: ep.steps,
        })
    }

    fn admissible_actions(&self) -> Vec<String> {
        match &self.episode {
            Some(ep) if !ep.done => ep.scene.admissible(),
            _ => Vec::new(),
        }
    }

    fn expert_step(&self) -> Option<ExpertStep> {
        let ep = self.episode.as_ref().filter(|e| !e.done)?;
        expert::next_step(&ep.scene, &ep.plan, ep.steps)
    }

    fn steps(&self) -> usize {
        self.episode.as_ref().map_or(0, |e| e.steps)
    }
}
