//! Shared by the RL tests: a tiny random model whose tokenizer makes the line world's words
//! single tokens, and the line world's expert trajectories (seconds to build).
#![allow(dead_code)]

use candle_core::Device;
use stepagent_env::{Split, TaskId};
use stepagent_lm::model::Transformer;
use stepagent_lm::tokenizer::Tokenizer;
use stepagent_lm::{Arch, ChatTemplate, Lm, ModelConfig};
use stepagent_policy::toy::LineWorld;
use stepagent_train::traj::{from_world_expert, Trajectory};

/// GPT-2's byte-to-symbol table, in byte order: the base vocabulary of a byte-level BPE.
fn byte_symbols() -> Vec<String> {
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

/// A byte-level BPE whose merges make the line world's words single tokens, so sequences
/// stay short.
pub fn tokenizer() -> Tokenizer {
    let mut tokens = byte_symbols();
    let mut merges: Vec<String> = Vec::new();
    let words = [
        "Thought",
        "Action",
        "Observation",
        "move",
        "right",
        "left",
        "stop",
        "look",
        "cell",
        "goal",
        "You",
        "are",
        "on",
        "The",
        "is",
        "keep",
        "going",
        "the",
        "Your",
        "task",
        "to",
        "am",
        "I",
        "OK",
        "go",
        "back",
        "passed",
        "Walk",
        "along",
        "line",
        "and",
        "there",
        "Actions",
        "Reply",
        "as",
        "your",
        "thoughts",
        "next",
        "action",
        "a",
    ];
    for w in words {
        for word in [w.to_string(), format!("Ġ{w}")] {
            let chars: Vec<String> = word.chars().map(|c| c.to_string()).collect();
            let mut acc = chars[0].clone();
            for c in &chars[1..] {
                let m = format!("{acc} {c}");
                acc.push_str(c);
                if !merges.contains(&m) {
                    merges.push(m);
                    tokens.push(acc.clone());
                }
            }
        }
    }
    for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        tokens.push(s.to_string());
    }
    let mut types = vec![1; tokens.len()];
    let n = types.len();
    types[n - 3..].fill(3);
    Tokenizer::from_gguf_parts(&tokens, &merges, Some(&types), "smollm", None, None).unwrap()
}

pub fn tiny_lm(seed: u64) -> Lm {
    let tok = tokenizer();
    let mut cfg = ModelConfig::tiny(Arch::Llama, tok.vocab_size());
    cfg.hidden_size = 48;
    cfg.intermediate_size = 96;
    cfg.num_heads = 6;
    cfg.num_kv_heads = 3;
    cfg.max_position_embeddings = 1024;
    let model = Transformer::random(&cfg, seed, &Device::Cpu).unwrap();
    Lm::new(model, tok, ChatTemplate::ChatMl { default_system: None }, "tiny")
}

pub fn world() -> LineWorld {
    LineWorld { tasks: 12, max_steps: 8 }
}

pub fn expert(split: Split, n: usize) -> Vec<Trajectory> {
    let tasks: Vec<TaskId> = (0..n).map(|i| TaskId::new(split, i)).collect();
    from_world_expert(&world(), &tasks, 0, 1).unwrap()
}
