//! Steps per second through our ScienceWorld path, for `bench/sciworld/run.sh` (which runs
//! the official Python API on the same task in the same run). Ignored by default: it is a
//! measurement, not a test; it prints JSON lines and asserts only that the gold path wins.

use std::time::Instant;

use stepagent_env::sciworld::{SciWorld, SciWorldConfig};
use stepagent_env::{Environment, Split, TaskId, World};

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
#[ignore = "a benchmark: run through bench/sciworld/run.sh"]
fn sciworld_steps_per_second() {
    let task_name: String = env_or("SCIWORLD_BENCH_TASK", "boil".to_string());
    let variation: usize = env_or("SCIWORLD_BENCH_VARIATION", 0);
    let episodes: usize = env_or("SCIWORLD_BENCH_EPISODES", 5);
    let world =
        SciWorld::new(SciWorldConfig { max_steps: Some(10_000), ..Default::default() }).unwrap();
    let task = (0..world.num_tasks(Split::Train))
        .map(|i| TaskId::new(Split::Train, i))
        .find(|t| {
            world.instance(*t).is_ok_and(|i| i.spec.name == task_name && i.variation == variation)
        })
        .unwrap_or_else(|| panic!("{task_name} variation {variation} is not a train task"));

    let mut env = world.env().unwrap();
    env.reset(task, 0).unwrap();
    let gold = env.gold_path().to_vec();
    let (mut steps, mut seconds, mut score) = (0usize, 0.0f64, None);
    for _ in 0..episodes {
        env.reset(task, 0).unwrap();
        for action in &gold {
            let t = Instant::now();
            let done = env.step(action).unwrap().done;
            seconds += t.elapsed().as_secs_f64();
            steps += 1;
            if done {
                break;
            }
        }
        score = env.score();
    }
    assert_eq!(score, Some(100.0), "the gold path should score 100");
    println!(
        "{}",
        serde_json::json!({
            "path": "rust:step", "task": task_name, "variation": variation, "steps": steps,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "steps_per_s": (steps as f64 / seconds * 10.0).round() / 10.0, "final_score": score,
        })
    );

    // With the valid actions asked every step, as the Python API's `step` does in its infos.
    let (mut steps, mut seconds) = (0usize, 0.0f64);
    for _ in 0..episodes {
        env.reset(task, 0).unwrap();
        for action in &gold {
            let t = Instant::now();
            let done = env.step(action).unwrap().done;
            let _ = env.admissible_actions();
            seconds += t.elapsed().as_secs_f64();
            steps += 1;
            if done {
                break;
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "path": "rust:step+valid_actions", "task": task_name, "variation": variation, "steps": steps,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "steps_per_s": (steps as f64 / seconds * 10.0).round() / 10.0,
        })
    );
}
