//! The bundled catalogue: a seeded generator of products and goals in WebShop's schema.
//!
//! Five categories as in WebShop (beauty, electronics, fashion, food, furniture), each with
//! product types (their query, category path, option lists and price range), brands and an
//! attribute vocabulary. Goals are phrased like WebShop's human instructions ("i need a long
//! lasting deodorant that is paraben free, with lavender scent and 2.6 ounce size, and price
//! lower than 30.00 dollars").
//!
//! Two guards keep the reward meaningful on generated data, because WebShop's option test also
//! accepts an option value found anywhere in the title, features or description, and accepts
//! fuzzy near-duplicates: an option value whose colour-normalised form occurs in the
//! product's text is dropped, and so is a value that fuzzily matches a value kept before it.

use super::catalogue::{price_bound, Goal, Product, Review};
use super::fuzz::{normalize_color, token_set_ratio};
use super::rng::Rng;

struct TypeSpec {
    noun: &'static str,
    path: &'static str,
    options: &'static [(&'static str, &'static [&'static str])],
    price: (f64, f64),
    descriptors: &'static [&'static str],
}

struct CategorySpec {
    name: &'static str,
    brands: &'static [&'static str],
    attributes: &'static [&'static str],
    types: &'static [TypeSpec],
}

const CLOTHING_SIZES: &[&str] = &["x-small", "small", "medium", "large", "x-large", "xx-large"];
const SHOE_SIZES: &[&str] = &["6", "7", "7.5", "8", "8.5", "9", "10", "11", "12"];
const CLOTHING_COLORS: &[&str] =
    &["black", "white", "navy", "grey", "beige", "olive", "burgundy", "pink", "teal", "khaki"];
const GADGET_COLORS: &[&str] = &["black", "white", "silver", "navy", "pink", "green", "purple"];
const WOOD_COLORS: &[&str] = &["black", "white", "walnut", "espresso", "grey", "natural", "teal"];

const CATEGORIES: &[CategorySpec] = &[
    CategorySpec {
        name: "beauty",
        brands: &["Lumera", "Velvessa", "Botanica Bay", "Aurelle", "Purelle", "Sundew Labs", "Morrow & Finch", "Alba Rosa"],
        attributes: &[
            "long lasting", "paraben free", "cruelty free", "sulfate free", "natural ingredients",
            "dermatologist tested", "fragrance free", "alcohol free", "travel size", "hyaluronic acid",
            "vitamin c", "dry skin", "sensitive skin", "anti aging", "easy to apply",
        ],
        types: &[
            TypeSpec { noun: "deodorant", path: "Beauty & Personal Care › Personal Care › Deodorants & Antiperspirants › Deodorants", options: &[("scent", &["lavender", "unscented", "coconut vanilla", "eucalyptus", "cedar sage", "ocean breeze", "bright citrus"]), ("size", &["2.6 ounce", "3 ounce", "2.6 ounce (pack of 2)", "3 ounce (pack of 3)"])], price: (6.0, 28.0), descriptors: &["for women", "for men", "stick", "with aluminum free formula"] },
            TypeSpec { noun: "shampoo", path: "Beauty & Personal Care › Hair Care › Shampoo & Conditioner › Shampoos", options: &[("scent", &["argan oil", "tea tree", "coconut", "unscented", "rosemary"]), ("size", &["8.5 fl oz", "12 fl oz", "16.9 fl oz", "33.8 fl oz"])], price: (7.0, 36.0), descriptors: &["for curly hair", "for color treated hair", "clarifying", "daily moisture"] },
            TypeSpec { noun: "face moisturizer", path: "Beauty & Personal Care › Skin Care › Face › Creams & Moisturizers › Face Moisturizers", options: &[("size", &["1.7 fl oz", "2.5 fl oz", "3.4 fl oz"])], price: (9.0, 65.0), descriptors: &["with spf 30", "oil free", "night cream", "gel cream"] },
            TypeSpec { noun: "lipstick", path: "Beauty & Personal Care › Makeup › Lips › Lipstick", options: &[("color", &["ruby red", "nude", "berry", "coral", "mauve", "plum", "fuchsia"])], price: (5.0, 32.0), descriptors: &["matte finish", "satin finish", "creamy formula"] },
            TypeSpec { noun: "eau de parfum", path: "Beauty & Personal Care › Fragrance › Women's › Eau de Parfum", options: &[("size", &["1 fl oz", "1.7 fl oz", "3.4 fl oz", "6.76 fl oz"])], price: (18.0, 140.0), descriptors: &["spray", "for women", "floral woody scent"] },
            TypeSpec { noun: "nail polish", path: "Beauty & Personal Care › Foot, Hand & Nail Care › Nail Art & Polish › Nail Polish", options: &[("color", &["cherry", "lilac", "navy", "gold glitter", "taupe", "mint"])], price: (4.0, 22.0), descriptors: &["quick dry", "gel effect", "chip resistant"] },
        ],
    },
    CategorySpec {
        name: "electronics",
        brands: &["Voltrix", "Sonora", "Kestrel Audio", "NexaCore", "Brightline", "Orbis", "Halcyon Tech", "Quanta"],
        attributes: &[
            "fast charging", "noise cancelling", "high definition", "long battery life", "water resistant",
            "easy to install", "plug and play", "usb c", "hands free", "heavy duty", "bluetooth 5.0",
            "high speed", "stereo sound", "touch control", "dual band",
        ],
        types: &[
            TypeSpec { noun: "wireless earbuds", path: "Electronics › Headphones, Earbuds & Accessories › Headphones & Earbuds › Earbud Headphones", options: &[("color", GADGET_COLORS)], price: (15.0, 130.0), descriptors: &["with charging case", "in ear", "sports"] },
            TypeSpec { noun: "bluetooth speaker", path: "Electronics › Portable Audio & Video › Portable Speakers & Docks › Portable Bluetooth Speakers", options: &[("color", GADGET_COLORS)], price: (20.0, 180.0), descriptors: &["portable", "outdoor", "with deep bass"] },
            TypeSpec { noun: "wall charger", path: "Electronics › Computers & Accessories › Chargers & Adapters › Wall Chargers", options: &[("style", &["20w", "30w", "45w", "65w", "100w"])], price: (9.0, 60.0), descriptors: &["with foldable plug", "compact", "for phone and laptop"] },
            TypeSpec { noun: "hdmi cable", path: "Electronics › Television & Video › Accessories › Cables › HDMI Cables", options: &[("size", &["3 ft", "6 ft", "10 ft", "15 ft", "25 ft"])], price: (5.0, 35.0), descriptors: &["braided", "4k 60hz", "gold plated"] },
            TypeSpec { noun: "phone case", path: "Cell Phones & Accessories › Cases, Holsters & Sleeves › Basic Cases", options: &[("color", GADGET_COLORS), ("style", &["iphone 13", "iphone 14 pro max", "galaxy s23", "pixel 8"])], price: (6.0, 40.0), descriptors: &["shockproof", "slim", "with kickstand"] },
            TypeSpec { noun: "security camera", path: "Electronics › Camera & Photo › Video Surveillance › Surveillance Cameras › Dome Cameras", options: &[("size", &["1 pack", "2 pack", "4 pack"])], price: (25.0, 220.0), descriptors: &["indoor", "with night vision", "1080p"] },
        ],
    },
    CategorySpec {
        name: "fashion",
        brands: &["Northbay", "Ashgrove", "Marlo & Pine", "Caldera", "Fenwick", "Solace Wear", "Brio", "Kinfolk Supply"],
        attributes: &[
            "machine wash", "cotton spandex", "slim fit", "long sleeve", "short sleeve", "relaxed fit",
            "quick drying", "rubber sole", "button closure", "high waist", "polyester spandex",
            "hand wash", "moisture wicking", "elastic waist", "lace up",
        ],
        types: &[
            TypeSpec { noun: "t-shirt", path: "Clothing, Shoes & Jewelry › Men › Clothing › Shirts › T-Shirts", options: &[("color", CLOTHING_COLORS), ("size", CLOTHING_SIZES)], price: (8.0, 35.0), descriptors: &["crew neck", "v neck", "graphic tee"] },
            TypeSpec { noun: "hoodie", path: "Clothing, Shoes & Jewelry › Women › Clothing › Fashion Hoodies & Sweatshirts", options: &[("color", CLOTHING_COLORS), ("size", CLOTHING_SIZES)], price: (18.0, 60.0), descriptors: &["pullover", "zip up", "oversized"] },
            TypeSpec { noun: "leggings", path: "Clothing, Shoes & Jewelry › Women › Clothing › Active › Active Leggings", options: &[("color", CLOTHING_COLORS), ("size", CLOTHING_SIZES)], price: (12.0, 45.0), descriptors: &["yoga", "workout", "with pockets"] },
            TypeSpec { noun: "sneakers", path: "Clothing, Shoes & Jewelry › Men › Shoes › Fashion Sneakers", options: &[("color", CLOTHING_COLORS), ("size", SHOE_SIZES)], price: (25.0, 120.0), descriptors: &["walking", "running", "breathable mesh"] },
            TypeSpec { noun: "sandals", path: "Clothing, Shoes & Jewelry › Women › Shoes › Sandals › Flat Sandals", options: &[("color", CLOTHING_COLORS), ("size", SHOE_SIZES)], price: (15.0, 70.0), descriptors: &["summer", "slide", "open toe"] },
            TypeSpec { noun: "dress", path: "Clothing, Shoes & Jewelry › Women › Clothing › Dresses › Casual", options: &[("color", CLOTHING_COLORS), ("size", CLOTHING_SIZES)], price: (20.0, 80.0), descriptors: &["midi", "wrap", "floral print"] },
        ],
    },
    CategorySpec {
        name: "food",
        brands: &["Harvest Lane", "Meadowfield", "Golden Acre", "Bramble & Oak", "Sunny Crest", "Oakhaven Farms", "Tidewater", "Little Orchard"],
        attributes: &[
            "gluten free", "non gmo", "sugar free", "low calorie", "high protein", "keto friendly",
            "dairy free", "plant based", "usda organic", "kosher certified", "individually wrapped",
            "ready to eat", "low sodium", "caffeine free", "whole grain",
        ],
        types: &[
            TypeSpec { noun: "protein bars", path: "Grocery & Gourmet Food › Snacks & Sweets › Bars › Protein Bars", options: &[("flavor name", &["peanut butter", "sea salt caramel", "cookie dough", "blueberry", "cinnamon roll"]), ("size", &["12 count (pack of 1)", "12 count (pack of 2)", "24 count"])], price: (12.0, 45.0), descriptors: &["snack", "on the go", "chewy"] },
            TypeSpec { noun: "ground coffee", path: "Grocery & Gourmet Food › Beverages › Coffee, Tea & Cocoa › Coffee › Ground Coffee", options: &[("flavor name", &["french roast", "breakfast blend", "hazelnut", "colombian", "decaf"]), ("size", &["12 ounce", "1 pound", "2 pound"])], price: (7.0, 30.0), descriptors: &["medium roast", "dark roast", "arabica"] },
            TypeSpec { noun: "green tea", path: "Grocery & Gourmet Food › Beverages › Coffee, Tea & Cocoa › Tea › Green", options: &[("flavor name", &["jasmine", "lemon ginger", "peach", "matcha"]), ("size", &["20 count", "40 count", "100 count"])], price: (4.0, 25.0), descriptors: &["in sachets", "loose leaf", "antioxidant"] },
            TypeSpec { noun: "olive oil", path: "Grocery & Gourmet Food › Pantry Staples › Cooking & Baking › Oils, Vinegars & Salad Dressings › Oils › Olive", options: &[("size", &["16.9 fl oz", "25.3 fl oz", "33.8 fl oz", "101 fl oz"])], price: (8.0, 45.0), descriptors: &["extra virgin", "cold pressed", "first harvest"] },
            TypeSpec { noun: "trail mix", path: "Grocery & Gourmet Food › Snacks & Sweets › Snack Foods › Trail Mix", options: &[("flavor name", &["tropical", "cranberry almond", "honey roasted", "dark chocolate"]), ("size", &["1.5 ounce (pack of 24)", "26 ounce", "3 pound"])], price: (6.0, 35.0), descriptors: &["snack packs", "nut mix", "resealable bag"] },
            TypeSpec { noun: "gummy candy", path: "Grocery & Gourmet Food › Snacks & Sweets › Candy & Chocolate › Gummy Candy", options: &[("flavor name", &["sour worms", "fruit slices", "bears", "watermelon"]), ("size", &["5 ounce", "2 pound", "5 pound"])], price: (3.0, 25.0), descriptors: &["party bag", "bulk", "chewy"] },
        ],
    },
    CategorySpec {
        name: "furniture",
        brands: &["Hearthwood", "Linden & Co", "Maple Row", "Stonebridge Home", "Arbor Loft", "Driftline", "Wexford", "Nook & Cranny"],
        attributes: &[
            "easy assembly", "solid wood", "living room", "storage space", "metal frame",
            "space saving", "mid century", "high density foam", "assembly required", "non slip",
            "engineered wood", "steel frame", "easy to clean", "dining room", "bedroom",
        ],
        types: &[
            TypeSpec { noun: "office chair", path: "Home & Kitchen › Furniture › Home Office Furniture › Home Office Chairs › Desk Chairs", options: &[("color", WOOD_COLORS)], price: (45.0, 320.0), descriptors: &["ergonomic", "with lumbar support", "swivel"] },
            TypeSpec { noun: "bookshelf", path: "Home & Kitchen › Furniture › Living Room Furniture › Bookcases", options: &[("color", WOOD_COLORS), ("size", &["3 tier", "4 tier", "5 tier"])], price: (35.0, 260.0), descriptors: &["open shelf", "industrial", "narrow"] },
            TypeSpec { noun: "coffee table", path: "Home & Kitchen › Furniture › Living Room Furniture › Tables › Coffee Tables", options: &[("color", WOOD_COLORS)], price: (40.0, 300.0), descriptors: &["with storage", "round", "lift top"] },
            TypeSpec { noun: "bed frame", path: "Home & Kitchen › Furniture › Bedroom Furniture › Beds, Frames & Bases › Beds", options: &[("color", WOOD_COLORS), ("size", &["twin", "full", "queen", "king"])], price: (90.0, 600.0), descriptors: &["platform", "with headboard", "upholstered"] },
            TypeSpec { noun: "storage ottoman", path: "Home & Kitchen › Furniture › Living Room Furniture › Ottomans", options: &[("color", WOOD_COLORS)], price: (30.0, 150.0), descriptors: &["foldable", "tufted", "cube"] },
            TypeSpec { noun: "floor lamp", path: "Home & Kitchen › Furniture › Living Room Furniture › Lamps › Floor Lamps", options: &[("color", WOOD_COLORS)], price: (25.0, 180.0), descriptors: &["dimmable", "arc", "tripod"] },
        ],
    },
];

const OPENERS: &[&str] = &[
    "i need",
    "i am looking for",
    "i want",
    "i'm looking for",
    "find me",
    "i would like",
    "get me",
    "i want to buy",
];

const REVIEW_TITLES: &[&str] =
    &["Love it", "Works as described", "Great value", "Not bad", "Would buy again", "Does the job"];
const REVIEW_BODIES: &[&str] = &[
    "Arrived quickly and matches the listing.",
    "Good quality for the price, I am happy with it.",
    "It is fine, nothing special but it works.",
    "I bought a second one for my sister.",
    "Exactly what I was looking for.",
];

fn title_case(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn price_of(rng: &mut Rng, (lo, hi): (f64, f64)) -> f64 {
    let whole = (lo + rng.unit() * (hi - lo)).floor();
    whole + if rng.chance(0.7) { 0.99 } else { 0.49 }
}

/// Generates `n` products and their goals (1 to 3 each) from `seed`.
pub fn generate(n: usize, seed: u64) -> (Vec<Product>, Vec<Goal>) {
    let mut rng = Rng::new(seed);
    let mut products = Vec::with_capacity(n);
    let mut goals = Vec::new();
    let mut asins = std::collections::HashSet::new();
    for i in 0..n {
        let cat = &CATEGORIES[i % CATEGORIES.len()];
        let ty = rng.pick(cat.types);
        let brand = *rng.pick(cat.brands);
        let n_attrs = 3 + rng.below(3);
        let attributes: Vec<String> = rng
            .sample_indices(cat.attributes.len(), n_attrs)
            .into_iter()
            .map(|k| cat.attributes[k].to_string())
            .collect();
        let descriptor = *rng.pick(ty.descriptors);
        let title = format!(
            "{brand} {} {} {}, {}",
            title_case(&attributes[0]),
            title_case(ty.noun),
            title_case(descriptor),
            title_case(&attributes[1])
        );
        let bullet_points: Vec<String> = attributes
            .iter()
            .map(|a| match rng.below(3) {
                0 => format!(
                    "{}: this {} is {a} and built for everyday use",
                    a.to_uppercase(),
                    ty.noun
                ),
                1 => format!("{} - made by {brand} with care, {a} by design", title_case(a)),
                _ => format!("{}: customers choose it because it is {a}", a.to_uppercase()),
            })
            .collect();
        let description = format!(
            "The {brand} {} is {descriptor}. It is {} and {}. Every {} from {brand} is checked before it ships. {}",
            ty.noun,
            attributes[0],
            attributes[attributes.len() - 1],
            ty.noun,
            if rng.chance(0.5) { "Satisfaction guaranteed." } else { "Makes a thoughtful gift." }
        );
        let text = format!(
            "{} {} {}",
            title.to_lowercase(),
            bullet_points.join(" ").to_lowercase(),
            description.to_lowercase()
        );
        let mut options = Vec::new();
        for (name, values) in ty.options {
            let take = (3 + rng.below(3)).min(values.len());
            let mut picked = rng.sample_indices(values.len(), take);
            picked.sort_unstable();
            let mut kept: Vec<String> = Vec::new();
            for v in picked.into_iter().map(|k| values[k]) {
                let norm = normalize_color(v);
                let clash = kept.iter().any(|k| {
                    let kn = normalize_color(k);
                    kn == norm || (*name != "size" && token_set_ratio(&kn, &norm) > 85)
                });
                if !clash && !text.contains(&norm) {
                    kept.push(v.to_string());
                }
            }
            if kept.len() >= 2 {
                options.push((name.to_string(), kept));
            }
        }
        let price = price_of(&mut rng, ty.price);
        let reviews = (0..rng.below(4))
            .map(|_| Review {
                title: rng.pick(REVIEW_TITLES).to_string(),
                score: (3 + rng.below(3)).to_string(),
                body: rng.pick(REVIEW_BODIES).to_string(),
            })
            .collect::<Vec<_>>();
        let rating = if reviews.is_empty() {
            "N.A.".to_string()
        } else {
            format!("{:.1}", 3.5 + rng.below(16) as f64 / 10.0)
        };
        let asin = loop {
            let candidate = format!("B0{:08}", rng.next_u64() % 100_000_000)
                .chars()
                .map(|c| {
                    if rng.chance(0.3) && c.is_ascii_digit() && c != '0' {
                        (b'A' + (c as u8 - b'0') * 2) as char
                    } else {
                        c
                    }
                })
                .collect::<String>();
            if asins.insert(candidate.clone()) {
                break candidate;
            }
        };
        let product = Product {
            asin,
            category: cat.name.to_string(),
            query: ty.noun.to_string(),
            name: title.clone(),
            product_category: ty.path.to_string(),
            title,
            description,
            bullet_points,
            price_tag: format!("${price:.2}"),
            price,
            rating,
            reviews,
            options,
            attributes,
        };
        for _ in 0..1 + rng.below(3) {
            goals.push(goal_for(&product, ty.noun, &mut rng));
        }
        products.push(product);
    }
    (products, goals)
}

fn goal_for(p: &Product, noun: &str, rng: &mut Rng) -> Goal {
    let n_attr = 1 + rng.below(2);
    let attrs: Vec<String> = rng
        .sample_indices(p.attributes.len(), n_attr)
        .into_iter()
        .map(|k| p.attributes[k].clone())
        .collect();
    let mut opts: Vec<(String, String)> = Vec::new();
    for (name, values) in &p.options {
        if rng.chance(0.85) {
            opts.push((name.clone(), rng.pick(values).clone()));
        }
    }
    let opener = *rng.pick(OPENERS);
    let mut text = match (attrs.len(), rng.below(2)) {
        (1, 0) => format!("{opener} {} {} {noun}", article(&attrs[0]), attrs[0]),
        (1, _) => format!("{opener} {} {noun} that is {}", article(noun), attrs[0]),
        (_, 0) => {
            format!("{opener} {} {} {noun} that is {}", article(&attrs[0]), attrs[0], attrs[1])
        }
        (_, _) => {
            format!("{opener} {} {noun} that is {} and {}", article(noun), attrs[0], attrs[1])
        }
    };
    if !opts.is_empty() {
        let parts: Vec<String> = opts
            .iter()
            .map(|(name, v)| match name.as_str() {
                "size" if rng.chance(0.5) => format!("size {v}"),
                "flavor name" => format!("{v} flavor"),
                "style" => format!("{v} style"),
                n => format!("{v} {n}"),
            })
            .collect();
        let joiner = if rng.chance(0.5) { ", with " } else { " in " };
        text.push_str(joiner);
        text.push_str(&parts.join(" and "));
    }
    let (price_upper, price_text) = price_bound(p.price, rng);
    text.push_str(&price_text);
    Goal {
        asin: p.asin.clone(),
        category: p.category.clone(),
        query: p.query.clone(),
        name: p.name.clone(),
        product_category: p.product_category.clone(),
        instruction_text: text,
        attributes: attrs,
        goal_options: opts.into_iter().map(|(_, v)| v).collect(),
        price_upper,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shop::reward::reward;

    #[test]
    fn generated_goals_are_met_by_their_own_product() {
        let (products, goals) = generate(300, 7);
        assert_eq!(products.len(), 300);
        assert!(goals.len() >= 300);
        let by_asin: std::collections::HashMap<_, _> =
            products.iter().map(|p| (p.asin.clone(), p)).collect();
        for g in &goals {
            let p = by_asin[&g.asin];
            // The goal's own option values, under the product's option names.
            let mut bought = std::collections::BTreeMap::new();
            for (name, values) in &p.options {
                if let Some(v) = values.iter().find(|v| g.goal_options.contains(v)) {
                    bought.insert(name.clone(), v.clone());
                }
            }
            let r = reward(p, g, p.price, &bought);
            assert_eq!(r.reward, 1.0, "goal `{}` on {}: {r:?}", g.instruction_text, p.title);
        }
    }

    #[test]
    fn same_seed_same_catalogue() {
        assert_eq!(generate(50, 3), generate(50, 3));
        assert_ne!(generate(50, 3).0, generate(50, 4).0);
    }
}
