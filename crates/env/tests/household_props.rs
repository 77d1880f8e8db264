//! Invariants of the household world, over generated tasks and arbitrary input.

use proptest::prelude::*;
use stepagent_env::household::{HouseholdConfig, HouseholdWorld};
use stepagent_env::{Environment, Split, TaskId, World};

fn world() -> HouseholdWorld {
    HouseholdWorld::new(HouseholdConfig {
        train_tasks: 200,
        seen_tasks: 50,
        unseen_tasks: 50,
        ..Default::default()
    })
    .unwrap()
}

fn split_of(i: u8) -> Split {
    Split::ALL[i as usize % 3]
}

/// An action: any string, or one of the admissible commands (so episodes get somewhere), or a
/// near-miss of one.
#[derive(Debug, Clone)]
enum Act {
    Free(String),
    Admissible(usize),
    Mangled(usize, String),
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        any::<String>().prop_map(Act::Free),
        "(go to|take|put|open|close|clean|heat|cool|use|examine) [a-z ]{0,20}( [0-9]{1,2})?( from| in/on| with)?( [a-z]{0,12} [0-9])?"
            .prop_map(Act::Free),
        any::<usize>().prop_map(Act::Admissible),
        any::<usize>().prop_map(Act::Admissible),
        (any::<usize>(), "[A-Z ]{0,3}").prop_map(|(i, s)| Act::Mangled(i, s)),
    ]
}

fn resolve(env: &dyn Environment, a: &Act) -> String {
    let adm = env.admissible_actions();
    match a {
        Act::Free(s) => s.clone(),
        Act::Admissible(i) if !adm.is_empty() => adm[i % adm.len()].clone(),
        Act::Mangled(i, s) if !adm.is_empty() => format!("{}{s}", adm[i % adm.len()]),
        _ => "look".into(),
    }
}

/// Runs an episode; returns its transcript.
fn run(world: &HouseholdWorld, task: TaskId, seed: u64, acts: &[Act]) -> Vec<String> {
    let mut env = world.new_env().unwrap();
    let mut transcript = vec![env.reset(task, seed).unwrap()];
    for a in acts {
        let action = resolve(&*env, a);
        let admissible = env.admissible_actions().contains(&action);
        let out = env.step(&action).unwrap();
        if admissible {
            assert!(out.valid, "admissible `{action}` answered `{}`", out.observation);
        }
        assert_eq!(out.valid, out.observation != "Nothing happens.");
        assert_eq!(out.reward, if out.won { 1.0 } else { 0.0 });
        assert!(out.won == out.reward.eq(&1.0) && (!out.won || out.done));
        transcript.push(format!("> {action}\n{}", out.observation));
        if out.done {
            assert!(env.step("look").is_err());
            break;
        }
    }
    transcript
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_action_never_panics_and_admissible_actions_are_valid(
        split in any::<u8>(), index in 0usize..50, seed in any::<u64>(), acts in prop::collection::vec(act(), 1..60),
    ) {
        run(&world(), TaskId::new(split_of(split), index), seed, &acts);
    }

    #[test]
    fn episodes_always_end_within_max_steps(
        split in any::<u8>(), index in 0usize..50, seed in any::<u64>(), max_steps in 1usize..30,
        acts in prop::collection::vec(act(), 1..20),
    ) {
        let world = HouseholdWorld::new(HouseholdConfig { max_steps, ..Default::default() }).unwrap();
        let mut env = world.new_env().unwrap();
        env.reset(TaskId::new(split_of(split), index), seed).unwrap();
        let mut ended = false;
        for i in 0..max_steps {
            let action = resolve(&*env, &acts[i % acts.len()]);
            let out = env.step(&action).unwrap();
            prop_assert_eq!(out.steps, i + 1);
            if out.done {
                ended = true;
                break;
            }
        }
        prop_assert!(ended, "the episode did not end after max_steps = {}", max_steps);
    }

    #[test]
    fn same_task_and_seed_give_the_same_transcript(
        split in any::<u8>(), index in 0usize..50, seed in any::<u64>(), acts in prop::collection::vec(act(), 1..40),
    ) {
        let w = world();
        let task = TaskId::new(split_of(split), index);
        prop_assert_eq!(run(&w, task, seed, &acts), run(&w, task, seed, &acts));
        let mut a = w.new_env().unwrap();
        let mut b = w.new_env().unwrap();
        a.reset(task, seed).unwrap();
        b.reset(task, seed).unwrap();
        prop_assert_eq!(a.expert_step(), b.expert_step());
    }
}
