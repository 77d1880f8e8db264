//! World steps per second of the household world: the expert's own episodes (go to, open,
//! take, clean/heat/cool, put …) replayed from their first observation, plus resets.
//!
//! `cargo bench -p stepagent-env --bench household`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use stepagent_env::household::{HouseholdConfig, HouseholdEnv, HouseholdWorld};
use stepagent_env::{Environment, Split, TaskId};

/// Freshly reset environments with the expert's actions for them.
fn episodes(world: &HouseholdWorld, n: usize) -> Vec<(HouseholdEnv, Vec<String>)> {
    (0..n)
        .map(|i| {
            let mut env = world.env();
            env.reset(TaskId::new(Split::Train, i), 0).unwrap();
            let start = env.clone();
            let mut actions = Vec::new();
            while let Some(turn) = env.expert_step() {
                // A wrong command now and then, as agents type them.
                if actions.len() % 5 == 4 {
                    actions.push(format!("take {} from nowhere 1", turn.action));
                }
                let done = env.step(&turn.action).unwrap().done;
                actions.push(turn.action);
                if done {
                    break;
                }
            }
            (start, actions)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let world = HouseholdWorld::new(HouseholdConfig::default()).unwrap();
    let eps = episodes(&world, 120);
    let total: usize = eps.iter().map(|(_, a)| a.len()).sum();
    let mut group = c.benchmark_group("household");
    group.throughput(Throughput::Elements(total as u64));
    group.bench_function("step", |b| {
        b.iter_batched(
            || eps.iter().map(|(env, _)| env.clone()).collect::<Vec<_>>(),
            |mut envs| {
                for (env, (_, actions)) in envs.iter_mut().zip(&eps) {
                    for a in actions {
                        black_box(env.step(a).unwrap());
                    }
                }
                envs
            },
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Elements(120));
    group.bench_function("reset", |b| {
        let mut env = world.env();
        b.iter(|| {
            for i in 0..120 {
                black_box(env.reset(TaskId::new(Split::Train, i), 0).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
