//! Reports end to end on the tiny line world, and the rendered markdown as a snapshot.

use stepagent_env::Split;
use stepagent_eval::{
    compare_markdown, evaluate, load_report, versus_markdown, EvalConfig, Outcome, Report,
};
use stepagent_policy::policies::{ExpertPolicy, RandomPolicy};
use stepagent_policy::runner::RunConfig;
use stepagent_policy::toy::LineWorld;

fn outcome(
    split: &str,
    kind: &str,
    won: bool,
    steps: usize,
    invalid: usize,
    format: usize,
) -> Outcome {
    Outcome {
        split: split.into(),
        task_type: kind.into(),
        won,
        reward: if won { 1.0 } else { 0.0 },
        steps,
        invalid_actions: invalid,
        format_errors: format,
    }
}

fn fixed_report(policy: &str, wins: usize) -> Report {
    let mut v = Vec::new();
    for i in 0..8 {
        v.push(outcome(
            "seen",
            if i % 2 == 0 { "near" } else { "far" },
            i < wins,
            4 + i,
            i % 3,
            usize::from(i == 5),
        ));
    }
    for i in 0..4 {
        v.push(outcome("unseen", "far", i < wins / 2, 10, 1, 0));
    }
    Report::from_outcomes("line", policy, 3, 12, &v)
}

#[test]
fn markdown_snapshot() {
    // Expected figures computed independently (a few lines of Python: Wilson score interval,
    // t interval with scipy's t.ppf(0.975, n - 1)).
    let md = fixed_report("expert", 6).to_markdown();
    let want = "\
# Evaluation: `expert` in `line`

Seed 3, at most 12 steps per episode. Brackets: 95% confidence intervals (Wilson for rates, t for means; step rates pool all steps).

## seen

| task type | episodes | success | mean reward | mean steps | invalid actions | format errors |
|---|---:|---:|---:|---:|---:|---:|
| **all** | 8 | 75.0% [40.9, 92.9] | 0.75 [0.36, 1.14] | 7.5 [5.5, 9.5] | 11.7% [5.8, 22.2] | 1.7% [0.3, 8.9] |
| far | 4 | 75.0% [30.1, 95.4] | 0.75 [-0.05, 1.55] | 8.0 [3.9, 12.1] | 12.5% [5.0, 28.1] | 3.1% [0.6, 15.7] |
| near | 4 | 75.0% [30.1, 95.4] | 0.75 [-0.05, 1.55] | 7.0 [2.9, 11.1] | 10.7% [3.7, 27.2] | 0.0% [0.0, 12.1] |

## unseen

| task type | episodes | success | mean reward | mean steps | invalid actions | format errors |
|---|---:|---:|---:|---:|---:|---:|
| **all** | 4 | 75.0% [30.1, 95.4] | 0.75 [-0.05, 1.55] | 10.0 [10.0, 10.0] | 10.0% [4.0, 23.1] | 0.0% [0.0, 8.8] |
| far | 4 | 75.0% [30.1, 95.4] | 0.75 [-0.05, 1.55] | 10.0 [10.0, 10.0] | 10.0% [4.0, 23.1] | 0.0% [0.0, 8.8] |

";
    assert_eq!(md, want, "got:\n{md}");
}

#[test]
fn compare_snapshot() {
    let md = compare_markdown(
        &fixed_report("random", 1),
        &fixed_report("expert", 8),
        "a.json",
        "b.json",
    );
    assert!(
        md.contains(
            "| success | 12.5% [2.2, 47.1] | 100.0% [67.6, 100.0] | +87.5 pts [+40.1, +97.8] * |"
        ),
        "{md}"
    );
    assert!(md.contains("| near | 25.0% (4) | 100.0% (4) | +75.0 pts |"), "{md}");
    assert!(md.contains("## unseen"));
}

#[test]
fn evaluate_writes_report_and_transcripts() {
    let dir = std::env::temp_dir().join(format!("stepagent-eval-test-{}", std::process::id()));
    let world = LineWorld::default();
    let cfg = EvalConfig {
        splits: vec![Split::Seen, Split::Unseen],
        n: Some(12),
        run: RunConfig { workers: 2, seed: 5, ..RunConfig::default() },
    };
    let mut seen = 0;
    let report = evaluate(&world, &ExpertPolicy, &cfg, Some(&dir), &mut |_| seen += 1).unwrap();
    assert_eq!(seen, 24);
    assert_eq!(report.splits.len(), 2);
    for s in &report.splits {
        assert_eq!(s.overall.episodes, 12);
        assert_eq!(s.overall.success.rate, 1.0);
        assert_eq!(s.overall.invalid_action_rate.k, 0);
    }
    // Compared as rendered: JSON need not round-trip every float to the last bit.
    let back = load_report(&dir.join("report.json")).unwrap();
    assert_eq!(back.to_markdown(), report.to_markdown());
    assert_eq!(back.splits[1].per_type.len(), 2);
    assert_eq!(std::fs::read_to_string(dir.join("report.md")).unwrap(), report.to_markdown());
    let transcripts = stepagent_data::Dataset::load(dir.join("transcripts.jsonl")).unwrap();
    assert_eq!(transcripts.len(), 24);
    assert!(stepagent_data::validate(&transcripts, "t").is_empty());
    // Summaries recomputed from the transcripts agree with the report.
    let stepagent_data::Dataset::Transcripts(ts) = transcripts else { panic!() };
    let outcomes: Vec<Outcome> = ts.iter().map(Outcome::from).collect();
    assert_eq!(Report::from_outcomes("line", "expert", 5, 12, &outcomes), report);

    // Replaying the transcripts reproduces the run.
    let replay = stepagent_eval::replay_from_file(&dir.join("transcripts.jsonl")).unwrap();
    let again = evaluate(&world, &replay, &cfg, None, &mut |_| {}).unwrap();
    assert_eq!(again.splits, report.splits);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn versus_table_has_both_policies() {
    let world = LineWorld::default();
    let cfg = EvalConfig { n: Some(10), ..EvalConfig::default() };
    let e = evaluate(&world, &ExpertPolicy, &cfg, None, &mut |_| {}).unwrap();
    let r = evaluate(&world, &RandomPolicy, &cfg, None, &mut |_| {}).unwrap();
    let md = versus_markdown(&[&e, &r]);
    assert!(md.contains("| split | task type | episodes | expert | random |"), "{md}");
    assert!(md.contains("| seen | **all** | 10 | 100.0% [72.2, 100.0] |"), "{md}");
    assert!(r.split("unseen").unwrap().overall.success.rate < 0.5);
}

#[test]
fn in_context_examples_come_from_sft_files() {
    use stepagent_policy::runner::Runner;
    let dir = std::env::temp_dir().join(format!("stepagent-eval-icl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let world = LineWorld::default();
    let train: Vec<_> = (0..2).map(|i| stepagent_env::TaskId::new(Split::Train, i)).collect();
    let eps = Runner::new(&world, &ExpertPolicy, RunConfig::default())
        .run(&train, &mut |_| Ok(()))
        .unwrap();
    let records = eps.iter().map(stepagent_eval::sft_record_of).collect();
    let file = dir.join("ex.json");
    stepagent_data::Dataset::Sft { records, shape: stepagent_data::Shape::FromValue }
        .save(&file, None)
        .unwrap();

    let examples = stepagent_eval::examples_from_file(&file, 1).unwrap();
    assert_eq!(examples.len(), 1);
    // Train task 0: one move right and a stop; the example runs from its first observation
    // to its last action.
    assert_eq!(examples[0].turns().len(), 4);
    let cfg = EvalConfig { splits: vec![Split::Seen], n: Some(3), run: RunConfig::default() };
    let out = dir.join("run");
    let report = stepagent_eval::evaluate_with_examples(
        &world,
        &ExpertPolicy,
        &cfg,
        &examples,
        Some(&out),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.splits[0].overall.success.k, 3);
    let stepagent_data::Dataset::Transcripts(ts) =
        stepagent_data::Dataset::load(out.join("transcripts.jsonl")).unwrap()
    else {
        panic!()
    };
    assert_eq!(ts[0].prompt_turns, 6);
    assert_eq!(ts[0].conversations[2].content, examples[0].turns()[0].content);
    // The same recording replays even with the examples in its transcript.
    let replay = stepagent_eval::replay_from_file(&out.join("transcripts.jsonl")).unwrap();
    let again = evaluate(&world, &replay, &cfg, None, &mut |_| {}).unwrap();
    assert_eq!(again.splits[0].overall.success.k, 3);
    std::fs::remove_dir_all(dir).unwrap();
}
