//! `stepagent data …` and `stepagent eval --compare` through the binary.

use std::path::PathBuf;
use std::process::Command;

fn stepagent(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stepagent")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn fixture() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/alfworld-eto-sample.json")
        .display()
        .to_string()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stepagent-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn data_validate_and_stats_on_the_real_sample() {
    let (ok, out, err) = stepagent(&["data", "validate", &fixture()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("33 SFT records, 0 errors"), "{out}");
    let (ok, out, _) = stepagent(&["data", "stats", &fixture()]);
    assert!(ok);
    assert!(out.contains("| pick_and_place_simple | 12 |"), "{out}");
    assert!(out.contains("words (≈ tokens / 1.3; no tokenizer loaded)"), "{out}");
}

#[test]
fn data_validate_fails_on_a_broken_file() {
    let dir = temp("broken");
    let f = dir.join("bad.json");
    std::fs::write(&f, r#"[{"id": "x", "conversations": [{"from": "gpt", "value": "hi"}]}]"#)
        .unwrap();
    let (ok, out, err) = stepagent(&["data", "validate", f.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("record 0 (id x), turn 0: expected a user (human) turn"), "{out}");
    assert!(err.contains("1 unusable records"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn data_convert_switches_shape() {
    let dir = temp("convert");
    let out_file = dir.join("fv.json");
    let (ok, _, err) = stepagent(&[
        "data",
        "convert",
        &fixture(),
        out_file.to_str().unwrap(),
        "--shape",
        "from-value",
    ]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(text.contains("\"from\": \"human\""));
    let (ok, out, _) = stepagent(&["data", "validate", out_file.to_str().unwrap()]);
    assert!(ok && out.contains("33 SFT records, 0 errors"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn eval_compare_prints_deltas() {
    use stepagent_eval::{evaluate, EvalConfig};
    use stepagent_policy::policies::{ExpertPolicy, RandomPolicy};
    use stepagent_policy::toy::LineWorld;
    let dir = temp("compare");
    let world = LineWorld::default();
    let cfg = EvalConfig { n: Some(10), ..EvalConfig::default() };
    evaluate(&world, &RandomPolicy, &cfg, Some(&dir.join("a")), &mut |_| {}).unwrap();
    evaluate(&world, &ExpertPolicy, &cfg, Some(&dir.join("b")), &mut |_| {}).unwrap();
    let a = dir.join("a/report.json");
    let b = dir.join("b/report.json");
    let (ok, out, err) =
        stepagent(&["eval", "--compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("- A: `random` in `line`")
            && out.contains("## seen")
            && out.contains("## unseen"),
        "{out}"
    );
    assert!(out.contains("| success |"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn eval_names_a_model_it_cannot_find_and_a_world_it_does_not_know() {
    // Any other spec is a model path: a missing one is named, with what else would do.
    let (ok, _, err) =
        stepagent(&["eval", "--policy", "no/such/model.gguf", "--world", "household"]);
    assert!(!ok);
    assert!(err.contains("no/such/model.gguf") && err.contains("no such file"), "{err}");
    let (ok, _, err) = stepagent(&["eval", "--policy", "expert", "--world", "no-such-world"]);
    assert!(!ok);
    assert!(err.contains("unknown world `no-such-world`"), "{err}");
}
