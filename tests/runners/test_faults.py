"""Faults injected into a run of several tiny models: each bad model (or entry, or write) becomes
failed rows with one short line naming the cause, and every other model completes."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers

import idsuite.runners.models.weights
from idsuite.results.query import ResultQuery
from idsuite.results.store import ResultStore
from idsuite.runners.failures import MAX_MESSAGE
from idsuite.runners.jobs import Runner
from idsuite.runners.models.zoo import load_zoo
from idsuite.runners.probing.corpus import Corpus
from idsuite.runners.run_config import RunConfig
from idsuite.suite.specs import SPECS
from tests.conftest import SENTENCES, VOCAB

FAST = {
    "context_mixing": {"max_sequences": 2, "max_tokens": 12},
    "token_identifiability": {"mlp_max_epochs": 5, "max_train_tokens": 100, "mlp_hidden_size": 16},
    "hidden_token_attribution": {"min_sequences": 2, "max_sequences": 2, "max_tokens": 10, "probes": 4},
    "effective_attention": {"map_max_tokens": 8},
    "feasible_attention": {"min_sequences": 2, "max_sequences": 2, "max_tokens": 12, "rows_per_sequence": 2},
}


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def with_weights(folder: Path, change) -> Path:
    model = transformers.AutoModel.from_pretrained(folder)
    with torch.no_grad():
        change(dict(model.named_parameters()))
    model.save_pretrained(folder)
    return folder


@pytest.fixture
def faulty_zoo(tmp_path, tiny_bert_dir, tiny_llama_dir):
    m = tmp_path / "models"
    truncated = copy_model(tiny_bert_dir, m / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    empty = copy_model(tiny_bert_dir, m / "empty")
    (empty / "model.safetensors").write_bytes(b"")
    all_nan = with_weights(copy_model(tiny_bert_dir, m / "all-nan"), lambda p: [t.fill_(float("nan")) for t in p.values()])
    one_nan = with_weights(copy_model(tiny_bert_dir, m / "one-nan"),
                           lambda p: p["encoder.layer.1.output.dense.weight"].view(-1)[7].fill_(float("nan")))
    negative = copy_model(tiny_bert_dir, m / "negative")
    config = json.loads((negative / "config.json").read_text())
    (negative / "config.json").write_text(json.dumps(config | {"intermediate_size": -64}))
    no_tokenizer = copy_model(tiny_bert_dir, m / "no-tokenizer")
    for f in no_tokenizer.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
            f.unlink()
    foreign = copy_model(tiny_bert_dir, m / "foreign-vocab")
    words = VOCAB[:5] + [f"wort{i}" for i in range(len(VOCAB) - 5)]  # same size, none of the corpus' words
    (foreign / "vocab.txt").write_text("\n".join(words) + "\n")
    (foreign / "tokenizer.json").unlink()  # the tokenizer is then built from the foreign vocab
    unreadable = copy_model(tiny_bert_dir, m / "unreadable")
    (tmp_path / "models.yaml").write_text(f"""
models:
  - {{id: tiny, source: local, path: {tiny_bert_dir}, tags: [default]}}
  - {{id: tiny-decoder, source: local, path: {tiny_llama_dir}, tags: [default]}}
  - {{id: tiny-control, source: random_init, base: tiny, init_seed: 1, tags: [default]}}
  - {{id: truncated, source: local, path: {truncated}, tags: [default]}}
  - {{id: empty, source: local, path: {empty}, tags: [default]}}
  - {{id: all-nan, source: local, path: {all_nan}, tags: [default]}}
  - {{id: one-nan, source: local, path: {one_nan}, tags: [default]}}
  - {{id: negative, source: local, path: {negative}, tags: [default]}}
  - {{id: no-tokenizer, source: local, path: {no_tokenizer}, tags: [default]}}
  - {{id: foreign-vocab, source: local, path: {foreign}, tags: [default]}}
  - {{id: unreadable, source: local, path: {unreadable}, tags: [default]}}
  - {{id: full-disk, source: random_init, base: tiny, init_seed: 2, tags: [default]}}
  - {{id: offline-hub, source: hub, repo: no-such-org/no-such-model, tags: [default]}}
  - {{id: broken-default, source: hub, colour: red, tags: [default]}}
  - {{id: ".", source: local, path: {tiny_bert_dir}, tags: [default]}}
  - {{id: "..", source: local, path: {tiny_bert_dir}, tags: [default]}}
  - {{id: Tiny, source: local, path: {tiny_bert_dir}, tags: [default]}}
""")
    return load_zoo(tmp_path / "models.yaml")


def test_every_fault_is_failed_rows_with_one_line_and_the_rest_completes(faulty_zoo, tmp_path, monkeypatch):
    real_hash, real_write = idsuite.runners.models.weights._hash_files, ResultStore.write

    def unreadable(folder, files):  # root reads any file, so the permission error is injected
        if folder.name == "unreadable":
            raise PermissionError(errno.EACCES, "Permission denied", str(folder / "model.safetensors"))
        return real_hash(folder, files)

    def full_disk(store, ref, frame, constants=None):
        if ref.model_id == "full-disk":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(store, ref, frame, constants)

    monkeypatch.setattr(idsuite.runners.models.weights, "_hash_files", unreadable)
    monkeypatch.setattr(ResultStore, "write", full_disk)
    store = ResultStore(tmp_path / "results")
    corpus = Corpus("tiny", [(s, None) for s in SENTENCES])
    models, unknown = faulty_zoo.select(["default"])
    assert unknown == [] and {"broken-default", ".", "..", "Tiny"} <= set(models)  # broken ones too
    outcomes = {o.model_id: o for o in Runner(faulty_zoo, corpus, RunConfig(metric_settings=FAST, batch_size=4), store, "r",
                                             log=lambda s: None).run(models)}
    for good in ("tiny", "tiny-decoder", "tiny-control"):
        assert sorted(outcomes[good].computed) == sorted(SPECS) and not outcomes[good].failed, good
    expected = {
        "truncated": "load: SafetensorError: Error while deserializing header: incomplete metadata",
        "empty": "load: SafetensorError: Error while deserializing header: header too small",
        "all-nan": "load: non-finite weights (NaN or inf) in embeddings.word_embeddings.weight, ",
        "one-nan": "load: non-finite weights (NaN or inf) in encoder.layer.1.output.dense.weight",
        "negative": "load: config: intermediate_size = -64 is not a sane size (1 to 524288)",
        "no-tokenizer": "load: no tokenizer files in",
        "foreign-vocab": "load: 100% of the probe tokens are the unknown token",
        "unreadable": "weights: cannot read the weights",
        "full-disk": "writing rank_deficiency: OSError: [Errno 28] No space left on device",
        "offline-hub": "weights: cannot reach the hub at https://huggingface.co (HF_HUB_OFFLINE is set)",
        "broken-default": "invalid zoo entry: ",
        ".": "'id' must not be '.'",
        "..": "'id' must not be '..'",
        "Tiny": "same result folder as entry #1 ('tiny') on case-insensitive file systems",
    }
    for model, text in expected.items():
        messages = set(outcomes[model].failed.values())
        assert len(outcomes[model].failed) == len(SPECS) and len(messages) == 1, (model, messages)
        message = messages.pop()
        assert text in message and "\n" not in message and len(message) <= MAX_MESSAGE, (model, message)
        assert "INTERNAL ASSERT" not in message and "Traceback" not in message
    rows = ResultQuery(store).all_rows()
    failed = rows[rows["status"] == "failed"]
    assert set(failed["model_id"]) == set(expected) - {"full-disk"}  # a full disk cannot record its failure
    assert set(rows.loc[rows["status"] == "ok", "model_id"]) == {"tiny", "tiny-decoder", "tiny-control"}
    assert (failed["error"].str.len() <= MAX_MESSAGE).all() and not failed["error"].str.contains("\n").any()
    assert not any(e.startswith(f"{model}:") for model, e in zip(failed["model_id"], failed["error"], strict=True))


def test_a_broken_entry_with_the_default_tag_is_not_skipped_silently(faulty_zoo):
    names = faulty_zoo.select(None)[0]
    assert "broken-default" in names
    assert str(next(e for e in faulty_zoo.errors if e.entry_id == "broken-default")).endswith("unknown key 'colour'")
