//! The shop's pages: their text, their clickables, and where a click leads.

use super::{ShopEnv, PRODUCT_WINDOW};

/// Which page the browser shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page {
    /// The start page with the search bar.
    Search,
    /// A page of search results.
    Results,
    /// A product's page.
    Item,
    /// A product's Description, Features or Reviews page.
    Sub(SubPage),
    /// After Buy Now.
    Done,
}

/// The item sub-pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubPage {
    Description,
    Features,
    Reviews,
}

const BACK_TO_SEARCH: &str = "Back to Search";
const NEXT_PAGE: &str = "Next >";
const PREV_PAGE: &str = "< Prev";
const BUY_NOW: &str = "Buy Now";

fn header(env: &ShopEnv) -> String {
    let instruction = env.goal_ref().map_or("", |g| g.instruction_text.as_str());
    format!("Instruction: [SEP] {instruction}")
}

fn last_page(env: &ShopEnv) -> usize {
    env.results.len().div_ceil(PRODUCT_WINDOW).max(1)
}

fn page_slice(env: &ShopEnv) -> &[usize] {
    let start = ((env.page_no - 1) * PRODUCT_WINDOW).min(env.results.len());
    let end = (env.page_no * PRODUCT_WINDOW).min(env.results.len());
    &env.results[start..end]
}

/// A float as Python prints it (`1.0`, `0.75`), as WebShop's pages show scores.
pub(crate) fn py_float(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// The page as WebShop's simple text mode shows it.
pub(crate) fn render(env: &ShopEnv) -> String {
    let mut parts: Vec<String> = Vec::new();
    match env.page {
        Page::Search => {
            let instruction = env.goal_ref().map_or("", |g| g.instruction_text.as_str());
            return format!("WebShop [SEP] Instruction: [SEP] {instruction} [SEP] Search");
        }
        Page::Results => {
            parts.push(header(env));
            parts.push(BACK_TO_SEARCH.into());
            parts.push(format!("Page {} (Total results: {})", env.page_no, env.results.len()));
            if env.page_no > 1 {
                parts.push(PREV_PAGE.into());
            }
            if env.page_no < last_page(env) {
                parts.push(NEXT_PAGE.into());
            }
            for &i in page_slice(env) {
                let p = &env.data.products[i];
                parts.push(p.asin.clone());
                parts.push(p.title.clone());
                parts.push(p.price_tag.clone());
            }
        }
        Page::Item => {
            let Some(p) = env.item.map(|i| &env.data.products[i]) else { return String::new() };
            parts.push(header(env));
            parts.push(BACK_TO_SEARCH.into());
            parts.push(PREV_PAGE.into());
            for (name, values) in &p.options {
                parts.push(name.clone());
                parts.extend(values.iter().cloned());
            }
            parts.push(p.title.clone());
            parts.push(format!("Price: {}", p.price_tag));
            parts.push(format!("Rating: {}", p.rating));
            parts.extend(["Description", "Features", "Reviews", BUY_NOW].map(String::from));
        }
        Page::Sub(sub) => {
            let Some(p) = env.item.map(|i| &env.data.products[i]) else { return String::new() };
            parts.push(header(env));
            parts.push(BACK_TO_SEARCH.into());
            parts.push(PREV_PAGE.into());
            match sub {
                SubPage::Description => parts.push(p.description.clone()),
                SubPage::Features => parts.extend(p.bullet_points.iter().cloned()),
                SubPage::Reviews => {
                    for r in &p.reviews {
                        parts.push(r.title.clone());
                        parts.push(r.score.clone());
                        parts.push(r.body.clone());
                    }
                }
            }
        }
        Page::Done => {
            let asin = env.item.map_or(String::new(), |i| env.data.products[i].asin.clone());
            let options = serde_json::to_string(&env.options).unwrap_or_default();
            let (reward, _) = env.purchase_reward();
            parts.push("Thank you for shopping with us!".into());
            parts.push("Purchased".into());
            parts.push("asin".into());
            parts.push(asin);
            parts.push("options".into());
            parts.push(options);
            parts.push("Your score (min 0.0, max 1.0)".into());
            parts.push(py_float(reward));
        }
    }
    parts.retain(|p| !p.is_empty());
    parts.join(" [SEP] ")
}

/// The clickables: (text as shown, lower-cased key). On an item page an option value that
/// two options share is keyed once, for the later option, as WebShop's dict of clickables does.
pub(crate) fn clickables(env: &ShopEnv) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |shown: &str| out.push((shown.to_string(), shown.to_lowercase()));
    match env.page {
        Page::Search | Page::Done => {}
        Page::Results => {
            push(BACK_TO_SEARCH);
            if env.page_no > 1 {
                push(PREV_PAGE);
            }
            if env.page_no < last_page(env) {
                push(NEXT_PAGE);
            }
            for &i in page_slice(env) {
                push(&env.data.products[i].asin);
            }
        }
        Page::Item => {
            push(BACK_TO_SEARCH);
            push(PREV_PAGE);
            for s in ["Description", "Features", "Reviews", BUY_NOW] {
                push(s);
            }
            if let Some(i) = env.item {
                for (_, values) in &env.data.products[i].options {
                    for v in values {
                        push(v);
                    }
                }
            }
        }
        Page::Sub(_) => {
            push(BACK_TO_SEARCH);
            push(PREV_PAGE);
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut dedup: Vec<(String, String)> =
        out.into_iter().rev().filter(|(_, k)| seen.insert(k.clone())).collect();
    dedup.reverse();
    dedup
}

/// Follows the clickable `key` (already known to be on the page).
pub(crate) fn click(env: &mut ShopEnv, key: &str, reward: &mut f64, won: &mut bool) {
    match (env.page, key) {
        (_, k) if k == BACK_TO_SEARCH.to_lowercase() => {
            env.page = Page::Search;
            env.keywords.clear();
            env.results.clear();
            env.item = None;
            env.options.clear();
        }
        (Page::Results, k) if k == NEXT_PAGE.to_lowercase() => env.show_results(env.page_no + 1),
        (Page::Results, k) if k == PREV_PAGE.to_lowercase() => env.show_results(env.page_no - 1),
        (Page::Results, k) => {
            env.item = page_slice(env)
                .iter()
                .copied()
                .find(|&i| env.data.products[i].asin.to_lowercase() == k);
            env.page = Page::Item;
        }
        (Page::Item, k) if k == PREV_PAGE.to_lowercase() => env.show_results(env.page_no),
        (Page::Item, "description") => env.page = Page::Sub(SubPage::Description),
        (Page::Item, "features") => env.page = Page::Sub(SubPage::Features),
        (Page::Item, "reviews") => env.page = Page::Sub(SubPage::Reviews),
        (Page::Item, k) if k == BUY_NOW.to_lowercase() => {
            let (r, w) = env.purchase_reward();
            *reward = r;
            *won = w;
            env.page = Page::Done;
        }
        (Page::Item, value) => {
            if let Some(i) = env.item {
                let name = env.data.products[i]
                    .options
                    .iter()
                    .rev()
                    .find(|(_, values)| values.iter().any(|v| v.to_lowercase() == value))
                    .map(|(n, _)| n.clone());
                if let Some(name) = name {
                    env.options.insert(name, value.to_string());
                }
            }
        }
        (Page::Sub(_), k) if k == PREV_PAGE.to_lowercase() => env.page = Page::Item,
        _ => {}
    }
}
