//! A loaded chat model (weights, tokenizer, template) and the small trait the training
//! algorithms use, plus the [`Policy`] the episode runner drives.

use crate::chat::{ChatTemplate, Rendered};
use crate::checkpoint::{load_hf_dir, save_hf_dir};
use crate::error::{LmError, Result};
use crate::generate::{
    generate, generate_branches, generate_cached_batch, Generation, PromptCache, SamplingConfig,
};
use crate::gguf::{load_gguf, ModelFiles};
use crate::model::Transformer;
use crate::score::{span_logprobs, SpanQuery};
use crate::tokenizer::Tokenizer;
use crate::train::{add_lora, LoraConfig};
use candle_core::{Device, Tensor, Var};
use std::path::Path;
use std::sync::{Arc, Mutex};
use stepagent_policy::{ActContext, Message, Policy, PolicyError, Role};

/// What the training algorithms need from a model, whatever its implementation: act
/// (generate), judge (score) and learn (trainable parameters).
pub trait ChatModel: Send + Sync {
    /// A short name for reports.
    fn name(&self) -> String;

    /// One assistant turn for each conversation (each ends with a user turn).
    fn generate(
        &self,
        conversations: &[Vec<Message>],
        cfg: &SamplingConfig,
        seeds: &[u64],
    ) -> Result<Vec<Generation>>;

    /// For one conversation, a fresh assistant turn in place of each of its assistant turns,
    /// from the history before it (`seeds[i]` for the i-th assistant turn). Shares the work
    /// of reading the common history.
    fn generate_at_each_turn(
        &self,
        conversation: &[Message],
        cfg: &SamplingConfig,
        seeds: &[u64],
    ) -> Result<Vec<Generation>>;

    /// Summed log-prob of every assistant turn of each conversation, from one forward per
    /// conversation: one `(turns,)` tensor per conversation, differentiable when `grad`.
    fn score_turns(&self, conversations: &[Vec<Message>], grad: bool) -> Result<Vec<Tensor>>;

    /// The variables an optimizer should update.
    fn trainable_parameters(&self) -> Vec<(String, Var)>;
}

/// A loaded model ready to chat, score and train.
pub struct Lm {
    /// The network.
    pub model: Transformer,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its chat template.
    pub template: ChatTemplate,
    name: String,
    trainable: Vec<(String, Var)>,
}

impl Lm {
    /// Loads a `.gguf` file or a Hugging Face model directory onto the CPU.
    pub fn load(path: &Path) -> Result<Lm> {
        let device = Device::Cpu;
        let files =
            if path.is_dir() { load_hf_dir(path, &device)? } else { load_gguf(path, &device)? };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".gguf").to_string())
            .unwrap_or_else(|| "model".into());
        Lm::from_files(files, path, &name)
    }

    /// Assembles an engine from loaded parts; `path` names the source in errors.
    pub fn from_files(files: ModelFiles, path: &Path, name: &str) -> Result<Lm> {
        let ModelFiles { config, weights, tokenizer, template } = files;
        let template = match template {
            Some(t) => t,
            None if tokenizer.token_id("<|im_start|>").is_some() => {
                ChatTemplate::ChatMl { default_system: None }
            }
            None => {
                return Err(LmError::format(
                    path,
                    "no chat template we implement (ChatML, Llama 3, Mistral) and no <|im_start|> token",
                ))
            }
        };
        let model = Transformer::from_weights(&config, weights, path, &Device::Cpu)?;
        Ok(Lm::new(model, tokenizer, template, name))
    }

    /// An engine from an existing model.
    pub fn new(model: Transformer, tokenizer: Tokenizer, template: ChatTemplate, name: &str) -> Lm {
        Lm { model, tokenizer, template, name: name.to_string(), trainable: Vec::new() }
    }

    /// Token ids that end a generated turn: the template's end of turn and end of sequence.
    pub fn end_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.tokenizer.eos.into_iter().collect();
        if let Some(t) = self.tokenizer.token_id(self.template.end_of_turn()) {
            if !ids.contains(&t) {
                ids.push(t);
            }
        }
        ids
    }

    /// Renders a conversation with the chat template.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<Rendered> {
        self.template.render(&self.tokenizer, messages, add_generation_prompt)
    }

    /// Makes every weight trainable (full fine-tuning).
    pub fn enable_full_finetuning(&mut self) -> Result<()> {
        self.trainable = self.model.make_trainable()?;
        Ok(())
    }

    /// Adds LoRA adapters; only they are trained.
    pub fn enable_lora(&mut self, cfg: &LoraConfig) -> Result<()> {
        self.trainable = add_lora(&mut self.model, cfg)?;
        Ok(())
    }

    /// Saves in Hugging Face layout (LoRA merged).
    pub fn save(&self, dir: &Path) -> Result<()> {
        save_hf_dir(dir, &self.model, &self.tokenizer, Some(&self.template))
    }
}

impl ChatModel for Lm {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn generate(
        &self,
        conversations: &[Vec<Message>],
        cfg: &SamplingConfig,
        seeds: &[u64],
    ) -> Result<Vec<Generation>> {
        let prompts = conversations
            .iter()
            .map(|c| Ok(self.render(c, true)?.ids))
            .collect::<Result<Vec<_>>>()?;
        generate(&self.model, &self.tokenizer, &prompts, cfg, seeds, &self.end_ids())
    }

    fn generate_at_each_turn(
        &self,
        conversation: &[Message],
        cfg: &SamplingConfig,
        seeds: &[u64],
    ) -> Result<Vec<Generation>> {
        let full = self.render(conversation, false)?;
        // Each assistant turn's text starts right after its header (`<|im_start|>assistant\n`),
        // which is exactly where the generation prompt of the history before it ends.
        let points: Vec<usize> = full.assistant_turns.iter().map(|r| r.start).collect();
        if points.len() != seeds.len() {
            return Err(LmError::Invalid(format!(
                "{} assistant turns but {} seeds",
                points.len(),
                seeds.len()
            )));
        }
        generate_branches(
            &self.model,
            &self.tokenizer,
            &full.ids,
            &points,
            cfg,
            seeds,
            &self.end_ids(),
        )
    }

    fn score_turns(&self, conversations: &[Vec<Message>], grad: bool) -> Result<Vec<Tensor>> {
        let rendered =
            conversations.iter().map(|c| self.render(c, false)).collect::<Result<Vec<_>>>()?;
        let queries: Vec<SpanQuery<'_>> =
            rendered.iter().map(|r| SpanQuery { ids: &r.ids, spans: &r.assistant_turns }).collect();
        let all = span_logprobs(&self.model, &queries, grad)?;
        let mut out = Vec::with_capacity(rendered.len());
        let mut at = 0;
        for r in &rendered {
            let n = r.assistant_turns.len();
            out.push(all.narrow(0, at, n)?);
            at += n;
        }
        Ok(out)
    }

    fn trainable_parameters(&self) -> Vec<(String, Var)> {
        self.trainable.clone()
    }
}

/// One [`PromptCache`] per running episode, so each agent turn reads only what is new since
/// the episode's previous turn (the observation), not the whole history again.
///
/// Caches are keyed by episode, never shared between episodes: an episode's turns are then
/// computed the same way whatever other episodes run beside it, so results do not depend on
/// thread timing. At most `capacity` episodes keep a cache (least recently used dropped);
/// SmolLM2-135M needs about 46 KB per cached token.
pub struct EpisodeCaches {
    capacity: usize,
    /// Most recently used last; a cache being used is taken out.
    caches: Mutex<Vec<(String, PromptCache)>>,
}

impl EpisodeCaches {
    /// Room for `capacity` episodes' caches (0 turns caching off).
    pub fn new(capacity: usize) -> Self {
        EpisodeCaches { capacity, caches: Mutex::new(Vec::new()) }
    }

    /// The next turn of `conversation` in episode `episode`, reusing and updating its cache.
    pub fn generate(
        &self,
        lm: &Lm,
        episode: &str,
        conversation: &[Message],
        cfg: &SamplingConfig,
        seed: u64,
    ) -> Result<Generation> {
        let mut out = self.generate_batch(lm, &[episode], &[conversation], cfg, &[seed])?;
        out.pop().ok_or_else(|| LmError::Invalid("no generation".into()))
    }

    /// The next turn of several episodes at once (`episodes[i]` continues `conversations[i]`
    /// with `seeds[i]`), decoded as one batch, each reusing and updating its own cache.
    pub fn generate_batch(
        &self,
        lm: &Lm,
        episodes: &[&str],
        conversations: &[&[Message]],
        cfg: &SamplingConfig,
        seeds: &[u64],
    ) -> Result<Vec<Generation>> {
        if episodes.len() != conversations.len() {
            return Err(LmError::Invalid("one episode name per conversation".into()));
        }
        let prompts = conversations
            .iter()
            .map(|c| Ok(lm.render(c, true)?.ids))
            .collect::<Result<Vec<_>>>()?;
        let mut caches: Vec<PromptCache> = {
            let mut held = self.lock();
            episodes
                .iter()
                .map(|e| match held.iter().position(|(k, _)| k == e) {
                    Some(i) => held.remove(i).1,
                    None => PromptCache::default(),
                })
                .collect()
        };
        let out = generate_cached_batch(
            &lm.model,
            &lm.tokenizer,
            &mut caches,
            &prompts,
            cfg,
            seeds,
            &lm.end_ids(),
        )?;
        if self.capacity > 0 {
            let mut held = self.lock();
            held.extend(episodes.iter().map(|e| e.to_string()).zip(caches));
            let excess = held.len().saturating_sub(self.capacity);
            held.drain(..excess);
        }
        Ok(out)
    }

    /// The turns of a [`Policy::act_batch`] call (`policy` names the agent in errors): each
    /// context's episode is its task, so every episode keeps its own cache.
    pub fn act_batch(
        &self,
        lm: &Lm,
        policy: &str,
        ctxs: &[ActContext<'_>],
        sampling: &SamplingConfig,
    ) -> Vec<std::result::Result<String, PolicyError>> {
        // One failure fails the whole batch: every episode gets the same message.
        let fail = |e: LmError| {
            let message = e.to_string();
            ctxs.iter()
                .map(|_| {
                    Err(PolicyError::Backend {
                        policy: policy.to_string(),
                        message: message.clone(),
                    })
                })
                .collect()
        };
        if ctxs.iter().any(|c| c.conversation.last().map(|m| m.role) == Some(Role::Assistant)) {
            return fail(LmError::Invalid(
                "the conversation already ends with an assistant turn".into(),
            ));
        }
        let names: Vec<String> = ctxs.iter().map(|c| c.task.to_string()).collect();
        let episodes: Vec<&str> = names.iter().map(String::as_str).collect();
        let conversations: Vec<&[Message]> = ctxs.iter().map(|c| c.conversation).collect();
        let seeds: Vec<u64> = ctxs.iter().map(|c| c.seed).collect();
        match self.generate_batch(lm, &episodes, &conversations, sampling, &seeds) {
            Ok(out) => out.into_iter().map(|g| Ok(g.text.trim().to_string())).collect(),
            Err(e) => fail(e),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, PromptCache)>> {
        // A panic elsewhere cannot leave a cache half-written here: entries are taken out
        // while in use, so the list itself is always consistent.
        self.caches.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The engine as an agent: renders the conversation, generates one turn, returns its text.
/// Each episode's KV cache is kept between its turns ([`EpisodeCaches`]).
pub struct LmPolicy {
    lm: Arc<Lm>,
    sampling: SamplingConfig,
    caches: EpisodeCaches,
    batch: usize,
}

impl LmPolicy {
    /// A policy sampling with `sampling` (its stop strings and the end-of-turn token end a turn).
    pub fn new(lm: Arc<Lm>, sampling: SamplingConfig) -> Self {
        LmPolicy { lm, sampling, caches: EpisodeCaches::new(EPISODE_CACHES), batch: 1 }
    }

    /// Asks the runner for `width` episodes' turns at a time, decoded as one batch (see
    /// [`Policy::batch_width`]); each episode keeps its own cache.
    pub fn with_batch(mut self, width: usize) -> Self {
        self.batch = width.max(1);
        self.caches = EpisodeCaches::new(EPISODE_CACHES.max(self.batch));
        self
    }
}

/// Episodes whose caches an [`LmPolicy`] keeps: more than the worker threads a CPU runs.
pub const EPISODE_CACHES: usize = 16;

impl Policy for LmPolicy {
    fn name(&self) -> String {
        format!("lm:{}", self.lm.name)
    }

    fn act(&self, ctx: &ActContext<'_>) -> std::result::Result<String, PolicyError> {
        let mut out = self.act_batch(std::slice::from_ref(ctx));
        out.pop().unwrap_or_else(|| {
            Err(PolicyError::Backend { policy: self.name(), message: "no reply".into() })
        })
    }

    fn batch_width(&self) -> usize {
        self.batch
    }

    fn act_batch(&self, ctxs: &[ActContext<'_>]) -> Vec<std::result::Result<String, PolicyError>> {
        self.caches.act_batch(&self.lm, &self.name(), ctxs, &self.sampling)
    }
}
