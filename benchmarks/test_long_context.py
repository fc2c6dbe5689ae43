"""(13) The battery on decoders of real shapes at long contexts: time and peak memory against a
plain forward pass of the same batch (each in a child process of its own: ``benchmarks.long_context``).
Goals: at most 1.5x in time at n = 128, 512, 2048 (135M shape) and 128, 512 (1B shape); at most
1.5x in peak memory at n = 2048 (135M) and 512 (1B). Minutes: the 1B shape is built four times."""

from benchmarks import long_context
from benchmarks.conftest import NOTES


def test_battery_against_forward_at_long_contexts(benchmark):
    rows = benchmark.pedantic(long_context.curves, args=(long_context.CPU_GOALS, 1, "cpu", "float32"), rounds=1)
    for row in rows:
        f, b = row["forward"], row["battery"]
        NOTES.append(f"(13) {f['shape']} n={f['n']}: battery {b['seconds'] / f['seconds']:.2f}x the forward in time "
                     f"({b['seconds']:.2f} s / {f['seconds']:.2f} s), {b['peak_bytes'] / f['peak_bytes']:.2f}x in peak "
                     f"memory ({b['peak_bytes'] / 2**30:.2f} / {f['peak_bytes'] / 2**30:.2f} GiB, model loaded "
                     f"{f['loaded_bytes'] / 2**30:.2f} GiB)")
