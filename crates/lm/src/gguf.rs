//! GGUF files (llama.cpp): config, weights (dequantised to f32) and tokenizer from one file.

use crate::chat::ChatTemplate;
use crate::config::{Arch, ModelConfig};
use crate::error::{LmError, Result};
use crate::tokenizer::Tokenizer;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// What a model file holds.
pub struct ModelFiles {
    /// Shapes and constants.
    pub config: ModelConfig,
    /// Weights under Hugging Face names, f32, rotate-half RoPE layout.
    pub weights: HashMap<String, Tensor>,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The chat template, when the file names one we implement.
    pub template: Option<ChatTemplate>,
}

/// GGUF tensor-name stems and their Hugging Face counterparts inside a block.
const BLOCK_NAMES: [(&str, &str); 9] = [
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

fn gguf_to_hf(name: &str) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (stem, kind) = rest.rsplit_once('.')?;
    let hf = BLOCK_NAMES.iter().find(|(g, _)| *g == stem)?.1;
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

fn hf_to_gguf(name: &str) -> Option<String> {
    match name {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (stem, kind) = rest.rsplit_once('.')?;
    let g = BLOCK_NAMES.iter().find(|(_, h)| *h == stem)?.0;
    Some(format!("blk.{layer}.{g}.{kind}"))
}

/// llama.cpp stores Llama q/k rows interleaved per head (pairs `(x0, x1)` rotate together);
/// Hugging Face stores them as two halves. `to_halves` undoes llama.cpp's permutation.
fn permute_rope_rows(w: &Tensor, heads: usize, to_halves: bool) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let rows = dims[0];
    let rest: Vec<usize> = dims[1..].to_vec();
    let d = rows / heads;
    let mut shape = vec![heads, 0, 0];
    shape.extend(&rest);
    if to_halves {
        shape[1] = d / 2;
        shape[2] = 2;
    } else {
        shape[1] = 2;
        shape[2] = d / 2;
    }
    Ok(w.reshape(shape)?.transpose(1, 2)?.contiguous()?.reshape(dims)?)
}

struct Meta<'a> {
    path: &'a Path,
    md: &'a HashMap<String, Value>,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Result<&Value> {
        self.md
            .get(key)
            .ok_or_else(|| LmError::config(self.path, key, "missing from the GGUF metadata"))
    }
    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key)?;
        v.to_u64()
            .map(|x| x as usize)
            .or_else(|_| v.to_u32().map(|x| x as usize))
            .or_else(|_| v.to_i32().map(|x| x as usize))
            .map_err(|e| LmError::config(self.path, key, e.to_string()))
    }
    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.md.get(key) {
            None => Ok(default),
            Some(v) => v
                .to_f32()
                .map(f64::from)
                .or_else(|_| v.to_f64())
                .map_err(|e| LmError::config(self.path, key, e.to_string())),
        }
    }
    fn u32_opt(&self, key: &str) -> Option<u32> {
        self.md.get(key).and_then(|v| v.to_u32().ok())
    }
    fn str(&self, key: &str) -> Result<&str> {
        self.get(key)?
            .to_string()
            .map(|s| s.as_str())
            .map_err(|e| LmError::config(self.path, key, e.to_string()))
    }
    fn strings(&self, key: &str) -> Result<Vec<String>> {
        let arr =
            self.get(key)?.to_vec().map_err(|e| LmError::config(self.path, key, e.to_string()))?;
        arr.iter()
            .map(|v| {
                v.to_string().cloned().map_err(|e| LmError::config(self.path, key, e.to_string()))
            })
            .collect()
    }
}

/// Reads a GGUF model: config from the metadata, every tensor dequantised to f32 under its
/// Hugging Face name, the byte-level BPE tokenizer and the chat template.
pub fn load_gguf(path: &Path, device: &Device) -> Result<ModelFiles> {
    let mut file = std::fs::File::open(path).map_err(|e| LmError::io(path, e))?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|e| LmError::format(path, format!("not a readable GGUF file: {e}")))?;
    let meta = Meta { path, md: &content.metadata };
    let arch_name = meta.str("general.architecture")?.to_string();
    let arch = Arch::parse(&arch_name).ok_or_else(|| LmError::UnknownArchitecture {
        path: path.into(),
        arch: arch_name.clone(),
    })?;
    let a = arch_name.as_str();
    let hidden_size = meta.usize(&format!("{a}.embedding_length"))?;
    let num_heads = meta.usize(&format!("{a}.attention.head_count"))?;
    let embd =
        content.tensor_infos.get("token_embd.weight").ok_or_else(|| LmError::MissingTensor {
            path: path.into(),
            name: "token_embd.weight".into(),
            shape: vec![],
        })?;
    let tokens = meta.strings("tokenizer.ggml.tokens")?;
    let mut cfg = ModelConfig {
        arch,
        vocab_size: embd.shape.dims()[0],
        hidden_size,
        intermediate_size: meta.usize(&format!("{a}.feed_forward_length"))?,
        num_layers: meta.usize(&format!("{a}.block_count"))?,
        num_heads,
        num_kv_heads: meta.usize(&format!("{a}.attention.head_count_kv")).unwrap_or(num_heads),
        head_dim: meta
            .usize(&format!("{a}.attention.key_length"))
            .unwrap_or(hidden_size / num_heads.max(1)),
        rms_norm_eps: meta.f64_or(&format!("{a}.attention.layer_norm_rms_epsilon"), 1e-5)?,
        rope_theta: meta.f64_or(&format!("{a}.rope.freq_base"), 10000.0)?,
        max_position_embeddings: meta.usize(&format!("{a}.context_length")).unwrap_or(4096),
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        attention_bias: content.tensor_infos.contains_key("blk.0.attn_q.bias"),
        bos_token_id: meta.u32_opt("tokenizer.ggml.bos_token_id"),
        eos_token_id: meta.u32_opt("tokenizer.ggml.eos_token_id"),
    };
    if arch == Arch::Qwen2 {
        cfg.attention_bias = true;
    }
    cfg.validate(path)?;

    let mut weights = HashMap::new();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let Some(hf) = gguf_to_hf(name) else { continue };
        let q = content
            .tensor(&mut file, name, device)
            .map_err(|e| LmError::format(path, format!("tensor `{name}`: {e}")))?;
        let mut t = q
            .dequantize(device)
            .map_err(|e| LmError::format(path, format!("tensor `{name}`: {e}")))?;
        if arch != Arch::Qwen2 {
            if name.starts_with("blk.") && name.contains(".attn_q.") {
                t = permute_rope_rows(&t, cfg.num_heads, true)?;
            } else if name.starts_with("blk.") && name.contains(".attn_k.") {
                t = permute_rope_rows(&t, cfg.num_kv_heads, true)?;
            }
        }
        weights.insert(hf, t);
    }
    crate::model::Transformer::check_weights(&cfg, &weights, path)?;

    let model_kind = meta.str("tokenizer.ggml.model")?;
    if model_kind != "gpt2" {
        return Err(LmError::config(
            path,
            "tokenizer.ggml.model",
            format!("`{model_kind}` tokenizers are not built from GGUF (only byte-level BPE, `gpt2`); use the model's Hugging Face directory"),
        ));
    }
    let merges = meta.strings("tokenizer.ggml.merges")?;
    let types: Option<Vec<i32>> = content
        .metadata
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|a| a.iter().map(|x| x.to_i32().unwrap_or(1)).collect());
    let pre = meta.str("tokenizer.ggml.pre").unwrap_or("default").to_string();
    let tokenizer = Tokenizer::from_gguf_parts(
        &tokens,
        &merges,
        types.as_deref(),
        &pre,
        cfg.bos_token_id,
        cfg.eos_token_id,
    )
    .map_err(|e| LmError::format(path, e.to_string()))?;
    let template = meta.str("tokenizer.chat_template").ok().and_then(ChatTemplate::detect);
    Ok(ModelFiles { config: cfg, weights, tokenizer, template })
}

/// Writes a model as an f32 GGUF file in llama.cpp's layout (names, interleaved q/k rows,
/// metadata), with a byte-level BPE vocabulary. Used to build test files and for export.
pub fn write_gguf(
    path: &Path,
    cfg: &ModelConfig,
    weights: &[(String, Tensor)],
    tokens: &[String],
    merges: &[String],
    pre: &str,
    chat_template: Option<&str>,
) -> Result<()> {
    let a = cfg.arch.name();
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        (format!("{a}.embedding_length"), Value::U32(cfg.hidden_size as u32)),
        (format!("{a}.feed_forward_length"), Value::U32(cfg.intermediate_size as u32)),
        (format!("{a}.block_count"), Value::U32(cfg.num_layers as u32)),
        (format!("{a}.attention.head_count"), Value::U32(cfg.num_heads as u32)),
        (format!("{a}.attention.head_count_kv"), Value::U32(cfg.num_kv_heads as u32)),
        (format!("{a}.attention.key_length"), Value::U32(cfg.head_dim as u32)),
        (format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(cfg.rms_norm_eps as f32)),
        (format!("{a}.rope.freq_base"), Value::F32(cfg.rope_theta as f32)),
        (format!("{a}.context_length"), Value::U32(cfg.max_position_embeddings as u32)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(merges.iter().map(|t| Value::String(t.clone())).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                tokens
                    .iter()
                    .map(|t| {
                        Value::I32(if t.starts_with("<|") && t.ends_with("|>") { 3 } else { 1 })
                    })
                    .collect(),
            ),
        ),
    ];
    if let Some(b) = cfg.bos_token_id {
        md.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(b)));
    }
    if let Some(e) = cfg.eos_token_id {
        md.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(e)));
    }
    if let Some(t) = chat_template {
        md.push(("tokenizer.chat_template".into(), Value::String(t.into())));
    }
    let mut qs: Vec<(String, QTensor)> = Vec::new();
    for (name, t) in weights {
        let g = hf_to_gguf(name)
            .ok_or_else(|| LmError::Invalid(format!("no GGUF name for tensor `{name}`")))?;
        let mut t = t.clone();
        if cfg.arch != Arch::Qwen2 {
            if g.contains(".attn_q.") {
                t = permute_rope_rows(&t, cfg.num_heads, false)?;
            } else if g.contains(".attn_k.") {
                t = permute_rope_rows(&t, cfg.num_kv_heads, false)?;
            }
        }
        qs.push((g, QTensor::quantize(&t, GgmlDType::F32)?));
    }
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = qs.iter().map(|(k, v)| (k.as_str(), v)).collect();
    crate::checkpoint::atomic_write(path, |f| {
        gguf_file::write(f, &md_refs, &t_refs).map_err(|e| std::io::Error::other(e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_row_permutation_round_trips() {
        let w = Tensor::arange(0f32, 48., &Device::Cpu).unwrap().reshape((12, 4)).unwrap();
        let there = permute_rope_rows(&w, 3, false).unwrap();
        let back = permute_rope_rows(&there, 3, true).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
        assert_ne!(there.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn tensor_names_map_both_ways() {
        for n in
            ["token_embd.weight", "output.weight", "blk.3.attn_q.bias", "blk.0.ffn_down.weight"]
        {
            assert_eq!(hf_to_gguf(&gguf_to_hf(n).unwrap()).unwrap(), n);
        }
    }
}
