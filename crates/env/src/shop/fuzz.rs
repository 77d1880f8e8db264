//! String matching as WebShop's reward uses it: thefuzz's `token_set_ratio` and WebShop's
//! colour normalisation.
//!
//! thefuzz (0.22) delegates to rapidfuzz: both strings go through `full_process` (drop the
//! code points U+0080..=U+00FF, replace every non-alphanumeric character — the underscore
//! included — by a space, trim, lowercase), then rapidfuzz's `token_set_ratio` compares the
//! token sets, and thefuzz rounds the float with Python's `round` (half to even).
//! Python's `str.isalnum` and Rust's `char::is_alphanumeric` agree on letters and digits of
//! every script we have met; they may differ on rare numeric symbols (e.g. some fractions).

/// thefuzz's `fuzz.token_set_ratio(a, b)`: an integer in 0..=100.
pub fn token_set_ratio(a: &str, b: &str) -> u32 {
    let a = full_process(a);
    let b = full_process(b);
    round_half_even(token_set_ratio_processed(&a, &b))
}

/// thefuzz's `utils.full_process(s, force_ascii=True)`.
pub fn full_process(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|c| !(('\u{80}'..='\u{ff}').contains(c)))
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    kept.trim().to_lowercase()
}

/// rapidfuzz's `fuzz.token_set_ratio` on already processed strings, as a float.
fn token_set_ratio_processed(a: &str, b: &str) -> f64 {
    let ta: std::collections::BTreeSet<&str> = a.split_whitespace().collect();
    let tb: std::collections::BTreeSet<&str> = b.split_whitespace().collect();
    if ta.is_empty() || tb.is_empty() {
        return 0.0;
    }
    let sect: Vec<&str> = ta.intersection(&tb).copied().collect();
    let ab: Vec<&str> = ta.difference(&tb).copied().collect();
    let ba: Vec<&str> = tb.difference(&ta).copied().collect();
    if !sect.is_empty() && (ab.is_empty() || ba.is_empty()) {
        return 100.0;
    }
    // BTreeSet iterates in byte order, which for UTF-8 is Python's code-point order.
    let ab_joined = ab.join(" ");
    let ba_joined = ba.join(" ");
    let ab_len = ab_joined.chars().count();
    let ba_len = ba_joined.chars().count();
    let sect_len = sect.join(" ").chars().count();
    let sep = usize::from(sect_len != 0);
    let sect_ab_len = sect_len + sep + ab_len;
    let sect_ba_len = sect_len + sep + ba_len;

    let dist = indel_distance(&ab_joined, &ba_joined);
    let result = norm_distance(dist, sect_ab_len + sect_ba_len);
    if sect_len == 0 {
        return result;
    }
    // sect+ab against sect differs only by the appended part, so the distance is its length.
    let sect_ab_ratio = norm_distance(sep + ab_len, sect_len + sect_ab_len);
    let sect_ba_ratio = norm_distance(sep + ba_len, sect_len + sect_ba_len);
    result.max(sect_ab_ratio).max(sect_ba_ratio)
}

fn norm_distance(dist: usize, lensum: usize) -> f64 {
    if lensum == 0 {
        100.0
    } else {
        100.0 - 100.0 * dist as f64 / lensum as f64
    }
}

/// Insertions plus deletions turning `a` into `b`: |a| + |b| − 2·LCS(a, b), over code points.
fn indel_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for &ca in &a {
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = if ca == cb { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    a.len() + b.len() - 2 * prev[b.len()]
}

/// Python's `int(round(x))` for the non-negative scores here: ties go to the even integer.
fn round_half_even(x: f64) -> u32 {
    let floor = x.floor();
    let diff = x - floor;
    let up = diff > 0.5 || (diff == 0.5 && !(floor as u64).is_multiple_of(2));
    let r = if up { floor + 1.0 } else { floor };
    r as u32
}

/// WebShop's colour base names (`web_agent_site/engine/normalize.py`), in its order: the first
/// one contained in a string wins, so the order matters.
pub const COLOR_SET: &[&str] = &[
    "alabaster",
    "apricot",
    "aqua",
    "ash",
    "asphalt",
    "azure",
    "banana",
    "beige",
    "black",
    "blue",
    "blush",
    "bordeaux",
    "bronze",
    "brown",
    "burgundy",
    "camel",
    "camo",
    "caramel",
    "champagne",
    "charcoal",
    "cheetah",
    "chestnut",
    "chocolate",
    "christmas",
    "coffee",
    "cognac",
    "copper",
    "coral",
    "cranberry",
    "cream",
    "crystal",
    "dark",
    "denim",
    "eggplant",
    "elephant",
    "espresso",
    "fuchsia",
    "gold",
    "granite",
    "grape",
    "graphite",
    "grass",
    "gray",
    "green",
    "grey",
    "heather",
    "indigo",
    "ivory",
    "ivy",
    "khaki",
    "lavender",
    "lemon",
    "leopard",
    "light",
    "lilac",
    "lime",
    "magenta",
    "maroon",
    "mauve",
    "merlot",
    "midnight",
    "mint",
    "mocha",
    "multicolor",
    "mushroom",
    "mustard",
    "natural",
    "navy",
    "nude",
    "olive",
    "orange",
    "peach",
    "pewter",
    "pink",
    "plum",
    "purple",
    "rainbow",
    "red",
    "rose",
    "royal",
    "rust",
    "sand",
    "sapphire",
    "seashell",
    "silver",
    "skull",
    "slate",
    "steel",
    "stone",
    "stonewash",
    "sunflower",
    "tan",
    "taupe",
    "teal",
    "tiger",
    "turquoise",
    "violet",
    "walnut",
    "wheat",
    "white",
    "wine",
    "yellow",
];

/// WebShop's `normalize_color`: the first base colour that is a (case-sensitive) substring,
/// else the string itself. WebShop applies it to every option value, colour or not.
pub fn normalize_color(s: &str) -> String {
    COLOR_SET.iter().find(|c| s.contains(*c)).map_or_else(|| s.to_string(), |c| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_normalisation_follows_webshop_order() {
        // Cases from WebShop's own `test_normalize_color` suite.
        assert_eq!(normalize_color(""), "");
        assert_eq!(normalize_color("black forest"), "black");
        assert_eq!(normalize_color("violet lavender"), "lavender");
        assert_eq!(normalize_color("3 ounce"), "3 ounce");
    }

    #[test]
    fn rounding_is_half_to_even() {
        assert_eq!(round_half_even(84.5), 84);
        assert_eq!(round_half_even(85.5), 86);
        assert_eq!(round_half_even(88.9), 89);
    }
}
