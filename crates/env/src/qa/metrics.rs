//! Exact match and F1 as HotpotQA's official evaluation script (`hotpot_evaluate_v1.py`)
//! computes them.

use std::collections::HashMap;

/// Python's `string.punctuation`.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// HotpotQA's `normalize_answer`: lower case, drop ASCII punctuation, drop the words `a`,
/// `an`, `the`, collapse whitespace.
pub fn normalize_answer(s: &str) -> String {
    let lowered = s.to_lowercase();
    let no_punct: String = lowered.chars().filter(|c| !PUNCTUATION.contains(*c)).collect();
    // `re.sub(r'\b(a|an|the)\b', ' ', text)`: whole words, where a word is a run of
    // alphanumerics and underscores (Python's `\w`).
    let mut out = String::with_capacity(no_punct.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if matches!(word.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in no_punct.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// HotpotQA's `exact_match_score`.
pub fn exact_match(prediction: &str, gold: &str) -> bool {
    normalize_answer(prediction) == normalize_answer(gold)
}

/// HotpotQA's `f1_score`: (F1, precision, recall) over normalised tokens; a yes/no/noanswer
/// answer on either side scores only when both sides are equal.
pub fn f1_score(prediction: &str, gold: &str) -> (f64, f64, f64) {
    let p = normalize_answer(prediction);
    let g = normalize_answer(gold);
    let special = ["yes", "no", "noanswer"];
    if (special.contains(&p.as_str()) || special.contains(&g.as_str())) && p != g {
        return (0.0, 0.0, 0.0);
    }
    let p_tokens: Vec<&str> = p.split_whitespace().collect();
    let g_tokens: Vec<&str> = g.split_whitespace().collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &g_tokens {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in &p_tokens {
        if let Some(c) = counts.get_mut(t) {
            if *c > 0 {
                *c -= 1;
                same += 1;
            }
        }
    }
    if same == 0 {
        return (0.0, 0.0, 0.0);
    }
    let precision = same as f64 / p_tokens.len() as f64;
    let recall = same as f64 / g_tokens.len() as f64;
    (2.0 * precision * recall / (precision + recall), precision, recall)
}
