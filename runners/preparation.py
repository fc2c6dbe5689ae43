"""Getting one model ready for the battery: load it, encode the corpus with its tokenizer, check
the encoding, and read the model facts (the ``fact`` columns of ``idsuite.results.schema``) off the
loaded model, the entry and the encoded corpus."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from idsuite.runners.failures import ModelFailure
from idsuite.runners.models.adapters import adapter_for
from idsuite.runners.models.health import check_unknown_share
from idsuite.runners.models.loading import load_model
from idsuite.runners.models.zoo import Zoo
from idsuite.runners.probing.corpus import Corpus
from idsuite.runners.probing.tracing import Tracer
from idsuite.runners.run_config import RunConfig


@dataclass
class PreparedModel:
    """A loaded model's tracer, holding the encoded corpus, and its facts: a value for every fact
    column of the schema (``tests/runners/test_jobs.py`` checks that none is left out)."""

    tracer: Tracer
    facts: dict[str, Any]


def prepare_model(entry: Any, zoo: Zoo, corpus: Corpus, config: RunConfig, init_seed: int | None) -> PreparedModel:
    """Load ``entry`` (``init_seed``: a control's seed) on the run's device and dtype, and encode
    ``corpus`` under ``config.max_tokens``. Raises ``ModelFailure`` when fewer than two sequences are
    left to measure or the tokenizer maps too much of the corpus to its unknown token."""
    loaded = load_model(entry, zoo, config.resolved_device(), config.forward_dtype(entry.dtype), init_seed)
    adapter = adapter_for(loaded.model.config.model_type)
    tracer = Tracer(loaded.model, loaded.tokenizer, adapter)
    tokenizer = loaded.tokenizer
    tracer.encode(corpus.items, config.max_tokens)
    empty = tracer.special_only  # sequences of special tokens only: nothing of the sentence is left to measure
    if len(tracer.encodings) < 2:
        why = f"; {empty} of the {len(corpus.items)} tokenize to special tokens only" if empty else ""
        raise ModelFailure(f"fewer than two probe sequences fit in {config.max_tokens} tokens and hold a token "
                           f"that is not special{why}")
    special = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    check_unknown_share((e["input_ids"] for e in tracer.encodings.values()), tokenizer.unk_token_id, special)
    model_config = loaded.model.config
    facts = {
        "family": entry.family or model_config.model_type,
        "model_type": model_config.model_type,
        "causal": adapter.causal,
        "n_params": sum(p.numel() for p in loaded.model.parameters()),
        "n_layers": len(tracer.blocks),
        "n_heads": tracer.n_heads,
        "n_kv_heads": int(getattr(model_config, "num_key_value_heads", None) or tracer.n_heads),
        "d_head": tracer.d_head,
        "d_model": int(tracer.w_out[0].shape[-1]),
        "n_sequences": len(tracer.encodings),
    }
    return PreparedModel(tracer, facts)
