//! ScienceWorld through the real jar. These tests need Java (and, on first use, pip to fetch
//! the wheel); without `java` on PATH they report that they were skipped and pass, and CI
//! installs Java so that they run (`.ci/install-java.sh`).

use std::process::Command;

use stepagent_env::sciworld::{tasks, SciWorld, SciWorldConfig};
use stepagent_env::{Environment, Split, TaskId, World};

fn java_present() -> bool {
    let found = Command::new("java").arg("-version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: `java` is not installed (apt-get install openjdk-17-jre-headless)");
    }
    found
}

fn pid_alive(pid: u32) -> bool {
    // A reaped child has no /proc entry; a zombie would still show, so read its state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')),
        Err(_) => false,
    }
}

fn task_of(world: &SciWorld, name: &str, variation: usize) -> TaskId {
    for split in Split::ALL {
        for index in 0..world.num_tasks(split) {
            let t = TaskId::new(split, index);
            let inst = world.instance(t).unwrap();
            if inst.spec.name == name && inst.variation == variation {
                return t;
            }
        }
    }
    panic!("{name} variation {variation} is in no split");
}

#[test]
fn boil_gold_path_scores_100_and_no_jvm_leaks() {
    if !java_present() {
        return;
    }
    let world = SciWorld::new(SciWorldConfig::default()).unwrap();
    // boil variation 0 is the first train task.
    let task = TaskId::new(Split::Train, 0);
    assert_eq!(world.task_type(task).unwrap(), "boil");
    let mut env = world.env().unwrap();
    let first = env.reset(task, 0).unwrap();
    assert!(
        first.starts_with("Your task is to boil water."),
        "first observation should be the task description, got: {first}"
    );
    assert!(world.instruction().lines().count() > 10);

    let admissible = env.admissible_actions();
    assert!(admissible.iter().any(|a| a == "look around"), "valid actions: {admissible:?}");

    let gold = env.gold_path().to_vec();
    assert!(gold.len() > 5, "gold path: {gold:?}");
    let mut last = None;
    while let Some(step) = env.expert_step() {
        assert!(!step.thought.is_empty());
        let out = env.step(&step.action).unwrap();
        last = Some(out.clone());
        if out.done {
            break;
        }
    }
    let last = last.expect("the expert acted");
    assert!(last.done && last.won, "gold path did not win: {last:?}");
    assert_eq!(last.reward, 1.0);
    assert_eq!(env.score(), Some(100.0));
    // The simulator may declare the task done before the gold path's last (tidy-up) actions.
    assert!(last.steps <= gold.len(), "{} steps for a gold path of {}", last.steps, gold.len());
    assert!(env.step("look around").is_err(), "stepping a finished episode is an error");

    // A wrong action is answered, counts as a step and is marked invalid.
    env.reset(task, 0).unwrap();
    let out = env.step("fly to the moon").unwrap();
    assert!(!out.valid && !out.done && out.steps == 1, "{out:?}");
    assert!(env.expert_step().is_none(), "off the gold path the expert has nothing to say");

    // The JVM is reused by the next episode, and killed with the world.
    drop(env);
    let pids = world.idle_jvm_pids();
    assert_eq!(pids.len(), 1);
    assert!(pid_alive(pids[0]));
    drop(world);
    assert!(!pid_alive(pids[0]), "JVM {} outlived its world", pids[0]);
}

#[test]
fn parallel_episodes_match_sequential_ones() {
    if !java_present() {
        return;
    }
    // Details depend on what a JVM ran before; fresh JVMs make episodes comparable.
    let config = SciWorldConfig { fresh_jvm_per_episode: true, ..Default::default() };
    let world = SciWorld::new(config).unwrap();
    let tasks =
        [task_of(&world, "melt", 14), task_of(&world, "chemistry-mix-paint-secondary-color", 18)];
    let run = |task: TaskId| {
        let mut env = world.env().unwrap();
        let mut transcript = vec![env.reset(task, 0).unwrap()];
        let mut won = false;
        while let Some(step) = env.expert_step() {
            let out = env.step(&step.action).unwrap();
            transcript.push(out.observation);
            won = out.won;
            if out.done {
                break;
            }
        }
        (transcript, won)
    };
    let sequential: Vec<_> = tasks.iter().map(|t| run(*t)).collect();
    let parallel: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = tasks.iter().map(|t| s.spawn(|| run(*t))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(sequential, parallel);
    assert!(sequential.iter().all(|(_, won)| *won), "gold paths should win");
}

#[test]
fn splits_match_the_jar() {
    if !java_present() {
        return;
    }
    // The hard-coded split sizes against the simulator's own getVariationsTrain/Dev/Test, for
    // a few tasks (each load takes a moment).
    let world =
        SciWorld::new(SciWorldConfig { tasks: tasks::TaskSet::All, ..Default::default() }).unwrap();
    assert_eq!(
        world.num_tasks(Split::Train)
            + world.num_tasks(Split::Seen)
            + world.num_tasks(Split::Unseen),
        7207
    );
    let mut env = world.env().unwrap();
    for name in ["boil", "identify-life-stages-2", "power-component"] {
        let spec = tasks::find(name).unwrap();
        let t = task_of(&world, name, spec.test_variations().start);
        assert_eq!(t.split, Split::Unseen);
        env.reset(t, 0).unwrap();
        assert_eq!(env.instance().unwrap().variation, spec.test_variations().start);
        let [train, dev, test] = env.simulator_splits().unwrap();
        assert_eq!(train, spec.train_variations().collect::<Vec<_>>(), "{name} train");
        assert_eq!(dev, spec.dev_variations().collect::<Vec<_>>(), "{name} dev");
        assert_eq!(test, spec.test_variations().collect::<Vec<_>>(), "{name} test");
    }
}
