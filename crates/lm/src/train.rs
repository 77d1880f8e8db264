//! Training support: LoRA, a scalar head, the SFT loss, gradient clipping and AdamW with a
//! warmup + cosine schedule.

use crate::chat::Rendered;
use crate::error::{LmError, Result};
use crate::kernels::adamw::AdamWStep;
use crate::model::{LoraAdapter, Transformer, LINEAR_NAMES};
use crate::score::{token_logprobs, SpanQuery};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Low-rank adaptation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank of the update. Default 8.
    pub rank: usize,
    /// Scale numerator: the update is multiplied by `alpha / rank`. Default 16.
    pub alpha: f64,
    /// Linear layers to adapt, by short name (`q_proj` … `down_proj`). Default all seven.
    pub targets: Vec<String>,
    /// Seed of the random `A` matrices. Default 0.
    pub seed: u64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            targets: LINEAR_NAMES.iter().map(|s| s.to_string()).collect(),
            seed: 0,
        }
    }
}

/// Adds LoRA adapters to the targeted linear layers (base weights stay frozen) and returns
/// the new trainable variables by name (`….q_proj.lora_A`, `….lora_B`).
pub fn add_lora(model: &mut Transformer, cfg: &LoraConfig) -> Result<Vec<(String, Var)>> {
    if cfg.rank == 0 {
        return Err(LmError::Invalid("lora: rank must be positive".into()));
    }
    if let Some(bad) = cfg.targets.iter().find(|t| !LINEAR_NAMES.contains(&t.as_str())) {
        return Err(LmError::Invalid(format!(
            "lora: unknown target `{bad}` (known: {})",
            LINEAR_NAMES.join(", ")
        )));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut vars = Vec::new();
    let dev = model.device().clone();
    for (name, lin) in model.linears_mut() {
        let short = name.rsplit('.').next().unwrap_or("");
        if !cfg.targets.iter().any(|t| t == short) {
            continue;
        }
        let (out_dim, in_dim) = lin.weight.dims2()?;
        // Kaiming-uniform bound for A, as PEFT does; B = 0 so training starts at the base.
        let bound = (1.0 / in_dim as f64).sqrt() as f32;
        let a: Vec<f32> = (0..cfg.rank * in_dim).map(|_| rng.gen_range(-bound..bound)).collect();
        let a = Var::from_tensor(&Tensor::from_vec(a, (cfg.rank, in_dim), &dev)?)?;
        let b = Var::zeros((out_dim, cfg.rank), DType::F32, &dev)?;
        vars.push((format!("{name}.lora_A"), a.clone()));
        vars.push((format!("{name}.lora_B"), b.clone()));
        lin.lora = Some(LoraAdapter { a, b, scale: cfg.alpha / cfg.rank as f64 });
    }
    Ok(vars)
}

/// Folds every adapter into its base weight and removes it.
pub fn merge_lora(model: &mut Transformer) -> Result<()> {
    for (_, lin) in model.linears_mut() {
        if lin.lora.is_some() {
            lin.weight = lin.merged_weight()?;
            lin.lora = None;
        }
    }
    Ok(())
}

/// A scalar head on the last hidden state (value or reward).
pub struct ScalarHead {
    /// `(1, hidden)`.
    pub weight: Var,
    /// `(1)`.
    pub bias: Var,
}

impl ScalarHead {
    /// A new head with small random weights.
    pub fn new(hidden: usize, seed: u64, dev: &Device) -> Result<Self> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let bound = (1.0 / hidden as f64).sqrt() as f32;
        let w: Vec<f32> = (0..hidden).map(|_| rng.gen_range(-bound..bound)).collect();
        Ok(ScalarHead {
            weight: Var::from_tensor(&Tensor::from_vec(w, (1, hidden), dev)?)?,
            bias: Var::zeros(1, DType::F32, dev)?,
        })
    }

    /// `(n, hidden)` → `(n)`.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let y = hidden.matmul(&self.weight.as_tensor().t()?)?.squeeze(1)?;
        Ok(y.broadcast_add(self.bias.as_tensor())?)
    }

    /// Its variables, for the optimizer and checkpoints.
    pub fn vars(&self) -> Vec<(String, Var)> {
        vec![("score.weight".into(), self.weight.clone()), ("score.bias".into(), self.bias.clone())]
    }

    /// Scores each sequence from the hidden state of its last token: `(n)`.
    pub fn score_sequences(
        &self,
        model: &Transformer,
        seqs: &[Vec<u32>],
        grad: bool,
    ) -> Result<Tensor> {
        let dev = model.device();
        let max = seqs.iter().map(Vec::len).max().unwrap_or(0);
        if seqs.is_empty() || seqs.iter().any(Vec::is_empty) {
            return Err(LmError::Invalid("scalar head: empty sequence".into()));
        }
        let mut ids = Vec::with_capacity(seqs.len() * max);
        for s in seqs {
            ids.extend(s);
            ids.extend(std::iter::repeat_n(0u32, max - s.len()));
        }
        let b = seqs.len();
        let pos = crate::model::Positions::causal(b, max, dev)?;
        let h = model.hidden(&Tensor::from_vec(ids, (b, max), dev)?, &pos, None, grad)?;
        let last: Vec<u32> =
            seqs.iter().enumerate().map(|(i, s)| (i * max + s.len() - 1) as u32).collect();
        let h = h.reshape((b * max, ()))?.index_select(&Tensor::new(last, dev)?, 0)?;
        self.forward(&h)
    }
}

/// Mean negative log-likelihood of the assistant tokens of rendered conversations (the SFT
/// loss), as a scalar tensor with a graph back to the trainable variables.
pub fn sft_loss(model: &Transformer, batch: &[Rendered]) -> Result<Tensor> {
    let spans: Vec<Vec<Range<usize>>> = batch
        .iter()
        .map(|r| r.assistant_turns.iter().filter(|s| s.start > 0).cloned().collect())
        .collect();
    let queries: Vec<SpanQuery<'_>> =
        batch.iter().zip(&spans).map(|(r, s)| SpanQuery { ids: &r.ids, spans: s }).collect();
    let (logp, _) = token_logprobs(model, &queries, true)?;
    let n = logp.dim(0)?;
    if n == 0 {
        return Err(LmError::Invalid("sft: the batch has no assistant tokens".into()));
    }
    Ok((logp.sum_all()? * (-1.0 / n as f64))?)
}

/// AdamW and its schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate. Default 1e-5.
    pub lr: f64,
    /// First-moment decay. Default 0.9.
    pub beta1: f64,
    /// Second-moment decay. Default 0.999.
    pub beta2: f64,
    /// Denominator epsilon. Default 1e-8.
    pub eps: f64,
    /// Decoupled weight decay. Default 0.
    pub weight_decay: f64,
    /// Linear warmup steps from 0 to `lr`. Default 0.
    pub warmup_steps: usize,
    /// Steps of the whole run: cosine decay from `lr` to `min_lr_ratio · lr` after warmup;
    /// 0 keeps the rate constant. Default 0.
    pub total_steps: usize,
    /// Floor of the cosine, as a fraction of `lr`. Default 0.
    pub min_lr_ratio: f64,
    /// Clip the global gradient norm to this; 0 is off. Default 1.
    pub max_grad_norm: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 1e-5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            warmup_steps: 0,
            total_steps: 0,
            min_lr_ratio: 0.0,
            max_grad_norm: 1.0,
        }
    }
}

impl OptimConfig {
    /// The learning rate at step `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        if self.total_steps <= self.warmup_steps {
            return self.lr;
        }
        let span = (self.total_steps - self.warmup_steps) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cos)
    }
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// AdamW over a set of variables; moments are plain vectors, updates fused and in place.
pub struct AdamW {
    cfg: OptimConfig,
    params: Vec<(String, Var)>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    step: usize,
}

impl AdamW {
    /// An optimizer for `params`.
    pub fn new(params: Vec<(String, Var)>, cfg: OptimConfig) -> Result<Self> {
        let sizes: Vec<usize> = params.iter().map(|(_, p)| p.elem_count()).collect();
        if let Some((name, _)) = params.iter().find(|(_, p)| p.dtype() != DType::F32) {
            return Err(LmError::Invalid(format!("adamw: `{name}` is not f32")));
        }
        Ok(AdamW {
            cfg,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            params,
            step: 0,
        })
    }

    /// Steps taken.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// The variables it updates.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// One update from `grads` (parameters without a gradient are left alone).
    pub fn step(&mut self, grads: &GradStore) -> Result<StepStats> {
        let mut sq = 0f64;
        let mut gs = Vec::with_capacity(self.params.len());
        for (_, p) in &self.params {
            let g = grads.get(p.as_tensor()).map(|g| g.contiguous()).transpose()?;
            if let Some(g) = &g {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
            gs.push(g);
        }
        let norm = sq.sqrt();
        let scale = if self.cfg.max_grad_norm > 0.0 && norm > self.cfg.max_grad_norm {
            self.cfg.max_grad_norm / (norm + 1e-6)
        } else {
            1.0
        };
        let lr = self.cfg.lr_at(self.step);
        self.step += 1;
        let t = self.step as i32;
        for (i, ((_, p), g)) in self.params.iter().zip(gs).enumerate() {
            let Some(g) = g else { continue };
            let op = AdamWStep {
                m: std::sync::Mutex::new(self.m[i].as_mut_slice()),
                v: std::sync::Mutex::new(self.v[i].as_mut_slice()),
                lr: lr as f32,
                beta1: self.cfg.beta1 as f32,
                beta2: self.cfg.beta2 as f32,
                eps: self.cfg.eps as f32,
                weight_decay: self.cfg.weight_decay as f32,
                bc1: 1.0 - (self.cfg.beta1 as f32).powi(t),
                bc2: 1.0 - (self.cfg.beta2 as f32).powi(t),
                grad_scale: scale as f32,
            };
            p.as_tensor().inplace_op2(&g, &op)?;
        }
        Ok(StepStats { lr, grad_norm: norm })
    }
}
