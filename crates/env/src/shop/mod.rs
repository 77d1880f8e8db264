//! The shop world: WebShop (Yao et al. 2022) as its text agents see it.
//!
//! Pages render as WebShop's "simple" text mode joins visible texts with ` [SEP] `: the search
//! page `WebShop [SEP] Instruction: [SEP] <goal> [SEP] Search`, results pages of 10 products
//! (of the 50 best BM25 hits) with `Back to Search`, `< Prev`, `Next >`, item pages with option
//! values, `Description`, `Features`, `Reviews` and `Buy Now`, and the three sub-pages.
//! Actions are `search[keywords]` (on the search page only, where the search bar is) and
//! `click[value]` with a value among the page's clickables, compared case-insensitively as
//! WebShop lower-cases them; anything else leaves the page as it was and still costs a step.
//! Buying ends the episode with WebShop's reward ([`reward`]); the episode also ends after
//! `max_steps` steps (10, as in ETO) with reward 0.
//!
//! Splits (by goal): `unseen` is the test split — goals whose products no training goal
//! targets, at least `test_goals` of them; `seen` holds held-out goals over products that
//! training goals also target (one goal per such product, up to `seen_goals`); `train` is the
//! rest. WebShop itself takes its first 500 shuffled goals as test whatever their product;
//! grouping by product keeps "unseen" honest about the products.

mod catalogue;
mod expert;
pub mod fuzz;
mod gen;
mod page;
pub mod reward;
mod rng;
pub(crate) mod search;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;

pub use catalogue::{from_webshop_json, Goal, Product, Review};
pub use gen::generate;
pub(crate) use page::py_float;
use page::Page;
use search::TextIndex;

use crate::registry::{self, WorldOptions};
use crate::{EnvError, Environment, ExpertStep, Split, StepOutcome, TaskId, World, WorldRef};

pub(crate) use rng::Rng;

/// The registry name.
pub const NAME: &str = "shop";

/// ETO's instruction prompt for WebShop (Song et al. 2024, appendix).
pub const INSTRUCTION: &str = "You are doing a web shopping task. I will give you instructions about what to do. \
You have to follow the instructions. Every round I will give you an observation and a list of available actions, \
you have to respond an action based on the state and instruction. You can use search action if search is available. \
You can click one of the buttons in clickables. An action should be of the following structure:\n\
search[keywords]\nclick[value]\n\
If the action is not valid, perform nothing. Keywords in search are up to you, but the value in click must be a value \
in the list of available actions. Remember that your keywords in search should be carefully designed.\n\
Your response should use the following format:\n\n\
Thought: I think ...\nAction: click[something]";

/// WebShop returns the 50 best hits of a search.
pub const SEARCH_RETURN_N: usize = 50;
/// Products per results page.
pub const PRODUCT_WINDOW: usize = 10;

/// Options of the shop world (`stepagent` world options / TOML table).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShopConfig {
    /// Steps before an episode ends unsolved. Default 10 (ETO's WebShop limit).
    pub max_steps: usize,
    /// Seed of the bundled catalogue and of goal price bounds. Default 0.
    pub seed: u64,
    /// Products in the bundled catalogue. Default 3000.
    pub products: usize,
    /// Goals in the test (`unseen`) split, at least. Default 500, WebShop's test size.
    pub test_goals: usize,
    /// Goals in the `seen` split, at most. Default 200.
    pub seen_goals: usize,
}

impl Default for ShopConfig {
    fn default() -> Self {
        ShopConfig { max_steps: 10, seed: 0, products: 3000, test_goals: 500, seen_goals: 200 }
    }
}

/// Everything an episode reads, built once per world and shared.
pub(crate) struct ShopData {
    pub(crate) products: Vec<Product>,
    pub(crate) by_asin: HashMap<String, usize>,
    pub(crate) goals: Vec<Goal>,
    splits: [Vec<usize>; 3],
    index: TextIndex,
    pub(crate) max_steps: usize,
}

impl ShopData {
    /// Product indices for `keywords`, best first (at most [`SEARCH_RETURN_N`]).
    pub(crate) fn search(&self, keywords: &str) -> Result<Vec<usize>, EnvError> {
        Ok(self.index.search(keywords, SEARCH_RETURN_N)?.into_iter().map(|i| i as usize).collect())
    }
}

fn split_slot(split: Split) -> usize {
    match split {
        Split::Train => 0,
        Split::Seen => 1,
        Split::Unseen => 2,
    }
}

/// The shop world.
pub struct ShopWorld {
    data: Arc<ShopData>,
}

impl ShopWorld {
    /// The bundled catalogue generated from `config`.
    pub fn generated(config: &ShopConfig) -> Result<Self, EnvError> {
        if config.products == 0 {
            return Err(EnvError::BadOptions {
                world: NAME.into(),
                message: "`products` must be at least 1".into(),
            });
        }
        let (products, goals) = generate(config.products, config.seed);
        Self::from_parts(products, goals, config)
    }

    /// A world over WebShop's own files (see [`from_webshop_json`]); the catalogue options of
    /// `config` are ignored, its split sizes, seed and step limit apply.
    pub fn from_webshop(
        products: &serde_json::Value,
        attributes: Option<&serde_json::Value>,
        human_goals: &serde_json::Value,
        reviews: Option<&serde_json::Value>,
        config: &ShopConfig,
    ) -> Result<Self, EnvError> {
        let (products, goals) =
            from_webshop_json(products, attributes, human_goals, reviews, config.seed)?;
        Self::from_parts(products, goals, config)
    }

    /// A world over given products and goals; every goal must name a product.
    pub fn from_parts(
        products: Vec<Product>,
        goals: Vec<Goal>,
        config: &ShopConfig,
    ) -> Result<Self, EnvError> {
        if config.max_steps == 0 {
            return Err(EnvError::BadOptions {
                world: NAME.into(),
                message: "`max_steps` must be at least 1".into(),
            });
        }
        let mut by_asin = HashMap::new();
        for (i, p) in products.iter().enumerate() {
            if by_asin.insert(p.asin.clone(), i).is_some() {
                return Err(EnvError::BadSpec(format!(
                    "shop catalogue: asin {} appears twice",
                    p.asin
                )));
            }
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (gi, g) in goals.iter().enumerate() {
            let pi = *by_asin.get(&g.asin).ok_or_else(|| {
                EnvError::BadSpec(format!(
                    "shop goal {gi} (`{}`) names asin {} which is not in the catalogue",
                    g.instruction_text, g.asin
                ))
            })?;
            groups.entry(pi).or_default().push(gi);
        }
        let mut order: Vec<Vec<usize>> = groups.into_values().collect();
        Rng::new(config.seed ^ 233).shuffle(&mut order);
        let mut splits: [Vec<usize>; 3] = Default::default();
        let mut rest = Vec::new();
        for group in order {
            if splits[2].len() < config.test_goals {
                splits[2].extend(group);
            } else {
                rest.push(group);
            }
        }
        for mut group in rest {
            if group.len() >= 2 && splits[1].len() < config.seen_goals {
                splits[1].push(group.pop().expect("group has two goals"));
            }
            splits[0].extend(group);
        }
        let index = TextIndex::build(
            &["title", "bullets", "description", "attributes"],
            products.iter().enumerate().map(|(i, p)| {
                (
                    i as u64,
                    vec![
                        p.title.clone(),
                        p.bullet_points.join(" "),
                        p.description.clone(),
                        p.attributes.join(", "),
                    ],
                )
            }),
        )?;
        Ok(ShopWorld {
            data: Arc::new(ShopData {
                products,
                by_asin,
                goals,
                splits,
                index,
                max_steps: config.max_steps,
            }),
        })
    }

    /// The goal behind a task.
    pub fn goal(&self, task: TaskId) -> Result<&Goal, EnvError> {
        self.check_task(task)?;
        Ok(&self.data.goals[self.data.splits[split_slot(task.split)][task.index]])
    }

    /// The catalogue.
    pub fn products(&self) -> &[Product] {
        &self.data.products
    }

    /// A concrete environment (the trait's [`World::new_env`] boxes one).
    pub fn env(&self) -> ShopEnv {
        ShopEnv::new(self.data.clone())
    }
}

/// Registry entry point.
pub(crate) fn open(options: &WorldOptions) -> Result<WorldRef, EnvError> {
    let config: ShopConfig = registry::parse_options(NAME, options)?;
    Ok(registry::shared(ShopWorld::generated(&config)?))
}

impl World for ShopWorld {
    fn name(&self) -> &str {
        NAME
    }

    fn instruction(&self) -> &str {
        INSTRUCTION
    }

    fn num_tasks(&self, split: Split) -> usize {
        self.data.splits[split_slot(split)].len()
    }

    fn task_type(&self, task: TaskId) -> Result<String, EnvError> {
        Ok(self.goal(task)?.category.clone())
    }

    fn max_steps(&self) -> usize {
        self.data.max_steps
    }

    fn new_env(&self) -> Result<Box<dyn Environment>, EnvError> {
        Ok(Box::new(self.env()))
    }
}

/// One shopping episode.
pub struct ShopEnv {
    data: Arc<ShopData>,
    goal: Option<usize>,
    page: Page,
    keywords: String,
    results: Vec<usize>,
    page_no: usize,
    item: Option<usize>,
    options: BTreeMap<String, String>,
    steps: usize,
    done: bool,
}

impl ShopEnv {
    fn new(data: Arc<ShopData>) -> Self {
        ShopEnv {
            data,
            goal: None,
            page: Page::Search,
            keywords: String::new(),
            results: Vec::new(),
            page_no: 1,
            item: None,
            options: BTreeMap::new(),
            steps: 0,
            done: false,
        }
    }

    fn goal_ref(&self) -> Option<&Goal> {
        self.goal.map(|g| &self.data.goals[g])
    }

    /// The options chosen on the current item page.
    pub fn selected_options(&self) -> &BTreeMap<String, String> {
        &self.options
    }

    /// The page's clickables: (as shown, as matched).
    fn clickables(&self) -> Vec<(String, String)> {
        page::clickables(self)
    }

    fn observation(&self) -> String {
        page::render(self)
    }

    fn show_results(&mut self, page_no: usize) {
        self.page = Page::Results;
        self.page_no = page_no;
        self.item = None;
        self.options.clear();
    }

    fn purchase_reward(&self) -> (f64, bool) {
        let (Some(goal), Some(item)) = (self.goal_ref(), self.item) else { return (0.0, false) };
        let product = &self.data.products[item];
        let info = reward::reward(product, goal, product.price, &self.options);
        (info.reward, info.reward == 1.0)
    }
}

/// Splits `name[arg]` into a lower-cased name and the argument, as WebShop's `parse_action`
/// does (the argument runs from the first `[` to the final `]`).
fn parse_action(action: &str) -> Option<(String, String)> {
    let action = action.trim();
    let open = action.find('[')?;
    if !action.ends_with(']') || open + 1 > action.len() - 1 {
        return None;
    }
    let name = action[..open].trim().to_lowercase();
    let arg = action[open + 1..action.len() - 1].trim().to_string();
    if name.is_empty() || arg.is_empty() {
        return None;
    }
    Some((name, arg))
}

impl Environment for ShopEnv {
    fn reset(&mut self, task: TaskId, _seed: u64) -> Result<String, EnvError> {
        let slot = &self.data.splits[split_slot(task.split)];
        let goal = *slot.get(task.index).ok_or_else(|| EnvError::NoSuchTask {
            world: NAME.into(),
            split: task.split.to_string(),
            task: task.to_string(),
            len: slot.len(),
        })?;
        *self = ShopEnv::new(self.data.clone());
        self.goal = Some(goal);
        Ok(self.observation())
    }

    fn step(&mut self, action: &str) -> Result<StepOutcome, EnvError> {
        if self.goal.is_none() {
            return Err(EnvError::NotRunning("shop: call reset before step"));
        }
        if self.done {
            return Err(EnvError::NotRunning("shop: the episode is over; call reset"));
        }
        self.steps += 1;
        let mut valid = false;
        let mut reward = 0.0;
        let mut won = false;
        match parse_action(action) {
            Some((name, arg)) if name == "search" && self.page == Page::Search => {
                self.keywords = arg.to_lowercase();
                self.results = self.data.search(&self.keywords)?;
                self.show_results(1);
                valid = true;
            }
            Some((name, arg)) if name == "click" => {
                let arg = arg.to_lowercase();
                if let Some((_, key)) = self.clickables().into_iter().find(|(_, key)| *key == arg) {
                    valid = true;
                    page::click(self, &key, &mut reward, &mut won);
                }
            }
            _ => {}
        }
        if self.page == Page::Done || self.steps >= self.data.max_steps {
            self.done = true;
        }
        Ok(StepOutcome {
            observation: self.observation(),
            reward,
            done: self.done,
            won,
            valid,
            steps: self.steps,
        })
    }

    fn admissible_actions(&self) -> Vec<String> {
        if self.done || self.goal.is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        if self.page == Page::Search {
            out.push("search[<keywords>]".to_string());
        }
        out.extend(self.clickables().into_iter().map(|(shown, _)| format!("click[{shown}]")));
        out
    }

    fn expert_step(&self) -> Option<ExpertStep> {
        if self.done {
            return None;
        }
        expert::next(self)
    }

    fn steps(&self) -> usize {
        self.steps
    }
}
