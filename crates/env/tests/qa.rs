//! The QA world: HotpotQA's metrics, wikienv's interface, loading HotpotQA's layout, and the
//! expert.

use serde_json::json;
use stepagent_env::qa::{exact_match, f1_score, normalize_answer, QaConfig, QaWorld, RewardKind};
use stepagent_env::{registry, Split, TaskId, World};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Questions and gold answers from HotpotQA's dev set (distractor setting), scored by the
/// rules of `hotpot_evaluate_v1.py`: lower case, ASCII punctuation removed, `a`/`an`/`the`
/// removed, whitespace collapsed; F1 over tokens; yes/no/noanswer only score when equal.
#[test]
fn em_and_f1_follow_hotpotqa() {
    // "What government position was held by the woman who portrayed Corliss Archer in the
    // film Kiss and Tell?" gold: "Chief of Protocol".
    assert!(exact_match("the Chief of Protocol", "Chief of Protocol"));
    assert_eq!(f1_score("the Chief of Protocol", "Chief of Protocol"), (1.0, 1.0, 1.0));
    // Prediction tokens: chief of protocol of united states (6); gold: chief of protocol (3);
    // 3 shared → P = 1/2, R = 1 → F1 = 2/3.
    let (f1, p, r) = f1_score("Chief of Protocol of the United States", "Chief of Protocol");
    assert!(close(f1, 2.0 / 3.0) && close(p, 0.5) && close(r, 1.0));
    // "Were Scott Derrickson and Ed Wood of the same nationality?" gold: "yes".
    assert!(exact_match("Yes.", "yes"));
    assert_eq!(f1_score("no", "yes"), (0.0, 0.0, 0.0));
    assert_eq!(f1_score("yes they were", "yes"), (0.0, 0.0, 0.0), "yes/no only score exactly");
    // "Which magazine was started first Arthur's Magazine or First for Women?" gold:
    // "Arthur's Magazine": the apostrophe is punctuation on both sides.
    assert!(exact_match("Arthurs Magazine", "Arthur's Magazine"));
    // "The director of the romantic comedy "Big Stone Gap" is based in what New York city?"
    // gold: "Greenwich Village, New York City".
    let (f1, p, r) = f1_score("Greenwich Village", "Greenwich Village, New York City");
    assert!(close(p, 1.0) && close(r, 0.4) && close(f1, 2.0 * 0.4 / 1.4), "{f1} {p} {r}");
    // A hyphen is removed, not spaced: "doylemurray" is one token.
    assert_eq!(normalize_answer("Brian Doyle-Murray"), "brian doylemurray");
    let (f1, _, _) = f1_score("Brian Doyle Murray", "Brian Doyle-Murray");
    assert!(close(f1, 0.4), "P = 1/3, R = 1/2 → F1 = 0.4, got {f1}");
    assert_eq!(normalize_answer("  An  Apple a day, THE end "), "apple day end");
    assert_eq!(normalize_answer("theatre"), "theatre", "only whole words are articles");
}

fn small() -> QaWorld {
    QaWorld::generated(&QaConfig {
        regions: 6,
        unseen_regions: 2,
        test_questions: 100,
        seen_questions: 40,
        ..QaConfig::default()
    })
    .unwrap()
}

#[test]
fn search_lookup_finish_as_wikienv() {
    let world = small();
    let mut env = world.new_env().unwrap();
    let task = TaskId::new(Split::Unseen, 0);
    let q = world.question(task).unwrap().clone();
    assert_eq!(env.reset(task, 0).unwrap(), format!("Question: {}", q.question));

    let title = &q.supporting[0];
    let out = env.step(&format!("search[{}]", title.to_uppercase())).unwrap();
    assert!(out.valid);
    assert!(
        out.observation.starts_with(title.as_str()),
        "exact titles open the page: {}",
        out.observation
    );
    assert!(!out.observation.contains('\n'));

    let out = env.step(&format!("search[{} zzz]", title)).unwrap();
    assert!(
        out.observation.starts_with(&format!("Could not find {title} zzz. Similar: ['")),
        "{}",
        out.observation
    );
    assert!(
        out.observation.contains(&format!("'{title}'")),
        "the page is among the similar titles: {}",
        out.observation
    );

    let page = world.pages().iter().find(|p| &p.title == title).unwrap();
    // Each page has a second paragraph that only lookup reaches; its last sentence names the
    // page's subject again or a fixed phrase, so look up a word of the second paragraph.
    let second = page.text.split('\n').nth(1).unwrap();
    let word = second
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_string();
    let out = env.step(&format!("lookup[{word}]")).unwrap();
    assert!(out.observation.starts_with("(Result 1 / "), "{}", out.observation);
    let n: usize =
        out.observation["(Result 1 / ".len()..].split(')').next().unwrap().parse().unwrap();
    for _ in 1..n {
        env.step(&format!("lookup[{word}]")).unwrap();
    }
    assert_eq!(env.step(&format!("lookup[{word}]")).unwrap().observation, "No more results.");
    assert_eq!(out.steps, 3);
}

#[test]
fn finish_pays_f1_or_em() {
    let world = small();
    let task =
        (0..world.num_tasks(Split::Unseen)).map(|i| TaskId::new(Split::Unseen, i)).find(|&t| {
            let a = &world.question(t).unwrap().answer;
            a.split_whitespace().count() == 2
        });
    let task = task.expect("a two-word answer (a person's name) exists");
    let gold = world.question(task).unwrap().answer.clone();
    let first = gold.split_whitespace().next().unwrap();
    let mut env = world.new_env().unwrap();
    env.reset(task, 0).unwrap();
    let out = env.step(&format!("finish[{first}]")).unwrap();
    // One token of two: P = 1, R = 1/2 → F1 = 2/3; not an exact match.
    assert!(out.done && !out.won && close(out.reward, 2.0 / 3.0), "{out:?}");
    assert_eq!(out.observation, format!("Episode finished, reward = {}", out.reward));

    let em = QaWorld::generated(&QaConfig {
        regions: 6,
        unseen_regions: 2,
        reward: RewardKind::Em,
        ..QaConfig::default()
    })
    .unwrap();
    let mut env = em.new_env().unwrap();
    env.reset(task, 0).unwrap();
    let gold = em.question(task).unwrap().answer.clone();
    let first = gold.split_whitespace().next().unwrap();
    let out = env.step(&format!("finish[{first}]")).unwrap();
    assert_eq!(out.reward, if exact_match(first, &gold) { 1.0 } else { 0.0 });
}

#[test]
fn invalid_actions_and_step_limit() {
    let world = small();
    let mut env = world.new_env().unwrap();
    env.reset(TaskId::new(Split::Train, 0), 0).unwrap();
    let out = env.step("look around").unwrap();
    assert!(!out.valid);
    assert_eq!(out.observation, "Invalid action: look around");
    assert_eq!(env.step("think[hmm]").unwrap().observation, "Nice thought.");
    assert_eq!(env.step("lookup[x]").unwrap().observation, "No more results.", "no page yet");
    for _ in 3..6 {
        assert!(!env.step("search[]").unwrap().done);
    }
    let out = env.step("search[nothing]").unwrap();
    assert!(out.done && out.steps == 7 && out.reward == 0.0);
    assert!(env.step("finish[x]").is_err());
    assert!(env.expert_step().is_none());
}

#[test]
fn expert_answers_every_test_question() {
    let world = QaWorld::generated(&QaConfig::default()).unwrap();
    let n = world.num_tasks(Split::Unseen);
    assert!(n >= 200, "{n}");
    let mut types = std::collections::BTreeMap::new();
    let mut env = world.new_env().unwrap();
    for i in 0..n {
        let task = TaskId::new(Split::Unseen, i);
        *types.entry(world.task_type(task).unwrap()).or_insert(0) += 1;
        env.reset(task, 0).unwrap();
        let mut last = None;
        let mut searches = 0;
        while let Some(s) = env.expert_step() {
            searches += usize::from(s.action.starts_with("search["));
            let out = env.step(&s.action).unwrap();
            if s.action.starts_with("search[") {
                assert!(
                    !out.observation.starts_with("Could not find"),
                    "{task}: {}",
                    out.observation
                );
            }
            last = Some(out);
        }
        let out = last.unwrap();
        assert!(out.won && out.reward == 1.0, "{task}: {:?}", world.question(task).unwrap());
        assert!(searches >= 2, "multi-hop: {task}");
    }
    assert!(types["bridge"] > 50 && types["comparison"] > 50, "{types:?}");
}

#[test]
fn unseen_questions_use_unseen_pages() {
    let world = small();
    let titles = |split: Split| {
        (0..world.num_tasks(split))
            .flat_map(|i| world.question(TaskId::new(split, i)).unwrap().supporting.clone())
            .collect::<std::collections::HashSet<_>>()
    };
    assert!(titles(Split::Train).is_disjoint(&titles(Split::Unseen)));
    assert!(titles(Split::Seen).is_disjoint(&titles(Split::Unseen)));
    assert!(!titles(Split::Seen).is_empty());
}

#[test]
fn loads_hotpotqa_layout() {
    let questions = json!([
        {"_id": "5a8b57f25542995d1e6f1371", "question": "Were Scott Derrickson and Ed Wood of the same nationality?",
         "answer": "yes", "type": "comparison", "level": "hard",
         "supporting_facts": [["Scott Derrickson", 0], ["Ed Wood", 0]],
         "context": [["Scott Derrickson", ["Scott Derrickson (born July 16, 1966) is an American director, screenwriter and producer.", " He lives in Los Angeles, California."]],
                     ["Ed Wood", ["Edward Davis Wood Jr. (October 10, 1924 – December 10, 1978) was an American filmmaker, actor, writer, producer, and director."]]]},
        {"_id": "q2", "question": "Where does the director of Sinister live?", "answer": "Los Angeles", "type": "bridge",
         "supporting_facts": [["Sinister (film)", 0], ["Scott Derrickson", 1]],
         "context": [["Sinister (film)", ["Sinister is a 2012 horror film directed by Scott Derrickson."]]]}
    ]);
    let world = QaWorld::from_hotpot(
        &questions,
        None,
        &QaConfig { test_questions: 2, ..QaConfig::default() },
    )
    .unwrap();
    assert_eq!(world.num_tasks(Split::Unseen), 2);
    assert_eq!(world.pages().len(), 3);
    let mut env = world.new_env().unwrap();
    for i in 0..2 {
        env.reset(TaskId::new(Split::Unseen, i), 0).unwrap();
        let mut last = None;
        while let Some(s) = env.expert_step() {
            last = Some(env.step(&s.action).unwrap());
        }
        assert!(last.unwrap().won);
    }
    env.reset(TaskId::new(Split::Unseen, 0), 0).unwrap();
    let bad = json!([{"_id": "x", "question": "q", "answer": "a", "type": "multi"}]);
    let err = QaWorld::from_hotpot(&bad, None, &QaConfig::default()).err().unwrap().to_string();
    assert!(err.contains("record 0 (_id x)") && err.contains("`type`"), "{err}");
}

#[test]
fn registry_opens_qa_with_checked_options() {
    let w =
        registry::open("qa", &json!({"regions": 5, "unseen_regions": 1, "reward": "em"})).unwrap();
    assert_eq!(w.name(), "qa");
    assert!(w.instruction().contains("lookup[keyword]"));
    let err = registry::open("qa", &json!({"reward": "bleu"})).err().unwrap().to_string();
    assert!(err.contains("bleu"), "{err}");
    assert!(registry::open("qa", &json!({"regions": 40})).is_err());
}
