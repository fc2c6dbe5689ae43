"""Metric: feasible attention, how far attention rows can move without changing a head's output.

The LPs (``idsuite.suite.feasible_attention``) are solved in ``finish``, sequence by sequence in the
sample's order (``StraddlingSample``) until every layer's mean top-key width is known to the target
precision. While the forward passes run, the metric keeps what they need of the sequences that can
be in the sample: for at most ``max_sequences`` sequences on each side of d_h (the lowest corpus
indices, which any prefix of the sample's order draws from), each layer's values ``V_h`` and the
sampled rows of ``A_h``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from idsuite.suite.feasible_attention import FeasibleRow, head_rows
from idsuite.suite.metrics.base import RowBuffer, layer_head_grid, sample_until_precise, say
from idsuite.suite.null_space import output_factor
from idsuite.suite.specs.feasible_attention import SPEC, FeasibleAttentionConfig
from idsuite.suite.trace import BatchTrace, ModelProbe
from idsuite.suite.uncertainty import Estimate, ratio_of_sums

PER_ROW = ("top_width", "top_identifiable", "dimension")


@dataclass
class _Kept:
    """A sequence that can be in the sample: its sampled ``rows`` (query positions), and per layer
    its values (H, n, d_h) as traced and ``A_h`` (H, r, n) and the allowed keys (r, n) at
    ``rows`` followed by its last ``example_rows`` rows."""

    sequence: int
    n: int
    rows: np.ndarray
    tokens: list[str]
    values: list[torch.Tensor] = field(default_factory=list)
    attention: list[np.ndarray] = field(default_factory=list)
    allowed: list[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class _Solved:
    """One sampled sequence: per (layer, head) the sums over its sampled rows of each per-row
    quantity (L, H), the rows (r), and the LPs solved."""

    sequence: int
    n: int
    sums: dict[str, np.ndarray]
    rows: int
    lps: int


class FeasibleAttentionMetric:
    spec = SPEC

    def __init__(self, config: FeasibleAttentionConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.seen: list[tuple[int, int]] = []  # (sequence id, n) of every probe sequence
        self.d_head = 0
        self.kept: dict[int, _Kept] = {}
        self.factors: list[torch.Tensor] = []  # F_h per layer (H, d_h, d_h), float64
        self.batch_kept: list[tuple[int, _Kept]] = []  # (batch index, kept) of this batch
        self.consumed = 0  # layers of this batch read so far

    @property
    def cap(self) -> int:
        return self.config.token_cap(self.d_head)

    def _keep(self, batch: BatchTrace) -> None:
        """Which of the batch's sequences can be in the sample; drop kept ones that no longer can."""
        self.d_head = batch.d_head
        self.batch_kept = []
        for b, (seq, n) in enumerate(zip(batch.sequence_ids.tolist(), batch.lengths.tolist(), strict=True)):
            self.seen.append((seq, n))
            if n > self.cap:
                continue
            rng = np.random.default_rng([self.seed, seq])
            rows = np.sort(rng.choice(n, size=min(self.config.rows_per_sequence, n), replace=False))
            self.kept[seq] = _Kept(seq, n, rows, batch.tokens[b] if batch.tokens else [])
            self.batch_kept.append((b, self.kept[seq]))
        for long in (True, False):
            stratum = sorted(s for s, k in self.kept.items() if (k.n > self.d_head) == long)
            for seq in stratum[self.config.max_sequences :]:
                del self.kept[seq]
        self.batch_kept = [(b, k) for b, k in self.batch_kept if k.sequence in self.kept]

    def update_layer(self, batch: BatchTrace, index: int) -> None:
        """Layer ``index`` (0-based) of the batch, as the forward pass hands it over."""
        if index == 0:
            self._keep(batch)
        self.consumed = index + 1
        trace = batch.layers[index]
        if len(self.factors) == index:
            factor = trace.output_factor if trace.output_factor is not None else output_factor(trace.w_out)
            self.factors.append(factor.double().cpu())
        if not self.batch_kept:
            return
        allowed = batch.allowed(index)
        for b, kept in self.batch_kept:
            n = kept.n
            rows = torch.as_tensor(np.concatenate([kept.rows, np.arange(max(0, n - self.config.example_rows), n)]))
            kept.values.append(trace.values[b, :, :n].cpu().clone())
            kept.attention.append(trace.attention[b][:, rows.to(trace.attention.device), :n].double().cpu().numpy())
            kept.allowed.append(allowed[b][rows.to(allowed.device), :n].cpu().numpy())

    def update(self, batch: BatchTrace) -> None:
        """Close the batch; layers the trace kept (a pass without a ``LayerConsumer``) are read here."""
        for index in range(self.consumed, len(batch.layers)):
            self.update_layer(batch, index)
        self.batch_kept, self.consumed = [], 0

    def _solve(self, kept: _Kept, rows: slice, top_keys: int | None) -> list[list[list[FeasibleRow]]]:
        """``head_rows`` of the stored rows ``rows`` of every layer and head ([layer][head][row])."""
        out = []
        for values, attention, allowed, factor in zip(kept.values, kept.attention, kept.allowed, self.factors,
                                                      strict=True):
            reduced = (values.double() @ factor).numpy()  # V_h F_h, as null_space.reduced_values
            out.append([head_rows(attention[h, rows], reduced[h], allowed[rows], top_keys or kept.n)
                        for h in range(len(reduced))])
        return out

    def _sequence(self, kept: _Kept) -> _Solved:
        found = self._solve(kept, slice(0, len(kept.rows)), self.config.top_keys)
        sums = {
            "top_width": np.array([[sum(r.width for r in head) for head in layer] for layer in found]),
            "top_identifiable": np.array([[sum(r.identifiable for r in head) for head in layer] for layer in found]),
            "dimension": np.array([[sum(r.dimension for r in head) for head in layer] for layer in found]),
        }
        lps = sum(r.lps for layer in found for head in layer for r in head)
        return _Solved(kept.sequence, kept.n, {k: v.astype(np.float64) for k, v in sums.items()}, len(kept.rows), lps)

    def _estimates(self, done: list[_Solved], per_layer: bool) -> dict[str, Estimate]:
        """Per-layer means over sampled rows and heads (``per_layer``) or per-head means over rows."""
        out = {}
        for name in PER_ROW:
            sums = np.stack([s.sums[name] for s in done])  # (S, L, H)
            counts = np.array([s.rows for s in done], dtype=np.float64).reshape(-1, 1, 1)
            if per_layer:
                out[name] = ratio_of_sums(sums.sum(-1), counts[..., 0] * sums.shape[-1], "head-rows", self.seed)
            else:
                out[name] = ratio_of_sums(sums, counts, "rows", self.seed)
        return out

    def _widest(self, done: list[_Solved]) -> float:
        """The sample's target: the half-width of the widest layer's interval of the mean top-key width."""
        return float(np.nanmax(self._estimates(done, per_layer=True)["top_width"].half_width))

    def finish(self, probe: ModelProbe | None) -> pd.DataFrame:
        """Per head, per layer and for the whole model (the mean over layers), each with its
        bootstrap interval over the sampled sequences; per sampled sequence and layer; the example
        sequence's rows with every key's interval; and what was sampled and left out."""
        rows = RowBuffer(self.spec)
        eligible = [(s, n) for s, n in self.seen if n <= self.cap]
        todo = self.config.order([(s, k.n) for s, k in self.kept.items()], self.d_head)[: self.config.max_sequences]
        start = time.perf_counter()
        done = sample_until_precise(todo, lambda item: self._sequence(self.kept[item[0]]), self._widest, self.config,
                                    "feasible attention", "widest layer")
        if done:  # the time is said, not stored: a stored row is the same on every machine
            say(self.spec.name, f"{sum(s.lps for s in done)} LPs in {time.perf_counter() - start:.1f} s")
            self._aggregate_rows(rows, done)
            self._example_rows(rows, done)
        self._count_rows(rows, done, len(eligible))
        return rows.frame()

    def _aggregate_rows(self, rows: RowBuffer, done: list[_Solved]) -> None:
        per_head, per_layer = self._estimates(done, per_layer=False), self._estimates(done, per_layer=True)
        n_layers, h = done[0].sums["top_width"].shape
        layers, heads = layer_head_grid(n_layers, h)
        counts = np.array([[s.rows * h] for s in done], dtype=np.float64)
        for name in PER_ROW:
            rows.add_estimate(name, per_head[name], layers, heads)
            rows.add_estimate(name, per_layer[name], np.arange(1, n_layers + 1))
            sums = np.stack([s.sums[name].sum(-1) for s in done])  # (S, L)
            rows.add_estimate(name, ratio_of_sums(sums, counts, "head-rows", self.seed, average_axis=0))
            for s in done:
                rows.add(name, s.sums[name].sum(-1) / (s.rows * h), np.arange(1, n_layers + 1), sequence=[s.sequence],
                         n_tokens=[s.n], n=[s.rows * h], n_unit="head-rows")

    def _example_rows(self, rows: RowBuffer, done: list[_Solved]) -> None:
        """The example sequence's last rows, every key's interval, per layer and head."""
        candidates = [(0, s.n, s.sequence) if s.n > self.d_head else (1, -s.n, s.sequence) for s in done
                      if s.n <= self.config.map_max_tokens]
        if not candidates:
            return
        kept = self.kept[min(candidates)[2]]
        n, seq = kept.n, kept.sequence
        if kept.tokens:
            rows.add("token", np.zeros(n), sequence=[seq], key=np.arange(n), label=kept.tokens, n_tokens=[n])
        tail = slice(len(kept.rows), None)
        for layer, (found, attention) in enumerate(zip(self._solve(kept, tail, None), kept.attention, strict=True),
                                                   start=1):
            queries = np.arange(max(0, n - self.config.example_rows), n)
            for head, head_found in enumerate(found):
                for query, row in zip(queries, head_found, strict=True):
                    weight = attention[head, len(kept.rows) + query - queries[0], row.keys]
                    for name, value in (("map_weight", weight), ("map_low", row.low), ("map_high", row.high)):
                        rows.add(name, value, layer, head, [seq], [n], query, row.keys)

    def _count_rows(self, rows: RowBuffer, done: list[_Solved], eligible: int) -> None:
        cap = f"{self.cap} tokens ({self.config.cap_reason(self.d_head)})"
        long = sum(s.n > self.d_head for s in done)
        if done:
            stop = self.config.stop_note(len(done), eligible, "widest layer's top-key width", self._widest(done))
            label = (f"{len(done)} of {eligible} eligible sequences of at most {cap}: {long} longer than d_h = "
                     f"{self.d_head}, {len(done) - long} not{self.config.straddle_note(long, self.d_head)}; "
                     f"{sum(s.rows for s in done)} rows per head, {sum(s.lps for s in done)} LPs; {stop}")
        else:
            label = f"no sequence solved: none of the {len(self.seen)} probe sequences has at most {cap}"
        rows.add("sampled_sequences", float(len(done)), label=[label], n=[sum(s.rows for s in done)], n_unit="rows")
        skipped = [n for _, n in self.seen if n > self.cap]
        text = f"{len(skipped)} probe sequences left out for being longer than the cap of {cap}"
        rows.add("skipped_sequences", float(len(skipped)), label=[text + (f"; the shortest of them has {min(skipped)} "
                                                                           "tokens" if skipped else "")])
