//! The shop world: WebShop's reward on hand-built cases, thefuzz's ratio, pages and clicks,
//! loading WebShop's JSON, and the expert.

use std::collections::BTreeMap;

use serde_json::json;
use stepagent_env::shop::fuzz::token_set_ratio;
use stepagent_env::shop::reward::{reward, type_nouns};
use stepagent_env::shop::{Goal, Product, ShopConfig, ShopWorld};
use stepagent_env::{registry, Environment, Split, TaskId, World};

fn deodorant() -> Product {
    Product {
        asin: "B000TEST01".into(),
        category: "beauty".into(),
        query: "deodorant".into(),
        name: "Lumera Natural Deodorant for Women, Paraben Free".into(),
        product_category:
            "Beauty & Personal Care › Personal Care › Deodorants & Antiperspirants › Deodorants"
                .into(),
        title: "Lumera Natural Deodorant for Women, Paraben Free".into(),
        description: "A gentle stick for daily use, in a travel size tube.".into(),
        bullet_points: vec!["Stays fresh all day".into()],
        price_tag: "$9.99".into(),
        price: 9.99,
        rating: "N.A.".into(),
        reviews: vec![],
        options: vec![
            ("scent".into(), vec!["lavender".into(), "bright citrus".into(), "unscented".into()]),
            ("size".into(), vec!["2.6 ounce".into(), "3 ounce (pack of 2)".into()]),
        ],
        attributes: vec!["long lasting".into(), "paraben free".into(), "cruelty free".into()],
    }
}

fn goal(p: &Product) -> Goal {
    Goal {
        asin: p.asin.clone(),
        category: p.category.clone(),
        query: p.query.clone(),
        name: p.name.clone(),
        product_category: p.product_category.clone(),
        instruction_text: "i need a long lasting deodorant that is paraben free, with bright citrus scent and 3 ounce (pack of 2) size, and price lower than 20.00 dollars".into(),
        attributes: vec!["long lasting".into(), "paraben free".into()],
        goal_options: vec!["bright citrus".into(), "3 ounce (pack of 2)".into()],
        price_upper: 20.0,
    }
}

fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

// R = r_type · (N_attr + N_opt + 1[price ≤ bound]) / (|attrs| + |opts| + 1); here the
// denominator is 2 + 2 + 1 = 5.
#[test]
fn reward_full_match_is_one() {
    let p = deodorant();
    let r = reward(
        &p,
        &goal(&p),
        p.price,
        &opts(&[("scent", "bright citrus"), ("size", "3 ounce (pack of 2)")]),
    );
    assert_eq!((r.r_type, r.attr_matches, r.option_matches, r.price_ok), (1.0, 2, 2, true));
    assert_eq!(r.reward, 1.0);
}

#[test]
fn reward_wrong_option_loses_one_fifth() {
    let p = deodorant();
    let g = goal(&p);
    // A fuzzy option (scent): "lavender" vs "bright citrus" scores far below 85 → (2+1+1)/5.
    let r =
        reward(&p, &g, p.price, &opts(&[("scent", "lavender"), ("size", "3 ounce (pack of 2)")]));
    assert_eq!(r.option_matches, 1);
    assert!((r.reward - 0.8).abs() < 1e-12, "{r:?}");
    // Sizes match exactly: "2.6 ounce" is not "3 ounce (pack of 2)" → (2+1+1)/5.
    let r = reward(&p, &g, p.price, &opts(&[("scent", "bright citrus"), ("size", "2.6 ounce")]));
    assert!((r.reward - 0.8).abs() < 1e-12, "{r:?}");
    // No option chosen at all → (2+0+1)/5.
    let r = reward(&p, &g, p.price, &BTreeMap::new());
    assert!((r.reward - 0.6).abs() < 1e-12, "{r:?}");
}

#[test]
fn reward_price_over_bound_loses_one_fifth() {
    let p = deodorant();
    let r = reward(
        &p,
        &goal(&p),
        25.0,
        &opts(&[("scent", "bright citrus"), ("size", "3 ounce (pack of 2)")]),
    );
    assert!(!r.price_ok);
    assert!((r.reward - 0.8).abs() < 1e-12, "{r:?}");
}

#[test]
fn reward_attribute_found_in_text_counts() {
    // "travel size" is no product attribute but occurs in the description: WebShop counts it.
    let p = deodorant();
    let mut g = goal(&p);
    g.attributes = vec!["travel size".into(), "vegan".into()];
    let r = reward(
        &p,
        &g,
        p.price,
        &opts(&[("scent", "bright citrus"), ("size", "3 ounce (pack of 2)")]),
    );
    assert_eq!(r.attr_matches, 1);
    assert!((r.reward - 0.8).abs() < 1e-12, "{r:?}");
}

#[test]
fn reward_wrong_type_scales_everything() {
    let p = deodorant();
    let g = goal(&p);
    // Goal nouns: lumera, deodorant, women, paraben ("natural", "for", "free" are not nouns).
    assert_eq!(type_nouns(&g.name), ["lumera", "deodorant", "women", "paraben"]);
    let chosen = opts(&[("scent", "bright citrus"), ("size", "3 ounce (pack of 2)")]);

    // No shared noun → r_type 0 → R = 0, whatever else matches.
    let mut speaker = p.clone();
    speaker.name = "Sonora Portable Bluetooth Speaker".into();
    speaker.query = "bluetooth speaker".into();
    speaker.product_category = "Electronics › Portable Audio & Video › Speakers".into();
    let r = reward(&speaker, &g, p.price, &chosen);
    assert_eq!((r.r_type, r.reward), (0.0, 0.0));

    // One noun of four shared (title score 0.25 > 0.2) → r_type stays 1 even with another
    // query and category.
    let mut spray = speaker.clone();
    spray.name = "Velvessa Deodorant Spray".into();
    let r = reward(&spray, &g, p.price, &chosen);
    assert_eq!((r.r_type, r.reward), (1.0, 1.0));

    // One noun of six (title score 1/6: at least 0.1, at most 0.2), no query or category
    // match → r_type 0.5 → R = 0.5 · 5/5.
    let mut g6 = g.clone();
    g6.name = "Lumera Deodorant Stick for Women with Paraben Formula".into();
    assert_eq!(type_nouns(&g6.name).len(), 6);
    let r = reward(&spray, &g6, p.price, &chosen);
    assert_eq!((r.r_type, r.reward), (0.5, 0.5));

    // One noun of eleven (title score < 0.1) → r_type 0.1, even though the query matches.
    let mut g11 = g.clone();
    g11.name = "Lumera Deodorant Stick Gel Roller Pump Women Men Teens Paraben Formula".into();
    assert_eq!(type_nouns(&g11.name).len(), 11);
    let mut same_query = spray.clone();
    same_query.query = g.query.clone();
    let r = reward(&same_query, &g11, p.price, &chosen);
    assert!((r.r_type - 0.1).abs() < 1e-12 && (r.reward - 0.1).abs() < 1e-12, "{r:?}");
}

/// Expected values computed with thefuzz 0.22.1 (rapidfuzz 3.14.6):
/// `python -c "from thefuzz import fuzz; print(fuzz.token_set_ratio(a, b))"` for each pair.
#[test]
fn token_set_ratio_matches_thefuzz() {
    let cases: &[(&str, &str, u32)] = &[
        ("fuzzy was a bear", "fuzzy fuzzy was a bear", 100),
        ("fuzzy was a bear but not a dog", "fuzzy was a bear but not a cat", 92),
        ("long lasting", "long-lasting", 100),
        ("paraben free", "paraben free formula", 100),
        ("3 ounce (pack of 2)", "3 ounce (pack of 3)", 100),
        ("bright citrus", "citrus bright", 100),
        ("x-large", "large", 100),
        ("x-large", "xx-large", 93),
        ("navy blue", "dark navy", 62),
        ("gluten free", "sugar free", 57),
        ("high resolution", "high definition", 67),
        ("easy to clean", "easy clean", 100),
        ("6.76 fl oz", "6.76 fl oz (pack of 1)", 100),
        ("Café Crème", "cafe creme", 89),
        ("hand_wash", "hand wash", 100),
        ("", "anything", 0),
        ("!!!", "???", 0),
        ("machine wash", "hand wash", 67),
        ("non slip", "non-slip rubber sole", 100),
        ("wireless bluetooth", "bluetooth 5.0 wireless earbuds", 100),
        ("king size", "queen size", 63),
        ("12 count", "12 count (pack of 1)", 100),
        ("solid wood", "wood frame", 57),
        ("dairy free", "dairy-free and vegan", 100),
        ("white", "off white", 100),
        ("rose gold", "gold rose", 100),
        ("abcdefgh ijk", "abcdefgx ijk lmn", 79),
        ("sugar free chocolate", "chocolate sugarfree", 77),
    ];
    for (a, b, want) in cases {
        assert_eq!(token_set_ratio(a, b), *want, "token_set_ratio({a:?}, {b:?})");
        assert_eq!(token_set_ratio(b, a), *want, "token_set_ratio({b:?}, {a:?})");
    }
}

fn small_world() -> ShopWorld {
    ShopWorld::generated(&ShopConfig {
        products: 400,
        test_goals: 60,
        seen_goals: 30,
        ..ShopConfig::default()
    })
    .unwrap()
}

#[test]
fn pages_and_clicks_follow_webshop() {
    let world = small_world();
    let mut env = world.new_env().unwrap();
    let task = TaskId::new(Split::Unseen, 0);
    let goal = world.goal(task).unwrap().clone();
    let obs = env.reset(task, 0).unwrap();
    assert_eq!(
        obs,
        format!("WebShop [SEP] Instruction: [SEP] {} [SEP] Search", goal.instruction_text)
    );
    assert_eq!(env.admissible_actions(), vec!["search[<keywords>]".to_string()]);

    // Clicking what is not on the page is invalid, costs a step, leaves the page.
    let out = env.step("click[Buy Now]").unwrap();
    assert!(!out.valid && !out.done);
    assert_eq!((out.steps, out.observation.as_str()), (1, obs.as_str()));

    let out = env.step("search[deodorant lotion shampoo eau de parfum lipstick]").unwrap();
    assert!(out.valid);
    assert!(out.observation.starts_with(&format!("Instruction: [SEP] {} [SEP] Back to Search [SEP] Page 1 (Total results: 50) [SEP] Next > [SEP] ", goal.instruction_text)), "{}", out.observation);
    let acts = env.admissible_actions();
    assert!(!acts.iter().any(|a| a.starts_with("search[")), "no search bar on results: {acts:?}");
    assert_eq!(acts.len(), 2 + 10, "{acts:?}");
    assert!(!env.step("search[anything]").unwrap().valid);

    let out = env.step("click[Next >]").unwrap();
    assert!(
        out.observation.contains("Page 2 (Total results: 50) [SEP] < Prev [SEP] Next >"),
        "{}",
        out.observation
    );
    let first_asin = env.admissible_actions()[3].clone();
    // Case does not matter, as WebShop lower-cases clicks.
    let out = env.step(&first_asin.to_lowercase()).unwrap();
    assert!(out.valid, "{first_asin}");
    assert!(out.observation.contains("[SEP] Back to Search [SEP] < Prev [SEP] "));
    assert!(
        out.observation.ends_with("[SEP] Description [SEP] Features [SEP] Reviews [SEP] Buy Now"),
        "{}",
        out.observation
    );
    assert!(out.observation.contains("[SEP] Price: $"));

    let out = env.step("click[Features]").unwrap();
    assert!(out.observation.contains("Back to Search [SEP] < Prev [SEP] "));
    assert_eq!(env.admissible_actions(), vec!["click[Back to Search]", "click[< Prev]"]);
    let out = env.step("click[< Prev]").unwrap();
    assert!(out.observation.ends_with("Buy Now"));
    let out = env.step("click[< Prev]").unwrap();
    assert!(
        out.observation.contains("Page 2 (Total results: 50)"),
        "back to the same results page"
    );
    let out = env.step("click[Back to Search]").unwrap();
    assert_eq!(out.observation, obs);
    assert_eq!(out.steps, 9);
    let out = env.step("search[deodorant]").unwrap();
    assert!(out.done && !out.won && out.reward == 0.0, "ten steps end the episode");
    assert!(env.step("search[more]").is_err());
}

#[test]
fn buying_ends_the_episode_with_webshops_reward() {
    let world = small_world();
    let mut env = world.new_env().unwrap();
    env.reset(TaskId::new(Split::Unseen, 1), 0).unwrap();
    env.step("search[shampoo]").unwrap();
    let asin = env.admissible_actions().into_iter().find(|a| a.starts_with("click[B0")).unwrap();
    env.step(&asin).unwrap();
    let out = env.step("click[Buy Now]").unwrap();
    assert!(out.done && out.valid);
    // Scores print as Python prints floats: 1.0, 0.0, 0.75.
    let shown = if out.reward.fract() == 0.0 {
        format!("{:.1}", out.reward)
    } else {
        out.reward.to_string()
    };
    assert!(out
        .observation
        .starts_with("Thank you for shopping with us! [SEP] Purchased [SEP] asin [SEP] "));
    assert!(out.observation.ends_with(&format!("Your score (min 0.0, max 1.0) [SEP] {shown}")));
    assert!(env.expert_step().is_none());
}

#[test]
fn options_are_chosen_on_the_item_page() {
    let world = small_world();
    let mut env = world.env();
    let task = (0..world.num_tasks(Split::Unseen))
        .map(|i| TaskId::new(Split::Unseen, i))
        .find(|&t| !world.goal(t).unwrap().goal_options.is_empty())
        .unwrap();
    env.reset(task, 0).unwrap();
    // Follow the expert to the right item page, then check an option click registers.
    loop {
        let s = env.expert_step().unwrap();
        if s.action.starts_with("click[")
            && env.admissible_actions().iter().any(|a| a == "click[Buy Now]")
        {
            break;
        }
        env.step(&s.action).unwrap();
    }
    let values: Vec<String> = env.admissible_actions().into_iter().skip(6).collect();
    assert!(!values.is_empty(), "generated products carry options");
    let out = env.step(&values[0]).unwrap();
    assert!(out.valid);
    let v = values[0].trim_start_matches("click[").trim_end_matches(']');
    assert!(env.selected_options().values().any(|x| x == v));
}

#[test]
fn expert_earns_full_reward_on_test_goals() {
    let world =
        ShopWorld::generated(&ShopConfig { test_goals: 220, ..ShopConfig::default() }).unwrap();
    let n = world.num_tasks(Split::Unseen);
    assert!(n >= 200, "{n} test goals");
    let mut env = world.new_env().unwrap();
    for i in 0..n {
        let task = TaskId::new(Split::Unseen, i);
        env.reset(task, 0).unwrap();
        let mut last = None;
        while let Some(step) = env.expert_step() {
            assert!(step.to_turn().starts_with("Thought: ") && step.thought.len() > 20, "{step:?}");
            last = Some(env.step(&step.action).unwrap());
        }
        let out = last.unwrap();
        assert!(
            out.won && out.reward == 1.0,
            "task {task}: `{}` ended with {out:?}",
            world.goal(task).unwrap().instruction_text
        );
    }
}

#[test]
fn splits_and_types() {
    let world = small_world();
    assert!(world.num_tasks(Split::Unseen) >= 60);
    assert!(world.num_tasks(Split::Seen) > 0 && world.num_tasks(Split::Seen) <= 30);
    // Unseen goals target products no training goal targets; seen goals target training products.
    let asins = |split: Split| {
        (0..world.num_tasks(split))
            .map(|i| world.goal(TaskId::new(split, i)).unwrap().asin.clone())
            .collect::<std::collections::HashSet<_>>()
    };
    let (train, seen, unseen) = (asins(Split::Train), asins(Split::Seen), asins(Split::Unseen));
    assert!(train.is_disjoint(&unseen));
    assert!(seen.is_subset(&train));
    let ty = world.task_type(TaskId::new(Split::Unseen, 0)).unwrap();
    assert!(["beauty", "electronics", "fashion", "food", "furniture"].contains(&ty.as_str()));
    assert!(world.task_type(TaskId::new(Split::Unseen, 10_000)).is_err());
}

#[test]
fn registry_opens_the_shop_with_checked_options() {
    let w = registry::open("shop", &json!({"products": 200, "test_goals": 20, "max_steps": 15}))
        .unwrap();
    assert_eq!((w.name(), w.max_steps()), ("shop", 15));
    assert!(w.instruction().contains("search[keywords]"));
    let err = registry::open("shop", &json!({"prodcts": 10})).err().unwrap().to_string();
    assert!(err.contains("prodcts"), "{err}");
}

#[test]
fn loads_webshop_json() {
    let products = json!([
        {"asin": "B09ABCDEF1", "name": "Earth Mama Natural Deodorant", "full_description": "Plant based.",
         "small_description": ["Long lasting freshness"], "pricing": "$10.99", "product_category": "Beauty & Personal Care › Personal Care › Deodorants",
         "query": "Deodorant ", "category": "beauty",
         "customization_options": {"Scent": [{"value": "Bright Citrus"}, {"value": "Lavender/Mint"}], "Size": [{"value": "3 Ounce"}]}},
        {"asin": "B09ABCDEF2", "name": "Sonora Bluetooth Speaker", "full_description": "Loud.", "small_description": "Waterproof",
         "pricing": "$20.00$35.50", "product_category": "Electronics › Speakers", "query": "speaker", "category": "electronics",
         "customization_options": null},
        {"asin": "B09ABCDEF1", "name": "duplicate", "full_description": "", "small_description": [], "pricing": "$1.00",
         "product_category": "x", "query": "x", "category": "x", "customization_options": null}
    ]);
    let attrs = json!({"B09ABCDEF1": {"attributes": ["long lasting", "natural ingredients"]}});
    let human = json!({"B09ABCDEF1": [
        {"instruction": "i need a long lasting deodorant with bright citrus scent.", "instruction_attributes": ["long lasting"], "instruction_options": ["bright citrus"]},
        {"instruction": "no attributes, skipped", "instruction_attributes": [], "instruction_options": []}
    ]});
    let (ps, goals) =
        stepagent_env::shop::from_webshop_json(&products, Some(&attrs), &human, None, 0).unwrap();
    assert_eq!(ps.len(), 2, "the duplicate asin is skipped");
    assert_eq!(
        ps[0].options[0],
        ("scent".to_string(), vec!["bright citrus".to_string(), "lavender | mint".to_string()])
    );
    assert_eq!(ps[0].query, "deodorant");
    assert_eq!(ps[1].price_tag, "$20.0 to $35.5");
    assert!((20.0..=35.5).contains(&ps[1].price));
    assert_eq!(ps[1].attributes, vec!["DUMMY_ATTR"]);
    assert_eq!(goals.len(), 1);
    // Bounds are two of the four round prices above $10.99 (20, 30, 40, 50), the larger.
    let g = &goals[0];
    assert!([30.0, 40.0, 50.0].contains(&g.price_upper), "{}", g.price_upper);
    assert_eq!(g.instruction_text, format!("i need a long lasting deodorant with bright citrus scent, and price lower than {:.2} dollars", g.price_upper));

    let world = ShopWorld::from_webshop(
        &products,
        Some(&attrs),
        &human,
        None,
        &ShopConfig { test_goals: 1, ..ShopConfig::default() },
    )
    .unwrap();
    let mut env = world.new_env().unwrap();
    env.reset(TaskId::new(Split::Unseen, 0), 0).unwrap();
    let mut last = None;
    while let Some(s) = env.expert_step() {
        last = Some(env.step(&s.action).unwrap());
    }
    assert!(last.unwrap().won);

    let bad = json!([{"asin": "B1", "name": 5}]);
    let err = stepagent_env::shop::from_webshop_json(&bad, None, &human, None, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("record 0") && err.contains("`name`"), "{err}");
}
