//! Invariants of the QA world under arbitrary actions.

use std::sync::OnceLock;

use proptest::prelude::*;
use stepagent_env::qa::{QaConfig, QaWorld};
use stepagent_env::{Split, TaskId, World};

fn world() -> &'static QaWorld {
    static W: OnceLock<QaWorld> = OnceLock::new();
    W.get_or_init(|| {
        QaWorld::generated(&QaConfig {
            regions: 5,
            unseen_regions: 1,
            test_questions: 50,
            ..QaConfig::default()
        })
        .unwrap()
    })
}

fn action() -> impl Strategy<Value = (u8, String)> {
    (0u8..5, "\\PC{0,30}")
}

fn text(w: &QaWorld, (kind, s): &(u8, String)) -> String {
    match kind {
        0 => format!("search[{s}]"),
        1 => format!("lookup[{s}]"),
        2 => format!("finish[{s}]"),
        // A real title, so pages open and lookups have a page to read.
        3 => format!("search[{}]", w.pages()[s.len() % w.pages().len()].title),
        _ => s.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_actions_never_panic_and_episodes_end(task in 0usize..50, actions in prop::collection::vec(action(), 1..10)) {
        let w = world();
        let mut env = w.new_env().unwrap();
        env.reset(TaskId::new(Split::Unseen, task), 0).unwrap();
        let mut ended = false;
        for (i, a) in actions.iter().enumerate() {
            let out = env.step(&text(w, a)).unwrap();
            prop_assert_eq!(out.steps, i + 1);
            prop_assert!((0.0..=1.0).contains(&out.reward));
            if out.done {
                ended = true;
                prop_assert!(env.step("finish[x]").is_err());
                break;
            }
        }
        prop_assert!(ended || actions.len() < w.max_steps());
    }

    #[test]
    fn same_task_same_actions_same_observations(task in 0usize..50, actions in prop::collection::vec(action(), 1..8)) {
        let w = world();
        let mut a = w.new_env().unwrap();
        let mut b = w.new_env().unwrap();
        prop_assert_eq!(a.reset(TaskId::new(Split::Unseen, task), 3).unwrap(), b.reset(TaskId::new(Split::Unseen, task), 3).unwrap());
        for act in &actions {
            let t = text(w, act);
            let (oa, ob) = (a.step(&t).unwrap(), b.step(&t).unwrap());
            prop_assert_eq!(&oa, &ob);
            prop_assert_eq!(a.expert_step(), b.expert_step());
            if oa.done {
                break;
            }
        }
    }
}
