//! The run config: everything `stepagent train CONFIG.toml` reads, with every choice the paper
//! leaves open as an option carrying our default. Unknown keys are refused by name.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use stepagent_env::Split;
use stepagent_lm::LoraConfig;

use crate::dpo::ReflectConfig;
use crate::health::HealthConfig;
use crate::inspect::InspectConfig;
use crate::methods::eto::EtoMethodConfig;
use crate::methods::inverse::InverseConfig;
use crate::methods::ipr::IprMethodConfig;
use crate::methods::outcome_ppo::OutcomePpoConfig;
use crate::methods::rft::RftConfig;
use crate::sft::SftConfig;
use crate::traj::BadRecords;
use crate::TrainError;

/// The training method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Behaviour cloning only.
    Sft,
    /// SFT, then K cycles of inspection → step-DPO reflection → evaluation.
    #[default]
    StepagentImplicit,
    /// SFT, then K cycles of inspection → discriminator → PPO on its step rewards →
    /// evaluation (section `[inverse]`).
    StepagentInverse,
    /// SFT, then PPO on whole sampled episodes with the final reward as the only signal
    /// (section `[ppo]`).
    Ppo,
    /// SFT, then ETO: greedy exploration, failures paired with the expert, trajectory DPO
    /// (section `[eto]`).
    Eto,
    /// SFT, then rejection-sampling fine-tuning on the agent's own successes (section `[rft]`).
    Rft,
    /// SFT, then IPR: step pairs judged by Monte-Carlo step rewards and outcomes, DPO + NLL
    /// (section `[ipr]`).
    Ipr,
}

impl Method {
    /// Every method, in the order comparison tables list them.
    pub const ALL: [Method; 7] = [
        Method::Sft,
        Method::Ppo,
        Method::Rft,
        Method::Eto,
        Method::Ipr,
        Method::StepagentImplicit,
        Method::StepagentInverse,
    ];

    /// The name a config uses.
    pub fn key(self) -> &'static str {
        match self {
            Method::Sft => "sft",
            Method::StepagentImplicit => "stepagent-implicit",
            Method::StepagentInverse => "stepagent-inverse",
            Method::Ppo => "ppo",
            Method::Eto => "eto",
            Method::Rft => "rft",
            Method::Ipr => "ipr",
        }
    }

    /// The name tables show.
    pub fn label(self) -> &'static str {
        match self {
            Method::Sft => "SFT",
            Method::StepagentImplicit => "StepAgent-Implicit",
            Method::StepagentInverse => "StepAgent-Inverse",
            Method::Ppo => "PPO",
            Method::Eto => "ETO",
            Method::Rft => "RFT",
            Method::Ipr => "IPR",
        }
    }
}

/// Which weights training updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Finetune {
    /// LoRA adapters on the linear layers (our default: fits the CPU budget).
    #[default]
    Lora,
    /// Every weight.
    Full,
}

/// The model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// A `.gguf` file or a Hugging Face model directory. Required by `stepagent train`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// LoRA or full fine-tuning. Default `lora`.
    pub finetune: Finetune,
    /// LoRA settings (used when `finetune = "lora"`).
    pub lora: LoraConfig,
    /// Save the final model (LoRA merged) in Hugging Face layout under
    /// `checkpoints/final`. Default true.
    pub save_final: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            path: None,
            finetune: Finetune::Lora,
            lora: LoraConfig::default(),
            save_final: true,
        }
    }
}

/// Where the expert trajectories come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// The world whose expert plays the training tasks (a registry name). Required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world: Option<String>,
    /// The world's options (its own keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world_options: Option<toml::Table>,
    /// Training trajectories from a file instead of the world's expert: ETO / AgentGym SFT
    /// JSON (either shape) or JSONL transcripts, e.g. ETO's `alfworld_sft.json`. The first
    /// `train_tasks` usable records are used. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expert_file: Option<PathBuf>,
    /// Held-out trajectories from a file (as `expert_file`) instead of the world's expert on
    /// `heldout_split`. Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heldout_file: Option<PathBuf>,
    /// A record of those files that is no usable trajectory: `reject` (stop, naming file,
    /// record and turn) or `skip` (leave it out, counted in the metrics). Default `reject`.
    pub bad_records: BadRecords,
    /// Training tasks (the first ones of the train split) the expert plays, or records taken
    /// from `expert_file`. Default 64.
    pub train_tasks: usize,
    /// Held-out expert trajectories for the agreement curve and the held-out loss. Default 16.
    pub heldout_tasks: usize,
    /// The split they come from. Default `seen`.
    pub heldout_split: Split,
    /// Seed of the expert episodes. Default 0.
    pub seed: u64,
    /// Worker threads for the expert episodes (0: one per core). Default 0.
    pub workers: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            world: None,
            world_options: None,
            expert_file: None,
            heldout_file: None,
            bad_records: BadRecords::Reject,
            train_tasks: 64,
            heldout_tasks: 16,
            heldout_split: Split::Seen,
            seed: 0,
            workers: 0,
        }
    }
}

/// Evaluation after SFT and after every cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Episodes on the first tasks of the `seen` split (greedy agent). Default 0 (off).
    pub seen_tasks: usize,
    /// Episodes on the first tasks of the `unseen` split. Default 0 (off).
    pub unseen_tasks: usize,
    /// Step limit of an episode (default: the world's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<usize>,
    /// Longest generated turn, in tokens. Default 96.
    pub max_new_tokens: usize,
    /// Episodes played in lockstep, their turns decoded as one batch (1: one at a time).
    /// Default 8.
    pub batch: usize,
    /// Also measure agreement on the training prefixes (the curve's "train" line). Default true.
    pub train_agreement: bool,
    /// Measure the untuned model too (before SFT). Default true.
    pub base: bool,
    /// Seed of the evaluation episodes. Default 0.
    pub seed: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            seen_tasks: 0,
            unseen_tasks: 0,
            max_steps: None,
            max_new_tokens: 96,
            batch: 8,
            train_agreement: true,
            base: true,
            seed: 0,
        }
    }
}

/// A whole training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The run's name: it is written into `runs/<name>/`.
    pub name: String,
    /// `sft`, `stepagent-implicit`, `stepagent-inverse`, `ppo`, `eto`, `rft` or `ipr`.
    /// Default `stepagent-implicit`.
    #[serde(default)]
    pub method: Method,
    /// Cycles K of inspection → reflection → evaluation. Default 3.
    #[serde(default = "default_cycles")]
    pub cycles: usize,
    /// The model.
    #[serde(default)]
    pub model: ModelConfig,
    /// The expert data.
    #[serde(default)]
    pub data: DataConfig,
    /// SFT.
    #[serde(default)]
    pub sft: SftConfig,
    /// Inspection.
    #[serde(default)]
    pub inspect: InspectConfig,
    /// Reflection (step-DPO).
    #[serde(default)]
    pub reflect: ReflectConfig,
    /// Evaluation.
    #[serde(default)]
    pub eval: EvalConfig,
    /// StepAgent-Inverse (discriminator and PPO).
    #[serde(default)]
    pub inverse: InverseConfig,
    /// PPO on the outcome reward.
    #[serde(default)]
    pub ppo: OutcomePpoConfig,
    /// ETO.
    #[serde(default)]
    pub eto: EtoMethodConfig,
    /// RFT.
    #[serde(default)]
    pub rft: RftConfig,
    /// IPR.
    #[serde(default)]
    pub ipr: IprMethodConfig,
    /// Training-health alarms of the RL methods.
    #[serde(default)]
    pub health: HealthConfig,
}

fn default_cycles() -> usize {
    3
}

impl TrainConfig {
    /// Parses a TOML config; an unknown key or a bad value is named.
    pub fn from_toml(text: &str) -> Result<Self, TrainError> {
        let cfg: TrainConfig = toml::from_str(text).map_err(|e| TrainError::Config {
            key: "<file>".into(),
            message: e.to_string().trim().to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values serde cannot, naming the key.
    pub fn validate(&self) -> Result<(), TrainError> {
        let ok_name = !self.name.is_empty()
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !self.name.starts_with('.');
        if !ok_name {
            return Err(TrainError::config(
                "name",
                "must be non-empty letters, digits, `-`, `_` or `.`",
            ));
        }
        if self.data.train_tasks == 0 {
            return Err(TrainError::config("data.train_tasks", "must be at least 1"));
        }
        if self.eval.max_new_tokens == 0 {
            return Err(TrainError::config("eval.max_new_tokens", "must be at least 1"));
        }
        self.sft.validate("sft")?;
        self.inspect.validate()?;
        self.reflect.validate()?;
        self.inverse.validate()?;
        self.ppo.validate()?;
        self.eto.validate()?;
        self.rft.validate()?;
        self.ipr.validate()?;
        self.health.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_a_minimal_config_and_round_trip() {
        let c = TrainConfig::from_toml("name = \"r\"\n[data]\nworld = \"line\"").unwrap();
        assert_eq!(c.cycles, 3);
        assert_eq!(c.reflect.beta, 0.1);
        assert_eq!(c.inspect.samples, 1);
        assert_eq!(c.inspect.temperature, 1.0);
        let text = toml::to_string_pretty(&c).unwrap();
        assert_eq!(TrainConfig::from_toml(&text).unwrap(), c);
    }

    #[test]
    fn every_method_reads_by_name_with_the_spec_defaults() {
        for m in Method::ALL {
            let c =
                TrainConfig::from_toml(&format!("name = \"r\"\nmethod = \"{}\"", m.key())).unwrap();
            assert_eq!(c.method, m);
        }
        let c = TrainConfig::from_toml("name = \"r\"").unwrap();
        assert_eq!(c.eto.betas, [0.1, 0.5]);
        assert_eq!(c.eto.extra_rounds, 5);
        assert_eq!((c.ipr.rollouts, c.ipr.margin, c.ipr.nll_weight), (5, 0.01, 1.0));
        assert_eq!(c.inverse.disc.reward, crate::disc::RewardTransform::LogD);
        assert_eq!(c.inverse.ppo.clip, 0.2);
        assert_eq!(c.ppo.update.advantage, crate::ppo::Advantage::Group);
        assert!(c.ppo.samples > 1, "a group baseline needs several episodes per task");
        assert_eq!(c.health.action, crate::health::HealthAction::Warn);
    }

    #[test]
    fn bad_keys_of_the_method_sections_are_named() {
        for (text, key) in [
            ("[inverse.disc]\nbatch = 0", "inverse.disc.batch"),
            ("[inverse.ppo]\nclip = 2.0", "inverse.ppo.clip"),
            ("[ppo]\nsamples = 0", "ppo.samples"),
            ("[ppo.update]\nminibatch = 0", "ppo.update.minibatch"),
            ("[eto]\nbetas = []", "eto.betas"),
            ("[rft]\nsamples = 0", "rft.samples"),
            ("[rft.sft.optim]\nlr = -1.0", "rft.sft.optim.lr"),
            ("[ipr]\nrollouts = 0", "ipr.rollouts"),
            ("[health]\nkl_max = 0.0", "health.kl_max"),
        ] {
            let e =
                TrainConfig::from_toml(&format!("name = \"r\"\n{text}")).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        for (text, key) in [
            ("[ipr]\nrolouts = 3", "rolouts"),
            ("[eto]\nbeta = 0.1", "beta"),
            ("[inverse.disc]\nhead = 1", "head"),
            ("[health]\nstop = true", "stop"),
        ] {
            let e =
                TrainConfig::from_toml(&format!("name = \"r\"\n{text}")).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = TrainConfig::from_toml("name = \"r\"\n[reflect]\nbeta = 0.1\nbeat = 2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("beat"), "{e}");
        let e =
            TrainConfig::from_toml("name = \"r\"\n[reflect]\nbeta = -1.0").unwrap_err().to_string();
        assert!(e.contains("reflect.beta"), "{e}");
        let e =
            TrainConfig::from_toml("name = \"r\"\n[sft.optim]\nlr = 0.0").unwrap_err().to_string();
        assert!(e.contains("sft.optim.lr"), "{e}");
        let e = TrainConfig::from_toml("name = \"r\"\nmethod = \"ppo2\"").unwrap_err().to_string();
        assert!(e.contains("ppo2") && e.contains("stepagent-inverse"), "{e}");
        let e = TrainConfig::from_toml("name = \"r\"\n[inspect]\ncompare = \"thought\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("compare") || e.contains("thought"), "{e}");
    }
}
