//! Scoring: log-probabilities of token spans, differentiable, batched.

use crate::error::{LmError, Result};
use crate::model::{Positions, Transformer};
use candle_core::Tensor;
use std::ops::Range;

/// A sequence and the spans of it to score: each span's tokens are predicted from everything
/// before them.
#[derive(Debug, Clone)]
pub struct SpanQuery<'a> {
    /// Token ids.
    pub ids: &'a [u32],
    /// Spans of `ids`; each must start after position 0.
    pub spans: &'a [Range<usize>],
}

/// Per-token log-probs of every span of every query, from one forward over the right-padded
/// batch (causal attention never lets a real token see the padding after it). Returns a
/// tensor of all scored tokens' log-probs in query/span/token order and, per span, its
/// `(query, range in that tensor)`.
pub fn token_logprobs(
    model: &Transformer,
    queries: &[SpanQuery<'_>],
    grad: bool,
) -> Result<(Tensor, Vec<Range<usize>>)> {
    let dev = model.device();
    let b = queries.len();
    let max = queries.iter().map(|q| q.ids.len()).max().unwrap_or(0);
    if b == 0 || max == 0 {
        return Err(LmError::Invalid("nothing to score".into()));
    }
    let mut ids = Vec::with_capacity(b * max);
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    let mut ranges = Vec::new();
    for (qi, q) in queries.iter().enumerate() {
        ids.extend(q.ids);
        ids.extend(std::iter::repeat_n(0u32, max - q.ids.len()));
        for s in q.spans {
            if s.start == 0 || s.end > q.ids.len() || s.start > s.end {
                return Err(LmError::Invalid(format!(
                    "query {qi}: span {s:?} outside 1..={} (the first token has no context)",
                    q.ids.len()
                )));
            }
            let start = targets.len();
            for p in s.clone() {
                rows.push((qi * max + p - 1) as u32);
                targets.push(q.ids[p]);
            }
            ranges.push(start..targets.len());
        }
    }
    let pos = Positions::causal(b, max, dev)?;
    let h = model.hidden(&Tensor::from_vec(ids, (b, max), dev)?, &pos, None, grad)?;
    let picked = pick_logprobs(model, &h.reshape((b * max, ()))?, rows, targets)?;
    Ok((picked, ranges))
}

/// Log-probs of `targets[i]` predicted from hidden row `rows[i]` of `h` `(rows, hidden)`.
fn pick_logprobs(
    model: &Transformer,
    h: &Tensor,
    rows: Vec<u32>,
    targets: Vec<u32>,
) -> Result<Tensor> {
    let dev = model.device();
    if rows.is_empty() {
        return Ok(Tensor::zeros(0, candle_core::DType::F32, dev)?);
    }
    // Only the positions that predict a scored token go through the output projection: the
    // vocabulary-wide logits are the largest tensor of the whole forward.
    let h = h.index_select(&Tensor::new(rows, dev)?, 0)?;
    let logits = model.logits(&h)?;
    if model.reference_ops() {
        Ok(crate::kernels::reference::target_logprobs(&logits, &targets)?)
    } else {
        Ok(crate::kernels::target_logprobs(&logits, &targets)?)
    }
}

/// A sequence with alternative continuations ("branches") off prefixes of it: the expert's
/// trajectory and the agent's actions at some of its steps, say.
#[derive(Debug, Clone)]
pub struct BranchQuery<'a> {
    /// The shared sequence.
    pub ids: &'a [u32],
    /// Spans of `ids` to score, as in [`SpanQuery`].
    pub spans: &'a [Range<usize>],
    /// `(prefix, tokens)`: `tokens` continue `ids[..prefix]` (`prefix` ≥ 1).
    pub branches: &'a [(usize, &'a [u32])],
}

/// A shared sequence with branches packed after it, for one forward: a branch's tokens see
/// their prefix and themselves only, and their positions continue the prefix.
struct Packed {
    ids: Vec<u32>,
    positions: Vec<u32>,
    /// Length of the shared sequence.
    n: usize,
    /// Per packed branch position: the prefix length it sees and where its branch starts.
    sees: Vec<(usize, usize)>,
    /// Where each branch's tokens start in `ids`.
    starts: Vec<usize>,
}

impl Packed {
    fn new(ids: &[u32], branches: &[(usize, &[u32])]) -> Result<Self> {
        let n = ids.len();
        if n == 0 {
            return Err(LmError::Invalid("nothing to score".into()));
        }
        let mut p = Packed {
            ids: ids.to_vec(),
            positions: (0..n as u32).collect(),
            n,
            sees: Vec::new(),
            starts: Vec::with_capacity(branches.len()),
        };
        for (k, &(prefix, tokens)) in branches.iter().enumerate() {
            if prefix == 0 || prefix > n {
                return Err(LmError::Invalid(format!(
                    "branch {k}: prefix {prefix} outside 1..={n} (a branch needs context)"
                )));
            }
            let at = p.ids.len();
            p.starts.push(at);
            for (u, &t) in tokens.iter().enumerate() {
                p.ids.push(t);
                p.positions.push((prefix + u) as u32);
                p.sees.push((prefix, at));
            }
        }
        Ok(p)
    }

    /// Final hidden states of every packed position, `(total, hidden)`.
    fn hidden(self, model: &Transformer, grad: bool) -> Result<Tensor> {
        let dev = model.device();
        let (n, total, sees) = (self.n, self.ids.len(), self.sees);
        let pos = Positions::general(vec![self.positions], total, dev, |_, i, j| {
            if i < n {
                j <= i
            } else {
                let (prefix, at) = sees[i - n];
                j < prefix || (at <= j && j <= i)
            }
        })?;
        let h = model.hidden(&Tensor::from_vec(self.ids, (1, total), dev)?, &pos, None, grad)?;
        Ok(h.squeeze(0)?)
    }
}

/// For branches packed at `starts` (as [`packed_hidden`] returns them): the packed row that
/// predicts each branch token (the first from its prefix's last position, the others from
/// the branch's own previous token), the tokens themselves, and each branch's range in
/// those lists. Appended to `rows` and `targets`, so spans may come first.
pub fn branch_token_rows(
    branches: &[(usize, &[u32])],
    starts: &[usize],
    rows: &mut Vec<u32>,
    targets: &mut Vec<u32>,
) -> Vec<Range<usize>> {
    branches
        .iter()
        .zip(starts)
        .map(|(&(prefix, tokens), &at)| {
            let start = targets.len();
            for (u, &t) in tokens.iter().enumerate() {
                rows.push(if u == 0 { prefix - 1 } else { at + u - 1 } as u32);
                targets.push(t);
            }
            start..targets.len()
        })
        .collect()
}

/// Final hidden states of `ids` with `branches` (`(prefix, tokens)` as in [`BranchQuery`])
/// packed after it, from one forward: `(total, hidden)` (the shared sequence's positions
/// first, then each branch's), and where each branch's tokens start in it. Each branch's
/// rows equal a forward over its prefix and itself alone; its first token is predicted from
/// row `prefix - 1`.
pub fn packed_hidden(
    model: &Transformer,
    ids: &[u32],
    branches: &[(usize, &[u32])],
    grad: bool,
) -> Result<(Tensor, Vec<usize>)> {
    let packed = Packed::new(ids, branches)?;
    let starts = packed.starts.clone();
    Ok((packed.hidden(model, grad)?, starts))
}

/// Summed log-probs of the spans of `q.ids` and of each branch given its prefix, from one
/// forward over the sequence with every branch packed after it (see [`Packed`]), so the
/// shared history is read once instead of once per branch. Returns `(spans, branches)`,
/// differentiable when `grad`; equal to scoring each branch as its own sequence.
pub fn branch_logprobs(
    model: &Transformer,
    q: &BranchQuery<'_>,
    grad: bool,
) -> Result<(Tensor, Tensor)> {
    let packed = Packed::new(q.ids, q.branches)?;
    let n = q.ids.len();
    let (mut rows, mut targets, mut ranges) = (Vec::new(), Vec::new(), Vec::new());
    for s in q.spans {
        if s.start == 0 || s.end > n || s.start > s.end {
            return Err(LmError::Invalid(format!("span {s:?} outside 1..={n}")));
        }
        let start = targets.len();
        for p in s.clone() {
            rows.push((p - 1) as u32);
            targets.push(q.ids[p]);
        }
        ranges.push(start..targets.len());
    }
    let spans = ranges.len();
    ranges.extend(branch_token_rows(q.branches, &packed.starts, &mut rows, &mut targets));
    let h = packed.hidden(model, grad)?;
    let tok = pick_logprobs(model, &h, rows, targets)?;
    let sums = sum_ranges(&tok, &ranges, model.device())?;
    Ok((sums.narrow(0, 0, spans)?, sums.narrow(0, spans, ranges.len() - spans)?))
}

/// Final hidden states at positions `ends` of the shared sequence `ids` and at the last token
/// of each branch (`(prefix, tokens)` as in [`BranchQuery`]), from one packed forward:
/// `(ends.len(), hidden)` and `(branches.len(), hidden)`, differentiable when `grad`. What a
/// reward model reads at the end of the expert's turns and of the alternatives to them.
pub fn branch_hidden(
    model: &Transformer,
    ids: &[u32],
    ends: &[usize],
    branches: &[(usize, &[u32])],
    grad: bool,
) -> Result<(Tensor, Tensor)> {
    let packed = Packed::new(ids, branches)?;
    let mut rows = Vec::with_capacity(ends.len() + branches.len());
    for &e in ends {
        if e >= ids.len() {
            return Err(LmError::Invalid(format!("position {e} outside 0..{}", ids.len())));
        }
        rows.push(e as u32);
    }
    for (k, (&(_, tokens), &at)) in branches.iter().zip(&packed.starts).enumerate() {
        if tokens.is_empty() {
            return Err(LmError::Invalid(format!("branch {k} has no tokens")));
        }
        rows.push((at + tokens.len() - 1) as u32);
    }
    let rows = Tensor::new(rows, model.device())?;
    let h = packed.hidden(model, grad)?.index_select(&rows, 0)?;
    Ok((h.narrow(0, 0, ends.len())?, h.narrow(0, ends.len(), branches.len())?))
}

/// Sums `tok`'s entries over each range: one differentiable matmul with a 0/1 matrix.
fn sum_ranges(tok: &Tensor, ranges: &[Range<usize>], dev: &candle_core::Device) -> Result<Tensor> {
    let n = tok.dim(0)?;
    if n == 0 {
        return Ok(Tensor::zeros(ranges.len(), candle_core::DType::F32, dev)?);
    }
    let mut sel = vec![0f32; ranges.len() * n];
    for (i, r) in ranges.iter().enumerate() {
        for j in r.clone() {
            sel[i * n + j] = 1.0;
        }
    }
    let sel = Tensor::from_vec(sel, (ranges.len(), n), dev)?;
    Ok(sel.matmul(&tok.unsqueeze(1)?)?.squeeze(1)?)
}

/// Summed log-prob of each span of each query: a tensor with one entry per span, in order.
pub fn span_logprobs(model: &Transformer, queries: &[SpanQuery<'_>], grad: bool) -> Result<Tensor> {
    let (tok, ranges) = token_logprobs(model, queries, grad)?;
    sum_ranges(&tok, &ranges, model.device())
}

/// Summed log-prob of each continuation given its context, batched: `(n,)`.
pub fn continuation_logprobs(
    model: &Transformer,
    pairs: &[(Vec<u32>, Vec<u32>)],
    grad: bool,
) -> Result<Tensor> {
    let seqs: Vec<(Vec<u32>, Range<usize>)> = pairs
        .iter()
        .map(|(c, x)| {
            let mut s = c.clone();
            s.extend(x);
            (s, c.len()..c.len() + x.len())
        })
        .collect();
    let queries: Vec<SpanQuery<'_>> =
        seqs.iter().map(|(s, r)| SpanQuery { ids: s, spans: std::slice::from_ref(r) }).collect();
    span_logprobs(model, &queries, grad)
}
