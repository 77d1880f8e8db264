//! A tiny deterministic world for the server tests: reach a target number with `inc` / `dec`,
//! then `submit`.

use stepagent_env::{EnvError, Environment, ExpertStep, Split, StepOutcome, TaskId, World};

pub struct CountWorld;

impl World for CountWorld {
    fn name(&self) -> &str {
        "count"
    }
    fn instruction(&self) -> &str {
        "Reach the target number with inc or dec, then submit.\nThought: …\nAction: …"
    }
    fn num_tasks(&self, split: Split) -> usize {
        match split {
            Split::Train => 6,
            Split::Seen => 3,
            Split::Unseen => 4,
        }
    }
    fn task_type(&self, task: TaskId) -> Result<String, EnvError> {
        self.check_task(task)?;
        Ok(["even", "odd"][task.index % 2].to_string())
    }
    fn max_steps(&self) -> usize {
        12
    }
    fn new_env(&self) -> Result<Box<dyn Environment>, EnvError> {
        Ok(Box::new(CountEnv::default()))
    }
}

#[derive(Default)]
pub struct CountEnv {
    target: i64,
    value: i64,
    steps: usize,
    done: bool,
}

impl Environment for CountEnv {
    fn reset(&mut self, task: TaskId, seed: u64) -> Result<String, EnvError> {
        CountWorld.check_task(task)?;
        let split = match task.split {
            Split::Train => 0,
            Split::Seen => 10,
            Split::Unseen => 20,
        };
        self.target = (split + task.index as i64) % 7 - 2;
        self.value = (seed % 3) as i64;
        self.steps = 0;
        self.done = false;
        Ok(format!(
            "The counter shows {}. Your task is to: make it show {}.",
            self.value, self.target
        ))
    }
    fn step(&mut self, action: &str) -> Result<StepOutcome, EnvError> {
        if self.done {
            return Err(EnvError::NotRunning("step called after the episode ended"));
        }
        self.steps += 1;
        let (observation, valid, won) = match action.trim() {
            "inc" => {
                self.value += 1;
                (format!("The counter shows {}.", self.value), true, false)
            }
            "dec" => {
                self.value -= 1;
                (format!("The counter shows {}.", self.value), true, false)
            }
            "submit" => {
                let won = self.value == self.target;
                (if won { "Correct.".to_string() } else { "Wrong.".to_string() }, true, won)
            }
            _ => ("Nothing happens.".to_string(), false, false),
        };
        self.done = action.trim() == "submit" || self.steps >= 12;
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
        vec!["inc".into(), "dec".into(), "submit".into()]
    }
    fn expert_step(&self) -> Option<ExpertStep> {
        if self.done {
            return None;
        }
        let (thought, action) = if self.value < self.target {
            (format!("{} is below {}.", self.value, self.target), "inc")
        } else if self.value > self.target {
            (format!("{} is above {}.", self.value, self.target), "dec")
        } else {
            ("The counter is right.".to_string(), "submit")
        };
        Some(ExpertStep { thought, action: action.into() })
    }
    fn steps(&self) -> usize {
        self.steps
    }
}
