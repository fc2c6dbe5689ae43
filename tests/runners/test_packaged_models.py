"""The packaged models end to end (slow: they load real weights; CI installs them with the zoo).

MiniLM (encoder) and SmolLM2 (GGUF decoder, grouped-query attention) run through the job loop
into Parquet; Gemma 3 (head size 256) shows no null space for sequences shorter than 256 tokens,
except in its first layer, where a repeated token has the same values (no position in x, rotary
embeddings touch only Q and K): there ``null_dim = n - (number of distinct tokens)``.
"""

import pytest
import torch

from idsuite.results.query import ResultQuery
from idsuite.results.store import ResultStore
from idsuite.runners.jobs import Runner
from idsuite.runners.models.adapters import adapter_for
from idsuite.runners.models.loading import load_model
from idsuite.runners.models.zoo import load_zoo
from idsuite.runners.probing.corpus import Corpus
from idsuite.runners.probing.tracing import Tracer
from idsuite.runners.run_config import RunConfig
from idsuite.suite.rank_deficiency import rank_deficiency
from idsuite.suite.specs import SPECS
from tests.conftest import SENTENCES

pytestmark = pytest.mark.slow

FAST = {
    "context_mixing": {"max_sequences": 2, "max_tokens": 12, "reference": "estimate"},  # exact: ~70 s a sentence on SmolLM2
    "token_identifiability": {"mlp_max_epochs": 10, "max_train_tokens": 300, "mlp_hidden_size": 64},
    "hidden_token_attribution": {"min_sequences": 2, "max_sequences": 2, "max_tokens": 12, "probes": 4},
    "feasible_attention": {"min_sequences": 2, "max_sequences": 2, "max_tokens": 12, "rows_per_sequence": 2},
    "effective_attention": {"map_max_tokens": 12},  # the example maps of 30 layers x 9 heads at 96 tokens: 2M rows
}
TEXTS = [
    "The cat sat on the mat.",
    "A dog ran fast, but the cat was slow.",
    "Researchers compare architectures in papers.",
    "It was a cold morning and the river was frozen.",
    "Attention weights are not unique once the sequence is longer than the head size.",
    "Why?",
] + [" ".join(SENTENCES)]


@pytest.fixture(scope="module")
def zoo():
    return load_zoo()


def _require(zoo, model_id):
    from idsuite.runners.models.weights import ModelLoadError, fingerprint

    try:
        fingerprint(zoo.entries[model_id], zoo)
    except ModelLoadError as e:
        pytest.skip(f"{model_id} not installed: {e}")


@pytest.mark.parametrize(
    "model_id, facts",
    [
        ("all-MiniLM-L6-v2", dict(n_layers=6, n_heads=12, n_kv_heads=12, d_head=32, d_model=384, causal=False)),
        ("SmolLM2-135M-Instruct", dict(n_layers=30, n_heads=9, n_kv_heads=3, d_head=64, d_model=576, causal=True)),
    ],
)
def test_end_to_end_into_parquet(zoo, model_id, facts, tmp_path):
    _require(zoo, model_id)
    corpus = Corpus("probe", [(t, None) for t in TEXTS] + [(TEXTS[0], TEXTS[1]), (TEXTS[2], TEXTS[3])])
    runner = Runner(zoo, corpus, RunConfig(metric_settings=FAST, batch_size=4), ResultStore(tmp_path), "it", log=lambda s: None)
    (outcome,) = runner.run([model_id])
    assert not outcome.failed and sorted(outcome.computed) == sorted(SPECS)
    rows = ResultQuery(tmp_path).all_rows()
    assert (rows["status"] == "ok").all()
    for column, value in facts.items():
        assert (rows[column] == value).all(), column
    assert rows["n_params"].iloc[0] > 20_000_000
    null_dim = rows[(rows.metric == "rank_deficiency") & (rows.variant == "null_dim")]
    bound = (null_dim["n_tokens"] - facts["d_head"]).clip(lower=0)
    later = null_dim["layer"] > 1  # a rotary decoder's first layer can have repeated-token null space
    assert (null_dim["value"] >= bound).all() and (null_dim["value"][later] == bound[later]).all()
    eff = rows[(rows.metric == "effective_attention") & (rows.variant == "null_share") & rows["head"].isna()
               & rows["sequence"].isna() & rows["layer"].notna()]
    assert len(eff) == facts["n_layers"] and eff["value"].between(0, 1).all()


def test_gemma3_has_no_null_space_below_its_head_size(zoo):
    _require(zoo, "gemma-3-270m-q4km")
    loaded = load_model(zoo.entries["gemma-3-270m-q4km"], zoo)
    tracer = Tracer(loaded.model, loaded.tokenizer, adapter_for(loaded.model.config.model_type))
    assert tracer.d_head == 256 and tracer.n_heads == 4
    for i, text in enumerate(TEXTS):
        tracer.encodings[i] = dict(loaded.tokenizer(text))
    trace = tracer.trace(list(range(len(TEXTS))))
    assert trace.lengths.max() < 256 and trace.lengths.max() > 64
    for layer in range(len(trace.layers)):
        projection = trace.projection(layer, torch.float64)
        null_dim = rank_deficiency(projection.row_rank, projection.context, trace.lengths).null_dim
        if layer == 0:
            distinct = torch.tensor([len(set(trace.token_ids[b, :n].tolist())) for b, n in enumerate(trace.lengths.tolist())])
            assert torch.equal(null_dim, (trace.lengths - distinct).view(-1, 1).expand_as(null_dim))
        else:
            assert null_dim.eq(0).all(), layer


@pytest.mark.parametrize("model_id", ["SmolLM2-135M-Instruct", "gemma-3-270m-q4km"])
def test_prefix_projections_equal_the_per_row_reference_on_the_default_corpus(zoo, model_id):
    # the fast causal path (duplicate groups, the blocked recursion past d_h) against an SVD per row,
    # on the default corpus's eight longest and eight first sentences, plus one sequence 24 tokens past
    # d_h (Gemma 3: d_h = 256; first and last layers); ranks identical, projections to 1e-6
    from idsuite.runners.probing.corpus import CorpusSpec, load_corpus
    from idsuite.suite.null_space import project_attention, project_attention_by_row

    _require(zoo, model_id)
    loaded = load_model(zoo.entries[model_id], zoo)
    tracer = Tracer(loaded.model, loaded.tokenizer, adapter_for(loaded.model.config.model_type))
    items = load_corpus(CorpusSpec()).items
    encodings = [dict(loaded.tokenizer(text, pair)) for text, pair in items]
    order = sorted(range(len(items)), key=lambda i: -len(encodings[i]["input_ids"]))
    chosen = sorted(set(order[:8]) | set(range(8)))
    long_text = " ".join(items[i][0] for i in order[:12])
    for index in chosen:
        tracer.encodings[index] = encodings[index]
    encoded = loaded.tokenizer(long_text)
    tracer.encodings[-1] = {key: value[: tracer.d_head + 24] for key, value in encoded.items()}  # 24 rows past d_h
    assert len(encoded["input_ids"]) > tracer.d_head + 24
    last = len(tracer.blocks) - 1
    for batch, layers in ((chosen, (0, 1, last)), ([-1], (0, last))):  # the long one alone: no padding to it
        trace = tracer.trace(batch)
        for layer in layers:
            t = trace.layers[layer]
            allowed = trace.allowed(layer)
            fast = project_attention(t.attention, t.values, t.w_out, allowed, torch.float64, False, t.output_factor)
            slow = project_attention_by_row(t.attention, t.values, t.w_out, allowed, torch.float64)
            assert torch.equal(fast.row_rank, slow.row_rank), layer
            assert (fast.effective - slow.effective).abs().max() < 1e-6, layer
