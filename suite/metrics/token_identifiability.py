"""Metric: token identifiability per layer for each mapping g and distance, with intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from idsuite.suite.metrics.base import RowBuffer, progress_bar
from idsuite.suite.specs.token_identifiability import SPEC, IdentifiabilityConfig
from idsuite.suite.token_identifiability import ScoredTokens, fit_linear, fit_mlps, fit_naive
from idsuite.suite.trace import BatchTrace, ModelProbe
from idsuite.suite.uncertainty import ratio_of_sums


class IdentifiabilityMetric:
    spec = SPEC

    def __init__(self, config: IdentifiabilityConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.sequences: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id -> (e^0..e^L (L+1, n, d), ids)

    def update(self, batch: BatchTrace) -> None:
        hidden = batch.hidden_states.float().cpu()
        for b, seq in enumerate(batch.sequence_ids.tolist()):
            n = int(batch.lengths[b])
            self.sequences[seq] = (hidden[:, b, :n].clone(), batch.token_ids[b, :n].cpu())

    def split(self) -> tuple[list[int], list[int], list[int]]:
        """Seeded split of the sequences into those the maps are fitted on, those whose loss decides
        when an MLP stops (a share of the training sequences), and the scored (test) ones."""
        ids = sorted(self.sequences)
        gen = torch.Generator().manual_seed(self.seed)
        order = [ids[i] for i in torch.randperm(len(ids), generator=gen).tolist()]
        n_train = min(max(2, round(self.config.train_fraction * len(ids))), len(ids) - 1)
        n_held = min(max(1, round(self.config.heldout_fraction * n_train)), n_train - 1)
        return order[n_held:n_train], order[:n_held], order[n_train:]

    def _tokens(self, ids: list[int], cap: int, seed: int) -> torch.Tensor:
        """(L+1, T, d) hidden states of a seeded sample of at most ``cap`` tokens of ``ids``."""
        hidden = torch.cat([self.sequences[s][0] for s in ids], dim=1)
        sample = torch.randperm(hidden.shape[1], generator=torch.Generator().manual_seed(seed))[:cap]
        return hidden[:, sample]

    def finish(self, probe: ModelProbe | None) -> pd.DataFrame:
        """Rates per layer with their bootstrap intervals over the scored sequences, the rate of each
        scored sequence, and how each MLP map was fitted."""
        if len(self.sequences) < 3:
            raise ValueError("token identifiability needs at least three sequences (to fit, to stop, to score)")
        rows = RowBuffer(self.spec)
        fit, held, test = self.split()
        fit_h = self._tokens(fit, self.config.max_train_tokens, self.seed)  # (L+1, T, d)
        held_h = self._tokens(held, max(2, self.config.max_train_tokens // 4), self.seed + 1)
        test_h = torch.cat([self.sequences[s][0] for s in test], dim=1)  # (L+1, T, d): the scored tokens end to end
        lengths = torch.tensor([len(self.sequences[s][1]) for s in test])
        scored = ScoredTokens.of(test_h[0], torch.cat([self.sequences[s][1] for s in test]), lengths, self.config.distances)
        n_layers = fit_h.shape[0]
        maps: dict[tuple[str, str, int], object] = {}
        for layer in range(n_layers):
            if "naive" in self.config.mappings:
                naive = fit_naive(fit_h[layer], fit_h[0])
                maps.update({("naive", d, layer): naive for d in self.config.distances})
            if "linear" in self.config.mappings:  # one affine least-squares fit serves both distances
                linear = fit_linear(torch.cat([fit_h[layer], held_h[layer]]), torch.cat([fit_h[0], held_h[0]]))
                maps.update({("linear", d, layer): linear for d in self.config.distances})
        if "mlp" in self.config.mappings:
            self._fit_mlps(fit_h, held_h, maps, rows)
        for layer in range(n_layers):
            predictions: dict[int, torch.Tensor] = {}  # g(e) of each map at this layer: one serving both distances runs once
            for (kind, distance), mapping in sorted((key[:2], m) for key, m in maps.items() if key[2] == layer):
                if id(mapping) not in predictions:
                    predictions[id(mapping)] = mapping(test_h[layer])
                hits, counts = scored.identified(predictions[id(mapping)], distance)
                hits, counts = hits.double().numpy(), counts.double().numpy()
                variant = f"{kind}/{distance}"
                rows.add_estimate(variant, ratio_of_sums(hits, counts, "tokens", self.seed), layer)
                rows.add(variant, hits / counts, layer, sequence=test, n=counts.astype(np.int64), n_unit="tokens")
        return rows.frame()

    def _fit_mlps(self, fit_h: torch.Tensor, held_h: torch.Tensor, maps: dict, rows: RowBuffer) -> None:
        """Every layer's and distance's MLP in one batched fit; records how each converged."""
        distances = list(self.config.distances)
        groups = [(layer, d) for layer in range(fit_h.shape[0]) for d in distances]
        hidden = torch.cat([fit_h, held_h], dim=1)[[layer for layer, _ in groups]]  # (G, T + T_held, d)
        inputs = torch.cat([fit_h[0], held_h[0]])
        heldout = torch.arange(hidden.shape[1]) >= fit_h.shape[1]
        width = self.config.mlp_hidden_size or hidden.shape[-1]
        with progress_bar("MLP maps g converged", len(groups), "map") as bar:

            def progress(epoch: int, converged: int) -> None:
                bar.set_postfix(epoch=epoch)
                bar.update(converged - bar.n)

            mappings, fits = fit_mlps(hidden, inputs, [d for _, d in groups], heldout, self.seed, width,
                                      self.config.mlp_lr, self.config.mlp_batch_size, self.config.mlp_max_epochs,
                                      self.config.mlp_patience, self.config.mlp_tolerance, progress,
                                      self.config.mlp_precision)
        for k, (layer, distance) in enumerate(groups):
            maps[("mlp", distance, layer)] = mappings[k]
            for what, value in (("train_loss", fits.train_loss[k]), ("heldout_loss", fits.heldout_loss[k]),
                                ("epochs", fits.epochs[k]), ("converged", fits.converged[k])):
                rows.add(f"mlp/{distance}:{what}", float(value), layer)
