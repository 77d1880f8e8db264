//! The runner in the household world, through the registry: the expert solves every task of
//! both held-out splits and random play almost never does.

use stepagent_env::{registry, Split};
use stepagent_eval::{evaluate, EvalConfig};
use stepagent_policy::policies::{ExpertPolicy, RandomPolicy};
use stepagent_policy::runner::RunConfig;

fn household() -> stepagent_env::WorldRef {
    registry::open("household", &serde_json::Value::Null)
        .expect("the household world is registered")
}

#[test]
fn expert_solves_every_seen_and_unseen_task() {
    let world = household();
    let cfg = EvalConfig {
        splits: vec![Split::Seen, Split::Unseen],
        n: Some(200),
        run: RunConfig::default(),
    };
    let report = evaluate(&*world, &ExpertPolicy, &cfg, None, &mut |_| {}).unwrap();
    for s in &report.splits {
        assert!(s.overall.episodes > 0);
        assert_eq!(s.overall.success.k, s.overall.episodes, "{}: {:?}", s.split, s.overall.success);
        assert_eq!(s.overall.format_error_rate.k, 0);
    }
}

#[test]
fn random_stays_near_zero() {
    let world = household();
    let cfg = EvalConfig {
        splits: vec![Split::Seen, Split::Unseen],
        n: Some(100),
        run: RunConfig { seed: 1, ..RunConfig::default() },
    };
    let report = evaluate(&*world, &RandomPolicy, &cfg, None, &mut |_| {}).unwrap();
    for s in &report.splits {
        assert!(
            s.overall.success.rate <= 0.10,
            "{}: random succeeded {:?}",
            s.split,
            s.overall.success
        );
    }
}
