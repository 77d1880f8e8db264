"""The shapes of our engine benchmark (crates/lm/benches/lm.rs), in PyTorch + transformers.

    torch_bench.py measure GGUF [FILTER] [--json OUT]    every figure, as one JSON object
    torch_bench.py train-step GGUF full|lora B T          one training shape (a child process)
    torch_bench.py report OURS.json TORCH.json OUT.md    the comparison table

`measure` prints one JSON object with the same keys as our benchmark's STEPAGENT_BENCH_JSON
(only the figures PyTorch has an equivalent for). FILTER works as ours: a figure group runs
when its name (prefill, decode, score, train) contains FILTER.

Same model (the GGUF, dequantised to f32 by transformers), same threads (RAYON_NUM_THREADS,
default 2, for both engines), same token ids up to tokenizer details (see fixture_ids).
bench/torch/run.sh runs this and our benchmark in the same run and prints the ratios.
"""
import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Threads before torch is imported, so OpenMP starts with the right pool size.
THREADS = int(os.environ.get("RAYON_NUM_THREADS", "2"))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("MKL_NUM_THREADS", str(THREADS))
# Everything is local: never ask the hub, and keep progress bars out of the output.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF dequantisation bar
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(THREADS)
torch.set_num_interop_threads(1)

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "fixtures" / "alfworld-eto-sample.json"
GIB = 1024.0**3


# --- model, tokens, memory ------------------------------------------------------------------


def load(gguf):
    """The model and tokenizer from the GGUF file, weights dequantised to f32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    path = Path(gguf).resolve()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    # `dtype` is what transformers 5 calls the old `torch_dtype`.
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model, tok


def fixture_ids(tok):
    """The first trajectory of the fixture, rendered with the model's chat template (no
    generation prompt) and tokenised, as our benchmark does.

    Our engine renders ChatML itself and encodes it segment by segment with its own tokenizer;
    here transformers' template and tokenizer do it in one go, so a few ids may differ. The
    shapes (and so the work) are what the comparison is about, not the exact ids."""
    data = json.loads(FIXTURE.read_text())
    messages = [
        {"role": "assistant" if m["role"] == "assistant" else "user", "content": m["content"]}
        for m in data[0]["conversations"]
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    return tok(text, add_special_tokens=False)["input_ids"]


def cycled(ids, skip, n):
    """`n` ids from `ids` repeated forever, after skipping `skip` (our benchmark's batches)."""
    return [ids[(skip + i) % len(ids)] for i in range(n)]


def reset_peak_rss():
    """Resets the kernel's peak-RSS counter of this process (Linux `clear_refs` 5), as ours
    does once the model is loaded: the peak then is the training steps' own. Returns whether
    it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_gib(reset_worked):
    """VmHWM (peak RSS since the reset) in GiB. Without a reset, ru_maxrss (KiB on Linux),
    which also counts the model's loading."""
    if reset_worked:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / (1024.0 * 1024.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024.0 * 1024.0)


def median(xs):
    """The upper median, as ours computes it (of two values, the larger)."""
    xs = sorted(xs)
    return xs[len(xs) // 2]


def timed(f, cpu=None):
    """Wall seconds of f(); appends the process's CPU seconds (all threads) to `cpu` if given.
    As in ours, `THREADS x work / CPU time` is the rate uncontended threads would reach at
    perfect scaling; printed next to the wall figure, since this machine is often shared (and
    an OpenMP pool spinning at its barriers also burns CPU, so take it as a rough guide)."""
    c, t = time.process_time(), time.perf_counter()
    f()
    wall = time.perf_counter() - t
    if cpu is not None:
        cpu.append(time.process_time() - c)
    return wall


# --- inference figures ----------------------------------------------------------------------


def bench_prefill(model, ids, figures):
    """Prompt processing: one sequence of 512 tokens into a fresh KV cache, logits of the last
    position only (what generation needs). Median of 3."""
    n = min(512, len(ids))
    x = torch.tensor([ids[:n]])

    def run():
        with torch.inference_mode():
            model(input_ids=x, use_cache=True, logits_to_keep=1)

    cpu = []
    s = median(timed(run, cpu) for _ in range(3))
    figures[f"prefill_1x{n}_tok_s"] = n / s
    norm = THREADS * n / statistics.mean(cpu)
    print(f"prefill 1x{n}: {n / s:.0f} tok/s wall, {norm:.0f} tok/s CPU-normalised", file=sys.stderr)


def bench_decode(model, ids, figures):
    """Decode throughput after a 128-token prompt: 32 steps of one token per sequence with the
    KV cache, batch 1 and 16 (the same prompt in every row). Only the steps are timed, with
    temperature-0.7 sampling in them as ours (its cost is negligible next to the forward)."""
    prompt = ids[:128]
    steps = 32
    gen = torch.Generator().manual_seed(0)
    for batch in (1, 16):
        x = torch.tensor([prompt] * batch)
        with torch.inference_mode():
            out = model(input_ids=x, use_cache=True, logits_to_keep=1)
            cache, logits = out.cache, out.logits[:, -1, :]
            t, c = time.perf_counter(), time.process_time()
            for _ in range(steps):
                probs = torch.softmax(logits / 0.7, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=gen)
                out = model(input_ids=nxt, cache=cache, use_cache=True)
                cache, logits = out.cache, out.logits[:, -1, :]
            s, cpu = time.perf_counter() - t, time.process_time() - c
        n = batch * steps
        figures[f"decode_b{batch}_tok_s"] = n / s
        print(
            f"decode batch {batch}: {n / s:.1f} tok/s wall, {THREADS * n / cpu:.1f} tok/s CPU-normalised",
            file=sys.stderr,
        )


def bench_score(model, ids, figures):
    """Log-probabilities of every next token of one 512-token sequence, without gradients:
    logits of all positions, log-softmax, gather. Median of 3."""
    n = min(512, len(ids))
    x = torch.tensor([ids[:n]])

    def run():
        with torch.inference_mode():
            logits = model(input_ids=x, use_cache=False).logits[0, :-1]
            torch.log_softmax(logits, dim=-1).gather(-1, x[0, 1:, None])

    s = median(timed(run) for _ in range(3))
    figures[f"score_1x{n}_s"] = s
    print(f"score 1x{n}: {s:.2f} s", file=sys.stderr)


# --- training -------------------------------------------------------------------------------


class LoraLinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update: y = W x + (alpha/r) B A x, with
    A (r × in) Kaiming-uniform as nn.Linear initialises its weights and B (out × r) zero, so
    the adapted model starts equal to the base one."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        self.a = nn.Parameter(torch.empty(rank, base.in_features))
        self.b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))

    def forward(self, x):
        return self.base(x) + (x @ self.a.t() @ self.b.t()) * self.scale


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def add_lora(model, rank=16, alpha=32.0):
    """Freezes every weight and wraps the seven linear layers of every block with LoRA."""
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.model.layers:
        for holder in (layer.self_attn, layer.mlp):
            for name in LORA_TARGETS:
                if isinstance(getattr(holder, name, None), nn.Linear):
                    setattr(holder, name, LoraLinear(getattr(holder, name), rank, alpha))


def train_step(gguf, tuning, b, t):
    """One training shape in this (fresh) process: SFT loss (token mean of the next-token
    cross-entropy over positions 1..t of every row), backward, global gradient-norm clip to 1
    and an AdamW step (lr 1e-5, no weight decay: our OptimConfig's defaults). 3 steps; the
    median of steps 2-3, the first warming allocator and thread pool as in ours."""
    model, tok = load(gguf)
    ids = fixture_ids(tok)
    if tuning == "lora":
        add_lora(model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    x = torch.tensor([cycled(ids, i * 97, t) for i in range(b)])
    reset = reset_peak_rss()

    def step():
        logits = model(input_ids=x, use_cache=False).logits
        vocab = logits.shape[-1]
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, vocab), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    cpus = []
    times = [timed(step, cpus) for _ in range(3)]
    s = median(times[1:])
    cpu = median(cpus[1:]) / THREADS
    rss = peak_rss_gib(reset)
    key = f"train_{tuning}_{b}x{t}"
    # cpu_normalised_s is for the parent's log line only; it drops it from the figures.
    print(json.dumps({f"{key}_s": s, f"{key}_peak_rss_gib": rss, "cpu_normalised_s": cpu}))


def bench_train(gguf, figures):
    """Each training shape in its own fresh interpreter, so its peak memory is its own."""
    for tuning, b, t in (("full", 1, 512), ("full", 4, 256), ("lora", 1, 512)):
        out = subprocess.run(
            [sys.executable, __file__, "train-step", gguf, tuning, str(b), str(t)],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
        got = json.loads(out.strip().splitlines()[-1])
        cpu = got.pop("cpu_normalised_s")
        figures.update(got)
        s, rss = got[f"train_{tuning}_{b}x{t}_s"], got[f"train_{tuning}_{b}x{t}_peak_rss_gib"]
        print(
            f"train step {b}x{t} ({tuning}, AdamW): {s:.2f} s wall, {cpu:.2f} s CPU-normalised, "
            f"peak RSS {rss:.2f} GiB",
            file=sys.stderr,
        )


def measure(gguf, only, json_out):
    def want(group):
        return only is None or only in group

    load_avg = Path("/proc/loadavg").read_text().split()[:3]
    import transformers

    print(
        f"torch {torch.__version__}, transformers {transformers.__version__} | threads {THREADS} "
        f"| load average {' '.join(load_avg)}",
        file=sys.stderr,
    )
    figures = {}
    if any(want(g) for g in ("prefill", "decode", "score")):
        model, tok = load(gguf)
        model.eval()
        ids = fixture_ids(tok)
        print(f"fixture trajectory: {len(ids)} tokens", file=sys.stderr)
        if want("prefill"):
            bench_prefill(model, ids, figures)
        if want("decode"):
            bench_decode(model, ids, figures)
        if want("score"):
            bench_score(model, ids, figures)
        del model
    if want("train"):
        bench_train(gguf, figures)
    text = json.dumps(figures, indent=2)
    if json_out:
        Path(json_out).write_text(text + "\n")
    print(text)


# --- the comparison table -------------------------------------------------------------------


def ratio(key, ours, theirs):
    """How many times better ours is: higher is better for throughput (tok/s), lower for
    seconds."""
    if key.endswith("_tok_s"):
        return ours / theirs
    return theirs / ours


def report(ours_path, torch_path, md_path, load_start=None):
    """One row per figure both sides have, in PyTorch's order; a training row also shows the
    peak RSS of both (the `_peak_rss_gib` figure of the same shape)."""
    ours = json.loads(Path(ours_path).read_text())
    theirs = json.loads(Path(torch_path).read_text())
    import transformers

    load_end = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    head = (
        f"stepagent vs PyTorch {torch.__version__} + transformers {transformers.__version__}, "
        f"f32 on the CPU, {THREADS} thread{'s' if THREADS != 1 else ''}; load average (1, 5, 15 min)"
        + (f" at the start {load_start}," if load_start else "")
        + f" at the end {load_end}"
    )

    def fmt(v):
        return f"{v:.1f}" if v >= 10 else f"{v:.2f}"

    table = [
        "| figure | ours | PyTorch | ours better by | peak RSS ours | peak RSS PyTorch |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k in theirs:
        if k not in ours or k.endswith("_peak_rss_gib"):
            continue
        a, b = ours[k], theirs[k]
        rss = k[: -len("_s")] + "_peak_rss_gib" if k.startswith("train_") else None
        if rss and rss in ours and rss in theirs:
            mem = f" {ours[rss]:.2f} GiB | {theirs[rss]:.2f} GiB |"
        else:
            mem = " | |"
        table.append(f"| {k} | {fmt(a)} | {fmt(b)} | {ratio(k, a, b):.2f}x |{mem}")
    only_ours = [k for k in ours if k not in theirs]
    notes = [
        "",
        "ours better by: our tok/s / PyTorch's, or PyTorch's seconds / ours; above 1, ours is faster.",
    ]
    if only_ours:
        notes.append(f"Ours only (no PyTorch counterpart here): {', '.join(only_ours)}.")
    md = "\n".join([head, ""] + table + notes) + "\n"
    Path(md_path).write_text(md)
    print(md)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("gguf")
    m.add_argument("filter", nargs="?")
    m.add_argument("--json")
    t = sub.add_parser("train-step")
    t.add_argument("gguf")
    t.add_argument("tuning", choices=["full", "lora"])
    t.add_argument("b", type=int)
    t.add_argument("t", type=int)
    r = sub.add_parser("report")
    r.add_argument("ours")
    r.add_argument("torch")
    r.add_argument("md")
    r.add_argument("--load-start", help="the load average when the run began")
    a = p.parse_args()
    if a.cmd == "measure":
        measure(a.gguf, a.filter, a.json)
    elif a.cmd == "train-step":
        train_step(a.gguf, a.tuning, a.b, a.t)
    else:
        report(a.ours, a.torch, a.md, a.load_start)


if __name__ == "__main__":
    main()
