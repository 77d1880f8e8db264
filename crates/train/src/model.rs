//! What the algorithms need from a model, over the engine's public API: samples at chosen
//! turns of one conversation from one prefill, summed log-probs of chosen turns from one
//! forward per conversation, per-token log-probs and hidden states of turns (PPO, value and
//! reward heads), and the trainable variables.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use candle_core::{Device, Tensor, Var, D};
use stepagent_lm::generate::generate_branches;
use stepagent_lm::model::Positions;
use stepagent_lm::score::{
    branch_hidden, branch_logprobs, branch_token_rows, packed_hidden, span_logprobs, BranchQuery,
    SpanQuery,
};
use stepagent_lm::{Lm, Rendered, SamplingConfig};
use stepagent_policy::{Message, Role};

use crate::TrainError;

/// Summed log-probs of turns, with each turn's token count.
pub struct TurnScores {
    /// One entry per requested turn, in request order; differentiable when asked.
    pub logp: Tensor,
    /// Tokens of each turn (its text and end-of-turn marker).
    pub tokens: Vec<usize>,
}

/// Per-token log-probs of turns (what PPO's ratio and KL are made of).
pub struct TokenScores {
    /// Log-prob of every token of every requested turn, turn after turn in request order:
    /// `(tokens,)`, differentiable when asked.
    pub logp: Tensor,
    /// Each requested turn's range in `logp`.
    pub ranges: Vec<Range<usize>>,
    /// Entropy (nats) of the model's next-token distribution at each of those tokens, without
    /// gradients: an exact entropy, not the sample estimate −log p.
    pub entropy: Vec<f32>,
    /// When asked: the final hidden state at the position that predicts each token, rows
    /// aligned with `logp`, `(tokens, hidden)` — the state before the token is chosen, which is
    /// what a value head reads.
    pub hidden: Option<Tensor>,
}

/// The model seam of the training algorithms.
pub trait StepModel {
    /// `n` samples at each assistant turn `turns` (message indices) of `conversation`, each
    /// conditioned on the messages before that turn; the conversation is read once.
    /// `seeds[i * n + j]` seeds sample `j` of turn `i`. Returns `[turn][sample]` texts.
    fn sample_at_turns(
        &self,
        conversation: &[Message],
        turns: &[usize],
        n: usize,
        cfg: &SamplingConfig,
        seeds: &[u64],
    ) -> Result<Vec<Vec<String>>, TrainError>;

    /// Summed log-prob of assistant turns `turns` (message indices) of each conversation,
    /// one forward per conversation, flattened in order.
    fn score_turns_at(
        &self,
        items: &[(&[Message], &[usize])],
        grad: bool,
    ) -> Result<TurnScores, TrainError>;

    /// Summed log-probs of assistant turns `turns` of `conversation` and of alternative
    /// assistant turns `branches` (`(message index, text)`: the text in place of that turn,
    /// after the same history), from one pass that reads the shared history once.
    fn score_with_branches(
        &self,
        conversation: &[Message],
        turns: &[usize],
        branches: &[(usize, &str)],
        grad: bool,
    ) -> Result<(TurnScores, TurnScores), TrainError>;

    /// Tokens of each assistant turn `turns` (message indices) of `conversation`, as
    /// [`StepModel::score_turns_at`] would count them.
    fn turn_tokens(
        &self,
        conversation: &[Message],
        turns: &[usize],
    ) -> Result<Vec<usize>, TrainError>;

    /// The variables training updates.
    fn trainable(&self) -> Vec<(String, Var)>;

    /// Per-token log-probs of assistant turns `turns` (message indices) of each conversation,
    /// from one batched forward; with `hidden`, also the hidden states that predict them.
    fn turn_token_logprobs(
        &self,
        items: &[(&[Message], &[usize])],
        grad: bool,
        hidden: bool,
    ) -> Result<TokenScores, TrainError>;

    /// [`StepModel::turn_token_logprobs`] of alternative assistant turns `branches`
    /// (`(message index, text)`: the text after the history `conversation[..index]`), one
    /// range per branch in order. The default scores each as its own conversation; a model
    /// may read the shared history once (the step rollouts of one expert trajectory).
    fn branch_token_logprobs(
        &self,
        conversation: &[Message],
        branches: &[(usize, &str)],
        grad: bool,
        hidden: bool,
    ) -> Result<TokenScores, TrainError> {
        branches_alone(self, conversation, branches, grad, hidden)
    }

    /// The final hidden state of the last token of each assistant turn `turns` (its
    /// end-of-turn marker, which has read the whole turn and its history), flattened in
    /// order: `(turns, hidden)`. What a reward model's scalar head reads.
    fn turn_end_hidden(
        &self,
        items: &[(&[Message], &[usize])],
        grad: bool,
    ) -> Result<Tensor, TrainError>;

    /// [`StepModel::turn_end_hidden`] of assistant turns `turns` of `conversation` and of
    /// alternative turns `branches` (as in [`StepModel::score_with_branches`]), from one pass
    /// that reads the shared history once: `(turns, hidden)` and `(branches, hidden)`.
    fn branch_end_hidden(
        &self,
        conversation: &[Message],
        turns: &[usize],
        branches: &[(usize, &str)],
        grad: bool,
    ) -> Result<(Tensor, Tensor), TrainError>;

    /// Width of the hidden states.
    fn hidden_size(&self) -> usize;

    /// Where the model's tensors live.
    fn device(&self) -> Device;
}

/// A borrowed model is a model (a reward model may share the policy's backbone).
impl<T: StepModel + ?Sized> StepModel for &T {
    fn sample_at_turns(
        &self,
        conversation: &[Message],
        turns: &[usize],
        n: usize,
        cfg: &SamplingConfig,
        seeds: &[u64],
    ) -> Result<Vec<Vec<String>>, TrainError> {
        (**self).sample_at_turns(conversation, turns, n, cfg, seeds)
    }
    fn score_turns_at(
        &self,
        items: &[(&[Message], &[usize])],
        grad: bool,
    ) -> Result<TurnScores, TrainError> {
        (**self).score_turns_at(items, grad)
    }
    fn score_with_branches(
        &self,
        conversation: &[Message],
        turns: &[usize],
        branches: &[(usize, &str)],
        grad: bool,
    ) -> Result<(TurnScores, TurnScores), TrainError> {
        (**self).score_with_branches(conversation, turns, branches, grad)
    }
    fn turn_tokens(
        &self,
        conversation: &[Message],
        turns: &[usize],
    ) -> Result<Vec<usize>, TrainError> {
        (**self).turn_tokens(conversation, turns)
    }
    fn trainable(&self) -> Vec<(String, Var)> {
        (**self).trainable()
    }
    fn turn_token_logprobs(
        &self,
        items: &[(&[Message], &[usize])],
        grad: bool,
        hidden: bool,
    ) -> Result<TokenScores, TrainError> {
        (**self).turn_token_logprobs(items, grad, hidden)
    }
    fn branch_token_logprobs(
        &self,
        conversation: &[Message],
        branches: &[(usize, &str)],
        grad: bool,
        hidden: bool,
    ) -> Result<TokenScores, TrainError> {
        (**self).branch_token_logprobs(conversation, branches, grad, hidden)
    }
    fn turn_end_hidden(
        &self,
        items: &[(&[Message], &[usize])],
        grad: bool,
    ) -> Result<Tensor, TrainError> {
        (**self).turn_end_hidden(items, grad)
    }
    fn branch_end_hidden(
        &self,
        conversation: &[Message],
        turns: &[usize],
        branches: &[(usize, &str)],
        grad: bool,
    ) -> Result<(Tensor, Tensor), TrainError> {
        (**self).branch_end_hidden(conversation, turns, branches, grad)
    }
    fn hidden_size(&self) -> usize {
        (**self).hidden_size()
    }
    fn device(&self) -> Device {
        (**self).device()
    }
}

/// A conversation's assistant turns and alternatives to some of them, rendered for one packed
/// pass: each alternative is packed after the shared sequence when its history renders to
/// the same tokens there (it does for message-wise templates), and kept as its own sequence
/// otherwise.
struct Branched {
    /// The conversation up to its last requested turn.
    full: Rendered,
    /// Token spans of the requested turns in `full`.
    spans: Vec<Range<usize>>,
    /// `(prefix length, tokens)` of the packed alternatives.
    packed: Vec<(usize, Vec<u32>)>,
    /// `(ids, span of the turn)` of the alternatives scored alone.
    alone: Vec<(Vec<u32>, Range<usize>)>,
    /// Per alternative, in the caller's order: `(packed?, index in packed or alone)`.
    order: Vec<(bool, usize)>,
}

impl Branched {
    /// `None` when there is nothing to score.
    fn new(
        lm: &Lm,
        conversation: &[Message],
        turns: &[usize],
        branches: &[(usize, &str)],
    ) -> Result<Option<Self>, TrainError> {
        let last = turns.iter().chain(branches.iter().map(|(t, _)| t)).max().copied();
        let Some(last) = last else { return Ok(None) };
        let full = lm.render(&conversation[..=last], false)?;
        let spans = turns
            .iter()
            .map(|&t| Ok(full.assistant_turns[assistant_ordinal(conversation, t)?].clone()))
            .collect::<Result<Vec<_>, TrainError>>()?;
        let mut b =
            Branched { full, spans, packed: Vec::new(), alone: Vec::new(), order: Vec::new() };
        for &(t, text) in branches {
            assistant_ordinal(conversation, t)?;
            let mut c = conversation[..t].to_vec();
            c.push(Message::assistant(text));
            let r = lm.render(&c, false)?;
            let span = r.assistant_turns.last().cloned().expect("the branch is an assistant turn");
            if b.full.ids.get(..span.start) == Some(&r.ids[..span.start]) {
                b.order.push((true, b.packed.len()));
                b.packed.push((span.start, r.ids[span.clone()].to_vec()));
            } else {
                b.order.push((false, b.alone.len()));
                b.alone.push((r.ids, span));
            }
        }
        Ok(Some(b))
    }

    /// The packed alternatives as `(prefix length, tokens)` for the lm's packing functions.
    fn refs(&self) -> Vec<(usize, &[u32])> {
        self.packed.iter().map(|(p, t)| (*p, t.as_slice())).collect()
    }

    /// Rows of the packed alternatives' results and then the alone ones', put back in the
    /// caller's order.
    fn in_order(&self, packed: &Tensor, alone: &Tensor) -> Result<Tensor, TrainError> {
        let both = Tensor::cat(&[packed, alone], 0)?;
        let n = self.packed.len();
        let idx: Vec<u32> =
            self.order.iter().map(|&(p, i)| if p { i } else { n + i } as u32).collect();
        Ok(both.index_select(&Tensor::new(idx, both.device())?, 0)?)
    }
}

/// Conversations rendered and right-padded into one batch.
struct Batch {
    /// `(b, max)` token ids.
    ids: Tensor,
    /// Each conversation's spans of its requested turns.
    spans: Vec<Vec<Range<usize>>>,
    /// The longest conversation's length.
    max: usize,
}

/// Renders each conversation up to its last requested turn and pads them into one batch.
fn render_batch(lm: &Lm, items: &[(&[Message], &[usize])]) -> Result<Batch, TrainError> {
    let mut rendered = Vec::with_capacity(items.len());
    let mut spans = Vec::with_capacity(items.len());
    for (conv, turns) in items {
        let last = turns.iter().max().copied().unwrap_or(0);
        let r = lm.render(&conv[..=last.min(conv.len().saturating_sub(1))], false)?;
        let s = turns
            .iter()
            .map(|&t| Ok(r.assistant_turns[assistant_ordinal(conv, t)?].clone()))
            .collect::<Result<Vec<_>, TrainError>>()?;
        rendered.push(r.ids);
        spans.push(s);
    }
    let max = rendered.iter().map(Vec::len).max().unwrap_or(0);
    if items.is_empty() || max == 0 {
        return Err(TrainError::config("model", "nothing to score"));
    }
    let mut ids = Vec::with_capacity(items.len() * max);
    for r in &rendered {
        ids.extend(r);
        ids.extend(std::iter::repeat_n(0u32, max - r.len()));
    }
    let ids = Tensor::from_vec(ids, (items.len(), max), lm.model.device())?;
    Ok(Batch { ids, spans, max })
}

/// The ordinal among assistant turns of message `index`, checking it is one.
fn assistant_ordinal(conversation: &[Message], index: usize) -> Result<usize, TrainError> {
    match conversation.get(index) {
        Some(m) if m.role == Role::Assistant => {
            Ok(conversation[..index].iter().filter(|m| m.role == Role::Assistant).count())
        }
        _ => Err(TrainError::Trajectory {
            id: "<conversation>".into(),
            turn: Some(index),
            message: "not an assistant turn".into(),
        }),
    }
}

impl StepModel for Lm {
    fn sample_at_turns(
        &self,
        conversation: &[Message],
        turns: &[usize],
        n: usize,
        cfg: &SamplingConfig,
        seeds: &[u64],
    ) -> Result<Vec<Vec<String>>, TrainError> {
        if seeds.len() != turns.len() * n {
            return Err(TrainError::config("inspect.samples", "one seed per sample"));
        }
        if turns.is_empty() || n == 0 {
            return Ok(vec![Vec::new(); turns.len()]);
        }
        // Up to the last requested turn only: later turns would be read for nothing.
        let last = *turns.iter().max().expect("non-empty");
        let rendered = self.render(&conversation[..=last], false)?;
        let mut points = Vec::with_capacity(turns.len() * n);
        for &t in turns {
            let k = assistant_ordinal(conversation, t)?;
            let start = rendered.assistant_turns[k].start;
            points.extend(std::iter::repeat_n(start, n));
        }
        let gens = generate_branches(
            &self.model,
            &self.tokenizer,
            &rendered.ids,
            &points,
            cfg,
            seeds,
            &self.end_ids(),
        )?;
        Ok(gens.chunks(n).map(|c| c.iter().map(|g| g.text.trim().to_string()).collect()).collect())
    }

    fn score_turns_at(
        &self,
        items: &[(&[Message], &[usize])],
        grad: bool,
    ) -> Result<TurnScores, TrainError> {
        let mut rendered = Vec::with_capacity(items.len());
        let mut spans = Vec::with_capacity(items.len());
        let mut tokens = Vec::new();
        for (conv, turns) in items {
            let last = turns.iter().max().copied().unwrap_or(0);
            let r = self.render(&conv[..=last.min(conv.len().saturating_sub(1))], false)?;
            let mut s = Vec::with_capacity(turns.len());
            for &t in turns.iter() {
                let span = r.assistant_turns[assistant_ordinal(conv, t)?].clone();
                tokens.push(span.len());
                s.push(span);
            }
            rendered.push(r);
            spans.push(s);
        }
        let queries: Vec<SpanQuery<'_>> =
            rendered.iter().zip(&spans).map(|(r, s)| SpanQuery { ids: &r.ids, spans: s }).collect();
        let logp = span_logprobs(&self.model, &queries, grad)?;
        Ok(TurnScores { logp, tokens })
    }

    fn score_with_branches(
        &self,
        conversation: &[Message],
        turns: &[usize],
        branches: &[(usize, &str)],
        grad: bool,
    ) -> Result<(TurnScores, TurnScores), TrainError> {
        let Some(b) = Branched::new(self, conversation, turns, branches)? else {
            let empty = Tensor::zeros(0, candle_core::DType::F32, self.model.device())?;
            let none = || TurnScores { logp: empty.clone(), tokens: Vec::new() };
            return Ok((none(), none()));
        };
        let refs = b.refs();
        let q = BranchQuery { ids: &b.full.ids, spans: &b.spans, branches: &refs };
        let (chosen, packed_logp) = branch_logprobs(&self.model, &q, grad)?;
        let rejected = if b.alone.is_empty() {
            packed_logp
        } else {
            let queries: Vec<SpanQuery<'_>> = b
                .alone
                .iter()
                .map(|(ids, s)| SpanQuery { ids, spans: std::slice::from_ref(s) })
                .collect();
            let alone_logp = span_logprobs(&self.model, &queries, grad)?;
            b.in_order(&packed_logp, &alone_logp)?
        };
        let rejected_tokens = b
            .order
            .iter()
            .map(|&(p, i)| if p { b.packed[i].1.len() } else { b.alone[i].1.len() })
            .collect();
        Ok((
            TurnScores { logp: chosen, tokens: b.spans.iter().map(|s| s.len()).collect() },
            TurnScores { logp: rejected, tokens: rejected_tokens },
        ))
    }

    fn turn_tokens(
        &self,
        conversation: &[Message],
        turns: &[usize],
    ) -> Result<Vec<usize>, TrainError> {
        let r = self.render(conversation, false)?;
        turns
            .iter()
            .map(|&t| Ok(r.assistant_turns[assistant_ordinal(conversation, t)?].len()))
            .collect()
    }

    fn trainable(&self) -> Vec<(String, Var)> {
        stepagent_lm::ChatModel::trainable_parameters(self)
    }

    fn turn_token_logprobs(
        &self,
        items: &[(&[Message], &[usize])],
        grad: bool,
        hidden: bool,
    ) -> Result<TokenScores, TrainError> {
        let Batch { ids, spans, max } = render_batch(self, items)?;
        let (b, dev) = (items.len(), self.model.device());
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        let mut ranges = Vec::new();
        let flat_ids = ids.flatten_all()?.to_vec1::<u32>()?;
        for (q, s) in spans.iter().enumerate() {
            for span in s {
                if span.start == 0 {
                    return Err(TrainError::config("model", "a turn at position 0 has no context"));
                }
                let start = rows.len();
                for p in span.clone() {
                    rows.push((q * max + p - 1) as u32);
                    targets.push(flat_ids[q * max + p]);
                }
                ranges.push(start..rows.len());
            }
        }
        if rows.is_empty() {
            let empty = Tensor::zeros(0, candle_core::DType::F32, dev)?;
            return Ok(TokenScores { logp: empty, ranges, entropy: Vec::new(), hidden: None });
        }
        let pos = Positions::causal(b, max, dev)?;
        let h = self.model.hidden(&ids, &pos, None, grad)?.reshape((b * max, ()))?;
        token_scores(self, &h, rows, targets, ranges, hidden)
    }

    fn branch_token_logprobs(
        &self,
        conversation: &[Message],
        branches: &[(usize, &str)],
        grad: bool,
        hidden: bool,
    ) -> Result<TokenScores, TrainError> {
        let Some(b) = Branched::new(self, conversation, &[], branches)? else {
            let empty = Tensor::zeros(0, candle_core::DType::F32, self.model.device())?;
            return Ok(TokenScores {
                logp: empty,
                ranges: Vec::new(),
                entropy: Vec::new(),
                hidden: None,
            });
        };
        if !b.alone.is_empty() {
            // A history that renders differently inside the shared sequence: each alone.
            return branches_alone(self, conversation, branches, grad, hidden);
        }
        let refs = b.refs();
        let (h, starts) = packed_hidden(&self.model, &b.full.ids, &refs, grad)?;
        let (mut rows, mut targets) = (Vec::new(), Vec::new());
        let ranges = branch_token_rows(&refs, &starts, &mut rows, &mut targets);
        token_scores(self, &h, rows, targets, ranges, hidden)
    }

    fn turn_end_hidden(
        &self,
        items: &[(&[Message], &[usize])],
        grad: bool,
    ) -> Result<Tensor, TrainError> {
        let Batch { ids, spans, max } = render_batch(self, items)?;
        let (b, dev) = (items.len(), self.model.device());
        let mut rows = Vec::new();
        for (q, s) in spans.iter().enumerate() {
            for span in s {
                if span.is_empty() {
                    return Err(TrainError::config("model", "an empty assistant turn"));
                }
                rows.push((q * max + span.end - 1) as u32);
            }
        }
        let pos = Positions::causal(b, max, dev)?;
        let h = self.model.hidden(&ids, &pos, None, grad)?;
        Ok(h.reshape((b * max, ()))?.index_select(&Tensor::new(rows, dev)?, 0)?)
    }

    fn branch_end_hidden(
        &self,
        conversation: &[Message],
        turns: &[usize],
        branches: &[(usize, &str)],
        grad: bool,
    ) -> Result<(Tensor, Tensor), TrainError> {
        let Some(b) = Branched::new(self, conversation, turns, branches)? else {
            let h = self.model.config().hidden_size;
            let empty = Tensor::zeros((0, h), candle_core::DType::F32, self.model.device())?;
            return Ok((empty.clone(), empty));
        };
        if b.spans.iter().chain(b.alone.iter().map(|a| &a.1)).any(|s| s.is_empty()) {
            return Err(TrainError::config("model", "an empty assistant turn"));
        }
        let ends: Vec<usize> = b.spans.iter().map(|s| s.end - 1).collect();
        let refs = b.refs();
        let (turn_h, packed_h) = branch_hidden(&self.model, &b.full.ids, &ends, &refs, grad)?;
        let branch_h = if b.alone.is_empty() {
            packed_h
        } else {
            // Each as its own sequence: the hidden state at its turn's last token.
            let mut hs = Vec::with_capacity(b.alone.len());
            for (ids, span) in &b.alone {
                let (h, _) =
                    branch_hidden(&self.model, &ids[..span.end], &[span.end - 1], &[], grad)?;
                hs.push(h);
            }
            b.in_order(&packed_h, &Tensor::cat(&hs, 0)?)?
        };
        Ok((turn_h, branch_h))
    }

    fn hidden_size(&self) -> usize {
        self.model.config().hidden_size
    }

    fn device(&self) -> Device {
        self.model.device().clone()
    }
}

/// [`StepModel::branch_token_logprobs`] with each branch scored as its own conversation.
fn branches_alone<M: StepModel + ?Sized>(
    model: &M,
    conversation: &[Message],
    branches: &[(usize, &str)],
    grad: bool,
    hidden: bool,
) -> Result<TokenScores, TrainError> {
    let convs: Vec<Vec<Message>> = branches
        .iter()
        .map(|&(t, text)| {
            let mut c = conversation[..t].to_vec();
            c.push(Message::assistant(text));
            c
        })
        .collect();
    let turns: Vec<[usize; 1]> = branches.iter().map(|&(t, _)| [t]).collect();
    let items: Vec<(&[Message], &[usize])> =
        convs.iter().zip(&turns).map(|(c, t)| (c.as_slice(), &t[..])).collect();
    model.turn_token_logprobs(&items, grad, hidden)
}

/// Log-probs of `targets[i]` predicted from row `rows[i]` of the final hidden states `h`
/// `(positions, hidden)`, with the exact entropy there and, when asked, those rows.
fn token_scores(
    lm: &Lm,
    h: &Tensor,
    rows: Vec<u32>,
    targets: Vec<u32>,
    ranges: Vec<Range<usize>>,
    hidden: bool,
) -> Result<TokenScores, TrainError> {
    let dev = lm.model.device();
    let h = h.index_select(&Tensor::new(rows, dev)?, 0)?;
    let logits = lm.model.logits(&h)?;
    // log-softmax from differentiable ops (the fused kernel has no backward); the shift
    // is a constant, so it may be detached.
    let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?.detach())?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let logp_all = shifted.broadcast_sub(&lse)?;
    let t = Tensor::new(targets, dev)?.unsqueeze(1)?;
    let logp = logp_all.gather(&t, 1)?.squeeze(1)?;
    let lp = logp_all.detach();
    let entropy = (lp.exp()? * &lp)?.sum(D::Minus1)?.neg()?.to_vec1::<f32>()?;
    Ok(TokenScores { logp, ranges, entropy, hidden: hidden.then_some(h) })
}

/// Saves named variables as safetensors, atomically.
pub fn save_vars(path: &Path, vars: &[(String, Var)]) -> Result<(), TrainError> {
    let map: HashMap<String, Tensor> =
        vars.iter().map(|(n, v)| (n.clone(), v.as_tensor().detach())).collect();
    save_tensors(path, &map)
}

/// Saves tensors as safetensors, atomically.
pub fn save_tensors(path: &Path, map: &HashMap<String, Tensor>) -> Result<(), TrainError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    candle_core::safetensors::save(map, &tmp).map_err(|e| TrainError::file(&tmp, e))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| TrainError::file(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::file(path, e))
}

/// Loads tensors from a safetensors file.
pub fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>, TrainError> {
    candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .map_err(|e| TrainError::file(path, format!("not a readable safetensors file: {e}")))
}

/// Sets each variable from the file's tensor of the same name; every variable must be there
/// with its shape.
pub fn load_vars(path: &Path, vars: &[(String, Var)]) -> Result<(), TrainError> {
    let map = load_tensors(path)?;
    for (name, var) in vars {
        let t = map
            .get(name)
            .ok_or_else(|| TrainError::file(path, format!("missing tensor `{name}`")))?;
        if t.dims() != var.dims() {
            return Err(TrainError::file(
                path,
                format!(
                    "tensor `{name}` has shape {:?}, the model's is {:?}",
                    t.dims(),
                    var.dims()
                ),
            ));
        }
        var.set(t)?;
    }
    Ok(())
}

/// A detached copy of the variables' values (to restore later with [`restore_vars`]).
pub fn snapshot_vars(vars: &[(String, Var)]) -> Result<Vec<Tensor>, TrainError> {
    vars.iter().map(|(_, v)| Ok(v.as_tensor().detach().copy()?)).collect()
}

/// Puts back values taken by [`snapshot_vars`].
pub fn restore_vars(vars: &[(String, Var)], values: &[Tensor]) -> Result<(), TrainError> {
    for ((_, v), t) in vars.iter().zip(values) {
        v.set(t)?;
    }
    Ok(())
}
