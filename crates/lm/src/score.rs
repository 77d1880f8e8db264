//! Scoring: log-probabilities of token spans, differentiable, batched.

use crate::error::{LmError, Result};
use crate::model::{Positions, Transformer};
use candle_core::{Tensor, D};
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
    let n = rows.len();
    if n == 0 {
        return Ok((Tensor::zeros(0, candle_core::DType::F32, dev)?, ranges));
    }
    // Only the positions that predict a scored token go through the output projection: the
    // vocabulary-wide logits are the largest tensor of the whole forward.
    let h = h.reshape((b * max, ()))?.index_select(&Tensor::new(rows, dev)?, 0)?;
    let logits = model.logits(&h)?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let t = Tensor::new(targets, dev)?.unsqueeze(1)?;
    let picked = logp.gather(&t, 1)?.squeeze(1)?;
    debug_assert_eq!(picked.dim(0)?, n);
    Ok((picked, ranges))
}

/// Summed log-prob of each span of each query: a tensor with one entry per span, in order.
pub fn span_logprobs(model: &Transformer, queries: &[SpanQuery<'_>], grad: bool) -> Result<Tensor> {
    let (tok, ranges) = token_logprobs(model, queries, grad)?;
    let n = tok.dim(0)?;
    // A 0/1 (spans × tokens) matrix sums each span's tokens in one differentiable matmul.
    let mut sel = vec![0f32; ranges.len() * n];
    for (i, r) in ranges.iter().enumerate() {
        for j in r.clone() {
            sel[i * n + j] = 1.0;
        }
    }
    let sel = Tensor::from_vec(sel, (ranges.len(), n), model.device())?;
    if n == 0 {
        return Ok(Tensor::zeros(ranges.len(), candle_core::DType::F32, model.device())?);
    }
    Ok(sel.matmul(&tok.unsqueeze(1)?)?.squeeze(1)?)
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
