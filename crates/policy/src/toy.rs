//! A tiny world for tests, examples and benchmarks of code that runs agents, so they need not
//! wait for (or depend on the details of) a real benchmark.
//!
//! The agent stands on cell 0 of a line and must walk to a goal cell and say `stop` there.
//! Actions: `move left`, `move right`, `stop`, `look`. Task `split/i` has its goal at
//! `1 + i % 5` (train), `2 + i % 4` (seen) or `3 + i % 6` (unseen); its type is `near` for
//! goals up to 3 and `far` beyond.

use std::sync::Arc;

use stepagent_env::{
    EnvError, Environment, ExpertStep, Split, StepOutcome, TaskId, World, WorldRef,
};

/// The line world. See the module docs.
#[derive(Debug, Clone)]
pub struct LineWorld {
    /// Tasks per split.
    pub tasks: usize,
    /// Steps after which an episode ends unsolved.
    pub max_steps: usize,
}

impl Default for LineWorld {
    fn default() -> Self {
        LineWorld { tasks: 50, max_steps: 12 }
    }
}

impl LineWorld {
    /// A shared handle.
    pub fn shared(self) -> WorldRef {
        Arc::new(self)
    }

    fn goal(task: TaskId) -> usize {
        match task.split {
            Split::Train => 1 + task.index % 5,
            Split::Seen => 2 + task.index % 4,
            Split::Unseen => 3 + task.index % 6,
        }
    }
}

const INSTRUCTION: &str = "Walk along a line to the goal cell and stop there. Actions: move left, move right, stop, look.\nReply as \"Thought: your thoughts.\\nAction: your next action\".";

impl World for LineWorld {
    fn name(&self) -> &str {
        "line"
    }

    fn instruction(&self) -> &str {
        INSTRUCTION
    }

    fn num_tasks(&self, _split: Split) -> usize {
        self.tasks
    }

    fn task_type(&self, task: TaskId) -> Result<String, EnvError> {
        self.check_task(task)?;
        Ok(if Self::goal(task) <= 3 { "near" } else { "far" }.into())
    }

    fn max_steps(&self) -> usize {
        self.max_steps
    }

    fn new_env(&self) -> Result<Box<dyn Environment>, EnvError> {
        Ok(Box::new(LineEnv { world: self.clone(), goal: 0, pos: 0, steps: 0, done: true }))
    }
}

struct LineEnv {
    world: LineWorld,
    goal: usize,
    pos: usize,
    steps: usize,
    done: bool,
}

impl Environment for LineEnv {
    fn reset(&mut self, task: TaskId, _seed: u64) -> Result<String, EnvError> {
        self.world.check_task(task)?;
        self.goal = LineWorld::goal(task);
        self.pos = 0;
        self.steps = 0;
        self.done = false;
        Ok(format!("You are on cell 0.\n\nYour task is to: stop on cell {}.", self.goal))
    }

    fn step(&mut self, action: &str) -> Result<StepOutcome, EnvError> {
        if self.done {
            return Err(EnvError::NotRunning("step after the episode ended"));
        }
        self.steps += 1;
        let (observation, valid, won) = match action.trim() {
            "move left" if self.pos > 0 => {
                self.pos -= 1;
                (format!("You are on cell {}.", self.pos), true, false)
            }
            "move right" => {
                self.pos += 1;
                (format!("You are on cell {}.", self.pos), true, false)
            }
            "look" => (format!("You are on cell {}.", self.pos), true, false),
            "stop" => {
                self.done = true;
                ("You stop.".to_string(), true, self.pos == self.goal)
            }
            _ => ("Nothing happens.".to_string(), false, false),
        };
        if self.steps >= self.world.max_steps {
            self.done = true;
        }
        Ok(StepOutcome {
            observation,
            reward: if won { 1.0 } else { 0.0 },
            done: self.done,
            won,
            valid,
            steps: self.steps,
        })
    }

    fn admissible_actions(&self) -> Vec<String> {
        let mut a = vec!["look".to_string(), "move right".to_string(), "stop".to_string()];
        if self.pos > 0 {
            a.push("move left".into());
        }
        a
    }

    fn expert_step(&self) -> Option<ExpertStep> {
        if self.done {
            return None;
        }
        let (thought, action) = if self.pos < self.goal {
            (
                format!(
                    "The goal is cell {}, I am on cell {}: keep going right.",
                    self.goal, self.pos
                ),
                "move right",
            )
        } else if self.pos > self.goal {
            (format!("I passed cell {}; go back.", self.goal), "move left")
        } else {
            (format!("I am on cell {}, the goal.", self.goal), "stop")
        };
        Some(ExpertStep { thought, action: action.into() })
    }

    fn steps(&self) -> usize {
        self.steps
    }
}
