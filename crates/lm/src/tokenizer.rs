//! The tokenizer: Hugging Face `tokenizers` pipelines, built from a `tokenizer.json` or from a
//! GGUF file's metadata (byte-level BPE from `tokenizer.ggml.tokens` / `merges`).
//!
//! A GGUF tokenizer is first written as the `tokenizer.json` Hugging Face would ship, then
//! parsed: one code path for both sources, and the same JSON is what checkpoints save.

use crate::error::{LmError, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::str::FromStr;

/// A tokenizer with its special ids.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    json: Value,
    /// Beginning-of-sequence id, if any.
    pub bos: Option<u32>,
    /// End-of-sequence id, if any.
    pub eos: Option<u32>,
}

/// The pre-tokenizer regexes of the byte-level BPE families, as their `tokenizer.json` give them.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

/// The pre-tokenizer for a GGUF `tokenizer.ggml.pre` name.
fn pre_tokenizer(pre: &str) -> Value {
    let split = |re: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]})
    };
    match pre {
        // SmolLM2: every digit on its own, then GPT-2's byte-level split, no prefix space.
        "smollm" | "smollm2" | "starcoder" | "refact" => {
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                byte_level(true),
            ]})
        }
        "qwen2" | "deepseek-r1-qwen" => split(QWEN2_SPLIT),
        "llama-bpe" | "llama3" | "smaug-bpe" => split(LLAMA3_SPLIT),
        _ => byte_level(true),
    }
}

impl Tokenizer {
    /// Builds from a `tokenizer.json` value.
    pub fn from_json(json: Value, bos: Option<u32>, eos: Option<u32>) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_str(&json.to_string())
            .map_err(|e| LmError::Tokenizer(e.to_string()))?;
        Ok(Tokenizer { inner, json, bos, eos })
    }

    /// Reads a Hugging Face `tokenizer.json`.
    pub fn from_file(path: &Path, bos: Option<u32>, eos: Option<u32>) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| LmError::io(path, e))?;
        let json: Value =
            serde_json::from_str(&text).map_err(|e| LmError::format(path, e.to_string()))?;
        Self::from_json(json, bos, eos).map_err(|e| LmError::format(path, e.to_string()))
    }

    /// Builds the byte-level BPE a GGUF file describes.
    ///
    /// `token_types` follows llama.cpp: 3 (control) and 4 (user-defined) are special tokens,
    /// matched whole before BPE runs.
    pub fn from_gguf_parts(
        tokens: &[String],
        merges: &[String],
        token_types: Option<&[i32]>,
        pre: &str,
        bos: Option<u32>,
        eos: Option<u32>,
    ) -> Result<Self> {
        let mut vocab = serde_json::Map::with_capacity(tokens.len());
        let mut added = Vec::new();
        for (id, tok) in tokens.iter().enumerate() {
            vocab.insert(tok.clone(), json!(id));
            let special = match token_types {
                Some(types) => matches!(types.get(id), Some(3) | Some(4)),
                None => tok.starts_with("<|") && tok.ends_with("|>"),
            };
            if special {
                added.push(json!({"id": id, "content": tok, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": true}));
            }
        }
        let json = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer(pre),
            "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
            "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
                "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges},
        });
        Self::from_json(json, bos, eos)
    }

    /// Token ids of `text`; special tokens written in the text (`<|im_end|>`) are recognised.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| LmError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| LmError::Tokenizer(e.to_string()))
    }

    /// The id of a token written exactly, e.g. `<|im_end|>`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The `tokenizer.json` content.
    pub fn to_json(&self) -> &Value {
        &self.json
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A byte-level BPE over a handful of merges: enough to exercise every stage.
    pub(crate) fn tiny() -> Tokenizer {
        // The 256 byte symbols in GPT-2's byte-to-unicode order are the base vocabulary.
        let mut tokens: Vec<String> = byte_symbols();
        let merges = vec!["H e", "l l", "He ll", "Hell o", "Ġ w", "o r"];
        for m in &merges {
            tokens.push(m.replace(' ', ""));
        }
        for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
            tokens.push(s.to_string());
        }
        let merges: Vec<String> = merges.iter().map(|s| s.to_string()).collect();
        let mut types = vec![1; tokens.len()];
        let n = types.len();
        types[n - 3..].fill(3);
        Tokenizer::from_gguf_parts(&tokens, &merges, Some(&types), "smollm", None, None).unwrap()
    }

    pub(crate) fn byte_symbols() -> Vec<String> {
        let mut bs: Vec<u32> =
            (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
        let mut cs = bs.clone();
        let mut n = 0;
        for b in 0..256u32 {
            if !bs.contains(&b) {
                bs.push(b);
                cs.push(256 + n);
                n += 1;
            }
        }
        let mut pairs: Vec<(u32, u32)> = bs.into_iter().zip(cs).collect();
        pairs.sort();
        pairs.into_iter().map(|(_, c)| char::from_u32(c).unwrap().to_string()).collect()
    }

    #[test]
    fn merges_apply_and_specials_are_whole_tokens() {
        let t = tiny();
        let hello = t.token_id("Hello").unwrap();
        assert_eq!(t.encode("Hello").unwrap(), vec![hello]);
        let ids = t.encode("<|im_start|>Hello<|im_end|>").unwrap();
        assert_eq!(
            ids,
            vec![t.token_id("<|im_start|>").unwrap(), hello, t.token_id("<|im_end|>").unwrap()]
        );
        // No prefix space: a leading space is its own byte symbol, not merged into "Hello".
        assert_ne!(t.encode(" Hello").unwrap()[0], hello);
    }

    #[test]
    fn digits_are_split_one_by_one() {
        let t = tiny();
        assert_eq!(t.encode("2024").unwrap().len(), 4);
    }

    #[test]
    fn round_trips_ascii_unicode_and_emoji() {
        let t = tiny();
        for s in [
            "Hello world",
            "  spaces\tand\nnewlines ",
            "héllo wörld — ünïcode",
            "emoji 🤖🎉 ok",
            "数字 123",
            "",
        ] {
            let ids = t.encode(s).unwrap();
            assert_eq!(t.decode(&ids).unwrap(), s, "round trip of {s:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_string_round_trips(s in "\\PC{0,40}") {
            let t = tiny();
            let ids = t.encode(&s).unwrap();
            proptest::prop_assert_eq!(t.decode(&ids).unwrap(), s);
        }
    }
}
