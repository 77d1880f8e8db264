//! The model configuration: one struct covers every supported family through switches.

use crate::error::{LmError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The model family. They share one module; the switches below are what differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Llama 2/3, SmolLM2, TinyLlama.
    Llama,
    /// Qwen2 / Qwen2.5: q/k/v projections carry a bias.
    Qwen2,
    /// Mistral 7B style (sliding window ignored: our contexts are short).
    Mistral,
}

impl Arch {
    /// Parses a Hugging Face `model_type` or GGUF `general.architecture`.
    pub fn parse(name: &str) -> Option<Arch> {
        match name {
            "llama" => Some(Arch::Llama),
            "qwen2" => Some(Arch::Qwen2),
            "mistral" => Some(Arch::Mistral),
            _ => None,
        }
    }

    /// The Hugging Face `model_type`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Mistral => "mistral",
        }
    }

    fn hf_class(self) -> &'static str {
        match self {
            Arch::Llama => "LlamaForCausalLM",
            Arch::Qwen2 => "Qwen2ForCausalLM",
            Arch::Mistral => "MistralForCausalLM",
        }
    }
}

/// Shapes and constants of a decoder-only transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The family.
    pub arch: Arch,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the gated MLP.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Longest context the RoPE tables are built for.
    pub max_position_embeddings: usize,
    /// The output projection shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v projections have a bias (Qwen2).
    pub attention_bias: bool,
    /// Beginning-of-sequence token id, if the model has one.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id, if the model has one.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

impl ModelConfig {
    /// A tiny random-sized model for tests: fast, yet with grouped-query attention and every
    /// switch of `arch` exercised.
    pub fn tiny(arch: Arch, vocab_size: usize) -> Self {
        ModelConfig {
            arch,
            vocab_size,
            hidden_size: 32,
            intermediate_size: 48,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 8,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            max_position_embeddings: 512,
            tie_word_embeddings: arch == Arch::Llama,
            attention_bias: arch == Arch::Qwen2,
            bos_token_id: None,
            eos_token_id: None,
        }
    }

    /// Checks the shapes are consistent.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |key: &str, msg: &str| Err(LmError::config(path, key, msg));
        if self.num_heads == 0
            || self.num_kv_heads == 0
            || !self.num_heads.is_multiple_of(self.num_kv_heads)
        {
            return bad("num_key_value_heads", "must divide num_attention_heads");
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad("head_dim", "must be even and positive");
        }
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_layers == 0 {
            return bad("hidden_size", "sizes must be positive");
        }
        Ok(())
    }

    /// Reads a Hugging Face `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| LmError::io(path, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| LmError::format(path, e.to_string()))?;
        let arch_name = v.get("model_type").and_then(|x| x.as_str()).unwrap_or("");
        let arch = Arch::parse(arch_name).ok_or_else(|| LmError::UnknownArchitecture {
            path: path.into(),
            arch: arch_name.to_string(),
        })?;
        let int = |key: &str| -> Result<usize> {
            v.get(key)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| LmError::config(path, key, "missing or not an integer"))
        };
        let float =
            |key: &str, default: f64| v.get(key).and_then(|x| x.as_f64()).unwrap_or(default);
        let token = |key: &str| match v.get(key) {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|x| x as u32),
            Some(serde_json::Value::Array(a)) => {
                a.first().and_then(|x| x.as_u64()).map(|x| x as u32)
            }
            _ => None,
        };
        let hidden_size = int("hidden_size")?;
        let num_heads = int("num_attention_heads")?;
        let cfg = ModelConfig {
            arch,
            vocab_size: int("vocab_size")?,
            hidden_size,
            intermediate_size: int("intermediate_size")?,
            num_layers: int("num_hidden_layers")?,
            num_heads,
            num_kv_heads: int("num_key_value_heads").unwrap_or(num_heads),
            head_dim: int("head_dim").unwrap_or(hidden_size / num_heads.max(1)),
            rms_norm_eps: float("rms_norm_eps", 1e-6),
            rope_theta: float("rope_theta", 10000.0),
            max_position_embeddings: int("max_position_embeddings").unwrap_or(4096),
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(|x| x.as_bool())
                .unwrap_or(false),
            attention_bias: v
                .get("attention_bias")
                .and_then(|x| x.as_bool())
                .unwrap_or(arch == Arch::Qwen2),
            bos_token_id: token("bos_token_id"),
            eos_token_id: token("eos_token_id"),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// The Hugging Face `config.json` `transformers` reads for this model.
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "architectures": [self.arch.hf_class()],
            "model_type": self.arch.name(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        });
        if self.arch != Arch::Qwen2 {
            v["attention_bias"] = serde_json::json!(self.attention_bias);
        }
        if let Some(b) = self.bos_token_id {
            v["bos_token_id"] = b.into();
        }
        if let Some(e) = self.eos_token_id {
            v["eos_token_id"] = e.into();
        }
        v
    }

    /// Parameters in the model (for reports).
    pub fn num_parameters(&self) -> usize {
        let h = self.hidden_size;
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let bias = if self.attention_bias { q + 2 * kv } else { 0 };
        let block = 2 * h + h * q + 2 * h * kv + q * h + bias + 3 * h * self.intermediate_size;
        let head = if self.tie_word_embeddings { 0 } else { self.vocab_size * h };
        self.vocab_size * h + self.num_layers * block + h + head
    }
}
