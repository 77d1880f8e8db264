//! `stepagent env …`: the worlds.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context;
use clap::{Args, Subcommand};
use stepagent_data::Dataset;
use stepagent_env::{registry, Split, TaskId};
use stepagent_eval::{evaluate, sft_record_of, versus_markdown, EvalConfig};
use stepagent_policy::policies::{ExpertPolicy, RandomPolicy};
use stepagent_policy::runner::{RunConfig, RunError, Runner};
use stepagent_policy::{ActContext, Policy, PolicyError, Role};

use super::data::ShapeArg;
use super::eval::{open_world, parse_splits, progress, tick, RunArgs};

#[derive(Subcommand)]
pub enum EnvCommand {
    /// List the registered worlds.
    List,
    /// Play a task yourself: type actions, see observations (works piped, too).
    Play(PlayArgs),
    /// Write expert trajectories as ETO-format SFT JSON.
    Expert(ExpertArgs),
    /// Expert vs random success per split and task type, as a markdown table.
    Summary(SummaryArgs),
    /// Serve a world over HTTP with AgentGym's routes (plus /health, expiry, a session cap).
    Serve(super::serve::ServeArgs),
}

#[derive(Args)]
pub struct PlayArgs {
    /// The world.
    pub world: String,
    /// The task, `split/index` (a bare index means a training task).
    #[arg(long, default_value = "train/0")]
    pub task: String,
    /// The episode seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The world's options as JSON.
    #[arg(long, value_name = "JSON")]
    pub world_options: Option<String>,
}

#[derive(Args)]
pub struct ExpertArgs {
    /// The world.
    pub world: String,
    /// The split to take tasks from.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// How many tasks (the first N; default all).
    #[arg(short = 'n', long)]
    pub n: Option<usize>,
    /// The output file.
    #[arg(long)]
    pub out: PathBuf,
    /// The turn shape to write.
    #[arg(long, value_enum, default_value = "from-value")]
    pub shape: ShapeArg,
    /// The world's options as JSON.
    #[arg(long, value_name = "JSON")]
    pub world_options: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args)]
pub struct SummaryArgs {
    /// The world.
    #[arg(default_value = "household")]
    pub world: String,
    /// Tasks per split.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub n: usize,
    /// Splits, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "train,seen,unseen")]
    pub split: Vec<String>,
    /// The world's options as JSON.
    #[arg(long, value_name = "JSON")]
    pub world_options: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

impl EnvCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            EnvCommand::List => {
                for e in registry::entries() {
                    println!("{:<12} {}", e.name, e.summary);
                }
                Ok(())
            }
            EnvCommand::Play(a) => play(a),
            EnvCommand::Expert(a) => expert(a),
            EnvCommand::Summary(a) => summary(a),
            EnvCommand::Serve(a) => a.run(),
        }
    }
}

/// A person at the keyboard as a policy, so play goes through the one episode runner.
struct Keyboard {
    input: Mutex<Box<dyn BufRead + Send>>,
    interactive: bool,
}

const PLAY_HELP: &str = "Type an action (e.g. `go to countertop 1`), or a full `Thought: …\\nAction: …` reply on one line.\n\
Commands: :actions (the admissible actions), :expert (the expert's next move), :help, :quit.";

impl Policy for Keyboard {
    fn name(&self) -> String {
        "human".into()
    }

    fn act(&self, ctx: &ActContext<'_>) -> Result<String, PolicyError> {
        if let Some(m) = ctx.conversation.last().filter(|m| m.role == Role::User) {
            println!("{}\n", m.content);
        }
        let mut input = self.input.lock().expect("one episode at a time");
        loop {
            if self.interactive {
                print!("> ");
                let _ = std::io::stdout().flush();
            }
            let mut line = String::new();
            let read = input.read_line(&mut line).map_err(|e| PolicyError::Backend {
                policy: self.name(),
                message: e.to_string(),
            })?;
            let line = line.trim();
            let quit = || PolicyError::NoAction {
                policy: "human".into(),
                task: ctx.task,
                reason: "you stopped".into(),
            };
            match line {
                _ if read == 0 => return Err(quit()),
                "" => continue,
                ":quit" | ":q" => return Err(quit()),
                ":help" => println!("{PLAY_HELP}"),
                ":actions" => {
                    let mut a = ctx.env.admissible_actions();
                    a.sort();
                    println!("{}", a.join("\n"));
                }
                ":expert" => match ctx.env.expert_step() {
                    Some(s) => println!("{}", s.to_turn()),
                    None => println!("(the expert has no move)"),
                },
                _ if line.contains("Action:") => return Ok(line.replace("\\n", "\n")),
                _ => return Ok(format!("Action: {line}")),
            }
        }
    }
}

fn play(a: PlayArgs) -> anyhow::Result<()> {
    let world = open_world(&a.world, a.world_options.as_deref())?;
    // A bare number is a training task, as in `--task 3`.
    let task: TaskId = match a.task.trim().parse::<usize>() {
        Ok(i) => TaskId::new(Split::Train, i),
        Err(_) => a.task.parse()?,
    };
    world.check_task(task)?;
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    if interactive {
        println!("{PLAY_HELP}\n");
    }
    let keyboard =
        Keyboard { input: Mutex::new(Box::new(std::io::BufReader::new(stdin))), interactive };
    let cfg = RunConfig { workers: 1, seed: a.seed, ..RunConfig::default() };
    let runner = Runner::new(&*world, &keyboard, cfg);
    match runner.run(&[task], &mut |_| Ok(())) {
        Ok(mut eps) => {
            let e = eps.remove(0);
            if let Some(last) = e.conversation.last().filter(|m| m.role == Role::User) {
                println!("{}\n", last.content);
            }
            let verdict = if e.won { "solved" } else { "not solved" };
            println!(
                "Episode over: {verdict}, reward {}, {} steps ({} invalid).",
                e.reward, e.steps, e.invalid_actions
            );
            Ok(())
        }
        Err(RunError::Policy { source: PolicyError::NoAction { .. }, .. }) => {
            println!("Stopped.");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn expert(a: ExpertArgs) -> anyhow::Result<()> {
    let world = open_world(&a.world, a.world_options.as_deref())?;
    let split: Split = a.split.parse()?;
    let len = world.num_tasks(split);
    let n = a.n.map_or(len, |n| n.min(len));
    if a.n.is_some_and(|want| want > len) {
        eprintln!("the {split} split of `{}` has {len} tasks; writing all of them", world.name());
    }
    let tasks: Vec<TaskId> = (0..n).map(|i| TaskId::new(split, i)).collect();
    let runner = Runner::new(&*world, &ExpertPolicy, a.run.config());
    let bar = progress(n, "expert");
    let mut wins = 0;
    let episodes = runner.run(&tasks, &mut |e| {
        tick(&bar, &mut wins, e);
        Ok(())
    })?;
    bar.finish_and_clear();
    // SFT data teaches what succeeds: an unsolved expert episode is a bug to report, not data.
    let failed: Vec<String> =
        episodes.iter().filter(|e| !e.won).map(|e| e.task.to_string()).collect();
    let records = episodes.iter().filter(|e| e.won).map(sft_record_of).collect();
    let data = Dataset::Sft { records, shape: a.shape.into() };
    data.save(&a.out, None).with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "wrote {} expert trajectories of `{}` ({split}) to {}",
        data.len(),
        world.name(),
        a.out.display()
    );
    if !failed.is_empty() {
        eprintln!(
            "the expert did not solve {} tasks, left out: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// The expert-vs-random table for `world`; the README's demo.
pub fn summary(a: SummaryArgs) -> anyhow::Result<()> {
    let world = open_world(&a.world, a.world_options.as_deref())?;
    let cfg = EvalConfig { splits: parse_splits(&a.split)?, n: Some(a.n), run: a.run.config() };
    let total = cfg.tasks(&*world).len();
    let mut reports = Vec::new();
    let started = std::time::Instant::now();
    let mut steps = 0;
    for policy in [&ExpertPolicy as &dyn Policy, &RandomPolicy] {
        let bar = progress(total, &policy.name());
        let mut wins = 0;
        let r = evaluate(&*world, policy, &cfg, None, &mut |e| {
            steps += e.steps;
            tick(&bar, &mut wins, e)
        })?;
        bar.finish_and_clear();
        reports.push(r);
    }
    print!("{}", versus_markdown(&reports.iter().collect::<Vec<_>>()));
    let secs = started.elapsed().as_secs_f64();
    println!(
        "\n{} episodes, {steps} steps in {secs:.1}s; at most {} steps per episode; seed {}.",
        2 * total,
        world.max_steps(),
        a.run.seed
    );
    Ok(())
}
