/// The first key (as a dotted path, in sorted key order) whose value differs between two
/// configs, with both values rendered; `None` if they are equal.
pub fn first_difference(old: &toml::Value, new: &toml::Value) -> Option<(String, String, String)> {
    diff_at("", old, new)
}

fn diff_at(path: &str, old: &toml::Value, new: &toml::Value) -> Option<(String, String, String)> {
    use toml::Value::Table;
    let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
    match (old, new) {
        (Table(a), Table(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| match (a.get(k), b.get(k)) {
                (Some(x), Some(y)) => diff_at(&join(k), x, y),
                (x, y) => Some((join(k), render(x), render(y))),
            })
        }
        (a, b) if a == b => None,
        (a, b) => Some((path.to_string(), a.to_string(), b.to_string())),
    }
}

fn render(v: Option<&toml::Value>) -> String {
    v.map_or_else(|| "absent".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> toml::Value {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn names_nested_added_and_removed_keys() {
        assert_eq!(first_difference(&t("a = 1\n[b]\nc = 2"), &t("a = 1\n[b]\nc = 2")), None);
        assert_eq!(
            first_difference(&t("a = 1\n[b]\nc = 2"), &t("a = 1\n[b]\nc = 3")),
            Some(("b.c".into(), "2".into(), "3".into()))
        );
        assert_eq!(
            first_difference(&t("a = 1"), &t("a = 1\nz = true")),
            Some(("z".into(), "absent".into(), "true".into()))
        );
    }
}
