//! Generated tasks: a task id picks a floor plan, a task type and its goal; the seed places
//! the objects. Train and seen tasks use ALFRED's training rooms, unseen tasks its held-out
//! rooms.

use std::collections::HashMap;

use super::catalog::{catalog, FloorPlan};
use super::spec::{GoalSpec, ReceptacleSpec, SceneSpec, TaskType};
use crate::{EnvError, Split, TaskId};

/// SplitMix64: tiny, fast and fixed forever, so task ids mean the same scenes in every
/// version (a library RNG may change its stream between releases).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// SplitMix64's finaliser: a good 64-bit hash of one word.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A goal that fits a floor plan.
#[derive(Debug, Clone)]
struct Combo {
    plan: usize,
    object: String,
    target: String,
}

/// Every valid (floor plan, object, target) per task type, for the training rooms and for
/// the held-out rooms.
#[derive(Debug)]
pub(crate) struct Generator {
    train_rooms: Vec<Vec<Combo>>,
    unseen_rooms: Vec<Vec<Combo>>,
}

/// Furniture a floor lamp stands by (ALFWorld keeps every lamp "in" a receptacle).
const FLOORLAMP_HOSTS: [&str; 8] =
    ["sidetable", "armchair", "sofa", "dresser", "desk", "coffeetable", "diningtable", "shelf"];
const DESKLAMP_HOSTS: [&str; 4] = ["desk", "sidetable", "dresser", "shelf"];

fn lamp_hosts(lamp: &str) -> &'static [&'static str] {
    if lamp == "desklamp" {
        &DESKLAMP_HOSTS
    } else {
        &FLOORLAMP_HOSTS
    }
}

fn has(plan: &FloorPlan, kind: &str) -> bool {
    plan.receptacles.iter().any(|(k, _)| k == kind)
}

/// Where ALFWorld generates each task type (constants.GOALS_VALID).
fn room_allows(ty: TaskType, room: &str) -> bool {
    match ty {
        TaskType::PickAndPlaceSimple | TaskType::PickTwoObjAndPlace => true,
        TaskType::LookAtObjInLight => matches!(room, "livingroom" | "bedroom"),
        TaskType::PickCleanThenPlaceInRecep => matches!(room, "kitchen" | "bathroom"),
        TaskType::PickHeatThenPlaceInRecep | TaskType::PickCoolThenPlaceInRecep => {
            room == "kitchen"
        }
    }
}

fn combos_for(plans: &[(usize, &FloorPlan)], ty: TaskType) -> Vec<Combo> {
    let cat = catalog();
    let mut out = Vec::new();
    for &(pi, plan) in plans {
        if !room_allows(ty, &plan.room) {
            continue;
        }
        if ty == TaskType::LookAtObjInLight {
            for lamp in &plan.lamps {
                if !lamp_hosts(lamp).iter().any(|h| has(plan, h)) {
                    continue;
                }
                for o in &plan.objects {
                    if plan.receptacles.iter().any(|(k, _)| cat.accepts_known(k, o)) {
                        out.push(Combo { plan: pi, object: o.clone(), target: lamp.clone() });
                    }
                }
            }
            continue;
        }
        let (appliance, able): (Option<&str>, fn(&str) -> bool) = match ty {
            TaskType::PickCleanThenPlaceInRecep => (Some("sinkbasin"), |o| catalog().cleanable(o)),
            TaskType::PickHeatThenPlaceInRecep => (Some("microwave"), |o| catalog().heatable(o)),
            TaskType::PickCoolThenPlaceInRecep => (Some("fridge"), |o| catalog().coolable(o)),
            _ => (None, |_| true),
        };
        if appliance.is_some_and(|a| !has(plan, a)) {
            continue;
        }
        for o in plan.objects.iter().filter(|o| able(o)) {
            for (r, _) in &plan.receptacles {
                if Some(r.as_str()) == appliance || !cat.accepts_known(r, o) {
                    continue;
                }
                // The object must be able to start somewhere that is not already the goal.
                if plan.receptacles.iter().any(|(k, _)| k != r && cat.accepts_known(k, o)) {
                    out.push(Combo { plan: pi, object: o.clone(), target: r.clone() });
                }
            }
        }
    }
    out
}

impl Generator {
    /// The generator, built once per process (its tables depend only on embedded data).
    pub fn shared() -> &'static Generator {
        static GENERATOR: std::sync::OnceLock<Generator> = std::sync::OnceLock::new();
        GENERATOR.get_or_init(Generator::new)
    }

    fn new() -> Generator {
        let cat = catalog();
        let (mut train, mut unseen) = (Vec::new(), Vec::new());
        for (i, p) in cat.floorplans.iter().enumerate() {
            if cat.unseen_floorplans.contains(&p.id) {
                unseen.push((i, p));
            } else {
                train.push((i, p));
            }
        }
        Generator {
            train_rooms: TaskType::ALL.iter().map(|&t| combos_for(&train, t)).collect(),
            unseen_rooms: TaskType::ALL.iter().map(|&t| combos_for(&unseen, t)).collect(),
        }
    }

    /// The task type of a task id: types take turns, so every split is balanced.
    pub fn task_type(task: TaskId) -> TaskType {
        TaskType::ALL[task.index % TaskType::ALL.len()]
    }

    /// A per-task hash; the split is mixed in so seen tasks differ from train tasks.
    pub fn task_hash(task: TaskId) -> u64 {
        let salt = match task.split {
            Split::Train => 0x7472_6169_6e00_0000,
            Split::Seen => 0x7365_656e_0000_0000,
            Split::Unseen => 0x756e_7365_656e_0000,
        };
        mix(salt ^ mix(task.index as u64))
    }

    /// The floor plan number and scene of `task` with objects placed by `seed`.
    pub fn scene(&self, task: TaskId, seed: u64) -> Result<(u32, SceneSpec), EnvError> {
        let ty = Self::task_type(task);
        let h = Self::task_hash(task);
        let pool = match task.split {
            Split::Train | Split::Seen => &self.train_rooms,
            Split::Unseen => &self.unseen_rooms,
        };
        let combos = &pool[ty as usize];
        if combos.is_empty() {
            return Err(EnvError::BadSpec(format!(
                "household: no room supports {ty} in the {} split",
                task.split
            )));
        }
        let combo = &combos[(h % combos.len() as u64) as usize];
        let plan = &catalog().floorplans[combo.plan];
        let variant = ((h >> 40) & 1) as usize;
        let mut rng = Rng::new(mix(h ^ mix(seed.wrapping_add(0x5eed))));
        Ok((plan.id, place(plan, ty, combo, variant, &mut rng)))
    }
}

/// Puts the goal objects, the lamp and some distractors into the room's receptacles.
fn place(
    plan: &FloorPlan,
    ty: TaskType,
    combo: &Combo,
    variant: usize,
    rng: &mut Rng,
) -> SceneSpec {
    let cat = catalog();
    let mut receptacles: Vec<ReceptacleSpec> = Vec::new();
    for (kind, count) in &plan.receptacles {
        for n in 1..=*count {
            receptacles.push(ReceptacleSpec {
                name: format!("{kind} {n}"),
                openable: None,
                open: false,
                contents: Vec::new(),
            });
        }
    }
    let kind_of = |r: &ReceptacleSpec| {
        r.name.rsplit_once(' ').map(|(k, _)| k.to_string()).unwrap_or_default()
    };
    let kinds: Vec<String> = receptacles.iter().map(kind_of).collect();
    let mut counters: HashMap<String, u32> = HashMap::new();
    // Where each object type may go, computed once per type: resets stay cheap.
    let mut spots_of: HashMap<(String, u8), Vec<usize>> = HashMap::new();
    let mut put = |receptacles: &mut Vec<ReceptacleSpec>,
                   obj: &str,
                   rule: u8,
                   allowed: &dyn Fn(&str) -> bool,
                   rng: &mut Rng| {
        let spots = spots_of
            .entry((obj.to_string(), rule))
            .or_insert_with(|| (0..kinds.len()).filter(|&i| allowed(&kinds[i])).collect());
        if spots.is_empty() {
            return;
        }
        let n = counters.entry(obj.to_string()).or_insert(0);
        *n += 1;
        let r = spots[rng.below(spots.len())];
        receptacles[r].contents.push(format!("{obj} {n}"));
    };

    let target = combo.target.as_str();
    let object = combo.object.as_str();
    let goal_count = match ty {
        TaskType::PickTwoObjAndPlace => 2 + rng.below(3),
        _ => 1 + rng.below(3),
    };
    let not_goal =
        |k: &str| cat.accepts_known(k, object) && (ty == TaskType::LookAtObjInLight || k != target);
    for _ in 0..goal_count {
        put(&mut receptacles, object, 0, &not_goal, rng);
    }
    for lamp in &plan.lamps {
        let hosts = lamp_hosts(lamp);
        put(&mut receptacles, lamp, 1, &|k: &str| hosts.contains(&k), rng);
    }
    let others: Vec<&String> = plan.objects.iter().filter(|o| o.as_str() != object).collect();
    if !others.is_empty() {
        let n = receptacles.len() / 2 + rng.below(receptacles.len() / 2 + 6);
        for _ in 0..n {
            let o = others[rng.below(others.len())].as_str();
            put(&mut receptacles, o, 2, &|k: &str| cat.accepts_known(k, o), rng);
        }
    }
    let goal = GoalSpec {
        task_type: ty,
        object: object.to_string(),
        receptacle: (ty != TaskType::LookAtObjInLight).then(|| target.to_string()),
        lamp: (ty == TaskType::LookAtObjInLight).then(|| target.to_string()),
        text: Some(ty.goal_text(object, target, variant)),
    };
    SceneSpec { receptacles, goal, states: Default::default() }
}
