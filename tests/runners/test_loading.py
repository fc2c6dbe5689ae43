"""Config entries (``source: config``) through the real loading path: a model from a config alone,
its weights drawn from the entry's init seed, its fingerprint naming the config, seed and tokenizer."""

import json
import textwrap

import pytest
import torch
import transformers

from idsuite.runners.failures import ModelFailure
from idsuite.runners.models.loading import config_of, load_model
from idsuite.runners.models.weights import ModelLoadError, fingerprint, model_commit
from idsuite.runners.models.zoo import ConfigEntry, load_zoo
from tests.conftest import VOCAB

TINY_LLAMA = {"model_type": "llama", "vocab_size": len(VOCAB), "hidden_size": 32, "num_attention_heads": 4,
              "num_key_value_heads": 2, "num_hidden_layers": 2, "intermediate_size": 64}
"""The fields of ``tests.conftest.TINY_CONFIGS['llama']`` that differ from LlamaConfig's defaults."""


@pytest.fixture
def zoo(tmp_path, tiny_llama_dir):
    (tmp_path / "tiny.json").write_text(json.dumps(TINY_LLAMA, indent=2))
    (tmp_path / "models.yaml").write_text(textwrap.dedent(f"""
        models:
          - {{id: tiny, source: local, path: {tiny_llama_dir}}}
          - {{id: shape, source: config, config: tiny.json, tokenizer: tiny, tags: [sweep]}}
          - {{id: shape-again, source: config, config: tiny.json, tokenizer: tiny}}
          - {{id: shape-seed-1, source: config, config: tiny.json, tokenizer: tiny, init_seed: 1}}
          - {{id: shape-deeper, source: config, config: tiny.json, tokenizer: tiny, overrides: {{num_hidden_layers: 3}}}}
          - {{id: shape-typo, source: config, config: tiny.json, tokenizer: tiny, overrides: {{num_hiden_layers: 3}}}}
          - {{id: shape-missing, source: config, config: absent/config.json, tokenizer: tiny}}
          - {{id: shape-small-vocab, source: config, config: tiny.json, tokenizer: tiny, overrides: {{vocab_size: 8}}}}
          - {{id: shape-hub, source: config, repo: org/not-cached, tokenizer: tiny}}
    """))
    return load_zoo(tmp_path / "models.yaml")


def weights(model: transformers.PreTrainedModel) -> dict[str, torch.Tensor]:
    return dict(model.state_dict())


def test_a_config_entry_draws_the_weights_its_seed_gives_and_uses_its_tokenizer_entry(zoo, tiny_llama_dir):
    assert zoo.errors == [] and isinstance(zoo.entries["shape"], ConfigEntry)
    assert zoo.select(["sweep"])[0] == ["shape"]
    loaded = load_model(zoo.entries["shape"], zoo)
    model = loaded.model
    assert type(model) is transformers.LlamaModel and not model.training
    assert model.config._attn_implementation == "eager"
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.num_key_value_heads) == (2, 32, 2)
    assert len(model.layers) == 2 and not any(p.requires_grad for p in model.parameters())
    assert loaded.tokenizer.convert_ids_to_tokens(loaded.tokenizer("a dog .")["input_ids"]) == ["[CLS]", "a", "dog", ".", "[SEP]"]
    # the tiny model of the tests was drawn from the same config after torch.manual_seed(0): the same weights
    saved = weights(transformers.AutoModel.from_pretrained(tiny_llama_dir))
    drawn = weights(model)
    assert drawn.keys() == saved.keys()
    assert all(torch.equal(drawn[name], saved[name]) for name in saved)


def test_same_config_and_seed_give_the_same_weights_and_fingerprint(zoo, tmp_path):
    first, again = (load_model(zoo.entries[i], zoo).model for i in ("shape", "shape-again"))
    assert all(torch.equal(a, b) for a, b in zip(weights(first).values(), weights(again).values(), strict=True))
    tiny = fingerprint(zoo.entries["tiny"], zoo)
    assert fingerprint(zoo.entries["shape"], zoo) == fingerprint(zoo.entries["shape-again"], zoo)
    assert fingerprint(zoo.entries["shape"], zoo).startswith("config(seed=0):sha256=")
    assert fingerprint(zoo.entries["shape"], zoo).endswith(f",tokenizer={tiny}")
    # the same fields written another way (order, spacing, an override to the value the file has)
    (tmp_path / "respelt.json").write_text(json.dumps(dict(reversed(TINY_LLAMA.items()))))
    respelt = zoo.entries["shape"].model_copy(update={"config": "respelt.json", "overrides": {"hidden_size": 32}})
    assert fingerprint(respelt, zoo) == fingerprint(zoo.entries["shape"], zoo)


def test_another_seed_or_override_gives_other_weights_and_another_fingerprint(zoo):
    prints = {i: fingerprint(zoo.entries[i], zoo) for i in ("shape", "shape-seed-1", "shape-deeper")}
    assert len(set(prints.values())) == 3
    assert prints["shape-seed-1"].startswith("config(seed=1):")
    first, other = (load_model(zoo.entries[i], zoo).model for i in ("shape", "shape-seed-1"))
    assert not torch.equal(weights(first)["layers.0.self_attn.v_proj.weight"], weights(other)["layers.0.self_attn.v_proj.weight"])
    deeper = load_model(zoo.entries["shape-deeper"], zoo).model
    assert len(deeper.layers) == 3 and deeper.config.num_hidden_layers == 3 and deeper.config.hidden_size == 32


def test_a_bad_config_entry_fails_with_one_line_naming_the_file_and_what_is_wrong(zoo, tmp_path):
    cases = {
        "shape-typo": f"'overrides': config file {str(tmp_path / 'tiny.json')!r} has no field 'num_hiden_layers'",
        "shape-missing": f"config file {str(tmp_path / 'absent' / 'config.json')!r} does not exist",
        "shape-hub": "cannot reach the hub at https://huggingface.co (HF_HUB_OFFLINE is set), and org/not-cached@main is not in the "
                     "local cache",
    }
    for entry_id, message in cases.items():
        for attempt in (lambda e: fingerprint(e, zoo), lambda e: load_model(e, zoo)):
            with pytest.raises(ModelLoadError) as caught:
                attempt(zoo.entries[entry_id])
            assert str(caught.value) == message
    with pytest.raises(ModelFailure) as caught:
        load_model(zoo.entries["shape-small-vocab"], zoo)
    assert str(caught.value) == f"the tokenizer of 'tiny' has {len(VOCAB)} tokens, more than the config's vocab_size 8"
    (tmp_path / "tiny.json").write_text('{"hidden_size": 32}')
    with pytest.raises(ModelLoadError, match=r"tiny.json' has no 'model_type' \(not a transformers config.json\)$"):
        fingerprint(zoo.entries["shape"], zoo)
    (tmp_path / "tiny.json").write_text('{"model_type": "no-such-model"}')
    with pytest.raises(ModelLoadError, match=r"^model_type 'no-such-model' of 'tiny.json' is unknown to transformers"):
        load_model(zoo.entries["shape"], zoo)


SHAPES = {
    "SmolLM2-135M-shape": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                               intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True, rms_norm_eps=1e-5,
                               max_position_embeddings=8192),
    "Llama-3.2-1B-shape": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                               head_dim=64, intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True,
                               rms_norm_eps=1e-5, max_position_embeddings=131072),
}
ROPE = {
    "SmolLM2-135M-shape": (100000, {}),
    "Llama-3.2-1B-shape": (500000, {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 8192}),
}


def rope(config: transformers.PretrainedConfig) -> tuple[float, dict]:
    """(theta, scaling) whether transformers keeps them apart (4.x: ``rope_theta``, ``rope_scaling``)
    or in one ``rope_parameters`` dict (5.x); no scaling is ``{}``."""
    parameters = dict(getattr(config, "rope_parameters", None) or {"rope_theta": config.rope_theta, **(config.rope_scaling or {})})
    theta = parameters.pop("rope_theta")
    return theta, {} if parameters.get("rope_type", "default") == "default" else parameters


@pytest.mark.parametrize("entry_id", list(SHAPES))
def test_the_shipped_shape_configs_have_the_real_models_sizes(entry_id):
    zoo = load_zoo()
    entry = zoo.entries[entry_id]
    assert isinstance(entry, ConfigEntry) and entry.tokenizer == "all-MiniLM-L6-v2" and "shape" in entry.tags
    config = config_of(entry, zoo)  # what load_model builds the model from, without building it
    assert config.model_type == "llama"
    assert {key: getattr(config, key) for key in SHAPES[entry_id]} == SHAPES[entry_id]
    assert config.hidden_size // config.num_attention_heads == 64
    assert rope(config) == ROPE[entry_id]


def test_the_fingerprints_of_folders_controls_and_configs_are_of_their_declared_kinds(zoo):
    from idsuite.results.identity import fingerprint_kind
    from idsuite.runners.models.zoo import RandomInitEntry

    control = RandomInitEntry(id="tiny-control", source="random_init", base="tiny")
    zoo.entries["tiny-control"] = control
    kinds = {i: fingerprint_kind(fingerprint(zoo.entries[i], zoo)) for i in ("tiny", "tiny-control", "shape")}
    assert kinds == {"tiny": "folder", "tiny-control": "random_init", "shape": "config"}
    assert model_commit(zoo.entries["tiny"], zoo) is None and model_commit(control, zoo) is None
