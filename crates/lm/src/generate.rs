//! Generation: batched decoding with a KV cache, sampling, stop conditions, and prefix reuse.

use crate::error::{LmError, Result};
use crate::model::{KvCache, Positions, Transformer};
use crate::tokenizer::Tokenizer;
use candle_core::{Tensor, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How to sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 means greedy (argmax). Default 0.
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this.
    /// Default 1 (off).
    pub top_p: f64,
    /// Keep only the `top_k` most likely tokens; 0 is off. Default 0.
    pub top_k: usize,
    /// Most tokens to generate per sequence. Default 256.
    pub max_new_tokens: usize,
    /// Stop when the generated text contains one of these (it is cut off there). Default none.
    pub stop: Vec<String>,
    /// Stop at the end of the first line that contains one of these (cut before its
    /// newline): a ReAct turn is over once its `Action:` line is. Default none.
    pub stop_after_line: Vec<String>,
    /// Most sequences decoded together. Default 16.
    pub max_batch: usize,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 256,
            stop: Vec::new(),
            stop_after_line: Vec::new(),
            max_batch: 16,
        }
    }
}

impl SamplingConfig {
    /// One ReAct agent turn ("Thought: …\nAction: …"): it ends at the end-of-turn token, at
    /// the end of its `Action:` line (the runner reads only the first action, and small models
    /// otherwise go on with more thoughts and actions until `max_new_tokens`, which costs
    /// decoding and fills the history with text no one acts on), or where the model starts to
    /// write the world's reply itself.
    pub fn react_turn(temperature: f64, max_new_tokens: usize) -> Self {
        SamplingConfig {
            temperature,
            max_new_tokens,
            stop: vec![stepagent_policy::react::TURN_STOP.into()],
            stop_after_line: vec![stepagent_policy::react::ACTION_MARKER.into()],
            ..SamplingConfig::default()
        }
    }

    /// Where `text` is cut by a stop condition, if one holds.
    fn stop_at(&self, text: &str) -> Option<usize> {
        let strings = self.stop.iter().filter_map(|s| text.find(s.as_str()));
        let lines = self.stop_after_line.iter().filter_map(|m| {
            let after = text.find(m.as_str())? + m.len();
            Some(after + text[after..].find('\n')?)
        });
        strings.chain(lines).min()
    }
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// It produced an end token (end of turn, end of sequence).
    EndToken,
    /// Its text contained a stop string.
    StopString,
    /// It reached `max_new_tokens`.
    Length,
}

/// One generated continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The new tokens, without the end token.
    pub tokens: Vec<u32>,
    /// Their text, cut before a stop string.
    pub text: String,
    /// Why it stopped.
    pub finish: Finish,
}

/// Picks the next token from one row of logits.
pub fn sample(logits: &[f32], cfg: &SamplingConfig, rng: &mut ChaCha8Rng) -> u32 {
    let argmax = || {
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        best as u32
    };
    if cfg.temperature <= 0.0 {
        return argmax();
    }
    let inv_t = (1.0 / cfg.temperature) as f32;
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let k = if cfg.top_k == 0 { logits.len() } else { cfg.top_k.min(logits.len()) };
    let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, by_logit);
        idx.truncate(k);
    }
    idx.sort_unstable_by(by_logit);
    let max = logits[idx[0] as usize] * inv_t;
    let mut probs: Vec<f32> =
        idx.iter().map(|&i| (logits[i as usize] * inv_t - max).exp()).collect();
    let total: f32 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if cfg.top_p < 1.0 {
        let mut cum = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            cum += p;
            if cum >= cfg.top_p as f32 {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
        idx.truncate(keep);
    }
    let total: f32 = probs.iter().sum();
    let mut u = rng.gen::<f32>() * total;
    for (p, &i) in probs.iter().zip(&idx) {
        if u < *p {
            return i;
        }
        u -= p;
    }
    *idx.last().unwrap_or(&0)
}

/// The state of a batch being decoded.
struct Decoding {
    cache: KvCache,
    /// Per row, per cached key column: does it belong to the row (not padding)?
    valid: Vec<Vec<bool>>,
    next_pos: Vec<u32>,
    /// Copy each row's cache out when it stops (the caller keeps it for the next turn).
    keep_caches: bool,
}

/// Decodes every row from `first` logits `(b, vocab)` until each stops. With `keep_caches`,
/// also returns each row's own cache as it was when the row stopped: its valid positions (the
/// prompt and every generated token that was fed back, all but the last one sampled) copied
/// out of the batch.
fn decode(
    model: &Transformer,
    tok: &Tokenizer,
    mut state: Decoding,
    first: Tensor,
    cfg: &SamplingConfig,
    seeds: &[u64],
    end_ids: &[u32],
) -> Result<(Vec<Generation>, Vec<Option<KvCache>>)> {
    let keep_caches = state.keep_caches;
    let b = seeds.len();
    let dev = model.device().clone();
    let mut rngs: Vec<ChaCha8Rng> = seeds.iter().map(|&s| ChaCha8Rng::seed_from_u64(s)).collect();
    let mut out: Vec<Option<Generation>> = vec![None; b];
    let mut caches: Vec<Option<KvCache>> = (0..b).map(|_| None).collect();
    let mut tokens: Vec<Vec<u32>> = vec![Vec::new(); b];
    let mut logits = first.to_vec2::<f32>()?;
    // Rows still decoding, as indices into the original batch; the cache holds only these.
    let mut active: Vec<usize> = (0..b).collect();
    loop {
        let mut next = Vec::with_capacity(active.len());
        let mut keep = Vec::with_capacity(active.len());
        for (slot, &r) in active.iter().enumerate() {
            let t = sample(&logits[slot], cfg, &mut rngs[r]);
            let finish = |caches: &mut Vec<Option<KvCache>>| -> Result<()> {
                if keep_caches {
                    caches[r] = Some(state.cache.extract_row(slot, &state.valid[slot])?);
                }
                Ok(())
            };
            if end_ids.contains(&t) {
                finish(&mut caches)?;
                let text = tok.decode(&tokens[r])?;
                out[r] = Some(Generation {
                    tokens: std::mem::take(&mut tokens[r]),
                    text,
                    finish: Finish::EndToken,
                });
                continue;
            }
            tokens[r].push(t);
            let text = tok.decode(&tokens[r])?;
            if let Some(cut) = cfg.stop_at(&text) {
                finish(&mut caches)?;
                out[r] = Some(Generation {
                    tokens: std::mem::take(&mut tokens[r]),
                    text: text[..cut].to_string(),
                    finish: Finish::StopString,
                });
                continue;
            }
            if tokens[r].len() >= cfg.max_new_tokens {
                finish(&mut caches)?;
                out[r] = Some(Generation {
                    tokens: std::mem::take(&mut tokens[r]),
                    text,
                    finish: Finish::Length,
                });
                continue;
            }
            next.push(t);
            keep.push(slot);
        }
        if keep.is_empty() {
            break;
        }
        if keep.len() < active.len() {
            // Drop finished rows so they cost nothing further.
            let rows: Vec<(usize, usize)> = keep.iter().map(|&s| (s, state.cache.len())).collect();
            state.cache = state.cache.gather_prefixes(&rows, 32)?;
            state.valid = keep.iter().map(|&s| std::mem::take(&mut state.valid[s])).collect();
            state.next_pos = keep.iter().map(|&s| state.next_pos[s]).collect();
            active = keep.iter().map(|&s| active[s]).collect();
        }
        let n = active.len();
        let s = state.cache.len() + 1;
        let valid = &state.valid;
        let pos = Positions::general(
            state.next_pos.iter().map(|&p| vec![p]).collect(),
            s,
            &dev,
            |r, _i, j| j == s - 1 || valid[r][j],
        )?;
        let ids = Tensor::from_vec(next, (n, 1), &dev)?;
        let h = model.hidden(&ids, &pos, Some(&mut state.cache), false)?;
        logits = model.logits(&h.squeeze(1)?)?.to_vec2::<f32>()?;
        for r in 0..n {
            state.valid[r].push(true);
            state.next_pos[r] += 1;
        }
    }
    let out = out
        .into_iter()
        .map(|g| g.ok_or_else(|| LmError::Invalid("a sequence ended without a result".into())))
        .collect::<Result<_>>()?;
    Ok((out, caches))
}

fn check_cfg(cfg: &SamplingConfig) -> Result<()> {
    if cfg.max_new_tokens == 0 || cfg.max_batch == 0 {
        return Err(LmError::Invalid("max_new_tokens and max_batch must be positive".into()));
    }
    if !(cfg.top_p > 0.0 && cfg.top_p <= 1.0) || cfg.temperature < 0.0 {
        return Err(LmError::Invalid(format!(
            "sampling: top_p must be in (0, 1] and temperature >= 0 (got {} and {})",
            cfg.top_p, cfg.temperature
        )));
    }
    Ok(())
}

/// Generates a continuation of each prompt, `seeds[i]` seeding prompt `i`'s sampling.
pub fn generate(
    model: &Transformer,
    tok: &Tokenizer,
    prompts: &[Vec<u32>],
    cfg: &SamplingConfig,
    seeds: &[u64],
    end_ids: &[u32],
) -> Result<Vec<Generation>> {
    check_cfg(cfg)?;
    if prompts.len() != seeds.len() {
        return Err(LmError::Invalid("one seed per prompt".into()));
    }
    let mut out = Vec::with_capacity(prompts.len());
    for (chunk, chunk_seeds) in prompts.chunks(cfg.max_batch).zip(seeds.chunks(cfg.max_batch)) {
        if chunk.iter().any(Vec::is_empty) {
            return Err(LmError::Invalid("cannot generate from an empty prompt".into()));
        }
        let dev = model.device();
        let lens: Vec<usize> = chunk.iter().map(Vec::len).collect();
        let max = *lens.iter().max().unwrap_or(&1);
        let mut ids = Vec::with_capacity(chunk.len() * max);
        for p in chunk {
            ids.extend(p);
            ids.extend(std::iter::repeat_n(0u32, max - p.len()));
        }
        let b = chunk.len();
        let pos = Positions::general(vec![(0..max as u32).collect(); b], max, dev, |r, i, j| {
            j <= i && j < lens[r]
        })?;
        let mut cache = KvCache::new();
        let h =
            model.hidden(&Tensor::from_vec(ids, (b, max), dev)?, &pos, Some(&mut cache), false)?;
        let last: Vec<u32> =
            lens.iter().enumerate().map(|(r, &l)| (r * max + l - 1) as u32).collect();
        let h_last = h.reshape((b * max, ()))?.index_select(&Tensor::new(last, dev)?, 0)?;
        let first = model.logits(&h_last)?;
        let state = Decoding {
            cache,
            valid: lens.iter().map(|&l| (0..max).map(|j| j < l).collect()).collect(),
            next_pos: lens.iter().map(|&l| l as u32).collect(),
            keep_caches: false,
        };
        out.extend(decode(model, tok, state, first, cfg, chunk_seeds, end_ids)?.0);
    }
    Ok(out)
}

/// Generates continuations that branch off prefixes of one sequence: branch `i` continues
/// `sequence[..branch_points[i]]`. The sequence is read once; every branch starts from its
/// prefix of that one KV cache (the inspection stage's case: an action at every step of an
/// expert trajectory). Equal to [`generate`] on the prefixes with the same seeds.
pub fn generate_branches(
    model: &Transformer,
    tok: &Tokenizer,
    sequence: &[u32],
    branch_points: &[usize],
    cfg: &SamplingConfig,
    seeds: &[u64],
    end_ids: &[u32],
) -> Result<Vec<Generation>> {
    check_cfg(cfg)?;
    if branch_points.len() != seeds.len() {
        return Err(LmError::Invalid("one seed per branch".into()));
    }
    if let Some(&bad) = branch_points.iter().find(|&&p| p == 0 || p > sequence.len()) {
        return Err(LmError::Invalid(format!(
            "branch point {bad} outside the sequence of {} tokens",
            sequence.len()
        )));
    }
    let Some(&end) = branch_points.iter().max() else { return Ok(Vec::new()) };
    let dev = model.device();
    let mut cache = KvCache::new();
    let pos = Positions::causal(1, end, dev)?;
    let ids = Tensor::new(&sequence[..end], dev)?.unsqueeze(0)?;
    let h = model.hidden(&ids, &pos, Some(&mut cache), false)?.squeeze(0)?;
    let mut out = Vec::with_capacity(branch_points.len());
    for (chunk, chunk_seeds) in branch_points.chunks(cfg.max_batch).zip(seeds.chunks(cfg.max_batch))
    {
        let last: Vec<u32> = chunk.iter().map(|&p| (p - 1) as u32).collect();
        let first = model.logits(&h.index_select(&Tensor::new(last, dev)?, 0)?)?;
        let rows: Vec<(usize, usize)> = chunk.iter().map(|&p| (0, p)).collect();
        let max = *chunk.iter().max().unwrap_or(&0);
        let state = Decoding {
            cache: cache.gather_prefixes(&rows, cfg.max_new_tokens.min(64))?,
            valid: chunk.iter().map(|&p| (0..max).map(|j| j < p).collect()).collect(),
            next_pos: chunk.iter().map(|&p| p as u32).collect(),
            keep_caches: false,
        };
        out.extend(decode(model, tok, state, first, cfg, chunk_seeds, end_ids)?.0);
    }
    Ok(out)
}

/// The KV cache of one token sequence, kept between calls of [`generate_cached`]: an agent's
/// next prompt is its previous prompt, its reply and the new observation, so only the new
/// tokens need a forward pass.
#[derive(Default)]
pub struct PromptCache {
    /// The tokens whose keys and values `kv` holds, in order.
    tokens: Vec<u32>,
    kv: KvCache,
}

impl PromptCache {
    /// An empty cache.
    pub fn new() -> Self {
        PromptCache::default()
    }

    /// Tokens cached.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Leading tokens `prompt` shares with the cached sequence.
    pub fn common_prefix(&self, prompt: &[u32]) -> usize {
        self.tokens.iter().zip(prompt).take_while(|(a, b)| a == b).count()
    }
}

/// Generates one continuation of `prompt`, reading only the tokens after the longest prefix it
/// shares with `cache`, and leaves `cache` holding this prompt and reply. Equal to
/// [`generate`] on the same prompt and seed, up to float rounding (the prompt is read in
/// different pieces). On an error the cache is left empty, never half-updated.
pub fn generate_cached(
    model: &Transformer,
    tok: &Tokenizer,
    cache: &mut PromptCache,
    prompt: &[u32],
    cfg: &SamplingConfig,
    seed: u64,
    end_ids: &[u32],
) -> Result<Generation> {
    let prompts = [prompt.to_vec()];
    let mut out = generate_cached_batch(
        model,
        tok,
        std::slice::from_mut(cache),
        &prompts,
        cfg,
        &[seed],
        end_ids,
    )?;
    out.pop().ok_or_else(|| LmError::Invalid("no generation".into()))
}

/// [`generate_cached`] for several sequences at once, each with its own cache (the episodes
/// of an evaluation played in lockstep): their new tokens are read in one batched forward and
/// their replies decoded together, so the weights are read once per step for all of them.
/// Row `i` sees only its own cache and tokens; each cache is left holding its prompt and reply.
/// Equal to one [`generate_cached`] per row up to float rounding (a batch's matmuls may sum in
/// another order, which can flip a greedy choice between two near-equal tokens). On an error
/// every cache is left empty.
pub fn generate_cached_batch(
    model: &Transformer,
    tok: &Tokenizer,
    caches: &mut [PromptCache],
    prompts: &[Vec<u32>],
    cfg: &SamplingConfig,
    seeds: &[u64],
    end_ids: &[u32],
) -> Result<Vec<Generation>> {
    check_cfg(cfg)?;
    if prompts.len() != seeds.len() || prompts.len() != caches.len() {
        return Err(LmError::Invalid("one cache and one seed per prompt".into()));
    }
    if prompts.iter().any(Vec::is_empty) {
        return Err(LmError::Invalid("cannot generate from an empty prompt".into()));
    }
    let b = prompts.len();
    // The last prompt token is always fed: its logits start the decoding.
    let reuse: Vec<usize> =
        caches.iter().zip(prompts).map(|(c, p)| c.common_prefix(p).min(p.len() - 1)).collect();
    let mut kvs: Vec<KvCache> = caches
        .iter_mut()
        .map(|c| {
            c.tokens.clear();
            std::mem::take(&mut c.kv)
        })
        .collect();
    let new: Vec<&[u32]> = prompts.iter().zip(&reuse).map(|(p, &r)| &p[r..]).collect();
    let cached = *reuse.iter().max().unwrap_or(&0);
    let longest = new.iter().map(|n| n.len()).max().unwrap_or(1);
    let mut kv = if b == 1 {
        // One row: its own cache, appended in place (no copy of the past).
        let mut only = kvs.pop().unwrap_or_default();
        only.truncate(reuse[0]);
        only
    } else {
        let parts: Vec<(&KvCache, usize)> = kvs.iter().zip(&reuse).map(|(c, &r)| (c, r)).collect();
        KvCache::stack(&parts, longest + cfg.max_new_tokens.min(64))?
    };
    drop(kvs);
    // Keys: `cached` positions (row r's first reuse[r] real, the rest padding), then the new
    // tokens, row r's first new[r].len() real. Row r's tokens sit at positions reuse[r]...
    let dev = model.device();
    let s = cached + longest;
    let lens: Vec<usize> = new.iter().map(|n| n.len()).collect();
    let visible = |r: usize, i: usize, j: usize| {
        j < reuse[r] || (j >= cached && j - cached <= i.min(lens[r] - 1))
    };
    let positions: Vec<Vec<u32>> = (0..b)
        .map(|r| (0..longest).map(|i| (reuse[r] + i.min(lens[r] - 1)) as u32).collect())
        .collect();
    let pos = Positions::general(positions, s, dev, visible)?;
    let mut ids = Vec::with_capacity(b * longest);
    for n in &new {
        ids.extend(*n);
        ids.extend(std::iter::repeat_n(0u32, longest - n.len()));
    }
    let h = model.hidden(&Tensor::from_vec(ids, (b, longest), dev)?, &pos, Some(&mut kv), false)?;
    let last: Vec<u32> =
        lens.iter().enumerate().map(|(r, &l)| (r * longest + l - 1) as u32).collect();
    let h_last = h.reshape((b * longest, ()))?.index_select(&Tensor::new(last, dev)?, 0)?;
    let first = model.logits(&h_last)?;
    let state = Decoding {
        cache: kv,
        valid: (0..b)
            .map(|r| {
                (0..s).map(|j| j < reuse[r] || (j >= cached && j < cached + lens[r])).collect()
            })
            .collect(),
        next_pos: prompts.iter().map(|p| p.len() as u32).collect(),
        keep_caches: true,
    };
    let (out, kept) = decode(model, tok, state, first, cfg, seeds, end_ids)?;
    for (((cache, kv), gen), prompt) in caches.iter_mut().zip(kept).zip(&out).zip(prompts) {
        let kv = kv.ok_or_else(|| LmError::Invalid("a row's cache was not kept".into()))?;
        let fed = kv.len().saturating_sub(prompt.len()).min(gen.tokens.len());
        cache.tokens = prompt.iter().chain(&gen.tokens[..fed]).copied().collect();
        cache.kv = kv;
    }
    Ok(out)
}

/// Greedy decoding by recomputing the whole sequence each step, no cache: the reference the
/// cached path is tested against.
pub fn greedy_without_cache(model: &Transformer, prompt: &[u32], n: usize) -> Result<Vec<u32>> {
    let mut seq = prompt.to_vec();
    for _ in 0..n {
        let ids = Tensor::new(seq.as_slice(), model.device())?.unsqueeze(0)?;
        let logits = model.forward(&ids, false)?;
        let last = logits.squeeze(0)?.get(seq.len() - 1)?;
        seq.push(last.argmax(D::Minus1)?.to_scalar::<u32>()?);
    }
    Ok(seq[prompt.len()..].to_vec())
}

#[cfg(test)]
mod stop_tests {
    use super::SamplingConfig;

    fn cut<'a>(c: &SamplingConfig, text: &'a str) -> Option<&'a str> {
        c.stop_at(text).map(|i| &text[..i])
    }

    #[test]
    fn a_react_turn_ends_with_its_action_line() {
        let c = SamplingConfig::react_turn(0.0, 48);
        // What an under-trained model writes: the turn, then more of the same.
        let t =
            "Thought: I need a mug.\nAction: go to cabinet 1\nThought: I need a mug.\nAction: go";
        assert_eq!(cut(&c, t), Some("Thought: I need a mug.\nAction: go to cabinet 1"));
        // The action line is not finished yet: decoding goes on.
        assert_eq!(cut(&c, "Thought: I need a mug.\nAction: go to cab"), None);
        assert_eq!(cut(&c, "Thought: I need a mug."), None);
        // An invented observation before any action ends the turn where it starts.
        let t = "Thought: hm\nObservation: a mug\nAction: take mug 1\n";
        assert_eq!(cut(&c, t), Some("Thought: hm"));
        // Without the ReAct settings nothing stops.
        assert_eq!(cut(&SamplingConfig::default(), "Action: look\nmore"), None);
    }
}
