//! `stepagent chat`: talk to a model, one-shot or interactively.

use anyhow::Context;
use clap::Args;
use std::io::{BufRead, Write};
use stepagent_lm::{ChatModel, Lm, SamplingConfig};
use stepagent_policy::{Message, Role};

#[derive(Args)]
pub struct ChatArgs {
    /// `default` (SmolLM2-135M-Instruct, fetched on first use), a .gguf file, or a Hugging
    /// Face model directory.
    #[arg(long, default_value = "default")]
    model: String,
    /// Answer this one prompt and exit; without it, read prompts from standard input.
    prompt: Option<String>,
    /// A system prompt.
    #[arg(long)]
    system: Option<String>,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl ChatArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let path = super::model::resolve_model(&self.model)?;
        let lm = Lm::load(&path).with_context(|| format!("loading {}", path.display()))?;
        let cfg = SamplingConfig {
            temperature: self.temperature,
            top_p: self.top_p,
            max_new_tokens: self.max_new_tokens,
            max_batch: 1,
            ..Default::default()
        };
        let mut conv: Vec<Message> = Vec::new();
        if let Some(s) = &self.system {
            conv.push(Message { role: Role::System, content: s.clone() });
        }
        if let Some(p) = self.prompt {
            conv.push(Message::user(p));
            let out = lm.generate(&[conv], &cfg, &[self.seed])?;
            println!("{}", out[0].text.trim());
            return Ok(());
        }
        eprintln!("chatting with {} (an empty line or end of input quits)", lm.name());
        let stdin = std::io::stdin();
        let mut turn = 0u64;
        loop {
            eprint!("> ");
            std::io::stderr().flush()?;
            let mut line = String::new();
            if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
                return Ok(());
            }
            conv.push(Message::user(line.trim()));
            let out =
                lm.generate(std::slice::from_ref(&conv), &cfg, &[self.seed.wrapping_add(turn)])?;
            let text = out[0].text.trim().to_string();
            println!("{text}");
            conv.push(Message::assistant(text));
            turn += 1;
        }
    }
}
