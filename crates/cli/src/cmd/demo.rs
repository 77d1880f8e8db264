//! `stepagent demo`: the main job on the embedded default, until training lands: the
//! household world's expert against random play, per split and task type.

use clap::Args;

use super::env::{summary, SummaryArgs};
use super::eval::RunArgs;

#[derive(Args)]
pub struct DemoArgs {
    /// Tasks per split.
    #[arg(short = 'n', long, default_value_t = 100)]
    pub n: usize,
    /// The run seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl DemoArgs {
    pub fn run(self) -> anyhow::Result<()> {
        println!("# stepagent demo: expert vs random in the household world\n");
        summary(SummaryArgs {
            world: "household".into(),
            n: self.n,
            split: vec!["train".into(), "seen".into(), "unseen".into()],
            world_options: None,
            run: RunArgs {
                workers: 0,
                seed: self.seed,
                max_steps: None,
                keep_last_turns: None,
                max_chars: None,
            },
        })
    }
}
