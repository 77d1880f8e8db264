//! The language-model engine: chat LLMs (Llama, Qwen2, Mistral families) on candle.
//!
//! - [`model`]: one differentiable transformer for every family, logits for all positions.
//! - [`gguf`], [`checkpoint`]: loading GGUF files and Hugging Face directories; saving the
//!   latter atomically. [`fetch`]: the default model, SmolLM2-135M-Instruct.
//! - [`tokenizer`], [`chat`]: tokenizers (also built from GGUF metadata) and chat templates
//!   with assistant masks.
//! - [`generate`]: KV-cache decoding, sampling, stop strings, batched, prefix reuse.
//! - [`score`]: differentiable log-probs of spans; [`train`]: LoRA, heads, SFT loss, AdamW.
//! - [`engine`]: [`Lm`] (all of the above behind one value), the [`ChatModel`] trait the
//!   algorithms use, and [`LmPolicy`] for the episode runner.
#![warn(missing_docs)]

pub mod chat;
pub mod checkpoint;
pub mod config;
pub mod engine;
mod error;
pub mod fetch;
pub mod generate;
pub mod gguf;
pub mod kernels;
pub mod model;
pub mod score;
pub mod tokenizer;
pub mod train;

pub use chat::{ChatTemplate, Rendered};
pub use config::{Arch, ModelConfig};
pub use engine::{ChatModel, EpisodeCaches, Lm, LmPolicy};
pub use error::{LmError, Result};
pub use generate::{Finish, Generation, PromptCache, SamplingConfig};
pub use score::{branch_hidden, branch_logprobs, branch_token_rows, packed_hidden, BranchQuery};
pub use train::{AdamW, LoraConfig, OptimConfig, ScalarHead};

#[cfg(test)]
mod tests;
