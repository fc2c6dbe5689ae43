"""Cutting a corpus into forward-pass batches: sequences in order of length, so that padding stays
small, each batch at most ``batch_size`` sequences and ``map_elements`` attention-map entries
(sequences x heads x n^2, with n the batch's longest sequence)."""

from __future__ import annotations

from collections.abc import Mapping


def length_batches(lengths: Mapping[int, int], n_heads: int, batch_size: int, map_elements: float) -> list[list[int]]:
    """Batches of the sequence ids of ``lengths`` (id -> tokens), sorted by (length, id); a sequence
    whose map alone exceeds ``map_elements`` goes alone."""
    batches: list[list[int]] = []
    for s in sorted(lengths, key=lambda s: (lengths[s], s)):
        n = lengths[s]  # the longest so far: the order is by length
        current = batches[-1] if batches else []
        fits = len(current) < batch_size and (len(current) + 1) * n_heads * n * n <= map_elements
        if current and fits:
            current.append(s)
        else:
            batches.append([s])
    return batches
