//! Every real ETO ALFWorld trajectory in the fixture, rebuilt as a scene spec from what its
//! observations reveal, replayed action by action against the world.

use serde::Deserialize;
use stepagent_env::household::{
    spec_from_trajectory, HouseholdConfig, HouseholdWorld, RecordedStep, INSTRUCTION,
};
use stepagent_env::{Split, TaskId, World};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    id: String,
    game_file: String,
    conversations: Vec<Turn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Turn {
    role: String,
    content: String,
}

fn fixture() -> Vec<Record> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/alfworld-eto-sample.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Records that replay with every observation identical. The other eleven are unfaithful to
/// ALFWorld's engine in ways the fixture README lists or that the replay shows:
/// "an" before a vowel (alfworld_5, 7, 10); spaced names such as `dining table 1` that the
/// room list spells `diningtable 1` (9, 22, 32); no comma before "and" (26, 34); one object
/// listed in two places at once (12, 23); `put` of a pen that was never taken (15).
const IDENTICAL: [&str; 22] = [
    "alfworld_0",
    "alfworld_1",
    "alfworld_2",
    "alfworld_3",
    "alfworld_4",
    "alfworld_6",
    "alfworld_8",
    "alfworld_11",
    "alfworld_13",
    "alfworld_14",
    "alfworld_17",
    "alfworld_18",
    "alfworld_19",
    "alfworld_20",
    "alfworld_21",
    "alfworld_24",
    "alfworld_25",
    "alfworld_27",
    "alfworld_28",
    "alfworld_29",
    "alfworld_30",
    "alfworld_31",
];

/// alfworld_6 ("put a hot cup in fridge") never heats the cup: the goal must not hold.
const GOAL_NOT_REACHED: &str = "alfworld_6";

/// Replays one record; `Ok(won at the last action)` or the first difference.
fn replay(rec: &Record) -> Result<bool, String> {
    let turns = &rec.conversations;
    assert_eq!(turns[0].content, INSTRUCTION, "{}: turn 0 is ETO's instruction", rec.id);
    let mut steps = Vec::new();
    for (i, t) in turns.iter().enumerate().skip(3).step_by(2) {
        assert_eq!(t.role, "assistant", "{} turn {i}", rec.id);
        let action = t
            .content
            .split_once("\nAction: ")
            .map(|(_, a)| a.trim().to_string())
            .expect("Action line");
        let observation = turns
            .get(i + 1)
            .map(|o| o.content.strip_prefix("Observation: ").unwrap_or(&o.content).to_string());
        steps.push(RecordedStep { action, observation });
    }
    let spec = spec_from_trajectory(&turns[2].content, &steps)
        .map_err(|e| format!("cannot rebuild: {e}"))?;
    let world = HouseholdWorld::from_specs(
        [(Split::Train, spec)],
        HouseholdConfig { max_steps: 100, ..Default::default() },
    )
    .map_err(|e| format!("cannot build: {e}"))?;
    let mut env = world.new_env().unwrap();
    let first = env.reset(TaskId::new(Split::Train, 0), 0).unwrap();
    if first != turns[2].content {
        return Err(format!(
            "first observation differs:\n  ours: {first}\n  real: {}",
            turns[2].content
        ));
    }
    let mut won = false;
    for (n, s) in steps.iter().enumerate() {
        let out = env.step(&s.action).map_err(|e| format!("step {n} `{}`: {e}", s.action))?;
        if let Some(real) = &s.observation {
            if &out.observation != real {
                return Err(format!(
                    "step {n} `{}`:\n  ours: {}\n  real: {real}",
                    s.action, out.observation
                ));
            }
        }
        won = out.won;
    }
    Ok(won)
}

#[test]
fn fixture_trajectories_replay_with_identical_observations() {
    let records = fixture();
    assert_eq!(records.len(), 33);
    let mut identical = 0;
    let mut report = Vec::new();
    for rec in &records {
        let ty = rec.game_file.split('/').nth(3).and_then(|f| f.split('-').next()).unwrap_or("?");
        match replay(rec) {
            Ok(won) => {
                identical += 1;
                report.push(format!(
                    "{:<12} {ty:<32} identical, goal {}",
                    rec.id,
                    if won { "reached" } else { "NOT reached" }
                ));
                assert_eq!(
                    won,
                    rec.id != GOAL_NOT_REACHED,
                    "{}: goal predicate at the end of the replay",
                    rec.id
                );
            }
            Err(why) => {
                assert!(
                    !IDENTICAL.contains(&rec.id.as_str()),
                    "{}: should replay identically: {why}",
                    rec.id
                );
                report.push(format!("{:<12} {ty:<32} differs: {why}", rec.id));
            }
        }
    }
    eprintln!(
        "{}\n{identical}/{} records replay with every observation identical",
        report.join("\n"),
        records.len()
    );
    assert_eq!(identical, IDENTICAL.len());
}
