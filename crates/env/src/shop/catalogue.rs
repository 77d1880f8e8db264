//! Products and goals in WebShop's schema, and loading them from WebShop's JSON files.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::rng::Rng;
use crate::EnvError;

/// A product as WebShop's `load_products` leaves it (the keys its pages and reward read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Amazon-style id, upper case (`B07XYZ1234`).
    pub asin: String,
    /// Top-level category (`beauty`, `electronics`, `fashion`, `food`, `furniture`).
    pub category: String,
    /// The search query the product was scraped under; compared by the type reward.
    pub query: String,
    /// The product name the type reward parses for nouns (WebShop: the scraped `name`).
    pub name: String,
    /// Category path joined by ` › `.
    pub product_category: String,
    /// Title shown on pages.
    #[serde(rename = "Title")]
    pub title: String,
    /// The Description sub-page.
    #[serde(rename = "Description")]
    pub description: String,
    /// The Features sub-page.
    #[serde(rename = "BulletPoints")]
    pub bullet_points: Vec<String>,
    /// Price as shown: `$10.99` or `$10.99 to $15.99`.
    #[serde(rename = "Price")]
    pub price_tag: String,
    /// The price the reward compares with the goal's bound (WebShop draws one uniformly inside
    /// a range once per run; here once per catalogue, seeded).
    pub price: f64,
    /// Average rating as shown, `N.A.` when unknown.
    #[serde(rename = "Rating")]
    pub rating: String,
    /// The Reviews sub-page.
    #[serde(rename = "Reviews")]
    pub reviews: Vec<Review>,
    /// Option names with their values, lower case, in page order.
    pub options: Vec<(String, Vec<String>)>,
    /// Attribute phrases (WebShop's `Attributes`), matched against goal attributes.
    #[serde(rename = "Attributes")]
    pub attributes: Vec<String>,
}

/// One review on the Reviews sub-page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    /// Headline.
    pub title: String,
    /// Stars, 1 to 5.
    pub score: String,
    /// Text.
    pub body: String,
}

/// A shopping goal (WebShop's goal dict).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    /// The product the instruction was written for.
    pub asin: String,
    /// Its category.
    pub category: String,
    /// Its query.
    pub query: String,
    /// Its name.
    pub name: String,
    /// Its category path.
    pub product_category: String,
    /// The instruction the agent reads.
    pub instruction_text: String,
    /// Attributes the purchase must have.
    pub attributes: Vec<String>,
    /// Options the purchase must have (values only, as WebShop's reward uses them).
    pub goal_options: Vec<String>,
    /// Price bound; `1000000` when WebShop found no bound to set.
    pub price_upper: f64,
}

/// WebShop's candidate price bounds: 10, 20, …, 990 dollars.
fn price_range() -> impl Iterator<Item = f64> {
    (1..100).map(|i| 10.0 * i as f64)
}

/// WebShop's bound for a goal: two of the four round prices above the product's price, the
/// larger one; none (1 000 000, no text) when fewer than two exist.
pub(crate) fn price_bound(price: f64, rng: &mut Rng) -> (f64, String) {
    let above: Vec<f64> = price_range().filter(|p| *p > price).take(4).collect();
    if above.len() >= 2 {
        let picks = rng.sample_indices(above.len(), 2);
        let upper = above[picks[0]].max(above[picks[1]]);
        (upper, format!(", and price lower than {upper:.2} dollars"))
    } else {
        (1_000_000.0, String::new())
    }
}

fn bad(file: &str, record: &str, message: impl std::fmt::Display) -> EnvError {
    EnvError::BadSpec(format!("WebShop {file}, {record}: {message}"))
}

fn str_field(file: &str, record: &str, obj: &Value, key: &str) -> Result<String, EnvError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => {
            Err(bad(file, record, format!("key `{key}` should be a string, found {other}")))
        }
        None => Err(bad(file, record, format!("missing key `{key}`"))),
    }
}

fn string_list(file: &str, record: &str, v: &Value, key: &str) -> Result<Vec<String>, EnvError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                other => Err(bad(file, record, format!("`{key}` holds a non-string {other}"))),
            })
            .collect(),
        other => {
            Err(bad(file, record, format!("`{key}` should be a list of strings, found {other}")))
        }
    }
}

/// Parses WebShop's `pricing` string as its loader does: every `$`-separated piece, digits and
/// dots kept; the first two make a range.
fn parse_pricing(
    file: &str,
    record: &str,
    pricing: Option<&Value>,
) -> Result<(String, Vec<f64>), EnvError> {
    let text = match pricing {
        None | Some(Value::Null) => return Ok(("$100.0".into(), vec![100.0])),
        Some(Value::String(s)) if s.is_empty() => return Ok(("$100.0".into(), vec![100.0])),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(bad(file, record, format!("`pricing` should be a string, found {other}")))
        }
    };
    let mut prices = Vec::new();
    for piece in text.split('$').skip(1) {
        let digits: String = piece.chars().filter(|c| c.is_ascii_digit() || *c == '.').collect();
        let p: f64 = digits
            .parse()
            .map_err(|_| bad(file, record, format!("`pricing` piece `${piece}` is not a price")))?;
        prices.push(p);
    }
    if prices.is_empty() {
        return Err(bad(file, record, format!("`pricing` `{text}` holds no `$` price")));
    }
    prices.truncate(2);
    // Python's `f"${x}"` of a float: `10.0`, `10.99`.
    let py = |x: f64| if x.fract() == 0.0 { format!("{x:.1}") } else { format!("{x}") };
    let tag = if prices.len() == 1 {
        format!("${}", py(prices[0]))
    } else {
        format!("${} to ${}", py(prices[0]), py(prices[1]))
    };
    Ok((tag, prices))
}

/// Builds products and goals from WebShop's own files, parsed by the caller:
/// `products` is `items_shuffle.json` (a list of scraped products: `asin`, `name`,
/// `full_description`, `small_description`, `pricing`, `customization_options`,
/// `product_category`, `query`, `category`); `attributes` is `items_ins_v2.json` (asin →
/// `{"attributes": [...]}`); `human_goals` is `items_human_ins.json` (asin → list of
/// `{"instruction", "instruction_attributes", "instruction_options"}`); `reviews` is
/// `reviews.json` (list of `{"asin", "reviews", "average_rating"}`), optional.
///
/// As in WebShop: duplicate asins and asins that are `nan` or longer than 10 characters are
/// skipped, goals without attributes are skipped, price ranges are resolved by a uniform draw
/// (seeded here), and goal price bounds are drawn from the round prices above the price.
pub fn from_webshop_json(
    products: &Value,
    attributes: Option<&Value>,
    human_goals: &Value,
    reviews: Option<&Value>,
    seed: u64,
) -> Result<(Vec<Product>, Vec<Goal>), EnvError> {
    const PF: &str = "products file";
    let list =
        products.as_array().ok_or_else(|| bad(PF, "top level", "expected a list of products"))?;
    let mut rng = Rng::new(seed);
    let mut review_map = std::collections::HashMap::new();
    if let Some(reviews) = reviews {
        let rs = reviews
            .as_array()
            .ok_or_else(|| bad("reviews file", "top level", "expected a list"))?;
        for (i, r) in rs.iter().enumerate() {
            let rec = format!("record {i}");
            let asin = str_field("reviews file", &rec, r, "asin")?;
            let rating = match r.get("average_rating") {
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::String(s)) => s.clone(),
                _ => "N.A.".to_string(),
            };
            let mut out = Vec::new();
            for (j, item) in
                r.get("reviews").and_then(Value::as_array).into_iter().flatten().enumerate()
            {
                let rec = format!("record {i} review {j}");
                let score = item.get("score").or_else(|| item.get("stars")).map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                out.push(Review {
                    title: item
                        .get("title")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    score: score
                        .ok_or_else(|| bad("reviews file", &rec, "missing `score`/`stars`"))?,
                    body: item
                        .get("review")
                        .or_else(|| item.get("body"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                });
            }
            review_map.insert(asin, (rating, out));
        }
    }

    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let rec = format!("record {i}");
        let asin = str_field(PF, &rec, p, "asin")?;
        if asin == "nan" || asin.len() > 10 || !seen.insert(asin.clone()) {
            continue;
        }
        let rec = format!("record {i} (asin {asin})");
        let name = str_field(PF, &rec, p, "name")?;
        let (price_tag, pricing) = parse_pricing(PF, &rec, p.get("pricing"))?;
        let price = if pricing.len() == 2 {
            pricing[0] + rng.unit() * (pricing[1] - pricing[0])
        } else {
            pricing[0]
        };
        let mut options = Vec::new();
        if let Some(Value::Object(custom)) = p.get("customization_options") {
            for (opt_name, contents) in custom {
                let Some(contents) = contents.as_array() else { continue };
                let mut values = Vec::new();
                for (j, c) in contents.iter().enumerate() {
                    let v = c.get("value").and_then(Value::as_str).ok_or_else(|| {
                        bad(
                            PF,
                            &rec,
                            format!(
                                "customization option `{opt_name}` value {j} has no string `value`"
                            ),
                        )
                    })?;
                    values.push(v.trim().replace('/', " | ").to_lowercase());
                }
                options.push((opt_name.to_lowercase(), values));
            }
        }
        let attrs = match attributes.and_then(|a| a.get(&asin)).and_then(|a| a.get("attributes")) {
            Some(v) => string_list("attributes file", &format!("asin {asin}"), v, "attributes")?,
            None => vec!["DUMMY_ATTR".to_string()],
        };
        let (rating, revs) =
            review_map.remove(&asin).unwrap_or_else(|| ("N.A.".to_string(), Vec::new()));
        out.push(Product {
            category: str_field(PF, &rec, p, "category")?,
            query: str_field(PF, &rec, p, "query")?.trim().to_lowercase(),
            product_category: str_field(PF, &rec, p, "product_category")?,
            title: name.clone(),
            name,
            description: p
                .get("full_description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            bullet_points: string_list(
                PF,
                &rec,
                p.get("small_description").unwrap_or(&Value::Null),
                "small_description",
            )?,
            price_tag,
            price,
            rating,
            reviews: revs,
            options,
            attributes: attrs,
            asin,
        });
    }

    let goals_map = human_goals.as_object().ok_or_else(|| {
        bad("human goals file", "top level", "expected an object of asin → instructions")
    })?;
    let mut goals = Vec::new();
    for product in &out {
        let Some(instrs) = goals_map.get(&product.asin) else { continue };
        let instrs = instrs.as_array().ok_or_else(|| {
            bad("human goals file", &format!("asin {}", product.asin), "expected a list")
        })?;
        for (j, ins) in instrs.iter().enumerate() {
            let rec = format!("asin {} instruction {j}", product.asin);
            let attrs = string_list(
                "human goals file",
                &rec,
                ins.get("instruction_attributes").unwrap_or(&Value::Null),
                "instruction_attributes",
            )?;
            if attrs.is_empty() {
                continue;
            }
            let goal_options = match ins.get("instruction_options") {
                Some(Value::Object(m)) => m
                    .values()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| bad("human goals file", &rec, "non-string option"))
                    })
                    .collect::<Result<_, _>>()?,
                Some(v) => string_list("human goals file", &rec, v, "instruction_options")?,
                None => Vec::new(),
            };
            let text = str_field("human goals file", &rec, ins, "instruction")?;
            let (upper, price_text) = price_bound(product.price, &mut rng);
            goals.push(Goal {
                asin: product.asin.clone(),
                category: product.category.clone(),
                query: product.query.clone(),
                name: product.name.clone(),
                product_category: product.product_category.clone(),
                instruction_text: format!("{}{price_text}", text.trim_matches('.')),
                attributes: attrs,
                goal_options,
                price_upper: upper,
            });
        }
    }
    if goals.is_empty() {
        return Err(bad(
            "human goals file",
            "all records",
            "no goal with attributes names a product of the products file",
        ));
    }
    Ok((out, goals))
}
