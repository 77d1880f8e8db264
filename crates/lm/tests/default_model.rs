//! Runs the real default model (SmolLM2-135M-Instruct). Ignored by default: it needs the
//! ~93 MB download (or a cached copy). `cargo test -p stepagent-lm -- --ignored`.

use stepagent_lm::{ChatModel, Lm, SamplingConfig};
use stepagent_policy::Message;

fn default_lm() -> Lm {
    let path = stepagent_lm::fetch::ensure_default_model(&mut |m| eprintln!("{m}"))
        .expect("default model");
    Lm::load(&path).expect("load default model")
}

#[test]
#[ignore = "needs the default model (download or cache)"]
fn tokenizer_matches_hugging_face_ids() {
    let lm = default_lm();
    let t = &lm.tokenizer;
    // Ids from Hugging Face's SmolLM2 tokenizer.
    assert_eq!(t.encode("Hello").unwrap(), vec![19556]);
    assert_eq!(t.encode("<|endoftext|><|im_start|><|im_end|>").unwrap(), vec![0, 1, 2]);
    // No prefix space: candle's GGUF tokenizer gets this wrong.
    assert_ne!(t.encode("Hello").unwrap(), t.encode(" Hello").unwrap());
    // Digits one by one.
    assert_eq!(t.encode("2024").unwrap().len(), 4);
    for s in ["Thought: go.\nAction: go to countertop 1", "héllo 🤖 世界"] {
        assert_eq!(t.decode(&t.encode(s).unwrap()).unwrap(), s);
    }
}

#[test]
#[ignore = "needs the default model (download or cache)"]
fn greedy_answer_to_a_fixed_prompt() {
    let lm = default_lm();
    let cfg = SamplingConfig { max_new_tokens: 12, ..Default::default() };
    let out =
        lm.generate(&[vec![Message::user("What is the capital of France?")]], &cfg, &[0]).unwrap();
    let text = &out[0].text;
    assert!(text.starts_with(EXPECTED), "got {text:?}");
}

const EXPECTED: &str = "The capital of France is Paris";
