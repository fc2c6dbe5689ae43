"""The long-context measurement script runs end to end at tiny sizes (the GPU check is the same
code with the 1B shape, bfloat16 and CUDA's allocator statistics)."""

import pytest

from benchmarks import long_context


@pytest.mark.slow
def test_the_script_measures_forward_battery_and_attribution(capsys):
    assert long_context.main(["--shape", "tiny", "--lengths", "24", "--attribution", "6", "--estimate", "8"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header, row, attribution, estimate = lines
    assert header.split()[:4] == ["shape", "n", "batch", "forward"] and "(cpu, float32)" in header
    shape, n, batch, forward, battery, times, forward_gib, battery_gib, memory = row.split()
    assert (shape, n, batch) == ("tiny", "24", "1")
    assert float(forward) > 0 and float(battery) > 0 and times.endswith("x") and memory.endswith("x")
    assert float(forward_gib) > 0.1 and float(battery_gib) >= float(forward_gib) * 0.9  # whole-process peaks, same load
    assert attribution.startswith("exact attribution, tiny, n = 6: ")
    assert estimate.startswith("attribution estimate, tiny, n = 8: ") and "ms per attributed token" in estimate


def test_zipf_inputs_repeat_tokens_and_stay_in_both_vocabularies():
    class Tokenizer:
        def __len__(self):
            return 500

    class Config:
        vocab_size = 300

    class Model:
        config = Config()

    class Tracer:
        tokenizer, model, encodings = Tokenizer(), Model(), {}

    tracer = Tracer()
    ids = long_context._inputs(tracer, 200, 2)
    assert ids == [0, 1]
    tokens = tracer.encodings[0]["input_ids"]
    assert len(tokens) == 200 and max(tokens) < 300 and len(set(tokens)) < 150  # repeats, as text has
    assert tracer.encodings[1]["attention_mask"] == [1] * 200 and tracer.encodings[1]["input_ids"] != tokens
