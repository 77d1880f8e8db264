//! The expert: a planner for every task type that reads the true state (like ALFWorld's
//! hand-coded expert reads the game's facts) and writes each step as a ReAct turn.
//!
//! It searches like ETO's expert does: a task-determined few plausible receptacles are
//! checked (and closed again) before the one holding the object, so trajectories show search
//! without ever running out of steps. Every decision is a function of the current state, so
//! it also takes over from any state another policy left behind.

use super::catalog::catalog;
use super::generate::{mix, Rng};
use super::scene::Scene;
use super::spec::TaskType;
use crate::ExpertStep;

/// Per-episode choices fixed at reset.
#[derive(Debug, Clone)]
pub(crate) struct ExpertPlan {
    /// Receptacles to look in before going to the object (task-determined).
    decoys: Vec<usize>,
    /// Rotates receptacle preference so different tasks favour different instances.
    rot: usize,
    hash: u64,
}

impl ExpertPlan {
    pub fn new(scene: &Scene, hash: u64) -> ExpertPlan {
        let cat = catalog();
        let g = &scene.goal;
        let mut rng = Rng::new(mix(hash ^ 0xdec0_u64.wrapping_mul(31)));
        let max = match g.task_type {
            TaskType::PickAndPlaceSimple => 3,
            TaskType::PickTwoObjAndPlace => 1,
            _ => 2,
        };
        let holds_goal_obj =
            |r: usize| scene.receps[r].contents.iter().any(|&o| scene.objects[o].kind == g.object);
        let mut plausible: Vec<usize> = (0..scene.receps.len())
            .filter(|&r| {
                let k = &scene.receps[r].kind;
                cat.accepts_known(k, &g.object) && !holds_goal_obj(r) && *k != g.target
            })
            .collect();
        let n = rng.below(max + 1).min(plausible.len());
        let mut decoys = Vec::with_capacity(n);
        for _ in 0..n {
            decoys.push(plausible.swap_remove(rng.below(plausible.len())));
        }
        ExpertPlan { decoys, rot: rng.below(scene.receps.len().max(1)), hash }
    }
}

/// Picks one of several phrasings, fixed per task and step.
struct Voice {
    h: u64,
}

impl Voice {
    fn pick<'a>(&self, options: &[&'a str]) -> &'a str {
        options[(self.h % options.len() as u64) as usize]
    }
}

fn an(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(k, v);
    }
    s
}

/// "in" for containers, "on" for surfaces, as a person would say it.
fn prep(scene: &Scene, r: usize) -> &'static str {
    if scene.receps[r].openable
        || matches!(
            scene.receps[r].kind.as_str(),
            "garbagecan" | "sinkbasin" | "bathtubbasin" | "laundryhamper"
        )
    {
        "in"
    } else {
        "on"
    }
}

fn step(thought: String, action: String) -> Option<ExpertStep> {
    Some(ExpertStep { thought, action })
}

/// The process a task type needs before placing: (verb, past participle, appliance type).
fn process(ty: TaskType) -> Option<(&'static str, &'static str, &'static str)> {
    match ty {
        TaskType::PickCleanThenPlaceInRecep => Some(("clean", "clean", "sinkbasin")),
        TaskType::PickHeatThenPlaceInRecep => Some(("heat", "hot", "microwave")),
        TaskType::PickCoolThenPlaceInRecep => Some(("cool", "cool", "fridge")),
        _ => None,
    }
}

fn processed(scene: &Scene, o: usize) -> bool {
    let ob = &scene.objects[o];
    match scene.goal.task_type {
        TaskType::PickCleanThenPlaceInRecep => ob.clean,
        TaskType::PickHeatThenPlaceInRecep => ob.hot,
        TaskType::PickCoolThenPlaceInRecep => ob.cool,
        _ => true,
    }
}

/// Receptacles of `kind`, the one the agent stands at first, then in the plan's rotation.
fn nearest_of(scene: &Scene, plan: &ExpertPlan, pred: impl Fn(usize) -> bool) -> Option<usize> {
    let n = scene.receps.len();
    if let Some(r) = scene.at.filter(|&r| pred(r)) {
        return Some(r);
    }
    (0..n).map(|i| (i + plan.rot) % n).find(|&r| pred(r))
}

/// Where the goal object(s) go: for two objects, the target that already holds one.
fn goal_target(scene: &Scene, plan: &ExpertPlan) -> Option<usize> {
    let g = &scene.goal;
    let count = |r: usize| {
        scene.receps[r].contents.iter().filter(|&&o| scene.objects[o].kind == g.object).count()
    };
    let targets: Vec<usize> =
        (0..scene.receps.len()).filter(|&r| scene.receps[r].kind == g.target).collect();
    if g.task_type == TaskType::PickTwoObjAndPlace {
        if let Some(&best) = targets
            .iter()
            .filter(|&&r| count(r) > 0)
            .max_by_key(|&&r| (count(r), std::cmp::Reverse(r)))
        {
            return Some(best);
        }
    }
    if targets.is_empty() {
        return None;
    }
    Some(targets[(plan.hash >> 8) as usize % targets.len()])
}

/// The expert's next turn, or `None` when the goal holds or cannot be reached.
pub(crate) fn next_step(scene: &Scene, plan: &ExpertPlan, steps: usize) -> Option<ExpertStep> {
    if scene.won() {
        return None;
    }
    let v = Voice { h: mix(plan.hash ^ (steps as u64).wrapping_mul(0x9E37_79B9)) };
    let g = &scene.goal;
    let o = g.object.as_str();
    match scene.holding {
        Some(h) if scene.objects[h].kind == g.object => with_goal_object(scene, plan, h, &v, steps),
        Some(h) => put_down(scene, plan, h, &v),
        None => search(scene, plan, &v, steps, o),
    }
}

fn with_goal_object(
    scene: &Scene,
    plan: &ExpertPlan,
    h: usize,
    v: &Voice,
    steps: usize,
) -> Option<ExpertStep> {
    let g = &scene.goal;
    let held = scene.objects[h].name.as_str();
    let here = scene.at;
    if g.task_type == TaskType::LookAtObjInLight {
        let lamp = scene.objects.iter().position(|ob| ob.kind == g.target && ob.loc.is_some())?;
        let lamp_name = scene.objects[lamp].name.as_str();
        let lamp_at = scene.objects[lamp].loc?;
        let vars = [
            ("{held}", held),
            ("{lamp}", lamp_name),
            ("{place}", scene.receps[lamp_at].name.as_str()),
        ];
        if here == Some(lamp_at) {
            let t = v.pick(&[
                "The {lamp} is right here. Turning it on will let me look at the {held} under its light.",
                "I'm holding the {held} next to the {lamp}. I'll switch the lamp on to examine it.",
                "Now I can use the {lamp} to light up the {held} in my hand.",
            ]);
            return step(fill(t, &vars), format!("use {lamp_name}"));
        }
        let t = if scene.receps[lamp_at].inspected {
            v.pick(&[
                "I have the {held}. I remember seeing the {lamp} on the {place}, so I'll go back there.",
                "With the {held} in hand, I should return to the {place}, where the {lamp} is.",
            ])
        } else {
            v.pick(&[
                "I have the {held}. Now I need a {lamp} to look at it under; lamps usually stand on desks and side tables, so I'll try the {place}.",
                "Next I need to find a lamp to examine the {held} with. The {place} is a likely spot for the {lamp}.",
                "I've got the {held}. To examine it in the light, I need the {lamp}; I'll check the {place}.",
            ])
        };
        return step(fill(t, &vars), format!("go to {}", scene.receps[lamp_at].name));
    }
    if let Some((verb, done, appliance)) = process(g.task_type) {
        if !processed(scene, h) {
            let app = nearest_of(scene, plan, |r| scene.receps[r].kind == appliance)?;
            let app_name = scene.receps[app].name.as_str();
            let vars = [("{held}", held), ("{app}", app_name), ("{verb}", verb), ("{done}", done)];
            if here == Some(app) {
                let t = v.pick(&[
                    "I'm at the {app}. I'll {verb} the {held} here.",
                    "Now I can use the {app} to {verb} the {held}.",
                    "The {app} is in front of me, so I'll {verb} the {held} with it.",
                ]);
                return step(fill(t, &vars), format!("{verb} {held} with {app_name}"));
            }
            let t = v.pick(&[
                "I have the {held}, but it needs to be {done} first. The {app} is where I can {verb} it.",
                "Before placing the {held}, I must {verb} it. I'll go to the {app}.",
                "Next step: {verb} the {held}. Let me head to the {app}.",
            ]);
            return step(fill(t, &vars), format!("go to {app_name}"));
        }
    }
    let target = goal_target(scene, plan)?;
    let tname = scene.receps[target].name.as_str();
    let state = match process(g.task_type) {
        Some((_, done, _)) => format!("{done} "),
        None => String::new(),
    };
    let vars = [("{held}", held), ("{target}", tname), ("{state}", state.as_str())];
    if here == Some(target) {
        if !scene.receps[target].accessible() {
            let t = v.pick(&[
                "The {target} is closed. I need to open it before I can put the {held} inside.",
                "I have to open the {target} first to put the {held} in it.",
            ]);
            return step(fill(t, &vars), format!("open {tname}"));
        }
        let t = if g.task_type == TaskType::PickTwoObjAndPlace
            && scene.receps[target].contents.iter().any(|&x| scene.objects[x].kind == g.object)
        {
            v.pick(&[
                "This is the second one. Putting the {held} {prep} the {target} next to the first will finish the task.",
                "I'm back at the {target} with another {obj}. I'll put it with the first one.",
            ])
        } else {
            v.pick(&[
                "I'm at the {target} with the {state}{held}. I'll put it {prep} the {target}.",
                "Now I can place the {state}{held} {prep} the {target}.",
                "Here is the {target}. Time to put the {held} down here.",
            ])
        };
        let vars2 = [
            ("{held}", held),
            ("{target}", tname),
            ("{state}", state.as_str()),
            ("{obj}", g.object.as_str()),
            ("{prep}", prep(scene, target)),
        ];
        return step(fill(t, &vars2), format!("put {held} in/on {tname}"));
    }
    let t = if steps == 0 {
        "I'm already holding the {held}; I'll take it to the {target}."
    } else if state.is_empty() {
        v.pick(&[
            "I have the {held}. Now I need to put it {prep} the {target}.",
            "Got the {held}. Next, I'll carry it to the {target}.",
            "With the {held} in hand, I should go to the {target} to place it.",
        ])
    } else {
        v.pick(&[
            "The {held} is {state}now. Next, I'll take it to the {target}.",
            "Done: the {held} is {state}now. I'll go to the {target} to put it there.",
            "The {held} is {state}now, so it is ready to go {prep} the {target}.",
        ])
    };
    let vars = [
        ("{held}", held),
        ("{target}", tname),
        ("{state}", state.as_str()),
        ("{prep}", prep(scene, target)),
    ];
    step(fill(t, &vars), format!("go to {tname}"))
}

/// Holding something the task does not need: set it down first.
fn put_down(scene: &Scene, plan: &ExpertPlan, h: usize, v: &Voice) -> Option<ExpertStep> {
    let cat = catalog();
    let held = scene.objects[h].name.as_str();
    let fits = |r: usize| cat.can_contain(&scene.receps[r].kind, &scene.objects[h].kind);
    if let Some(r) = scene.at.filter(|&r| fits(r)) {
        let rname = scene.receps[r].name.as_str();
        let vars = [("{held}", held), ("{place}", rname), ("{prep}", prep(scene, r))];
        if !scene.receps[r].accessible() {
            return step(
                fill(
                    "I should free my hands. I'll open the {place} to leave the {held} there.",
                    &vars,
                ),
                format!("open {rname}"),
            );
        }
        let t = v.pick(&[
            "The {held} isn't what I need, and I can only carry one thing. I'll leave it {prep} the {place}.",
            "I'm holding the {held}, which doesn't help with the task. Let me put it down here.",
        ]);
        return step(fill(t, &vars), format!("put {held} in/on {rname}"));
    }
    let r = nearest_of(scene, plan, |r| fits(r) && !scene.receps[r].openable)
        .or_else(|| nearest_of(scene, plan, |r| fits(r) && Some(r) != scene.at))?;
    let vars = [("{held}", held), ("{place}", scene.receps[r].name.as_str())];
    step(
        fill("My hands are full with the {held}, which the task doesn't need. I'll set it down on the {place} first.", &vars),
        format!("go to {}", scene.receps[r].name),
    )
}

fn search(
    scene: &Scene,
    plan: &ExpertPlan,
    v: &Voice,
    steps: usize,
    o: &str,
) -> Option<ExpertStep> {
    let g = &scene.goal;
    let avoid =
        if g.task_type == TaskType::PickTwoObjAndPlace { goal_target(scene, plan) } else { None };
    let wanted = |r: usize| {
        Some(r) != avoid
            && scene.receps[r].contents.iter().any(|&x| scene.objects[x].kind == g.object)
    };
    let source = nearest_of(scene, plan, wanted)?;
    let placed_one = avoid.is_some_and(|t| {
        scene.receps[t].contents.iter().any(|&x| scene.objects[x].kind == g.object)
    });
    let an_o = an(o);
    if let Some(r) = scene.at {
        let rec = &scene.receps[r];
        let rname = rec.name.as_str();
        let vars = [("{o}", o), ("{an}", an_o), ("{place}", rname)];
        if wanted(r) {
            if !rec.accessible() {
                let t = v.pick(&[
                    "The {place} is closed. I'll open it to look for {an} {o}.",
                    "I need to open the {place} to see what's inside; there may be {an} {o} in it.",
                ]);
                return step(fill(t, &vars), format!("open {rname}"));
            }
            let x = *rec.contents.iter().find(|&&x| scene.objects[x].kind == g.object)?;
            let xname = scene.objects[x].name.as_str();
            let vars = [
                ("{x}", xname),
                ("{a}", an(xname)),
                ("{place}", rname),
                ("{prep}", prep(scene, r)),
            ];
            let t = v.pick(&[
                "There's {a} {x} here. I'll take it.",
                "I found {a} {x} {prep} the {place}. Let me pick it up.",
                "The {x} is what I'm looking for, so I'll take it from the {place}.",
            ]);
            return step(fill(t, &vars), format!("take {xname} from {rname}"));
        }
        if plan.decoys.contains(&r) {
            if !rec.accessible() && !rec.inspected {
                let t = v.pick(&[
                    "The {place} is closed. I'll open it and check for {an} {o}.",
                    "Let me open the {place}; {an} {o} could be stored inside.",
                ]);
                return step(fill(t, &vars), format!("open {rname}"));
            }
            if rec.openable && rec.open && rec.opened_by_agent {
                let t = v.pick(&[
                    "No {o} in the {place}. I'll close it and keep looking.",
                    "The {place} doesn't have {an} {o}. Let me close it before moving on.",
                ]);
                return step(fill(t, &vars), format!("close {rname}"));
            }
        }
    }
    let next = plan
        .decoys
        .iter()
        .copied()
        .find(|&d| !scene.receps[d].inspected && Some(d) != scene.at)
        .unwrap_or(source);
    let nname = scene.receps[next].name.as_str();
    let vars =
        [("{o}", o), ("{an}", an_o), ("{next}", nname), ("{goal}", g.text.trim_end_matches('.'))];
    let t = if steps == 0 || scene.at.is_none() {
        let mut kinds: Vec<&str> = Vec::new();
        for &d in plan.decoys.iter().chain(std::iter::once(&source)) {
            let k = scene.receps[d].kind.as_str();
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        let places = match kinds.len() {
            1 => kinds[0].to_string(),
            2 => format!("{} or {}", kinds[0], kinds[1]),
            _ => format!("{}, or {}", kinds[..kinds.len() - 1].join(", "), kinds[kinds.len() - 1]),
        };
        let intro = match process(g.task_type) {
            Some((verb, _, app)) => format!("To {{goal}}, I first need to find {{an}} {{o}}, {verb} it with a {app}, and then place it. "),
            None if g.task_type == TaskType::LookAtObjInLight => "To {goal}, I need to pick up {an} {o} and then turn on the lamp. ".to_string(),
            None if g.task_type == TaskType::PickTwoObjAndPlace => "I need two {o}s, placed together. ".to_string(),
            None => "To {goal}, I first need to find {an} {o}. ".to_string(),
        };
        let tail = if kinds.len() == 1 {
            v.pick(&[
                "{An} {o} is most likely at a {places}. I'll start with the {next}.",
                "I'd expect to find {an} {o} at a {places}, so let me check the {next} first.",
            ])
        } else {
            v.pick(&[
                "{An} {o} is likely to be in {places}. I'll start with the {next}.",
                "{An} {o} could be in {places}. Let me check the {next} first.",
                "Good places to look for {an} {o} are {places}. I'll begin at the {next}.",
            ])
        };
        let cap = format!("{}{}", an_o[..1].to_uppercase(), &an_o[1..]);
        let text = format!("{intro}{tail}").replace("{places}", &places).replace("{An}", &cap);
        return step(fill(&text, &vars), format!("go to {nname}"));
    } else if placed_one {
        v.pick(&[
            "One {o} is in place. I still need a second {o}; I'll look in the {next}.",
            "That's the first {o}. Now I need another one, so I'll check the {next}.",
        ])
    } else if scene.at.is_some_and(|r| scene.receps[r].inspected) {
        v.pick(&[
            "There's no {o} here. Next, I'll check the {next}.",
            "No {o} at this spot. Let me try the {next}.",
            "I don't see {an} {o} here, so I'll move on to the {next}.",
        ])
    } else {
        v.pick(&[
            "I'll look for {an} {o} in the {next}.",
            "Let me go to the {next} to find {an} {o}.",
        ])
    };
    step(fill(t, &vars), format!("go to {nname}"))
}
