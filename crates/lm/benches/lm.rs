//! Engine benchmark on the default model (SmolLM2-135M-Instruct, f32 on the CPU):
//! prefill and decode throughput, prefix-reuse speed-up on a real household expert
//! trajectory, scoring without gradients, and training step time (full fine-tuning and LoRA)
//! with peak memory.
//!
//! `cargo bench -p stepagent-lm --bench lm [-- FILTER]` (threads: `RAYON_NUM_THREADS`,
//! default 2; model: `STEPAGENT_MODEL=PATH`, else the cached default model, fetched if
//! absent; `STEPAGENT_BENCH_JSON=FILE` (an absolute path: cargo runs benchmarks from the
//! package folder) also writes every figure to FILE as one JSON object,
//! which `bench/torch/run.sh` reads to print the ratios against PyTorch). Each step is timed a
//! few times and the median is printed; steps are seconds long, so a statistics harness would
//! add nothing but run time.

use candle_core::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::time::Instant;
use stepagent_lm::generate::{sample, SamplingConfig};
use stepagent_lm::model::{KvCache, Positions};
use stepagent_lm::score::{token_logprobs, SpanQuery};
use stepagent_lm::train::{sft_loss, AdamW, OptimConfig};
use stepagent_lm::{ChatModel, Lm, LoraConfig, Rendered};
use stepagent_policy::{Message, Role};

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64())
}

/// User + system CPU time of this process so far. On a loaded machine the wall-clock rate
/// depends on the neighbours; `2 × work / CPU time` is what two uncontended threads would
/// reach at perfect scaling (an upper bound, printed next to the wall-clock figure).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the `)`: field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let num = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (num(11) + num(12)) / 100.0
}

/// Resets the kernel's peak-RSS counter for this process (Linux `clear_refs` 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_gib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kb| kb / (1024.0 * 1024.0))
        .unwrap_or(f64::NAN)
}

/// Every figure printed, by key, for `STEPAGENT_BENCH_JSON`.
#[derive(Default)]
struct Figures(Vec<(String, f64)>);

impl Figures {
    fn put(&mut self, key: &str, value: f64) {
        self.0.push((key.to_string(), value));
    }

    fn extend(&mut self, more: Vec<(String, f64)>) {
        self.0.extend(more);
    }

    fn write_if_asked(&self) {
        let Some(path) = std::env::var_os("STEPAGENT_BENCH_JSON") else { return };
        let map: serde_json::Map<String, serde_json::Value> =
            self.0.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
        let text = serde_json::to_string_pretty(&map).expect("figures as JSON");
        std::fs::write(&path, text).expect("write STEPAGENT_BENCH_JSON");
    }
}

/// Runs this benchmark in a child process filtered to `key` and returns its figures.
fn run_alone(key: &str) -> Vec<(String, f64)> {
    let json =
        std::env::temp_dir().join(format!("stepagent-bench-{}-{key}.json", std::process::id()));
    let exe = std::env::current_exe().expect("the benchmark's own path");
    let status = std::process::Command::new(exe)
        .arg(key)
        .env("STEPAGENT_BENCH_JSON", &json)
        .status()
        .expect("start the benchmark again");
    assert!(status.success(), "the benchmark filtered to {key} failed: {status}");
    let text = std::fs::read_to_string(&json).expect("the child's figures");
    let _ = std::fs::remove_file(&json);
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).expect("the child's figures as JSON");
    map.into_iter().filter_map(|(k, v)| Some((k, v.as_f64()?))).collect()
}

/// Which weights a training step updates.
#[derive(Clone, Copy)]
enum Tuning {
    Full,
    /// Rank 16, alpha 32, all seven linear layers of every block (as the quickstart).
    Lora,
}

fn fixture_trajectory() -> Vec<Message> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/alfworld-eto-sample.json");
    let text = std::fs::read_to_string(&path).expect("fixture");
    let data: serde_json::Value = serde_json::from_str(&text).expect("fixture json");
    data[0]["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .map(|m| Message {
            role: if m["role"] == "assistant" { Role::Assistant } else { Role::User },
            content: m["content"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

fn main() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "2");
    }
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let want = |k: &str| only.as_deref().map(|o| k.contains(o)).unwrap_or(true);
    let path = std::env::var_os("STEPAGENT_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        stepagent_lm::fetch::ensure_default_model(&mut |m| eprintln!("{m}")).expect("default model")
    });
    let lm = Lm::load(&path).expect("load model");
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("model {} | threads {threads} | load average {}", path.display(), load.trim());
    let traj = fixture_trajectory();
    let rendered = lm.render(&traj, false).unwrap();
    let text_ids = rendered.ids.clone();
    println!("fixture trajectory: {} turns, {} tokens", traj.len(), text_ids.len());
    let dev = lm.model.device().clone();
    let mut figures = Figures::default();

    if want("matmul") {
        // Plain products at the model's training shapes (512 rows): what gemm itself reaches
        // here, the ceiling the training figures are read against.
        let m = 512usize;
        for (what, k, n) in [
            ("q/o proj", 576usize, 576usize),
            ("mlp up", 576, 1536),
            ("mlp down", 1536, 576),
            ("lm head", 576, 49152),
        ] {
            let a = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap().t().unwrap();
            let runs: Vec<f64> = (0..7).map(|_| time(|| a.matmul(&b).unwrap()).1).collect();
            let gflops = 2.0 * (m * k * n) as f64 / median(runs) / 1e9;
            figures.put(&format!("matmul_{m}x{k}x{n}_gflops"), gflops);
            println!("matmul {what} {m}x{k} · {k}x{n}: {gflops:.0} GFLOP/s");
        }
    }

    if want("prefill") {
        let n = 512.min(text_ids.len());
        let ids = Tensor::new(&text_ids[..n], &dev).unwrap().unsqueeze(0).unwrap();
        let cpu0 = cpu_seconds();
        let runs: Vec<f64> = (0..3)
            .map(|_| {
                time(|| {
                    let mut cache = KvCache::new();
                    let pos = Positions::causal(1, n, &dev).unwrap();
                    let h = lm.model.hidden(&ids, &pos, Some(&mut cache), false).unwrap();
                    lm.model.logits(&h.narrow(1, n - 1, 1).unwrap()).unwrap()
                })
                .1
            })
            .collect();
        let cpu = (cpu_seconds() - cpu0) / 3.0;
        figures.put(&format!("prefill_1x{n}_tok_s"), n as f64 / median(runs.clone()));
        println!(
            "prefill 1x{n}: {:.0} tok/s wall, {:.0} tok/s CPU-normalised (PyTorch here: ~440)",
            n as f64 / median(runs),
            2.0 * n as f64 / cpu
        );
    }

    if want("decode") {
        // Decode steps only, timed around the steps themselves: the prompt's prefill is
        // excluded, so its noise does not swamp the per-token cost.
        let prompt = text_ids[..128.min(text_ids.len())].to_vec();
        let cfg = SamplingConfig { temperature: 0.7, ..Default::default() };
        for batch in [1usize, 16] {
            let p = prompt.len();
            let ids: Vec<u32> = (0..batch).flat_map(|_| prompt.iter().copied()).collect();
            let ids = Tensor::from_vec(ids, (batch, p), &dev).unwrap();
            let mut cache = KvCache::new();
            let pos = Positions::causal(batch, p, &dev).unwrap();
            let h = lm.model.hidden(&ids, &pos, Some(&mut cache), false).unwrap();
            let mut logits =
                lm.model.logits(&h.narrow(1, p - 1, 1).unwrap().squeeze(1).unwrap()).unwrap();
            let mut rngs: Vec<ChaCha8Rng> =
                (0..batch as u64).map(ChaCha8Rng::seed_from_u64).collect();
            let steps = 32;
            let cpu0 = cpu_seconds();
            let (_, secs) = time(|| {
                for step in 0..steps {
                    let rows = logits.to_vec2::<f32>().unwrap();
                    let next: Vec<u32> =
                        rows.iter().zip(rngs.iter_mut()).map(|(r, g)| sample(r, &cfg, g)).collect();
                    let s = p + step + 1;
                    let pos = Positions::general(
                        vec![vec![(p + step) as u32]; batch],
                        s,
                        &dev,
                        |_, _, _| true,
                    )
                    .unwrap();
                    let ids = Tensor::from_vec(next, (batch, 1), &dev).unwrap();
                    let h = lm.model.hidden(&ids, &pos, Some(&mut cache), false).unwrap();
                    logits = lm.model.logits(&h.squeeze(1).unwrap()).unwrap();
                }
            });
            let cpu = cpu_seconds() - cpu0;
            let n = (batch * steps) as f64;
            figures.put(&format!("decode_b{batch}_tok_s"), n / secs);
            println!(
                "decode batch {batch:>2}: {:.1} tok/s wall, {:.1} tok/s CPU-normalised (128-token prompt; PyTorch batch 1 here: ~16.5)",
                n / secs,
                2.0 * n / cpu
            );
        }
    }

    if want("long") {
        // Decoding late in an episode: 8 sequences of 2,048 cached tokens each (the fixture's
        // tokens repeated; one prefill, its cache stacked 8 times), 32 steps, greedy. Here the
        // attention over the cache, not the weights, is most of a step.
        let (batch, ctx, steps) = (8usize, 2048usize, 32usize);
        let long: Vec<u32> = text_ids.iter().copied().cycle().take(ctx).collect();
        let ids = Tensor::new(long.as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
        let mut one = KvCache::new();
        let pos = Positions::causal(1, ctx, &dev).unwrap();
        let h = lm.model.hidden(&ids, &pos, Some(&mut one), false).unwrap();
        let last = lm.model.logits(&h.narrow(1, ctx - 1, 1).unwrap().squeeze(1).unwrap()).unwrap();
        let mut cache = KvCache::stack(&vec![(&one, ctx); batch], steps).unwrap();
        let mut next: Vec<u32> = vec![last.argmax(1).unwrap().to_vec1::<u32>().unwrap()[0]; batch];
        let cpu0 = cpu_seconds();
        let (_, secs) = time(|| {
            for step in 0..steps {
                let s = ctx + step + 1;
                let at = vec![vec![(ctx + step) as u32]; batch];
                let pos = Positions::general(at, s, &dev, |_, _, _| true).unwrap();
                let ids = Tensor::from_vec(next.clone(), (batch, 1), &dev).unwrap();
                let h = lm.model.hidden(&ids, &pos, Some(&mut cache), false).unwrap();
                let logits = lm.model.logits(&h.squeeze(1).unwrap()).unwrap();
                next = logits.argmax(1).unwrap().to_vec1::<u32>().unwrap();
            }
        });
        let cpu = cpu_seconds() - cpu0;
        let n = (batch * steps) as f64;
        figures.put("decode_b8_ctx2048_tok_s", n / secs);
        println!(
            "decode batch 8 at 2,048 cached tokens: {:.1} tok/s wall, {:.1} tok/s CPU-normalised",
            n / secs,
            2.0 * n / cpu
        );
    }

    if want("prefix") {
        let turns = traj.iter().filter(|m| m.role == Role::Assistant).count();
        let cfg = SamplingConfig { max_new_tokens: 24, ..Default::default() };
        let seeds: Vec<u64> = (0..turns as u64).collect();
        let (reuse, t_reuse) = time(|| lm.generate_at_each_turn(&traj, &cfg, &seeds).unwrap());
        let histories: Vec<Vec<Message>> = traj
            .iter()
            .enumerate()
            .filter(|(_, m)| m.role == Role::Assistant)
            .map(|(i, _)| traj[..i].to_vec())
            .collect();
        let (plain, t_plain) = time(|| lm.generate(&histories, &cfg, &seeds).unwrap());
        let same = reuse.iter().zip(&plain).filter(|(a, b)| a.tokens == b.tokens).count();
        figures.put("prefix_reuse_speedup", t_plain / t_reuse);
        println!(
            "prefix reuse, {turns} step prompts of one expert trajectory ({} tokens): {t_reuse:.1} s vs {t_plain:.1} s plain = {:.1}x ({same}/{turns} identical)",
            text_ids.len(),
            t_plain / t_reuse
        );
    }

    if want("score") {
        // Log-probs of every token of one sequence without gradients: what reference
        // log-probs and the agreement curve cost.
        let n = 512.min(text_ids.len());
        let spans: Vec<std::ops::Range<usize>> = std::iter::once(1..n).collect();
        let q = [SpanQuery { ids: &text_ids[..n], spans: &spans }];
        let runs: Vec<f64> =
            (0..3).map(|_| time(|| token_logprobs(&lm.model, &q, false).unwrap()).1).collect();
        let s = median(runs);
        figures.put(&format!("score_1x{n}_s"), s);
        println!("score 1x{n} (log-probs, no gradients): {s:.2} s = {:.0} tok/s", n as f64 / s);
    }

    // `-- train` runs every shape, `-- lora` or `-- full_4x256` one (e.g. under a profiler).
    let train_key = |tuning: Tuning, b: usize, t: usize| {
        let label = match tuning {
            Tuning::Full => "full",
            Tuning::Lora => "lora",
        };
        format!("train_{label}_{b}x{t}")
    };
    if want("train_lora_1x512") || want("train_full_1x512") || want("train_full_4x256") {
        // A fresh model per shape, the inference one dropped: the peak is the step's own.
        drop(lm);
        let shapes = [
            // PyTorch's step time and peak RSS on this machine (`bench/torch/run.sh`,
            // 2026-11-30), printed beside ours.
            (Tuning::Full, 1usize, 512usize, 4.43, 3.65),
            (Tuning::Full, 4, 256, 8.09, 4.73),
            (Tuning::Lora, 1, 512, 2.93, 2.76),
        ];
        let wanted: Vec<_> = shapes
            .into_iter()
            .filter(|&(tuning, b, t, ..)| want(&train_key(tuning, b, t)))
            .collect();
        if wanted.len() > 1 {
            // Each shape in a fresh process (this benchmark again, filtered to it): in one
            // process, what an earlier shape left in the allocator counted in a later
            // shape's peak RSS.
            for &(tuning, b, t, ..) in &wanted {
                let key = train_key(tuning, b, t);
                figures.extend(run_alone(&key));
            }
            figures.write_if_asked();
            return;
        }
        for (tuning, b, t, torch_s, torch_gib) in wanted {
            let mut lm = Lm::load(&path).expect("load model");
            let label = match tuning {
                Tuning::Full => {
                    lm.enable_full_finetuning().unwrap();
                    "full"
                }
                Tuning::Lora => {
                    let cfg = LoraConfig { rank: 16, alpha: 32.0, ..Default::default() };
                    lm.enable_lora(&cfg).unwrap();
                    "lora"
                }
            };
            let mut opt = AdamW::new(lm.trainable_parameters(), OptimConfig::default()).unwrap();
            let batch: Vec<Rendered> = (0..b)
                .map(|i| {
                    let ids: Vec<u32> =
                        text_ids.iter().cycle().skip(i * 97).take(t).copied().collect();
                    Rendered {
                        assistant_mask: vec![true; t],
                        assistant_turns: std::iter::once(1..t).collect(),
                        ids,
                    }
                })
                .collect();
            let mut times = Vec::new();
            let mut phases: [Vec<f64>; 3] = Default::default();
            let mut cpus = Vec::new();
            reset_peak_rss();
            for _ in 0..3 {
                let cpu0 = cpu_seconds();
                let (loss, fwd) = time(|| sft_loss(&lm.model, &batch).unwrap());
                let (grads, bwd) = time(|| loss.backward().unwrap());
                let (_, adamw) = time(|| opt.step(&grads).unwrap());
                times.push(fwd + bwd + adamw);
                for (p, x) in phases.iter_mut().zip([fwd, bwd, adamw]) {
                    p.push(x);
                }
                cpus.push(cpu_seconds() - cpu0);
            }
            // The first step warms the allocator and the thread pools.
            let s = median(times[1..].to_vec());
            let [fwd, bwd, adamw] = phases.map(|p| median(p[1..].to_vec()));
            println!("  forward {fwd:.2} s, backward {bwd:.2} s, AdamW {adamw:.2} s");
            let cpu = median(cpus[1..].to_vec()) / 2.0;
            let rss = peak_rss_gib();
            figures.put(&format!("train_{label}_{b}x{t}_s"), s);
            figures.put(&format!("train_{label}_{b}x{t}_peak_rss_gib"), rss);
            println!(
                "train step {b}x{t} ({label}, AdamW): {s:.2} s wall = {:.0} tok/s, {cpu:.2} s CPU-normalised, peak RSS {rss:.1} GiB (PyTorch here: {torch_s} s, {torch_gib} GiB)",
                (b * t) as f64 / s,
            );
        }
    }
    figures.write_if_asked();
}
