//! `stepagent train` and `stepagent compare` through the binary: bad configs are refused
//! before any model is loaded, naming the file and the key.

use std::path::PathBuf;
use std::process::Command;

fn stepagent(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stepagent")).args(args).output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stepagent-cli-{}-tc", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn an_unknown_method_and_a_bad_key_are_named() {
    let p = config("bad-method.toml", "name = \"r\"\nmethod = \"ppo-outcome\"\n");
    let (ok, out) = stepagent(&["train", p.to_str().unwrap()]);
    assert!(!ok && out.contains("bad-method.toml") && out.contains("ppo-outcome"), "{out}");
    let p = config("bad-key.toml", "name = \"r\"\nmethod = \"ipr\"\n[ipr]\nrollouts = 0\n");
    let (ok, out) = stepagent(&["train", p.to_str().unwrap()]);
    assert!(!ok && out.contains("ipr.rollouts"), "{out}");
}

#[test]
fn compare_refuses_a_bad_config_by_key() {
    let text = "name = \"c\"\nmethods = [\"eto\", \"inverse\"]\n[[worlds]]\nname = \"line\"\n[eval]\nseen_tasks = 2\n";
    let p = config("bad-compare.toml", text);
    let (ok, out) = stepagent(&["compare", p.to_str().unwrap()]);
    assert!(!ok && out.contains("methods") && out.contains("inverse"), "{out}");
    let text = "name = \"c\"\nmethods = [\"eto\"]\n[[worlds]]\nname = \"line\"\n";
    let p = config("no-split.toml", text);
    let (ok, out) = stepagent(&["compare", p.to_str().unwrap()]);
    assert!(!ok && out.contains("splits"), "{out}");
    // The subcommand documents its argument.
    let (ok, out) = stepagent(&["compare", "--help"]);
    assert!(ok && out.contains("CONFIG"), "{out}");
}
