//! ScienceWorld's 30 tasks, their variation splits, and the task lists ETO evaluated on.
//!
//! Each task's variations are split by the simulator into three contiguous ranges: train
//! `[0, train)`, dev `[train, train + dev)`, test the rest (`getVariationsTrain/Dev/Test`
//! in the jar; a Java-gated test checks these numbers against it).

/// One ScienceWorld task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSpec {
    /// The simulator's name, as `load` takes it.
    pub name: &'static str,
    /// The paper's numbering, e.g. `1-1`.
    pub id: &'static str,
    /// ETO's name (`task-1-boil`), for tasks ETO kept.
    pub eto_name: Option<&'static str>,
    /// ETO's step budget for this task (`max_steps.json`); 100, the simulator's default
    /// `envStepLimit`, for tasks ETO did not use.
    pub max_steps: usize,
    /// How many variations the simulator has.
    pub variations: usize,
    /// How many of them are train.
    pub train: usize,
    /// How many of them are dev.
    pub dev: usize,
}

impl TaskSpec {
    /// Variations of the simulator's train split.
    pub fn train_variations(&self) -> std::ops::Range<usize> {
        0..self.train
    }
    /// Variations of the simulator's dev split.
    pub fn dev_variations(&self) -> std::ops::Range<usize> {
        self.train..self.train + self.dev
    }
    /// Variations of the simulator's test split.
    pub fn test_variations(&self) -> std::ops::Range<usize> {
        self.train + self.dev..self.variations
    }
}

const fn t(
    name: &'static str,
    id: &'static str,
    eto_name: Option<&'static str>,
    max_steps: usize,
    variations: usize,
    train: usize,
    dev: usize,
) -> TaskSpec {
    TaskSpec { name, id, eto_name, max_steps, variations, train, dev }
}

/// All 30 tasks, in the simulator's numbering.
pub const TASKS: &[TaskSpec] = &[
    t("boil", "1-1", Some("task-1-boil"), 100, 30, 14, 7),
    t("melt", "1-2", Some("task-1-melt"), 80, 30, 14, 7),
    t("freeze", "1-3", Some("task-1-freeze"), 80, 30, 14, 7),
    t(
        "change-the-state-of-matter-of",
        "1-4",
        Some("task-1-change-the-state-of-matter-of"),
        80,
        30,
        14,
        7,
    ),
    t("use-thermometer", "2-1", Some("task-10-use-thermometer"), 30, 540, 270, 135),
    t(
        "measure-melting-point-known-substance",
        "2-2",
        Some("task-10-measure-melting-point-(known-substance)"),
        120,
        436,
        218,
        109,
    ),
    t("measure-melting-point-unknown-substance", "2-3", None, 100, 300, 150, 75),
    t("power-component", "3-1", Some("task-2-power-component"), 20, 20, 10, 5),
    t(
        "power-component-renewable-vs-nonrenewable-energy",
        "3-2",
        Some("task-2-power-component-(renewable-vs-nonrenewable-energy)"),
        30,
        20,
        10,
        5,
    ),
    t("test-conductivity", "3-3", Some("task-2a-test-conductivity"), 30, 900, 450, 225),
    t(
        "test-conductivity-of-unknown-substances",
        "3-4",
        Some("task-2a-test-conductivity-of-unknown-substances"),
        30,
        600,
        300,
        150,
    ),
    t("find-living-thing", "4-1", Some("task-3-find-living-thing"), 15, 300, 150, 75),
    t("find-non-living-thing", "4-2", Some("task-3-find-non-living-thing"), 15, 300, 150, 75),
    t("find-plant", "4-3", Some("task-3-find-plant"), 15, 300, 150, 75),
    t("find-animal", "4-4", Some("task-3-find-animal"), 15, 300, 150, 75),
    t("grow-plant", "5-1", Some("task-4-grow-plant"), 30, 126, 62, 31),
    t("grow-fruit", "5-2", Some("task-4-grow-fruit"), 60, 126, 62, 31),
    t("chemistry-mix", "6-1", Some("task-5-chemistry-mix"), 60, 32, 16, 8),
    t(
        "chemistry-mix-paint-secondary-color",
        "6-2",
        Some("task-5-chemistry-mix-paint-(secondary-color)"),
        15,
        36,
        18,
        9,
    ),
    t(
        "chemistry-mix-paint-tertiary-color",
        "6-3",
        Some("task-5-chemistry-mix-paint-(tertiary-color)"),
        30,
        36,
        18,
        9,
    ),
    t("lifespan-longest-lived", "7-1", Some("task-6-lifespan-(longest-lived)"), 10, 125, 62, 31),
    t("lifespan-shortest-lived", "7-2", Some("task-6-lifespan-(shortest-lived)"), 10, 125, 62, 31),
    t(
        "lifespan-longest-lived-then-shortest-lived",
        "7-3",
        Some("task-6-lifespan-(longest-lived-then-shortest-lived)"),
        12,
        125,
        62,
        31,
    ),
    t("identify-life-stages-1", "8-1", Some("task-7-identify-life-stages-1"), 30, 14, 6, 3),
    t("identify-life-stages-2", "8-2", Some("task-7-identify-life-stages-2"), 30, 10, 4, 2),
    t("inclined-plane-determine-angle", "9-1", None, 100, 168, 84, 42),
    t("inclined-plane-friction-named-surfaces", "9-2", None, 100, 1386, 692, 346),
    t("inclined-plane-friction-unnamed-surfaces", "9-3", None, 100, 162, 80, 42),
    t("mendelian-genetics-known-plant", "10-1", None, 100, 120, 60, 30),
    t("mendelian-genetics-unknown-plant", "10-2", None, 100, 480, 240, 120),
];

/// The task called `name` (the simulator's name or ETO's).
pub fn find(name: &str) -> Option<&'static TaskSpec> {
    TASKS.iter().find(|t| t.name == name || t.eto_name == Some(name))
}

/// ETO's "seen" set: the 194 `(task, variation)` pairs of its `dev_indices.json`, grouped by
/// task. ETO drew at most 10 variations per task at random from the simulator's dev split
/// (no seed was published, so the draw cannot be recomputed, only copied), and left out five
/// dev variations of the small tasks (boil 18, power-component 10 and 14, renewable 11 and
/// 12) that the plain rule "all of them" would have kept.
pub const ETO_SEEN: &[(&str, &[usize])] = &[
    ("boil", &[14, 15, 16, 17, 19, 20]),
    ("melt", &[14, 15, 16, 17, 18, 19, 20]),
    ("freeze", &[14, 15, 16, 17, 18, 19, 20]),
    ("change-the-state-of-matter-of", &[14, 15, 16, 17, 18, 19, 20]),
    ("use-thermometer", &[284, 285, 291, 314, 358, 360, 364, 378, 384, 385]),
    ("measure-melting-point-known-substance", &[253, 280, 281, 286, 287, 292, 299, 300, 325, 326]),
    ("power-component", &[11, 12, 13]),
    ("power-component-renewable-vs-nonrenewable-energy", &[10, 13, 14]),
    ("test-conductivity", &[474, 479, 485, 523, 528, 579, 587, 640, 655, 662]),
    (
        "test-conductivity-of-unknown-substances",
        &[313, 352, 376, 386, 389, 394, 409, 413, 418, 448],
    ),
    ("find-living-thing", &[161, 180, 186, 202, 206, 209, 214, 216, 218, 221]),
    ("find-non-living-thing", &[150, 158, 179, 184, 185, 187, 192, 198, 209, 214]),
    ("find-plant", &[154, 164, 165, 175, 177, 179, 181, 203, 206, 209]),
    ("find-animal", &[159, 173, 176, 188, 193, 211, 213, 216, 218, 221]),
    ("grow-plant", &[64, 65, 68, 77, 78, 84, 85, 86, 87, 88]),
    ("grow-fruit", &[62, 65, 68, 71, 72, 80, 84, 85, 88, 90]),
    ("chemistry-mix", &[16, 17, 18, 19, 20, 21, 22, 23]),
    ("chemistry-mix-paint-secondary-color", &[18, 19, 20, 21, 22, 23, 24, 25, 26]),
    ("chemistry-mix-paint-tertiary-color", &[18, 19, 20, 21, 22, 23, 24, 25, 26]),
    ("lifespan-longest-lived", &[66, 68, 72, 73, 78, 80, 83, 84, 88, 92]),
    ("lifespan-shortest-lived", &[69, 70, 71, 76, 80, 82, 84, 85, 87, 91]),
    ("lifespan-longest-lived-then-shortest-lived", &[64, 66, 67, 68, 69, 72, 78, 80, 85, 87]),
    ("identify-life-stages-1", &[6, 7, 8]),
    ("identify-life-stages-2", &[4, 5]),
];

/// ETO's "unseen" rule, which reproduces its `test_indices.json` (211 pairs) exactly: the
/// first ten variations of the simulator's test split of each task ETO kept.
pub const ETO_UNSEEN_PER_TASK: usize = 10;

/// One episode's task: which simulator task and variation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance {
    /// The task.
    pub spec: &'static TaskSpec,
    /// The variation index.
    pub variation: usize,
}

/// Which task lists a world serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskSet {
    /// ETO's 24 tasks: train = all their train variations, seen = ETO's 194 dev pairs,
    /// unseen = ETO's 211 test pairs.
    #[default]
    Eto,
    /// All 30 tasks with the simulator's whole train / dev / test splits.
    All,
}

/// The three task lists of a task set, each ordered by task then variation.
pub fn instances(set: TaskSet) -> [Vec<Instance>; 3] {
    let mut train = Vec::new();
    let mut seen = Vec::new();
    let mut unseen = Vec::new();
    for spec in TASKS {
        let keep = match set {
            TaskSet::Eto => spec.eto_name.is_some(),
            TaskSet::All => true,
        };
        if !keep {
            continue;
        }
        let inst = |variation| Instance { spec, variation };
        train.extend(spec.train_variations().map(inst));
        match set {
            TaskSet::All => {
                seen.extend(spec.dev_variations().map(inst));
                unseen.extend(spec.test_variations().map(inst));
            }
            TaskSet::Eto => {
                let dev =
                    ETO_SEEN.iter().find(|(n, _)| *n == spec.name).map(|(_, v)| *v).unwrap_or(&[]);
                seen.extend(dev.iter().copied().map(inst));
                unseen.extend(spec.test_variations().take(ETO_UNSEEN_PER_TASK).map(inst));
            }
        }
    }
    [train, seen, unseen]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eto_sizes_match_the_paper() {
        let [train, seen, unseen] = instances(TaskSet::Eto);
        assert_eq!(seen.len(), 194, "ETO's dev_indices.json has 194 pairs");
        assert_eq!(unseen.len(), 211, "ETO's test_indices.json has 211 pairs");
        assert_eq!(train.len(), 2286);
        let tasks: std::collections::BTreeSet<_> = unseen.iter().map(|i| i.spec.name).collect();
        assert_eq!(tasks.len(), 24);
    }

    #[test]
    fn all_has_every_variation_once() {
        let [train, seen, unseen] = instances(TaskSet::All);
        let total: usize = TASKS.iter().map(|t| t.variations).sum();
        assert_eq!(train.len() + seen.len() + unseen.len(), total);
        assert_eq!(TASKS.len(), 30);
    }

    #[test]
    fn eto_seen_lies_in_the_dev_split() {
        for (name, vars) in ETO_SEEN {
            let spec = find(name).unwrap_or_else(|| panic!("unknown task {name}"));
            assert!(spec.eto_name.is_some(), "{name} is not an ETO task");
            assert!(vars.len() <= 10, "{name}: more than 10 dev variations");
            for v in *vars {
                assert!(spec.dev_variations().contains(v), "{name} {v} is not a dev variation");
            }
            assert!(vars.windows(2).all(|w| w[0] < w[1]), "{name}: not sorted and unique");
        }
        assert_eq!(ETO_SEEN.len(), 24);
    }

    #[test]
    fn names_resolve_both_ways() {
        assert_eq!(find("task-1-boil").map(|t| t.name), Some("boil"));
        assert_eq!(find("boil").map(|t| t.max_steps), Some(100));
        assert_eq!(find("task-6-lifespan-(longest-lived)").map(|t| t.max_steps), Some(10));
        assert!(find("boiling").is_none());
        for t in TASKS {
            assert_eq!(t.train + t.dev + t.test_variations().len(), t.variations);
        }
    }
}
