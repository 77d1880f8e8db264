//! The shop expert: search with words from the instruction, open a product that can earn the
//! full reward (paging when it sits lower), choose the goal's options, buy.
//!
//! It reads the goal (as a scripted expert does) only to recognise a right product and its
//! right options; what it searches for is built from the instruction text.

use std::collections::BTreeMap;

use super::page::Page;
use super::reward::{option_value_counts, reward};
use super::{Goal, Product, ShopEnv, PRODUCT_WINDOW};
use crate::ExpertStep;

/// Openers WebShop's instructions start with, dropped from the search query.
const OPENERS: &[&str] = &[
    "i'm looking for",
    "i am looking for",
    "i would like to buy",
    "i would like",
    "i want to buy",
    "i want",
    "i need to buy",
    "i need",
    "find me",
    "get me",
    "can you find me",
    "please find",
    "looking for",
    "search for",
];

/// The instruction without its opener, leading article and price clause.
pub(crate) fn query_from_instruction(text: &str) -> String {
    let mut q = text.to_lowercase();
    if let Some(cut) = q.find(", and price lower than") {
        q.truncate(cut);
    }
    for o in OPENERS {
        if let Some(rest) = q.strip_prefix(o) {
            q = rest.trim_start().to_string();
            break;
        }
    }
    for a in ["a ", "an ", "some ", "the "] {
        if let Some(rest) = q.strip_prefix(a) {
            q = rest.to_string();
            break;
        }
    }
    q.trim().trim_end_matches('.').to_string()
}

/// The options to choose on `product` for `goal`: each goal option assigned to a distinct
/// option name offering a value that counts (an equal value first).
pub(crate) fn chosen_options(product: &Product, goal: &Goal) -> BTreeMap<String, String> {
    let mut chosen = BTreeMap::new();
    for g in &goal.goal_options {
        let g_low = g.to_lowercase();
        let mut pick = None;
        for (name, values) in &product.options {
            if chosen.contains_key(name) {
                continue;
            }
            if values.contains(&g_low) {
                pick = Some((name.clone(), g_low.clone()));
                break;
            }
        }
        if pick.is_none() {
            'outer: for (name, values) in &product.options {
                if chosen.contains_key(name) {
                    continue;
                }
                for v in values {
                    if option_value_counts(product, goal, name, v) {
                        pick = Some((name.clone(), v.clone()));
                        break 'outer;
                    }
                }
            }
        }
        if let Some((name, v)) = pick {
            chosen.insert(name, v);
        }
    }
    chosen
}

/// Whether buying `product` with its chosen options earns R == 1.
fn is_right(product: &Product, goal: &Goal) -> bool {
    reward(product, goal, product.price, &chosen_options(product, goal)).reward == 1.0
}

/// Steps from the search page to buying the first right product of `results`, if any.
fn plan_cost(env: &ShopEnv, goal: &Goal, results: &[usize]) -> Option<usize> {
    let pos = results.iter().position(|&i| is_right(&env.data.products[i], goal))?;
    let p = &env.data.products[results[pos]];
    Some(1 + pos / PRODUCT_WINDOW + 1 + chosen_options(p, goal).len() + 1)
}

pub(crate) fn next(env: &ShopEnv) -> Option<ExpertStep> {
    let goal = env.goal_ref()?;
    let step = |thought: String, action: String| Some(ExpertStep { thought, action });
    match env.page {
        Page::Search => {
            let budget = env.data.max_steps.saturating_sub(env.steps);
            let target = env.data.by_asin.get(&goal.asin).map(|&i| &env.data.products[i]);
            let mut candidates = vec![query_from_instruction(&goal.instruction_text)];
            candidates.push(format!("{} {}", goal.attributes.join(" "), goal.query));
            if let Some(t) = target {
                candidates.push(t.title.to_lowercase());
            }
            let mut best: Option<(usize, String)> = None;
            for q in &candidates {
                let Ok(results) = env.data.search(q) else { continue };
                if let Some(cost) = plan_cost(env, goal, &results) {
                    if cost <= budget {
                        best = Some((cost, q.clone()));
                        break;
                    }
                    if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                        best = Some((cost, q.clone()));
                    }
                }
            }
            let query = best.map_or_else(|| candidates[0].clone(), |(_, q)| q);
            step(
                format!(
                    "I think I should search for {query} to find what the instruction asks for."
                ),
                format!("search[{query}]"),
            )
        }
        Page::Results => {
            let right = env.results.iter().position(|&i| is_right(&env.data.products[i], goal));
            match right {
                Some(pos) => {
                    let page = pos / PRODUCT_WINDOW + 1;
                    if page > env.page_no {
                        step("None of the products on this page fits all my requirements. I think I should look at the next page.".into(), "click[Next >]".into())
                    } else if page < env.page_no {
                        step("The products on the previous page suited my needs better. I think I should go back to it.".into(), "click[< Prev]".into())
                    } else {
                        let p = &env.data.products[env.results[pos]];
                        step(
                            format!("I think the {} product, {}, fits my requirements and is within my budget. I should click on it.", p.asin, p.title),
                            format!("click[{}]", p.asin),
                        )
                    }
                }
                None => step("None of these results fit what I need. I think I should go back and search again.".into(), "click[Back to Search]".into()),
            }
        }
        Page::Item => {
            let p = &env.data.products[env.item?];
            if !is_right(p, goal) {
                return step("This product does not match my requirements. I think I should go back to the results.".into(), "click[< Prev]".into());
            }
            let chosen = chosen_options(p, goal);
            for (name, value) in &chosen {
                if env.options.get(name) != Some(value) {
                    return step(format!("I think I should select '{value}' for the {name}, as the instruction asks."), format!("click[{value}]"));
                }
            }
            step("I think the product has everything I need and the options are set. I should click on 'Buy Now'.".into(), "click[Buy Now]".into())
        }
        Page::Sub(_) => step(
            "I have read enough here. I think I should go back to the product page.".into(),
            "click[< Prev]".into(),
        ),
        Page::Done => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_drops_opener_article_and_price() {
        assert_eq!(
            query_from_instruction("i need a long lasting deodorant that is paraben free, and price lower than 30.00 dollars"),
            "long lasting deodorant that is paraben free"
        );
        assert_eq!(
            query_from_instruction("Find me an eau de parfum in 3.4 fl oz size"),
            "eau de parfum in 3.4 fl oz size"
        );
    }
}
