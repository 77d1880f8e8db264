//! The decoder-only transformer shared by every supported family.
//!
//! Weights use Hugging Face names (`model.layers.0.self_attn.q_proj.weight`) and layout
//! (rotate-half RoPE), whatever file they came from, so checkpoints are Hugging Face files.
//! Every forward returns hidden states (and so logits) for all positions. With `grad` off the
//! fused candle kernels run (they have no backward); with it on, our kernels with their own
//! backward ([`crate::kernels`]), or candle's composed ops when the model is told to use the
//! reference ops.

use crate::config::ModelConfig;
use crate::error::{LmError, Result};
use crate::kernels::linear::over_rows;
use crate::kernels::{self, frozen_linear};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use std::collections::HashMap;
use std::path::Path;

/// A low-rank adapter on a linear layer: `y += scale · (x Aᵀ) Bᵀ`.
#[derive(Clone)]
pub struct LoraAdapter {
    /// `(rank, in)`, random.
    pub a: Var,
    /// `(out, rank)`, zero at creation so the adapted model starts equal to the base.
    pub b: Var,
    /// `alpha / rank`.
    pub scale: f64,
}

/// A linear layer `y = x Wᵀ + b`, optionally adapted by LoRA.
#[derive(Clone)]
pub struct Linear {
    /// `(out, in)`.
    pub weight: Tensor,
    /// `(out)`.
    pub bias: Option<Tensor>,
    /// The adapter, when LoRA is on.
    pub lora: Option<LoraAdapter>,
}

impl Linear {
    fn load(vb: &VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias { Some(vb.get(out_dim, "bias")?) } else { None };
        Ok(Linear { weight, bias, lora: None })
    }

    /// Applies the layer over the last dimension, differentiable in its trained weights.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, Ops::Train)
    }

    /// [`Linear::forward`] as a model forward runs it. Without gradients (`Ops::Inference`),
    /// trained weights and adapters enter as plain values: otherwise a forward without
    /// gradients still recorded the graph of every op downstream of a trained weight, and
    /// each tensor kept its inputs alive: a KV cache filled by such a forward held the whole
    /// prefill's activations (the quickstart's evaluation peaked at 14 GB). An adapter on a
    /// frozen CPU weight runs as one op ([`kernels::lora_linear`]) unless the reference ops
    /// are asked for.
    fn forward_with(&self, x: &Tensor, ops: Ops) -> Result<Tensor> {
        let track = ops != Ops::Inference;
        let value = |t: &Tensor| if track { t.clone() } else { t.detach() };
        let weight = value(&self.weight);
        let adapter =
            self.lora.as_ref().map(|l| (value(l.a.as_tensor()), value(l.b.as_tensor()), l.scale));
        let cpu_f32 = ops != Ops::Reference && x.device().is_cpu() && x.dtype() == DType::F32;
        let fused = cpu_f32 && !weight.is_variable();
        let fused_trained = cpu_f32 && ops == Ops::Train;
        let y = match &adapter {
            Some((a, b, scale)) if fused => kernels::lora_linear(x, &weight, a, b, *scale)?,
            _ if weight.is_variable() && fused_trained => kernels::trained_linear(x, &weight)?,
            _ if weight.is_variable() => {
                over_rows(x, weight.dim(0)?, |x2| x2.matmul(&weight.t()?))?
            }
            _ => frozen_linear(x, &weight)?,
        };
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        match adapter {
            Some((a, b, scale)) if !fused => {
                Ok((y + kernels::reference::lora_update(x, &a, &b, scale)?)?)
            }
            _ => Ok(y),
        }
    }

    /// The weight with the adapter folded in (what a checkpoint stores).
    pub fn merged_weight(&self) -> Result<Tensor> {
        match &self.lora {
            None => Ok(self.weight.detach()),
            Some(l) => {
                let delta = l.b.as_tensor().matmul(l.a.as_tensor())?;
                Ok((self.weight.detach() + (delta.detach() * l.scale)?)?)
            }
        }
    }
}

/// Which implementation of the non-matmul ops a forward runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ops {
    /// No gradients: candle's fused kernels.
    Inference,
    /// Gradients through our kernels.
    Train,
    /// Gradients through candle's composed ops ([`kernels::reference`]).
    Reference,
}

fn rms_norm(x: &Tensor, w: &Tensor, eps: f64, ops: Ops) -> Result<Tensor> {
    Ok(match ops {
        Ops::Inference => candle_nn::ops::rms_norm(&x.contiguous()?, w, eps as f32)?,
        Ops::Train => kernels::rms_norm(x, w, eps)?,
        Ops::Reference => kernels::reference::rms_norm(x, w, eps)?,
    })
}

/// Rotate-half RoPE; `cos`/`sin` are `(b, t, d/2)`, gathered at each token's position.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, ops: Ops) -> Result<Tensor> {
    Ok(match ops {
        Ops::Inference => candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)?,
        Ops::Train => kernels::rope(x, cos, sin)?,
        Ops::Reference => kernels::reference::rope(x, cos, sin)?,
    })
}

/// One layer's cached keys and values: buffers `(b, kv_heads, capacity, head_dim)` of which
/// the first `len` positions are filled. Appends write in place (no copy of the past).
pub struct LayerCache {
    k: Tensor,
    v: Tensor,
    len: usize,
}

impl LayerCache {
    fn from_full(k: Tensor, v: Tensor) -> Result<Self> {
        let len = k.dim(2)?;
        Ok(LayerCache { k, v, len })
    }

    /// Appends `(b, kv_heads, t, d)` keys/values; returns all filled keys and values.
    fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        let cap = self.k.dim(2)?;
        if self.len + t > cap {
            // Grow by a fraction of the size so a long decode copies the past only a few
            // times, without doubling the memory of a long prompt's cache.
            let new_cap = self.len + t + (cap / 4).max(64);
            let grow = |old: &Tensor| -> Result<Tensor> {
                let (b, h, _, d) = old.dims4()?;
                let buf = Tensor::zeros((b, h, new_cap, d), old.dtype(), old.device())?;
                buf.slice_set(&old.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                Ok(buf)
            };
            self.k = grow(&self.k)?;
            self.v = grow(&self.v)?;
        }
        self.k.slice_set(&k.contiguous()?, 2, self.len)?;
        self.v.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len += t;
        Ok((self.k.narrow(2, 0, self.len)?, self.v.narrow(2, 0, self.len)?))
    }

    pub(crate) fn filled(&self) -> Result<(Tensor, Tensor)> {
        Ok((self.k.narrow(2, 0, self.len)?, self.v.narrow(2, 0, self.len)?))
    }
}

/// Keys and values of the tokens seen so far, for every layer. Not `Clone`: appends write
/// into the buffers in place, so two caches must never share them.
#[derive(Default)]
pub struct KvCache {
    /// One entry per layer; empty before the first forward.
    pub(crate) layers: Vec<LayerCache>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        KvCache { layers: Vec::new() }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers.first().map(|l| l.len).unwrap_or(0)
    }

    /// True before the first forward.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every position from `len` on. The buffers stay: later appends overwrite them.
    pub fn truncate(&mut self, len: usize) {
        for l in &mut self.layers {
            l.len = l.len.min(len);
        }
    }

    /// Rows of the batch.
    pub fn batch(&self) -> usize {
        self.layers.first().map(|l| l.k.dim(0).unwrap_or(0)).unwrap_or(0)
    }

    /// Stacks one-row caches into a batch: entry `(cache, len)` becomes one row holding the
    /// first `len` positions of `cache`, right-padded with zeros to the longest (the caller
    /// masks the padding), with room for `reserve` more positions. Rows with `len` 0 may come
    /// from empty caches. All empty: an empty cache (the next forward fills it).
    pub fn stack(parts: &[(&KvCache, usize)], reserve: usize) -> Result<KvCache> {
        let Some((like, _)) = parts.iter().find(|(c, len)| *len > 0 && !c.layers.is_empty()) else {
            return Ok(KvCache::new());
        };
        if let Some((c, len)) = parts.iter().find(|(c, len)| *len > c.len() || c.batch() > 1) {
            return Err(LmError::Invalid(format!(
                "stack: a cache of {} rows and {} positions cannot give {len}",
                c.batch(),
                c.len()
            )));
        }
        let max = parts.iter().map(|p| p.1).max().unwrap_or(0);
        let mut layers = Vec::with_capacity(like.layers.len());
        for (l, shape) in like.layers.iter().enumerate() {
            let (_, heads, _, d) = shape.k.dims4()?;
            let pick = |key: bool| -> Result<Tensor> {
                let rows = parts
                    .iter()
                    .map(|(c, len)| {
                        if *len == 0 {
                            let (dt, dev) = (shape.k.dtype(), shape.k.device());
                            return Ok(Tensor::zeros((1, heads, max + reserve, d), dt, dev)?);
                        }
                        let (k, v) = c.layers[l].filled()?;
                        let src = if key { k } else { v };
                        Ok(src.narrow(2, 0, *len)?.pad_with_zeros(2, 0, max + reserve - len)?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Tensor::cat(&rows, 0)?)
            };
            layers.push(LayerCache { k: pick(true)?, v: pick(false)?, len: max });
        }
        Ok(KvCache { layers })
    }

    /// Row `row` as a one-row cache of the positions `keep` marks (the rest is padding),
    /// copied out of the batch; without a copy when the batch is that one row, unpadded.
    pub fn extract_row(&self, row: usize, keep: &[bool]) -> Result<KvCache> {
        let len = self.len().min(keep.len());
        if self.batch() == 1 && keep[..len].iter().all(|&k| k) {
            let layers = self
                .layers
                .iter()
                .map(|l| LayerCache { k: l.k.clone(), v: l.v.clone(), len })
                .collect();
            return Ok(KvCache { layers });
        }
        let idx: Vec<u32> = (0..len as u32).filter(|&j| keep[j as usize]).collect();
        let n = idx.len();
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let idx = Tensor::new(idx.as_slice(), l.k.device())?;
            let take = |t: &Tensor| -> Result<Tensor> {
                let rows = t.narrow(0, row, 1)?.narrow(2, 0, len)?.contiguous()?;
                Ok(rows.index_select(&idx, 2)?)
            };
            layers.push(LayerCache { k: take(&l.k)?, v: take(&l.v)?, len: n });
        }
        Ok(KvCache { layers })
    }

    /// Builds a batch from prefixes of rows of this cache: entry `(row, len)` becomes one
    /// row holding the first `len` positions of `row`, right-padded with zeros to the longest
    /// (the caller masks the padding), with room for `reserve` more positions.
    pub fn gather_prefixes(&self, rows: &[(usize, usize)], reserve: usize) -> Result<KvCache> {
        let max = rows.iter().map(|r| r.1).max().unwrap_or(0);
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let (k, v) = l.filled()?;
            let pick = |src: &Tensor| -> Result<Tensor> {
                let parts = rows
                    .iter()
                    .map(|&(row, len)| {
                        let part = src.narrow(0, row, 1)?.narrow(2, 0, len)?;
                        Ok(part.pad_with_zeros(2, 0, max + reserve - len)?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Tensor::cat(&parts, 0)?)
            };
            layers.push(LayerCache { k: pick(&k)?, v: pick(&v)?, len: max });
        }
        Ok(KvCache { layers })
    }
}

/// One forward's inputs besides the token ids.
pub struct Positions {
    /// `(b, t)` u32: each token's RoPE position.
    pub positions: Tensor,
    /// `(b, 1, t, s)` f32 additive mask over the `s` keys (cached then new), or `None` for a
    /// plain causal mask with no cache.
    pub mask: Option<Tensor>,
}

impl Positions {
    /// Positions `0..t` for every row and a causal mask.
    pub fn causal(b: usize, t: usize, dev: &Device) -> Result<Self> {
        let pos: Vec<u32> = (0..b).flat_map(|_| 0..t as u32).collect();
        Ok(Positions { positions: Tensor::from_vec(pos, (b, t), dev)?, mask: None })
    }

    /// A general batch: row `r`'s new tokens sit at `positions[r]`; key `j` (of `s` keys, the
    /// cached ones first) is visible to new token `i` of row `r` when `visible(r, i, j)`.
    pub fn general(
        positions: Vec<Vec<u32>>,
        s: usize,
        dev: &Device,
        visible: impl Fn(usize, usize, usize) -> bool,
    ) -> Result<Self> {
        let b = positions.len();
        let t = positions.first().map(Vec::len).unwrap_or(0);
        let mut mask = Vec::with_capacity(b * t * s);
        for r in 0..b {
            for i in 0..t {
                for j in 0..s {
                    mask.push(if visible(r, i, j) { 0f32 } else { f32::NEG_INFINITY });
                }
            }
        }
        let flat: Vec<u32> = positions.into_iter().flatten().collect();
        Ok(Positions {
            positions: Tensor::from_vec(flat, (b, t), dev)?,
            mask: Some(Tensor::from_vec(mask, (b, 1, t, s), dev)?),
        })
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(vb: &VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let q = cfg.num_heads * cfg.head_dim;
        let kv = cfg.num_kv_heads * cfg.head_dim;
        Ok(Attention {
            q: Linear::load(&vb.pp("q_proj"), h, q, cfg.attention_bias)?,
            k: Linear::load(&vb.pp("k_proj"), h, kv, cfg.attention_bias)?,
            v: Linear::load(&vb.pp("v_proj"), h, kv, cfg.attention_bias)?,
            o: Linear::load(&vb.pp("o_proj"), q, h, false)?,
            heads: cfg.num_heads,
            kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut LayerCache>,
        new_cache: Option<&mut Vec<LayerCache>>,
        ops: Ops,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let d = self.head_dim;
        let q = self
            .q
            .forward_with(x, ops)?
            .reshape((b, t, self.heads, d))?
            .transpose(1, 2)?
            .contiguous()?;
        let k = self
            .k
            .forward_with(x, ops)?
            .reshape((b, t, self.kv_heads, d))?
            .transpose(1, 2)?
            .contiguous()?;
        let v = self
            .v
            .forward_with(x, ops)?
            .reshape((b, t, self.kv_heads, d))?
            .transpose(1, 2)?
            .contiguous()?;
        let q = rope(&q, cos, sin, ops)?;
        let k = rope(&k, cos, sin, ops)?;
        let (k, v) = match cache {
            Some(c) => c.append(&k, &v)?,
            None => {
                if let Some(nc) = new_cache {
                    nc.push(LayerCache::from_full(k.clone(), v.clone())?);
                }
                (k, v)
            }
        };
        let causal;
        let mask = match mask {
            Some(m) => m,
            None => {
                causal = causal_mask(t, k.dim(2)?, x.device())?;
                &causal
            }
        };
        let scale = 1.0 / (d as f64).sqrt();
        let out = match ops {
            Ops::Reference => kernels::reference::attention(&q, &k, &v, mask, scale)?,
            _ => kernels::attention(&q, &k, &v, mask, scale, ops == Ops::Train)?,
        };
        let out = out.transpose(1, 2)?.reshape((b, t, self.heads * d))?;
        self.o.forward_with(&out, ops)
    }
}

/// `(t, s)`: new token `i` sees keys `0..=s-t+i`.
fn causal_mask(t: usize, s: usize, dev: &Device) -> Result<Tensor> {
    let off = s - t;
    let m: Vec<f32> = (0..t)
        .flat_map(|i| (0..s).map(move |j| if j <= off + i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Ok(Tensor::from_vec(m, (t, s), dev)?)
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Mlp {
    fn load(vb: &VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Mlp {
            gate: Linear::load(&vb.pp("gate_proj"), h, i, false)?,
            up: Linear::load(&vb.pp("up_proj"), h, i, false)?,
            down: Linear::load(&vb.pp("down_proj"), i, h, false)?,
        })
    }

    fn forward(&self, x: &Tensor, ops: Ops) -> Result<Tensor> {
        let (g, u) = (self.gate.forward_with(x, ops)?, self.up.forward_with(x, ops)?);
        let act = match ops {
            Ops::Reference => kernels::reference::swiglu(&g, &u)?,
            _ => kernels::swiglu(&g, &u)?,
        };
        self.down.forward_with(&act, ops)
    }
}

struct Block {
    input_norm: Tensor,
    attn: Attention,
    post_norm: Tensor,
    mlp: Mlp,
}

/// The transformer: embedding, blocks, final norm and output projection.
pub struct Transformer {
    cfg: ModelConfig,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: Linear,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    /// Differentiable forwards through candle's composed ops instead of our kernels.
    reference_ops: bool,
}

/// Which linear layers LoRA can adapt, by their Hugging Face names.
pub const LINEAR_NAMES: [&str; 7] =
    ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

impl Transformer {
    /// Every tensor the config needs, with its shape, in Hugging Face names.
    pub fn expected_tensors(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
        let h = cfg.hidden_size;
        let q = cfg.num_heads * cfg.head_dim;
        let kv = cfg.num_kv_heads * cfg.head_dim;
        let i = cfg.intermediate_size;
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![cfg.vocab_size, h])];
        for l in 0..cfg.num_layers {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.input_layernorm.weight"), vec![h]));
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
            out.push((format!("{p}.self_attn.q_proj.weight"), vec![q, h]));
            out.push((format!("{p}.self_attn.k_proj.weight"), vec![kv, h]));
            out.push((format!("{p}.self_attn.v_proj.weight"), vec![kv, h]));
            out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
            if cfg.attention_bias {
                out.push((format!("{p}.self_attn.q_proj.bias"), vec![q]));
                out.push((format!("{p}.self_attn.k_proj.bias"), vec![kv]));
                out.push((format!("{p}.self_attn.v_proj.bias"), vec![kv]));
            }
            out.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
            out.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
            out.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        if !cfg.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, h]));
        }
        out
    }

    /// Checks that `weights` holds every tensor with the right shape; `path` names the source.
    pub fn check_weights(
        cfg: &ModelConfig,
        weights: &HashMap<String, Tensor>,
        path: &Path,
    ) -> Result<()> {
        for (name, shape) in Self::expected_tensors(cfg) {
            match weights.get(&name) {
                None => {
                    return Err(LmError::MissingTensor { path: path.into(), name, shape });
                }
                Some(t) if t.dims() != shape.as_slice() => {
                    return Err(LmError::TensorShape {
                        path: path.into(),
                        name,
                        found: t.dims().to_vec(),
                        expected: shape,
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Builds the model from a weight map (checked first, so a bad file gives a named error).
    pub fn from_weights(
        cfg: &ModelConfig,
        weights: HashMap<String, Tensor>,
        path: &Path,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate(path)?;
        Self::check_weights(cfg, &weights, path)?;
        let weights = weights
            .into_iter()
            .map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        let vb = VarBuilder::from_tensors(weights, DType::F32, device);
        Self::load(vb, cfg)
    }

    /// A randomly initialised model (tests, new heads): normal(0, 0.02) weights, unit norms.
    pub fn random(cfg: &ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut weights = HashMap::new();
        for (name, shape) in Self::expected_tensors(cfg) {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with("norm.weight") {
                (0..n).map(|_| 1.0 + 0.1 * (rng.gen::<f32>() - 0.5)).collect()
            } else {
                // Box-Muller: normal(0, 0.02) without another dependency.
                (0..n)
                    .map(|_| {
                        let u1: f32 = rng.gen::<f32>().max(1e-7);
                        let u2: f32 = rng.gen();
                        0.02 * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
                    })
                    .collect()
            };
            weights.insert(name, Tensor::from_vec(data, shape, device)?);
        }
        Self::from_weights(cfg, weights, Path::new("<random>"), device)
    }

    /// candle-style constructor from a var builder holding Hugging Face names.
    pub fn load(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let m = vb.pp("model");
        let embed = m.get((cfg.vocab_size, h), "embed_tokens.weight")?;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let b = m.pp(format!("layers.{l}"));
            blocks.push(Block {
                input_norm: b.get(h, "input_layernorm.weight")?,
                attn: Attention::load(&b.pp("self_attn"), cfg)?,
                post_norm: b.get(h, "post_attention_layernorm.weight")?,
                mlp: Mlp::load(&b.pp("mlp"), cfg)?,
            });
        }
        let norm = m.get(h, "norm.weight")?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear { weight: embed.clone(), bias: None, lora: None }
        } else {
            Linear::load(&vb.pp("lm_head"), h, cfg.vocab_size, false)?
        };
        let (cos, sin) = rope_tables(cfg, vb.device())?;
        Ok(Transformer {
            cfg: cfg.clone(),
            embed,
            blocks,
            norm,
            lm_head,
            cos,
            sin,
            device: vb.device().clone(),
            reference_ops: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Runs differentiable forwards (and log-probs) through candle's composed ops instead of
    /// our kernels: slower and hungrier, for checking the kernels on whole training runs.
    pub fn use_reference_ops(&mut self, on: bool) {
        self.reference_ops = on;
    }

    /// Whether [`Transformer::use_reference_ops`] is on.
    pub fn reference_ops(&self) -> bool {
        self.reference_ops
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Final-norm hidden states `(b, t, hidden)` for token ids `(b, t)`.
    ///
    /// With `cache`, its keys/values come first (as positions `0..s`) and the new ones are
    /// appended; an empty cache is filled.
    pub fn hidden(
        &self,
        ids: &Tensor,
        pos: &Positions,
        cache: Option<&mut KvCache>,
        grad: bool,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let ops = match (grad, self.reference_ops) {
            (false, _) => Ops::Inference,
            (true, false) => Ops::Train,
            (true, true) => Ops::Reference,
        };
        let max = self.cos.dim(0)? as u32;
        let flat_pos = pos.positions.flatten_all()?;
        if flat_pos.max(0)?.to_scalar::<u32>()? >= max {
            return Err(LmError::Invalid(format!(
                "sequence longer than the model's {max} positions"
            )));
        }
        let cos = self.cos.index_select(&flat_pos, 0)?.reshape((b, t, ()))?;
        let sin = self.sin.index_select(&flat_pos, 0)?.reshape((b, t, ()))?;
        let mut x = self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((b, t, ()))?;
        if ops == Ops::Inference {
            // A trained embedding would otherwise start a graph (see `Linear::forward_with`).
            x = x.detach();
        }
        let mask = pos.mask.as_ref();
        let mut cache = cache;
        let fill = cache.as_ref().map(|c| c.layers.is_empty()).unwrap_or(false);
        let mut new_layers = Vec::new();
        for (l, block) in self.blocks.iter().enumerate() {
            let normed = rms_norm(&x, &block.input_norm, self.cfg.rms_norm_eps, ops)?;
            let layer_cache = match cache.as_deref_mut() {
                Some(c) if !fill => c.layers.get_mut(l),
                _ => None,
            };
            let sink = if fill { Some(&mut new_layers) } else { None };
            let a = block.attn.forward(&normed, &cos, &sin, mask, layer_cache, sink, ops)?;
            x = (x + a)?;
            let normed = rms_norm(&x, &block.post_norm, self.cfg.rms_norm_eps, ops)?;
            x = (&x + block.mlp.forward(&normed, ops)?)?;
        }
        if fill {
            if let Some(c) = cache {
                c.layers = new_layers;
            }
        }
        rms_norm(&x, &self.norm, self.cfg.rms_norm_eps, ops)
    }

    /// Logits over the vocabulary for hidden states `(…, hidden)`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)
    }

    /// Logits `(b, t, vocab)` for every position of `ids` `(b, t)`, causal, no cache.
    pub fn forward(&self, ids: &Tensor, grad: bool) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let pos = Positions::causal(b, t, &self.device)?;
        let h = self.hidden(ids, &pos, None, grad)?;
        self.logits(&h)
    }

    /// Every linear layer with its Hugging Face name prefix (`model.layers.0.mlp.up_proj`).
    pub fn linears_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (l, b) in self.blocks.iter_mut().enumerate() {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.self_attn.q_proj"), &mut b.attn.q));
            out.push((format!("{p}.self_attn.k_proj"), &mut b.attn.k));
            out.push((format!("{p}.self_attn.v_proj"), &mut b.attn.v));
            out.push((format!("{p}.self_attn.o_proj"), &mut b.attn.o));
            out.push((format!("{p}.mlp.gate_proj"), &mut b.mlp.gate));
            out.push((format!("{p}.mlp.up_proj"), &mut b.mlp.up));
            out.push((format!("{p}.mlp.down_proj"), &mut b.mlp.down));
        }
        out
    }

    /// Every weight under its Hugging Face name, LoRA merged in, detached from any graph.
    /// A tied output projection is not listed (the embedding is).
    pub fn export_weights(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![("model.embed_tokens.weight".to_string(), self.embed.detach())];
        for (l, b) in self.blocks.iter().enumerate() {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.input_layernorm.weight"), b.input_norm.detach()));
            out.push((format!("{p}.post_attention_layernorm.weight"), b.post_norm.detach()));
            let lins = [
                ("self_attn.q_proj", &b.attn.q),
                ("self_attn.k_proj", &b.attn.k),
                ("self_attn.v_proj", &b.attn.v),
                ("self_attn.o_proj", &b.attn.o),
                ("mlp.gate_proj", &b.mlp.gate),
                ("mlp.up_proj", &b.mlp.up),
                ("mlp.down_proj", &b.mlp.down),
            ];
            for (n, lin) in lins {
                out.push((format!("{p}.{n}.weight"), lin.merged_weight()?));
                if let Some(bias) = &lin.bias {
                    out.push((format!("{p}.{n}.bias"), bias.detach()));
                }
            }
        }
        out.push(("model.norm.weight".to_string(), self.norm.detach()));
        if !self.cfg.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), self.lm_head.merged_weight()?));
        }
        Ok(out)
    }

    /// Turns every weight into a trainable variable (full fine-tuning) and returns them by
    /// name. A tied output projection shares the embedding's variable.
    pub fn make_trainable(&mut self) -> Result<Vec<(String, Var)>> {
        let mut vars = Vec::new();
        let mut var = |name: String, t: &mut Tensor| -> Result<()> {
            // An already-trainable tensor is wrapped without a copy.
            let v = Var::from_tensor(t)?;
            *t = v.as_tensor().clone();
            vars.push((name, v));
            Ok(())
        };
        var("model.embed_tokens.weight".into(), &mut self.embed)?;
        for (l, b) in self.blocks.iter_mut().enumerate() {
            let p = format!("model.layers.{l}");
            var(format!("{p}.input_layernorm.weight"), &mut b.input_norm)?;
            var(format!("{p}.post_attention_layernorm.weight"), &mut b.post_norm)?;
            let lins = [
                ("self_attn.q_proj", &mut b.attn.q),
                ("self_attn.k_proj", &mut b.attn.k),
                ("self_attn.v_proj", &mut b.attn.v),
                ("self_attn.o_proj", &mut b.attn.o),
                ("mlp.gate_proj", &mut b.mlp.gate),
                ("mlp.up_proj", &mut b.mlp.up),
                ("mlp.down_proj", &mut b.mlp.down),
            ];
            for (n, lin) in lins {
                var(format!("{p}.{n}.weight"), &mut lin.weight)?;
                if let Some(bias) = lin.bias.as_mut() {
                    var(format!("{p}.{n}.bias"), bias)?;
                }
            }
        }
        var("model.norm.weight".into(), &mut self.norm)?;
        if self.cfg.tie_word_embeddings {
            self.lm_head.weight = self.embed.clone();
        } else {
            var("lm_head.weight".into(), &mut self.lm_head.weight)?;
        }
        Ok(vars)
    }
}

fn rope_tables(cfg: &ModelConfig, dev: &Device) -> Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    // Llama 3 claims 128k positions; tables that long would cost memory our contexts never use.
    let n = cfg.max_position_embeddings.min(32768);
    let inv: Vec<f64> = (0..half)
        .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / cfg.head_dim as f64))
        .collect();
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for p in 0..n {
        for f in &inv {
            let a = p as f64 * f;
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    Ok((Tensor::from_vec(cos, (n, half), dev)?, Tensor::from_vec(sin, (n, half), dev)?))
}
