use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::EnvError;

/// Which part of a benchmark a task belongs to.
///
/// `seen` and `unseen` follow ALFWorld's `valid_seen` / `valid_unseen` (ETO's "seen" and
/// "unseen" held-out sets): unseen tasks come from settings (rooms, products, questions) that
/// no training task uses. A world with a single test split calls it `unseen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Tasks for training (expert data, exploration).
    Train,
    /// Held-out tasks in settings seen during training.
    Seen,
    /// Held-out tasks in unseen settings.
    Unseen,
}

impl Split {
    /// All splits, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Seen, Split::Unseen];

    /// The canonical lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Seen => "seen",
            Split::Unseen => "unseen",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = EnvError;

    /// Accepts the canonical names and the names the original benchmarks use.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "seen" | "valid_seen" | "dev" => Ok(Split::Seen),
            "unseen" | "valid_unseen" | "test" => Ok(Split::Unseen),
            _ => Err(EnvError::UnknownSplit(s.to_string())),
        }
    }
}

/// A task: a split and an index into it. Written `split/index`, e.g. `unseen/17`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId {
    /// The split.
    pub split: Split,
    /// Index within the split, from 0.
    pub index: usize,
}

impl TaskId {
    /// A task id.
    pub fn new(split: Split, index: usize) -> Self {
        TaskId { split, index }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.split, self.index)
    }
}

impl FromStr for TaskId {
    type Err = EnvError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            EnvError::BadSpec(format!("task id `{s}`: expected `split/index`, e.g. `unseen/17`"))
        };
        let (split, index) = s.split_once('/').ok_or_else(bad)?;
        Ok(TaskId { split: split.parse()?, index: index.trim().parse().map_err(|_| bad())? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_aliases() {
        assert_eq!("valid_unseen".parse::<Split>().unwrap(), Split::Unseen);
        assert_eq!("Dev".parse::<Split>().unwrap(), Split::Seen);
        assert!("validation".parse::<Split>().is_err());
    }

    #[test]
    fn task_id_round_trip() {
        let t: TaskId = "unseen/17".parse().unwrap();
        assert_eq!(t, TaskId::new(Split::Unseen, 17));
        assert_eq!(t.to_string(), "unseen/17");
        assert!("unseen".parse::<TaskId>().is_err());
        assert!("unseen/x".parse::<TaskId>().is_err());
    }
}
