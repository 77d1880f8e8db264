//! WebShop's reward (`web_agent_site/engine/goal.py`, `get_reward`), term by term.
//!
//! R = r_type · (N_attr + N_opt + 1[price ≤ bound]) / (|goal attributes| + |goal options| + 1)
//!
//! * N_attr: goal attributes with a product attribute at `token_set_ratio > 85`, or else
//!   contained in the lower-cased title, bullet points or description.
//! * N_opt: *purchased* options (after colour normalisation) equal to a goal option when the
//!   option is a size, fuzzy-matching one otherwise, or else contained in the title, bullet
//!   points or description. WebShop counts per purchased option, so R can exceed 1 when
//!   several purchased options match; success is R == 1, as in WebShop.
//! * r_type: 1, lowered to 0.5 when neither the query, two category-path levels nor the name's
//!   nouns (title score > 0.2) agree; to 0.1 when the title score is below 0.1; to 0 when no
//!   noun is shared.
//!
//! The one difference: WebShop finds nouns with spaCy's `en_core_web_lg` tagger
//! (`NOUN`/`PROPN`). Here [`type_nouns`] keeps alphabetic tokens that are not in a closed list
//! of function words, adjectives and marketing words. On product names this keeps the head
//! nouns spaCy keeps; it can differ where spaCy tags a word by context (e.g. "cleaning" as a
//! noun in "cleaning kit"; kept here) or tags a brand as an adjective (kept here).

use std::collections::{BTreeMap, HashSet};

use super::catalogue::{Goal, Product};
use super::fuzz::{normalize_color, token_set_ratio};

/// Options WebShop matches exactly rather than fuzzily.
const EXACT_MATCH_OPTS: &[&str] = &["size"];

/// The reward with its parts, as WebShop's verbose mode reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardInfo {
    /// The total R.
    pub reward: f64,
    /// The type factor.
    pub r_type: f64,
    /// Goal attributes matched.
    pub attr_matches: usize,
    /// Purchased options matched.
    pub option_matches: usize,
    /// The price is within the bound.
    pub price_ok: bool,
    /// The queries are equal.
    pub query_match: bool,
    /// Two or more category-path levels are shared.
    pub category_match: bool,
    /// Shared nouns / goal-name nouns.
    pub title_score: f64,
}

/// Words never counted as nouns of a product name (see the module docs).
const NOT_NOUNS: &[&str] = &[
    // function words
    "a",
    "an",
    "the",
    "and",
    "or",
    "of",
    "for",
    "with",
    "without",
    "in",
    "on",
    "to",
    "by",
    "from",
    "at",
    "as",
    "is",
    "are",
    "be",
    "it",
    "its",
    "this",
    "that",
    "your",
    "you",
    "our",
    "we",
    "my",
    "per",
    "each",
    "all",
    "any",
    "no",
    "not",
    "plus",
    "x",
    "via",
    "into",
    "up",
    "over",
    "under",
    // adjectives and marketing words common in product names
    "new",
    "best",
    "great",
    "premium",
    "natural",
    "organic",
    "free",
    "long",
    "lasting",
    "soft",
    "large",
    "small",
    "mini",
    "big",
    "extra",
    "super",
    "ultra",
    "high",
    "low",
    "light",
    "heavy",
    "easy",
    "portable",
    "compact",
    "durable",
    "professional",
    "classic",
    "modern",
    "vintage",
    "waterproof",
    "wireless",
    "adjustable",
    "lightweight",
    "comfortable",
    "fresh",
    "pure",
    "gentle",
    "sensitive",
    "dry",
    "oily",
    "healthy",
    "vegan",
    "non",
    "quick",
    "fast",
    "cute",
    "casual",
    "slim",
    "warm",
    "cool",
    "hot",
    "cold",
    "daily",
    "real",
    "original",
    "deluxe",
    "smart",
    "solid",
    "stainless",
    "full",
    "half",
    "unisex",
];

/// The nouns of a product name, lower case, in order (duplicates kept: WebShop divides by the
/// length of the goal's list, duplicates included).
pub fn type_nouns(name: &str) -> Vec<String> {
    let stop: HashSet<&str> = NOT_NOUNS.iter().copied().collect();
    name.to_lowercase()
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|t| t.trim_matches('\''))
        .filter(|t| !t.is_empty() && t.chars().all(char::is_alphabetic) && t.chars().count() > 1)
        .filter(|t| !stop.contains(t))
        .map(str::to_string)
        .collect()
}

/// WebShop's `get_type_reward`: (r_type, query match, category match, title score).
pub fn type_reward(product: &Product, goal: &Goal) -> (f64, bool, bool, f64) {
    let query_match = product.query == goal.query;
    let levels = |s: &str| s.split('›').map(|x| x.trim().to_string()).collect::<HashSet<_>>();
    let category_match =
        levels(&product.product_category).intersection(&levels(&goal.product_category)).count()
            >= 2;
    let bought: HashSet<String> = type_nouns(&product.name).into_iter().collect();
    let wanted = type_nouns(&goal.name);
    let wanted_set: HashSet<&String> = wanted.iter().collect();
    let shared = wanted_set.iter().filter(|w| bought.contains(**w)).count();
    let title_score = if wanted.is_empty() { 0.2 } else { shared as f64 / wanted.len() as f64 };
    let mut r_type = 1.0;
    if !(query_match || category_match || title_score > 0.2) {
        r_type = 0.5;
    }
    if title_score < 0.1 {
        r_type = 0.1;
    }
    if title_score == 0.0 {
        r_type = 0.0;
    }
    (r_type, query_match, category_match, title_score)
}

fn in_text(product: &Product, needle: &str) -> bool {
    product.title.to_lowercase().contains(needle)
        || product.bullet_points.join(" ").to_lowercase().contains(needle)
        || product.description.to_lowercase().contains(needle)
}

/// WebShop's `get_attribute_reward`: how many goal attributes the product has.
pub fn attribute_matches(product: &Product, goal: &Goal) -> usize {
    goal.attributes
        .iter()
        .filter(|g| {
            product.attributes.iter().any(|p| token_set_ratio(p, g) > 85) || in_text(product, g)
        })
        .count()
}

/// Whether one purchased option value counts for the goal (WebShop's per-option test), both
/// sides already colour-normalised.
fn option_counts(product: &Product, name: &str, value: &str, goal_options: &[String]) -> bool {
    let matched = if EXACT_MATCH_OPTS.contains(&name.to_lowercase().as_str()) {
        goal_options.iter().any(|g| g == value)
    } else {
        goal_options.iter().any(|g| token_set_ratio(g, value) > 85)
    };
    matched || in_text(product, value)
}

/// WebShop's `get_option_reward`: how many purchased options count.
pub fn option_matches(
    product: &Product,
    goal: &Goal,
    purchased: &BTreeMap<String, String>,
) -> usize {
    let goal_options: Vec<String> = goal.goal_options.iter().map(|o| normalize_color(o)).collect();
    purchased
        .iter()
        .filter(|(name, value)| {
            option_counts(product, name, &normalize_color(value), &goal_options)
        })
        .count()
}

/// Whether choosing `value` for option `name` of `product` would count for `goal`.
pub fn option_value_counts(product: &Product, goal: &Goal, name: &str, value: &str) -> bool {
    let goal_options: Vec<String> = goal.goal_options.iter().map(|o| normalize_color(o)).collect();
    option_counts(product, name, &normalize_color(value), &goal_options)
}

/// WebShop's `get_reward` for buying `product` at `price` with `purchased` options.
pub fn reward(
    product: &Product,
    goal: &Goal,
    price: f64,
    purchased: &BTreeMap<String, String>,
) -> RewardInfo {
    let (r_type, query_match, category_match, title_score) = type_reward(product, goal);
    let attr_matches = attribute_matches(product, goal);
    let option_matches = option_matches(product, goal, purchased);
    // WebShop leaves r_price as None when the bound is not positive, which would crash its sum;
    // such goals never occur there, and count as "within bound" here.
    let price_ok = goal.price_upper <= 0.0 || price <= goal.price_upper;
    let total = (attr_matches + option_matches + usize::from(price_ok)) as f64
        / (goal.attributes.len() + goal.goal_options.len() + 1) as f64;
    RewardInfo {
        reward: total * r_type,
        r_type,
        attr_matches,
        option_matches,
        price_ok,
        query_match,
        category_match,
        title_score,
    }
}
