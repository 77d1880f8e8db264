//! The multi-hop QA world: HotpotQA (Yang et al. 2018) through the interface of ReAct's
//! `wikienv` (Yao et al. 2023), over a local corpus.
//!
//! Actions, as in `wikienv`:
//! * `search[entity]`: a page whose title equals the entity (case and spacing aside) shows its
//!   first five sentences; otherwise `Could not find [entity]. Similar: [...]` lists the five
//!   best BM25 titles (tantivy over titles and text) as a Python list, as wikienv prints them.
//! * `lookup[keyword]`: the next sentence of the current page containing the keyword
//!   (case-insensitive), `(Result i / n) sentence`; `No more results.` after the last one.
//! * `finish[answer]`: ends the episode; the reward is HotpotQA's F1 of the answer (or its
//!   exact match, with `reward = "em"`), success is exact match.
//! * `think[...]` answers `Nice thought.`; anything else `Invalid action: ...`.
//!
//! Sentences are split as wikienv splits them (paragraphs on newlines, sentences on `". "`)
//! except that wikienv appends a full stop to a sentence that already ends in one ("..");
//! here a sentence ends in exactly one.
//!
//! Splits of the bundled world: `unseen` questions are about regions (countries with their
//! cities, people, organisations and works) that no training question touches; `seen`
//! questions are held out from the training regions. Loaded HotpotQA questions have no
//! regions: a seeded shuffle sends `test_questions` to `unseen`, `seen_questions` to `seen`.

mod corpus;
pub mod metrics;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

pub use corpus::{Page, Question, QuestionType};
pub use metrics::{exact_match, f1_score, normalize_answer};

use crate::registry::{self, WorldOptions};
use crate::shop::search::TextIndex;
use crate::shop::Rng;
use crate::{EnvError, Environment, ExpertStep, Split, StepOutcome, TaskId, World, WorldRef};

/// The registry name.
pub const NAME: &str = "qa";

/// The instruction prompt: ReAct's HotpotQA instruction in ETO's "Thought: …\nAction: …" form.
pub const INSTRUCTION: &str = "Solve a question answering task with interleaving Thought, Action, Observation steps. \
Thought can reason about the current situation, and Action can be three types:\n\
(1) search[entity], which searches the exact entity in the encyclopedia and returns the first paragraph if it exists. \
If not, it will return some similar entities to search.\n\
(2) lookup[keyword], which returns the next sentence containing keyword in the current page.\n\
(3) finish[answer], which returns the answer and finishes the task.\n\
Your response should use the following format:\n\n\
Thought: I think ...\nAction: search[entity]";

/// Which score the final step pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RewardKind {
    /// HotpotQA's token F1 (partial credit).
    #[default]
    F1,
    /// HotpotQA's exact match (0 or 1).
    Em,
}

/// Options of the QA world.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QaConfig {
    /// Steps before an episode ends unanswered. Default 7, ReAct's HotpotQA limit.
    pub max_steps: usize,
    /// Seed of the bundled world and of the splits. Default 0.
    pub seed: u64,
    /// Regions in the bundled world, 4 to 24. Default 24.
    pub regions: usize,
    /// Regions whose questions form the `unseen` split. Default 6.
    pub unseen_regions: usize,
    /// At most this many `unseen` questions. Default 500.
    pub test_questions: usize,
    /// At most this many `seen` questions. Default 200.
    pub seen_questions: usize,
    /// The reward of `finish`: `"f1"` (default) or `"em"`.
    pub reward: RewardKind,
}

impl Default for QaConfig {
    fn default() -> Self {
        QaConfig {
            max_steps: 7,
            seed: 0,
            regions: 24,
            unseen_regions: 6,
            test_questions: 500,
            seen_questions: 200,
            reward: RewardKind::F1,
        }
    }
}

struct QaData {
    pages: Vec<Page>,
    by_title: HashMap<String, usize>,
    questions: Vec<Question>,
    splits: [Vec<usize>; 3],
    index: TextIndex,
    max_steps: usize,
    reward: RewardKind,
}

fn title_key(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn slot(split: Split) -> usize {
    match split {
        Split::Train => 0,
        Split::Seen => 1,
        Split::Unseen => 2,
    }
}

/// wikienv's sentences of a page.
fn sentences(text: &str) -> Vec<String> {
    text.split('\n')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .flat_map(|p| p.split(". "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| format!("{}.", s.trim_end_matches('.')))
        .collect()
}

/// Python's `repr` of a list of strings.
fn py_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| {
            if s.contains('\'') && !s.contains('"') {
                format!("\"{s}\"")
            } else {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        })
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// The QA world.
pub struct QaWorld {
    data: Arc<QaData>,
}

impl QaWorld {
    /// The bundled world generated from `config`.
    pub fn generated(config: &QaConfig) -> Result<Self, EnvError> {
        let bad = |m: &str| EnvError::BadOptions { world: NAME.into(), message: m.into() };
        if !(4..=24).contains(&config.regions) {
            return Err(bad("`regions` must be between 4 and 24"));
        }
        if config.unseen_regions == 0 || config.unseen_regions >= config.regions {
            return Err(bad("`unseen_regions` must be at least 1 and below `regions`"));
        }
        let g = corpus::generate(config.regions, config.seed);
        let first_unseen = g.regions - config.unseen_regions;
        let mut rng = Rng::new(config.seed ^ 0x9a);
        let mut unseen: Vec<usize> =
            (0..g.questions.len()).filter(|&i| g.questions[i].region >= first_unseen).collect();
        let mut rest: Vec<usize> =
            (0..g.questions.len()).filter(|&i| g.questions[i].region < first_unseen).collect();
        rng.shuffle(&mut unseen);
        rng.shuffle(&mut rest);
        unseen.truncate(config.test_questions);
        let seen: Vec<usize> = rest.drain(..config.seen_questions.min(rest.len())).collect();
        Self::build(g.pages, g.questions, [rest, seen, unseen], config)
    }

    /// A world over questions in HotpotQA's layout and an optional extra corpus (see the
    /// module docs for the splits).
    pub fn from_hotpot(
        questions: &serde_json::Value,
        corpus: Option<&serde_json::Value>,
        config: &QaConfig,
    ) -> Result<Self, EnvError> {
        let (pages, questions) = corpus::from_hotpot(questions, corpus)?;
        let mut order: Vec<usize> = (0..questions.len()).collect();
        Rng::new(config.seed ^ 0x9a).shuffle(&mut order);
        let unseen: Vec<usize> = order.drain(..config.test_questions.min(order.len())).collect();
        let seen: Vec<usize> = order.drain(..config.seen_questions.min(order.len())).collect();
        Self::build(pages, questions, [order, seen, unseen], config)
    }

    fn build(
        pages: Vec<Page>,
        questions: Vec<Question>,
        splits: [Vec<usize>; 3],
        config: &QaConfig,
    ) -> Result<Self, EnvError> {
        if config.max_steps == 0 {
            return Err(EnvError::BadOptions {
                world: NAME.into(),
                message: "`max_steps` must be at least 1".into(),
            });
        }
        let mut by_title = HashMap::new();
        for (i, p) in pages.iter().enumerate() {
            by_title.entry(title_key(&p.title)).or_insert(i);
        }
        let index = TextIndex::build(
            &["title", "text"],
            pages
                .iter()
                .enumerate()
                .map(|(i, p)| (i as u64, vec![p.title.clone(), p.text.clone()])),
        )?;
        Ok(QaWorld {
            data: Arc::new(QaData {
                pages,
                by_title,
                questions,
                splits,
                index,
                max_steps: config.max_steps,
                reward: config.reward,
            }),
        })
    }

    /// The question behind a task.
    pub fn question(&self, task: TaskId) -> Result<&Question, EnvError> {
        self.check_task(task)?;
        Ok(&self.data.questions[self.data.splits[slot(task.split)][task.index]])
    }

    /// The corpus.
    pub fn pages(&self) -> &[Page] {
        &self.data.pages
    }

    /// A concrete environment.
    pub fn env(&self) -> QaEnv {
        QaEnv::new(self.data.clone())
    }
}

/// Registry entry point.
pub(crate) fn open(options: &WorldOptions) -> Result<WorldRef, EnvError> {
    let config: QaConfig = registry::parse_options(NAME, options)?;
    Ok(registry::shared(QaWorld::generated(&config)?))
}

impl World for QaWorld {
    fn name(&self) -> &str {
        NAME
    }

    fn instruction(&self) -> &str {
        INSTRUCTION
    }

    fn num_tasks(&self, split: Split) -> usize {
        self.data.splits[slot(split)].len()
    }

    fn task_type(&self, task: TaskId) -> Result<String, EnvError> {
        Ok(self.question(task)?.qtype.as_str().to_string())
    }

    fn max_steps(&self) -> usize {
        self.data.max_steps
    }

    fn new_env(&self) -> Result<Box<dyn Environment>, EnvError> {
        Ok(Box::new(self.env()))
    }
}

/// One question-answering episode.
pub struct QaEnv {
    data: Arc<QaData>,
    question: Option<usize>,
    page: Option<usize>,
    lookup: Option<(String, Vec<String>, usize)>,
    /// Pages found by search, in order (the expert reads its progress from them).
    visited: Vec<usize>,
    steps: usize,
    done: bool,
}

impl QaEnv {
    fn new(data: Arc<QaData>) -> Self {
        QaEnv {
            data,
            question: None,
            page: None,
            lookup: None,
            visited: Vec::new(),
            steps: 0,
            done: false,
        }
    }

    fn search(&mut self, entity: &str) -> String {
        if let Some(&i) = self.data.by_title.get(&title_key(entity)) {
            self.page = Some(i);
            self.lookup = None;
            self.visited.push(i);
            return sentences(&self.data.pages[i].text)
                .into_iter()
                .take(5)
                .collect::<Vec<_>>()
                .join(" ");
        }
        let similar: Vec<String> = self
            .data
            .index
            .search(entity, 5)
            .unwrap_or_default()
            .into_iter()
            .map(|i| self.data.pages[i as usize].title.clone())
            .collect();
        format!("Could not find {entity}. Similar: {}.", py_list(&similar))
    }

    fn lookup(&mut self, keyword: &str) -> String {
        let fresh = self.lookup.as_ref().is_none_or(|(k, _, _)| k != keyword);
        if fresh {
            let list = match self.page {
                Some(p) => {
                    let k = keyword.to_lowercase();
                    sentences(&self.data.pages[p].text)
                        .into_iter()
                        .filter(|s| s.to_lowercase().contains(&k))
                        .collect()
                }
                None => Vec::new(),
            };
            self.lookup = Some((keyword.to_string(), list, 0));
        }
        let (_, list, cnt) = self.lookup.as_mut().expect("lookup state was just set");
        if *cnt >= list.len() {
            "No more results.".to_string()
        } else {
            *cnt += 1;
            format!("(Result {} / {}) {}", *cnt, list.len(), list[*cnt - 1])
        }
    }
}

impl Environment for QaEnv {
    fn reset(&mut self, task: TaskId, _seed: u64) -> Result<String, EnvError> {
        let s = &self.data.splits[slot(task.split)];
        let q = *s.get(task.index).ok_or_else(|| EnvError::NoSuchTask {
            world: NAME.into(),
            split: task.split.to_string(),
            task: task.to_string(),
            len: s.len(),
        })?;
        *self = QaEnv::new(self.data.clone());
        self.question = Some(q);
        Ok(format!("Question: {}", self.data.questions[q].question))
    }

    fn step(&mut self, action: &str) -> Result<StepOutcome, EnvError> {
        let Some(q) = self.question else {
            return Err(EnvError::NotRunning("qa: call reset before step"));
        };
        if self.done {
            return Err(EnvError::NotRunning("qa: the episode is over; call reset"));
        }
        self.steps += 1;
        let action = action.trim();
        let arg = |prefix: &str| action.strip_prefix(prefix).and_then(|r| r.strip_suffix(']'));
        let (mut reward, mut won, mut valid) = (0.0, false, true);
        let observation = if let Some(entity) = arg("search[").filter(|e| !e.trim().is_empty()) {
            self.search(entity.trim())
        } else if let Some(keyword) = arg("lookup[").filter(|k| !k.trim().is_empty()) {
            self.lookup(keyword.trim())
        } else if let Some(answer) = arg("finish[") {
            let gold = &self.data.questions[q].answer;
            won = exact_match(answer, gold);
            reward = match self.data.reward {
                RewardKind::F1 => f1_score(answer, gold).0,
                RewardKind::Em => f64::from(u8::from(won)),
            };
            self.done = true;
            format!("Episode finished, reward = {}", crate::shop::py_float(reward))
        } else if arg("think[").is_some() {
            "Nice thought.".to_string()
        } else {
            valid = false;
            format!("Invalid action: {action}")
        };
        if self.steps >= self.data.max_steps {
            self.done = true;
        }
        Ok(StepOutcome { observation, reward, done: self.done, won, valid, steps: self.steps })
    }

    fn admissible_actions(&self) -> Vec<String> {
        if self.done || self.question.is_none() {
            return Vec::new();
        }
        let mut out = vec!["search[<entity>]".to_string()];
        if self.page.is_some() {
            out.push("lookup[<keyword>]".to_string());
        }
        out.push("finish[<answer>]".to_string());
        out
    }

    fn expert_step(&self) -> Option<ExpertStep> {
        if self.done {
            return None;
        }
        let q = &self.data.questions[self.question?];
        let visited: Vec<String> =
            self.visited.iter().map(|&i| title_key(&self.data.pages[i].title)).collect();
        let next = q.supporting.iter().position(|t| !visited.contains(&title_key(t)));
        // Loaded questions carry no thoughts of their own.
        let generic = || match next {
            Some(0) => format!(
                "I need to search {} to find what the question asks about.",
                q.supporting[0]
            ),
            Some(k) => format!(
                "I have read about {}. Next I need to search {}.",
                q.supporting[k - 1],
                q.supporting[k]
            ),
            None => format!("I have found what I need. The answer is {}.", q.answer),
        };
        match next {
            Some(k) => Some(ExpertStep {
                thought: q.thoughts.get(k).cloned().unwrap_or_else(generic),
                action: format!("search[{}]", q.supporting[k]),
            }),
            None => Some(ExpertStep {
                thought: q.thoughts.get(q.supporting.len()).cloned().unwrap_or_else(generic),
                action: format!("finish[{}]", q.answer),
            }),
        }
    }

    fn steps(&self) -> usize {
        self.steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_list_repr() {
        assert_eq!(py_list(&["A".into(), "Bob's".into()]), "['A', \"Bob's\"]");
        assert_eq!(py_list(&[]), "[]");
    }

    #[test]
    fn sentences_split_like_wikienv() {
        assert_eq!(sentences("A is b. C is d.\nE f."), vec!["A is b.", "C is d.", "E f."]);
    }
}
