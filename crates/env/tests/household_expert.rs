//! The expert solves every generated task, with admissible actions and varied thoughts.

use std::collections::{BTreeMap, HashSet};

use stepagent_env::household::{HouseholdConfig, HouseholdWorld};
use stepagent_env::{Environment, Split, TaskId, World};

const TASKS: usize = 1_000;

fn solve_split(split: Split) {
    let world = HouseholdWorld::new(HouseholdConfig::default()).unwrap();
    let mut env = world.env();
    let mut failures = Vec::new();
    let mut thoughts = HashSet::new();
    let mut steps_by_type: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for i in 0..TASKS {
        let task = TaskId::new(split, i);
        env.reset(task, 0).unwrap();
        let mut won = false;
        while let Some(turn) = env.expert_step() {
            // Checking admissibility for every step is slow in debug; a sample is enough.
            if i % 10 == 0 {
                let adm = env.admissible_actions();
                assert!(
                    adm.contains(&turn.action),
                    "{task}: `{}` not admissible: {adm:?}",
                    turn.action
                );
            }
            assert!(
                !turn.thought.is_empty() && !turn.thought.contains('{'),
                "{task}: thought `{}`",
                turn.thought
            );
            thoughts.insert(turn.thought.clone());
            let out = env.step(&turn.action).unwrap();
            assert!(
                out.valid,
                "{task}: expert action `{}` answered `{}`",
                turn.action, out.observation
            );
            if out.done {
                won = out.won;
                break;
            }
        }
        let e = steps_by_type.entry(world.task_type(task).unwrap()).or_default();
        e.0 += 1;
        e.1 += env.steps();
        if !won {
            failures.push(format!(
                "{task} ({}): {} steps",
                world.task_type(task).unwrap(),
                env.steps()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{split}: the expert failed {} of {TASKS}: {failures:?}",
        failures.len()
    );
    assert!(thoughts.len() > 500, "{split}: only {} distinct thoughts", thoughts.len());
    eprintln!(
        "{split}: mean expert steps by type: {:?}",
        steps_by_type.iter().map(|(k, (n, s))| (k, *s as f64 / *n as f64)).collect::<Vec<_>>()
    );
}

#[test]
fn expert_solves_every_train_task() {
    solve_split(Split::Train);
}

#[test]
fn expert_solves_every_seen_task() {
    solve_split(Split::Seen);
}

#[test]
fn expert_solves_every_unseen_task() {
    solve_split(Split::Unseen);
}

#[test]
fn expert_is_deterministic_and_takes_over_from_any_state() {
    let world = HouseholdWorld::new(HouseholdConfig::default()).unwrap();
    for i in 0..60 {
        let task = TaskId::new(Split::Train, i);
        let transcript = |env: &mut dyn Environment| {
            let mut t = Vec::new();
            while let Some(turn) = env.expert_step() {
                let out = env.step(&turn.action).unwrap();
                t.push((turn, out.observation));
                if out.done {
                    return (t, out.won);
                }
            }
            (t, false)
        };
        let mut a = world.new_env().unwrap();
        let mut b = world.new_env().unwrap();
        a.reset(task, 3).unwrap();
        b.reset(task, 3).unwrap();
        assert_eq!(transcript(&mut *a), transcript(&mut *b));
        // A detour first (pick up whatever is first at some place), then the expert finishes.
        let mut c = world.new_env().unwrap();
        c.reset(task, 3).unwrap();
        let mut detour_done = false;
        for _ in 0..3 {
            let adm = c.admissible_actions();
            let pick = adm
                .iter()
                .find(|a| a.starts_with("take "))
                .or_else(|| adm.iter().find(|a| a.starts_with("go to ")))
                .unwrap()
                .clone();
            if c.step(&pick).unwrap().done {
                detour_done = true;
                break;
            }
        }
        if detour_done {
            continue;
        }
        let (t, won) = transcript(&mut *c);
        assert!(won, "{task}: the expert did not finish after a detour: {t:?}");
    }
}

#[test]
fn expert_thoughts_read_like_etos() {
    let world = HouseholdWorld::new(HouseholdConfig::default()).unwrap();
    let mut env = world.env();
    env.reset(TaskId::new(Split::Train, 2), 0).unwrap();
    let first = env.expert_step().unwrap();
    assert!(
        first.to_turn().starts_with("Thought: ") && first.to_turn().contains("\nAction: go to "),
        "{}",
        first.to_turn()
    );
    // The opening thought states what to look for and where.
    let goal = env.goal_text().unwrap().to_string();
    let object = stepagent_env::household::TaskType::parse_goal(&goal).unwrap().1;
    assert!(first.thought.contains(&object), "{} / {goal}", first.thought);
}
