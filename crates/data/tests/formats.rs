//! The formats users bring: both SFT turn shapes, DPO pairs, JSONL transcripts, and the real
//! ETO ALFWorld sample.

use std::path::PathBuf;

use stepagent_data::{
    stats, validate, Dataset, Severity, Shape, Speaker, Transcript, TranscriptWriter, Turn,
};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/alfworld-eto-sample.json")
}

#[test]
fn real_eto_sample_loads_validates_and_summarises() {
    let data = Dataset::load(fixture()).unwrap();
    let Dataset::Sft { records, shape } = &data else {
        panic!("expected SFT data, got {}", data.kind())
    };
    assert_eq!(*shape, Shape::RoleContent);
    assert_eq!(records.len(), 33);
    assert_eq!(records[0].id, "alfworld_0");
    assert_eq!(records[0].conversations[1], Turn::assistant("OK"));
    assert!(records[0].conversations[2]
        .content
        .contains("Your task is to: put a toiletpaper in toiletpaperhanger."));
    assert_eq!(records[0].task_type().as_deref(), Some("pick_and_place_simple"));
    let lens: Vec<usize> = records.iter().map(|r| r.conversations.len()).collect();
    assert_eq!(*lens.iter().min().unwrap(), 10);
    assert_eq!(*lens.iter().max().unwrap(), 78);

    let issues = validate(&data, "sample.json");
    assert!(issues.iter().all(|i| i.severity != Severity::Error), "{issues:?}");

    // Counts from the fixture's README.
    let s = stats(&data);
    assert_eq!(s.records, 33);
    let count = |t: &str| s.per_type[t].records;
    assert_eq!(count("pick_and_place_simple"), 12);
    assert_eq!(count("pick_clean_then_place_in_recep"), 7);
    assert_eq!(count("pick_two_obj_and_place"), 6);
    assert_eq!(count("pick_heat_then_place_in_recep"), 3);
    assert_eq!(count("pick_cool_then_place_in_recep"), 3);
    assert_eq!(count("look_at_obj_in_light"), 2);
    // go 213 + open 42 + take 37 + put 37 + close 30 + clean 7 + cool 3 + heat 2 + use 2.
    assert_eq!((s.steps.mean * 33.0).round(), 373.0);
    assert_eq!(s.success, None);
    assert!(s.to_markdown().contains("| pick_and_place_simple | 12 |"));
}

#[test]
fn real_sample_round_trips_through_both_shapes() {
    let data = Dataset::load(fixture()).unwrap();
    for shape in [Shape::FromValue, Shape::RoleContent] {
        let text = data.to_text(Some(shape));
        if shape == Shape::FromValue {
            assert!(text.contains("\"from\": \"gpt\"") && !text.contains("\"role\""));
        }
        let back = Dataset::parse(&text, "round.json").unwrap();
        let (Dataset::Sft { records: a, .. }, Dataset::Sft { records: b, shape: s }) =
            (&data, &back)
        else {
            panic!()
        };
        assert_eq!(*s, shape);
        assert_eq!(a, b);
    }
}

#[test]
fn from_value_shape_reads() {
    let text = r#"[{"id": 7, "reward": 0.5, "conversations": [
        {"from": "human", "value": "i"}, {"from": "gpt", "value": "OK"},
        {"from": "human", "value": "o"}, {"from": "gpt", "value": "Thought: t\nAction: a"}]}]"#;
    let d = Dataset::parse(text, "x.json").unwrap();
    let Dataset::Sft { records, shape } = &d else { panic!() };
    assert_eq!(*shape, Shape::FromValue);
    assert_eq!(records[0].id, "7");
    assert_eq!(records[0].conversations[3].role, Speaker::Assistant);
    assert_eq!(stats(&d).mean_reward, Some(0.5));
    assert_eq!(stats(&d).success, Some((0, 1)));
}

#[test]
fn errors_name_file_record_id_and_turn() {
    let text = r#"[{"id": "a", "conversations": []},
                   {"id": "b", "conversations": [{"from": "human", "value": "x"}, {"from": "robot", "value": "y"}]}]"#;
    let e = Dataset::parse(text, "bad.json").unwrap_err().to_string();
    assert_eq!(e, "bad.json: record 1 (id b), turn 1: `from` is `robot`; expected human/user, gpt/assistant or system");

    let e = Dataset::parse(r#"[{"conversations": []}]"#, "f.json").unwrap_err().to_string();
    assert_eq!(e, "f.json: record 0: missing `id`");

    let e = Dataset::parse(r#"[{"id": "q", "conversations": [{"speaker": "x"}]}]"#, "f.json")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("f.json: record 0 (id q), turn 0: a turn needs"), "{e}");

    let e = Dataset::parse("[{\"id\": 1,", "f.json").unwrap_err().to_string();
    assert!(e.starts_with("f.json: not valid JSON"), "{e}");

    let e = Dataset::parse("{\"id\": \"x\"}\n{\"id\": 2}\n", "t.jsonl").unwrap_err().to_string();
    assert!(e.starts_with("t.jsonl:1: record 0: not a transcript: missing field"), "{e}");
}

#[test]
fn validation_finds_layout_problems() {
    let text = r#"[
      {"id": "a", "conversations": [{"from": "human", "value": "i"}, {"from": "gpt", "value": "OK"},
         {"from": "human", "value": "o"}, {"from": "human", "value": "Observation: z"}]},
      {"id": "a", "conversations": [{"from": "human", "value": "i"}, {"from": "gpt", "value": "Sure"},
         {"from": "human", "value": "o"}, {"from": "gpt", "value": "Thought: no action here"}]}
    ]"#;
    let d = Dataset::parse(text, "v.json").unwrap();
    let issues: Vec<String> = validate(&d, "v.json").iter().map(|i| i.to_string()).collect();
    assert_eq!(
        issues,
        [
            "error: v.json: record 0 (id a), turn 3: expected an assistant (gpt) turn, found a user (human)",
            "error: v.json: record 1 (id a): duplicate id `a`",
            "warning: v.json: record 1 (id a), turn 1: turn 1 is not \"OK\" (ETO's reply to the instruction)",
            "warning: v.json: record 1 (id a), turn 3: agent turn without an action (no text after `Action:`)",
        ]
    );
}

#[test]
fn dpo_round_trips_and_validates() {
    let text = r#"[{"id": "p0", "prompt": [{"role": "user", "content": "i"}, {"role": "assistant", "content": "OK"}, {"role": "user", "content": "o"}],
                    "chosen": [{"role": "assistant", "content": "Thought: a\nAction: go to desk 1"}],
                    "rejected": [{"role": "assistant", "content": "Thought: b\nAction: look"}]},
                   {"id": "p1", "prompt": [{"role": "user", "content": "i"}],
                    "chosen": [{"role": "user", "content": "x"}],
                    "rejected": [{"role": "assistant", "content": "Action: look"}]}]"#;
    let d = Dataset::parse(text, "d.json").unwrap();
    assert_eq!(d.kind(), "DPO");
    let back = Dataset::parse(&d.to_text(Some(Shape::FromValue)), "d2.json").unwrap();
    let (Dataset::Dpo { records: a, .. }, Dataset::Dpo { records: b, .. }) = (&d, &back) else {
        panic!()
    };
    assert_eq!(a, b);
    let issues: Vec<String> = validate(&d, "d.json").iter().map(|i| i.to_string()).collect();
    assert_eq!(issues, ["error: d.json: record 1 (id p1), chosen turn 0: expected an assistant (gpt) turn, found a user (human)"]);
}

fn transcript(i: usize, success: bool) -> Transcript {
    Transcript {
        id: format!("line/unseen/{i}"),
        world: "line".into(),
        task: format!("unseen/{i}"),
        split: "unseen".into(),
        task_type: if i < 2 { "near".into() } else { "far".into() },
        policy: "expert".into(),
        seed: 99,
        reward: if success { 1.0 } else { 0.0 },
        success,
        steps: 1,
        invalid_actions: 0,
        format_errors: 0,
        prompt_turns: 2,
        end: "done".into(),
        conversations: vec![
            Turn::user("i"),
            Turn::assistant("OK"),
            Turn::user("o"),
            Turn::assistant("Thought: t\nAction: stop"),
            Turn::user("Observation: You stop."),
        ],
    }
}

#[test]
fn transcripts_stream_and_read_back() {
    let dir = std::env::temp_dir().join(format!("stepagent-data-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.jsonl");
    let mut w = TranscriptWriter::create(&path).unwrap();
    for i in 0..4 {
        w.write(&transcript(i, i != 3)).unwrap();
        // Each line is on disk as soon as it is written.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), i + 1);
    }
    drop(w);
    let d = Dataset::load(&path).unwrap();
    let Dataset::Transcripts(ts) = &d else { panic!() };
    assert_eq!(ts[2], transcript(2, true));
    assert!(validate(&d, "t.jsonl").is_empty());
    let s = stats(&d);
    assert_eq!(s.success, Some((3, 4)));
    assert_eq!(s.per_type["far"].successes, Some(1));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn transcript_step_count_is_checked() {
    let mut t = transcript(0, true);
    t.steps = 3;
    let d = Dataset::Transcripts(vec![t]);
    let issues: Vec<String> = validate(&d, "t.jsonl").iter().map(|i| i.to_string()).collect();
    assert_eq!(issues, ["error: t.jsonl:1: record 0 (id line/unseen/0): `steps` is 3 but the conversation has 1 agent turns after the first observation"]);
}

proptest::proptest! {
    #[test]
    fn any_text_loads_or_errors_without_panic(s in "\\PC{0,200}") {
        let _ = Dataset::parse(&s, "p.json");
    }

    #[test]
    fn sft_round_trips(turns in proptest::collection::vec("\\PC{0,40}", 1..8), shape in proptest::bool::ANY) {
        let convs: Vec<Turn> = turns.iter().enumerate()
            .map(|(i, t)| if i % 2 == 0 { Turn::user(t.clone()) } else { Turn::assistant(t.clone()) })
            .collect();
        let shape = if shape { Shape::FromValue } else { Shape::RoleContent };
        let d = Dataset::Sft { records: vec![stepagent_data::SftRecord { id: "r".into(), conversations: convs, extra: Default::default() }], shape };
        let back = Dataset::parse(&d.to_text(None), "r.json").unwrap();
        proptest::prop_assert_eq!(back, d);
    }
}
