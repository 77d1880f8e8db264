//! Training-health alarms for RL stages. PPO on an LM fails in a few recognisable ways
//! long before the success rate says so: responses grow until they hit the length limit
//! (reward hacking on a length-biased reward), the share of unparseable or inadmissible
//! actions climbs (the policy drifts off the ReAct format), the KL to the reference runs
//! away, or the loss turns NaN. Each is a named [`Alarm`] to log into the metrics and the
//! report; with [`HealthAction::Stop`] an alarm also asks the caller to stop the stage.
//!
//! "Rising" and "blow-up" are relative to a baseline: the mean of the first
//! `baseline_steps` observations, so the thresholds need no knowledge of the task's typical
//! response length or invalid rate.

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// What an alarm does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthAction {
    /// Log it and go on (default).
    #[default]
    Warn,
    /// Log it and stop the stage.
    Stop,
}

/// Alarm thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// What an alarm does. Default `warn`.
    pub action: HealthAction,
    /// Observations whose mean is the baseline. Default 3.
    pub baseline_steps: usize,
    /// Length blow-up: mean response tokens above this multiple of the baseline. Default 2.0.
    pub length_ratio: f64,
    /// Invalid actions rising: the invalid-action rate above the baseline by more than this
    /// (absolute). Default 0.2.
    pub invalid_rise: f64,
    /// KL exploding: mean per-token KL to the reference above this (nats). Default 1.0.
    pub kl_max: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            action: HealthAction::Warn,
            baseline_steps: 3,
            length_ratio: 2.0,
            invalid_rise: 0.2,
            kl_max: 1.0,
        }
    }
}

impl HealthConfig {
    /// Checks the values, naming the bad key.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.baseline_steps == 0 {
            return Err(TrainError::config("health.baseline_steps", "must be at least 1"));
        }
        if self.length_ratio.is_nan() || self.length_ratio <= 1.0 {
            return Err(TrainError::config("health.length_ratio", "must be above 1"));
        }
        if self.invalid_rise.is_nan() || self.invalid_rise <= 0.0 {
            return Err(TrainError::config("health.invalid_rise", "must be positive"));
        }
        if self.kl_max.is_nan() || self.kl_max <= 0.0 {
            return Err(TrainError::config("health.kl_max", "must be positive"));
        }
        Ok(())
    }
}

/// The numbers watched, from one training step (a PPO update, say).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HealthSample {
    /// The step's number, for the alarm's message.
    pub step: usize,
    /// The loss.
    pub loss: f64,
    /// Mean per-token KL to the reference.
    pub kl: f64,
    /// Mean tokens per response.
    pub response_tokens: f64,
    /// Fraction of invalid actions.
    pub invalid_rate: f64,
}

impl HealthSample {
    /// The sample of a PPO update at `step`.
    pub fn from_ppo(step: usize, m: &crate::ppo::PpoMetrics) -> Self {
        HealthSample {
            step,
            loss: m.loss,
            kl: m.kl,
            response_tokens: m.response_tokens,
            invalid_rate: m.invalid_rate,
        }
    }
}

/// A named warning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "alarm", rename_all = "kebab-case")]
pub enum Alarm {
    /// A watched number is NaN or infinite.
    NonFinite {
        /// Step.
        step: usize,
        /// Which number.
        metric: String,
    },
    /// Responses grew past `length_ratio` × their baseline.
    LengthBlowUp {
        /// Step.
        step: usize,
        /// Baseline mean tokens.
        baseline: f64,
        /// Now.
        tokens: f64,
    },
    /// The invalid-action rate rose more than `invalid_rise` above its baseline.
    InvalidRising {
        /// Step.
        step: usize,
        /// Baseline rate.
        baseline: f64,
        /// Now.
        rate: f64,
    },
    /// The KL to the reference passed `kl_max`.
    KlExploding {
        /// Step.
        step: usize,
        /// Now.
        kl: f64,
        /// The threshold.
        limit: f64,
    },
}

impl Alarm {
    /// The alarm's name, as in metrics and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Alarm::NonFinite { .. } => "non-finite",
            Alarm::LengthBlowUp { .. } => "length-blow-up",
            Alarm::InvalidRising { .. } => "invalid-rising",
            Alarm::KlExploding { .. } => "kl-exploding",
        }
    }
}

impl std::fmt::Display for Alarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Alarm::NonFinite { step, metric } => write!(f, "step {step}: {metric} is not finite"),
            Alarm::LengthBlowUp { step, baseline, tokens } => write!(
                f,
                "step {step}: responses average {tokens:.1} tokens, up from {baseline:.1}"
            ),
            Alarm::InvalidRising { step, baseline, rate } => {
                write!(f, "step {step}: invalid-action rate {rate:.3}, up from {baseline:.3}")
            }
            Alarm::KlExploding { step, kl, limit } => {
                write!(f, "step {step}: KL to the reference {kl:.3} > {limit}")
            }
        }
    }
}

/// The verdict on one observation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The alarms raised.
    pub alarms: Vec<Alarm>,
    /// Whether the caller should stop (an alarm under [`HealthAction::Stop`]).
    pub stop: bool,
}

/// Watches a series of [`HealthSample`]s.
#[derive(Debug, Clone)]
pub struct HealthMonitor {
    cfg: HealthConfig,
    /// The first `baseline_steps` finite samples.
    baseline: Vec<HealthSample>,
}

impl HealthMonitor {
    /// A monitor with no history.
    pub fn new(cfg: HealthConfig) -> Result<Self, TrainError> {
        cfg.validate()?;
        Ok(HealthMonitor { cfg, baseline: Vec::new() })
    }

    /// Judges one observation (and, while the baseline is filling, adds it there).
    pub fn observe(&mut self, s: &HealthSample) -> Verdict {
        let mut alarms = Vec::new();
        let numbers = [
            ("loss", s.loss),
            ("kl", s.kl),
            ("response_tokens", s.response_tokens),
            ("invalid_rate", s.invalid_rate),
        ];
        for (name, v) in numbers {
            if !v.is_finite() {
                alarms.push(Alarm::NonFinite { step: s.step, metric: name.into() });
            }
        }
        if s.kl.is_finite() && s.kl > self.cfg.kl_max {
            alarms.push(Alarm::KlExploding { step: s.step, kl: s.kl, limit: self.cfg.kl_max });
        }
        if self.baseline.len() >= self.cfg.baseline_steps {
            let n = self.baseline.len() as f64;
            let len = self.baseline.iter().map(|b| b.response_tokens).sum::<f64>() / n;
            let inv = self.baseline.iter().map(|b| b.invalid_rate).sum::<f64>() / n;
            if s.response_tokens > self.cfg.length_ratio * len {
                alarms.push(Alarm::LengthBlowUp {
                    step: s.step,
                    baseline: len,
                    tokens: s.response_tokens,
                });
            }
            if s.invalid_rate > inv + self.cfg.invalid_rise {
                alarms.push(Alarm::InvalidRising {
                    step: s.step,
                    baseline: inv,
                    rate: s.invalid_rate,
                });
            }
        } else if numbers.iter().all(|(_, v)| v.is_finite()) {
            self.baseline.push(*s);
        }
        for a in &alarms {
            tracing::warn!(alarm = a.name(), "{a}");
        }
        let stop = !alarms.is_empty() && self.cfg.action == HealthAction::Stop;
        Verdict { alarms, stop }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(step: usize, loss: f64, kl: f64, tokens: f64, invalid: f64) -> HealthSample {
        HealthSample { step, loss, kl, response_tokens: tokens, invalid_rate: invalid }
    }

    fn names(v: &Verdict) -> Vec<&'static str> {
        v.alarms.iter().map(Alarm::name).collect()
    }

    /// Baseline (steps 0–2): 20, 22, 24 tokens (mean 22), invalid 0.1, 0.0, 0.2 (mean 0.1).
    /// Step 3: 40 tokens (< 44) and 0.25 invalid (< 0.3): healthy. Step 4: 45 tokens (> 44)
    /// and 0.35 invalid (> 0.3): both alarms. Step 5: KL 1.5 > 1.0. Step 6: a NaN loss.
    #[test]
    fn alarms_fire_on_a_constructed_series() {
        let mut m = HealthMonitor::new(HealthConfig::default()).unwrap();
        for (i, (t, inv)) in [(20.0, 0.1), (22.0, 0.0), (24.0, 0.2)].into_iter().enumerate() {
            assert!(m.observe(&sample(i, 0.5, 0.01, t, inv)).alarms.is_empty());
        }
        assert!(m.observe(&sample(3, 0.4, 0.02, 40.0, 0.25)).alarms.is_empty());
        let v = m.observe(&sample(4, 0.4, 0.02, 45.0, 0.35));
        assert_eq!(names(&v), ["length-blow-up", "invalid-rising"]);
        assert!(!v.stop, "warn does not stop");
        match &v.alarms[0] {
            Alarm::LengthBlowUp { baseline, tokens, .. } => {
                assert!((baseline - 22.0).abs() < 1e-12 && *tokens == 45.0)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(names(&m.observe(&sample(5, 0.4, 1.5, 22.0, 0.1))), ["kl-exploding"]);
        let v = m.observe(&sample(6, f64::NAN, 0.0, 22.0, 0.1));
        assert_eq!(v.alarms, [Alarm::NonFinite { step: 6, metric: "loss".into() }]);
        assert!(v.alarms[0].to_string().contains("step 6: loss"));
        let json = serde_json::to_value(&v.alarms[0]).unwrap();
        assert_eq!(json["alarm"], "non-finite");
    }

    #[test]
    fn stop_stops_and_a_nan_never_joins_the_baseline() {
        let cfg =
            HealthConfig { action: HealthAction::Stop, baseline_steps: 1, ..Default::default() };
        let mut m = HealthMonitor::new(cfg).unwrap();
        // Non-finite: alarmed and kept out of the baseline.
        assert!(m.observe(&sample(0, 0.1, f64::INFINITY, 10.0, 0.0)).stop);
        assert!(!m.observe(&sample(1, 0.1, 0.0, 10.0, 0.0)).stop);
        // The baseline is step 1's 10 tokens: 25 > 2 × 10.
        let v = m.observe(&sample(2, 0.1, 0.0, 25.0, 0.0));
        assert!(v.stop && names(&v) == ["length-blow-up"], "{v:?}");
        assert!(serde_json::from_str::<HealthConfig>(r#"{"kl_mx": 2}"#).is_err());
    }
}
