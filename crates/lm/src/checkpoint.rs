//! Hugging Face model directories: `config.json`, `model.safetensors` (or shards),
//! `tokenizer.json`, `tokenizer_config.json` (with the chat template). Read and written.
//!
//! Every file is written to a temporary name in the same directory and renamed into place,
//! so a killed run leaves either the old file or the new one, never half of one.

use crate::chat::ChatTemplate;
use crate::config::ModelConfig;
use crate::error::{LmError, Result};
use crate::gguf::ModelFiles;
use crate::model::Transformer;
use crate::tokenizer::Tokenizer;
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `path` atomically: `fill` writes a temporary sibling, which is then renamed.
pub fn atomic_write(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = tmp_name(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        fill(&mut f)?;
        f.flush()?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(LmError::io(path, e));
    }
    Ok(())
}

fn tmp_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| LmError::format(path, e.to_string()))?;
    atomic_write(path, |f| f.write_all(text.as_bytes()))
}

/// Saves a model in Hugging Face layout into `dir` (created if needed). LoRA adapters are
/// merged into the weights; a tied output projection is stored once, as `transformers` does.
pub fn save_hf_dir(
    dir: &Path,
    model: &Transformer,
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| LmError::io(dir, e))?;
    let cfg = model.config();
    write_json(&dir.join("config.json"), &cfg.to_hf_json())?;
    let weights: HashMap<String, Tensor> = model.export_weights()?.into_iter().collect();
    let st = dir.join("model.safetensors");
    let tmp = tmp_name(&st);
    candle_core::safetensors::save(&weights, &tmp)
        .map_err(|e| LmError::format(&st, e.to_string()))?;
    std::fs::rename(&tmp, &st).map_err(|e| LmError::io(&st, e))?;
    write_json(&dir.join("tokenizer.json"), tokenizer.to_json())?;
    let name = |id: Option<u32>| -> serde_json::Value {
        id.and_then(|i| tokenizer.decode(&[i]).ok())
            .map(Into::into)
            .unwrap_or(serde_json::Value::Null)
    };
    let mut tc = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": cfg.max_position_embeddings,
        "bos_token": name(tokenizer.bos),
        "eos_token": name(tokenizer.eos),
        "add_bos_token": false,
        "clean_up_tokenization_spaces": false,
    });
    if let Some(t) = template {
        tc["chat_template"] = t.to_jinja().into();
    }
    write_json(&dir.join("tokenizer_config.json"), &tc)
}

/// Loads a Hugging Face model directory.
pub fn load_hf_dir(dir: &Path, device: &Device) -> Result<ModelFiles> {
    let config = ModelConfig::from_hf_json(&dir.join("config.json"))?;
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| LmError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().map(|x| x == "safetensors").unwrap_or(false))
        .collect();
    shards.sort();
    if shards.is_empty() {
        return Err(LmError::format(dir, "no *.safetensors file"));
    }
    let mut weights = HashMap::new();
    for shard in &shards {
        let ts = candle_core::safetensors::load(shard, device)
            .map_err(|e| LmError::format(shard, format!("not a readable safetensors file: {e}")))?;
        for (k, v) in ts {
            weights.insert(k, v.to_dtype(DType::F32)?);
        }
    }
    let source = if shards.len() == 1 { shards[0].clone() } else { dir.to_path_buf() };
    Transformer::check_weights(&config, &weights, &source)?;

    let tc_path = dir.join("tokenizer_config.json");
    let tc: serde_json::Value = match std::fs::read_to_string(&tc_path) {
        Ok(text) => {
            serde_json::from_str(&text).map_err(|e| LmError::format(&tc_path, e.to_string()))?
        }
        Err(_) => serde_json::Value::Null,
    };
    let jinja = match tc.get("chat_template") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(String::from)),
        _ => None,
    };
    let tok_path = dir.join("tokenizer.json");
    let mut tokenizer = Tokenizer::from_file(&tok_path, config.bos_token_id, config.eos_token_id)?;
    let special = |key: &str| -> Option<u32> {
        let v = tc.get(key)?;
        let s = v.as_str().or_else(|| v.get("content")?.as_str())?;
        tokenizer.token_id(s)
    };
    let (bos, eos) = (special("bos_token"), special("eos_token"));
    tokenizer.bos = tokenizer.bos.or(bos);
    tokenizer.eos = tokenizer.eos.or(eos);
    let template = jinja.as_deref().and_then(ChatTemplate::detect);
    Ok(ModelFiles { config, weights, tokenizer, template })
}
