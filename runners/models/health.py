"""Checks that stop garbage early: non-finite weights or activations, and broken tokenizers.

A result computed from NaN weights or from a tokenizer that maps most words to the unknown token is
a failure with a clear line, not a result.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from idsuite.runners.failures import ModelFailure, NonFiniteValues

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
                   "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")
"""Any of these in a model folder means it ships a tokenizer (transformers otherwise builds a
five-token fallback that maps every word to the unknown token)."""
MAX_UNKNOWN_SHARE = 0.5
"""A corpus encoded to more unknown tokens than this share (of its non-special tokens) means a
broken or mismatched tokenizer."""


def check_tokenizer_files(folder: Path) -> None:
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelFailure(f"no tokenizer files in {str(folder)!r} (looked for {', '.join(TOKENIZER_FILES[:3])}, ...)")


def check_vocabulary(tokens: int, vocab_size: int | None, tokenizer_of: str) -> None:
    """A tokenizer borrowed from another entry must fit the model's embedding: every one of its
    ``tokens`` ids needs a row, so ``tokens <= vocab_size`` (unchecked where the config names none)."""
    if vocab_size is not None and tokens > vocab_size:
        raise ModelFailure(f"the tokenizer of {tokenizer_of!r} has {tokens} tokens, more than the config's "
                           f"vocab_size {vocab_size}")


def check_weights(named: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Raise ``NonFiniteValues`` naming the first tensors that hold NaN or inf."""
    bad = [name for name, tensor in named if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        more = f" and {len(bad) - 2} more" if len(bad) > 2 else ""
        raise NonFiniteValues(f"non-finite weights (NaN or inf) in {', '.join(bad[:2])}{more}")


def check_activations(hidden_states: torch.Tensor, valid: torch.Tensor) -> None:
    """``hidden_states`` (L+1, B, N, d), ``valid`` (B, N): raise naming the first layer with NaN or
    inf at a real token (layer 0 is the embedding output)."""
    finite = torch.isfinite(hidden_states).all(-1) | ~valid  # padding may hold anything
    bad = (~finite).flatten(1).any(-1).nonzero()
    if len(bad):
        layer = int(bad[0])
        where = "the embedding output" if layer == 0 else f"the hidden states after layer {layer} of {len(finite) - 1}"
        raise NonFiniteValues(f"non-finite values (NaN or inf) in {where}")


def check_unknown_share(token_ids: Iterable[list[int]], unk_id: int | None, special_ids: set[int]) -> None:
    """Raise when more than ``MAX_UNKNOWN_SHARE`` of the corpus' non-special tokens are unknown."""
    if unk_id is None:
        return
    total = unknown = 0
    for ids in token_ids:
        for i in ids:
            if i not in special_ids:
                total += 1
                unknown += i == unk_id
    if total and unknown / total > MAX_UNKNOWN_SHARE:
        raise ModelFailure(f"{unknown / total:.0%} of the probe tokens are the unknown token: the tokenizer is broken "
                           "or does not belong to the model")
