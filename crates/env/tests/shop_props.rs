//! Invariants of the shop world under arbitrary actions.

use std::sync::OnceLock;

use proptest::prelude::*;
use stepagent_env::shop::{ShopConfig, ShopWorld};
use stepagent_env::{Environment, Split, TaskId, World};

fn world() -> &'static ShopWorld {
    static W: OnceLock<ShopWorld> = OnceLock::new();
    W.get_or_init(|| {
        ShopWorld::generated(&ShopConfig {
            products: 300,
            test_goals: 40,
            seen_goals: 20,
            ..ShopConfig::default()
        })
        .unwrap()
    })
}

/// Actions an agent might write: admissible ones (by index), searches, and junk.
fn action() -> impl Strategy<Value = (u8, usize, String)> {
    (0u8..4, 0usize..64, "\\PC{0,40}")
}

fn pick(env: &dyn Environment, (kind, idx, text): &(u8, usize, String)) -> String {
    let acts = env.admissible_actions();
    match kind {
        0 if !acts.is_empty() => acts[idx % acts.len()].replace("<keywords>", text),
        1 => format!("search[{text}]"),
        2 => format!("click[{text}]"),
        _ => text.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_actions_never_panic_and_episodes_end(task in 0usize..40, actions in prop::collection::vec(action(), 1..14)) {
        let w = world();
        let mut env = w.new_env().unwrap();
        env.reset(TaskId::new(Split::Unseen, task), 0).unwrap();
        let mut ended = false;
        for (i, a) in actions.iter().enumerate() {
            let text = pick(env.as_ref(), a);
            let out = env.step(&text).unwrap();
            prop_assert_eq!(out.steps, i + 1);
            prop_assert!((0.0..=1.0).contains(&out.reward) || out.reward > 1.0 && out.done);
            prop_assert!(!out.won || out.done);
            if out.done {
                ended = true;
                prop_assert!(env.step("click[buy now]").is_err());
                prop_assert!(env.expert_step().is_none());
                break;
            }
        }
        prop_assert!(ended || actions.len() < w.max_steps());
    }

    #[test]
    fn same_task_same_actions_same_observations(task in 0usize..40, actions in prop::collection::vec(action(), 1..10)) {
        let w = world();
        let mut a = w.new_env().unwrap();
        let mut b = w.new_env().unwrap();
        prop_assert_eq!(a.reset(TaskId::new(Split::Unseen, task), 1).unwrap(), b.reset(TaskId::new(Split::Unseen, task), 1).unwrap());
        for act in &actions {
            let text = pick(a.as_ref(), act);
            let (oa, ob) = (a.step(&text).unwrap(), b.step(&text).unwrap());
            prop_assert_eq!(&oa, &ob);
            prop_assert_eq!(a.expert_step(), b.expert_step());
            if oa.done {
                break;
            }
        }
    }
}
