"""Context-mixing measures: per layer l, a row-stochastic n x n matrix ``M^l`` whose row i says how
token i's representation mixes the tokens, and scores of their agreement with Jacobian attribution.

Symbols as in ``docs/metrics.md``: ``A_h`` (n, n) attention of query head h, ``F_h[j] = V_h[j] W_O^h``
(n, d) the head's transformed value vectors (b_V inside), ``x`` (n, d) the block's input ``e^{l-1}``,
``u_ij = sum_h A_h[i, j] F_h[j]`` (n, n, d) what token j adds to token i's attention output, and
``z_ij = u_ij + delta_ij x_i`` the same with the residual. ``T_ij``: ``z_ij`` carried through the
first norm with its scale frozen at the real input (``MixingLayer``), so ``sum_j T_ij`` plus the
biases is the attention block's real output ``y_i``. The measures (``docs/metrics.md``):

- attention (head mean) and its rollout ``rownorm(M + I)`` (Abnar & Zuidema 2020);
- norm: ``||u_ij||`` (Kobayashi et al. 2020); norm_resln: ``||T_ij||`` (AttnResLn-N, Kobayashi et
  al. 2021; for pre-norm blocks ``T = z``, AttnRes-N) and its mixing ratio;
- globenc: ``T`` carried through the second norm as well (post-norm; the FFN is left out), raw norms
  rolled out (Modarressi et al. 2022);
- alti: ``max(0, ||y_i||_1 - ||y_i - T_ij||_1)`` (Ferrando et al. 2022);
- value_zeroing: ``1 - cos(e_i, e_i')`` with token j's values zeroed in the layer (Mohebbi et al. 2023).

Every matrix is row-normalised over the keys a row may use (causal: ``j <= i``) and rolled out
``R^l = M^l R^{l-1}`` (only attention adds the identity).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch

from idsuite.suite.specs.context_mixing import MEASURES, Measure

BlockForm = Literal["post", "pre", "sandwich"]


@dataclass(frozen=True)
class MixingLayer:
    """One layer of one sequence, as the measures need it (n tokens, H heads, d).

    ``form``: ``post`` (norm after the residual: BERT), ``pre`` (norm before attention: Llama, GPT-2;
    the norm is inside F), ``sandwich`` (also a norm on the attention output before the residual:
    Gemma 3). ``gain`` (d,), ``scale`` (n,): the first norm's weight and ``1 / sigma(s_i)`` at its
    real input (post: applied to ``C(z_ij)``; sandwich: to ``u_ij``; pre: unused). ``gain2``,
    ``scale2``: the second (post-FFN) norm's, for GlobEnc (post only). ``output`` (n, d): the
    attention block's real output ``y`` (post: the first norm's output; pre: ``x + o``; sandwich:
    ``x + P1(o)``). ``rerun(subtract)``: the layer's output for (B, n, d) reductions of the attention
    output (value zeroing); ``block(h)``: the layer as a function of its input (local Jacobians);
    ``target`` (n, d): the layer's output as the model reports it."""

    form: BlockForm
    residual: torch.Tensor
    attention: torch.Tensor
    transformed: torch.Tensor
    output: torch.Tensor
    target: torch.Tensor
    gain: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    gain2: torch.Tensor | None = None
    scale2: torch.Tensor | None = None
    rerun: Callable[[torch.Tensor], torch.Tensor] | None = None
    block: Callable[[torch.Tensor], torch.Tensor] | None = None


def allowed_keys(n: int, causal: bool, device: torch.device | None = None) -> torch.Tensor:
    keys = torch.ones(n, n, dtype=torch.bool, device=device)
    return keys.tril() if causal else keys


def row_normalise(m: torch.Tensor, causal: bool) -> torch.Tensor:
    """Rows of a non-negative (..., n, n) matrix divided by their sums over the allowed keys (a row
    of zeros stays zero)."""
    m = m.clamp(min=0) * allowed_keys(m.shape[-1], causal, m.device).to(m.dtype)
    total = m.sum(-1, keepdim=True)
    return torch.where(total > 0, m / torch.where(total > 0, total, 1), 0.0)


def head_mixed(attention: torch.Tensor, transformed: torch.Tensor) -> torch.Tensor:
    """``u_ij = sum_h A_h[i, j] F_h[j]`` (n, n, d)."""
    return torch.einsum("hij,hjd->ijd", attention, transformed)


def decomposed(layer: MixingLayer, u: torch.Tensor) -> torch.Tensor:
    """``T_ij`` (n, n, d): ``z_ij`` through the first norm at its frozen scale (post: centred; sandwich:
    the attention part only; pre: ``z`` itself)."""
    n = u.shape[0]
    eye = torch.eye(n, dtype=u.dtype, device=u.device).unsqueeze(-1)
    x = layer.residual.to(u.dtype).unsqueeze(0)  # (1, n, d) -> on the diagonal: residual of row i
    if layer.form == "post":
        z = u + eye * x.transpose(0, 1)
        return layer.gain * (z - z.mean(-1, keepdim=True)) * layer.scale.view(-1, 1, 1)
    if layer.form == "sandwich":
        return layer.gain * u * layer.scale.view(-1, 1, 1) + eye * x.transpose(0, 1)
    return u + eye * x.transpose(0, 1)


def mixing_ratio(t: torch.Tensor, causal: bool) -> torch.Tensor:
    """(n,) ``||sum_{j != i} T_ij|| / (||sum_{j != i} T_ij|| + ||T_ii||)``: the share of context in
    token i's attention block output (Kobayashi et al. 2021)."""
    n = t.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=t.device) & allowed_keys(n, causal, t.device)
    context = torch.linalg.vector_norm((t * off.unsqueeze(-1)).sum(1), dim=-1)
    own = torch.linalg.vector_norm(t.diagonal(dim1=0, dim2=1).T, dim=-1)
    return context / (context + own).clamp(min=torch.finfo(t.dtype).tiny)


def globenc_norms(layer: MixingLayer, t: torch.Tensor) -> torch.Tensor:
    """(n, n) raw GlobEnc norms: post-norm ``||gain2 C(T_ij) scale2_i||`` (through the second norm; the
    FFN output is in no term), else ``||T_ij||`` (a pre-norm block has no norm on its residual path)."""
    if layer.form == "post" and layer.gain2 is not None:
        t = layer.gain2 * (t - t.mean(-1, keepdim=True)) * layer.scale2.view(-1, 1, 1)
    return torch.linalg.vector_norm(t, dim=-1)


def alti_contributions(t: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """(n, n) ``max(0, ||y_i||_1 - ||y_i - T_ij||_1)`` (Ferrando et al. 2022), before normalising."""
    y = output.to(t.dtype)
    return (torch.linalg.vector_norm(y, ord=1, dim=-1).unsqueeze(-1)
            - torch.linalg.vector_norm(y.unsqueeze(1) - t, ord=1, dim=-1)).clamp(min=0)


def value_zeroing_distances(clean: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
    """(n, n) ``s_ij = 1 - cos(e_i, e_i^(j))`` for ``clean`` (n, d) and ``changed`` (n_j, n_i, d), as
    ``0.5 ||e_i/|e_i| - e_i^(j)/|e_i^(j)|||^2`` in float64 (decoder residual streams are large, so the
    distances can be below float32's resolution when taken as ``1 - <a, b>``)."""
    a = torch.nn.functional.normalize(clean.double(), dim=-1).unsqueeze(0)
    b = torch.nn.functional.normalize(changed.double(), dim=-1)
    return (0.5 * (a - b).square().sum(-1)).T  # (i, j)


@dataclass
class LayerParts:
    """What the measures read of one layer, each computed once when first asked for: ``u`` (n, n, d)
    and ``T`` (n, n, d)."""

    layer: MixingLayer
    causal: bool

    @cached_property
    def u(self) -> torch.Tensor:
        return head_mixed(self.layer.attention.double(), self.layer.transformed.double())

    @cached_property
    def t(self) -> torch.Tensor:
        return decomposed(self.layer, self.u)


def _value_zeroing(parts: LayerParts) -> torch.Tensor:
    changed = parts.layer.rerun(parts.u.transpose(0, 1).to(parts.layer.residual.dtype))  # row j: token j's values zeroed
    return value_zeroing_distances(parts.layer.target, changed)


RAW_MATRICES: dict[str, Callable[[LayerParts], torch.Tensor]] = {
    "attention": lambda p: p.layer.attention.double().mean(0),
    "norm": lambda p: torch.linalg.vector_norm(p.u, dim=-1),
    "norm_resln": lambda p: torch.linalg.vector_norm(p.t, dim=-1),
    "globenc": lambda p: globenc_norms(p.layer, p.t),
    "alti": lambda p: alti_contributions(p.t, p.layer.output.double()),
    "value_zeroing": _value_zeroing,
}
"""Each declared measure's one-layer matrix before normalising (``MEASURES`` names them all)."""
assert set(RAW_MATRICES) == {m.name for m in MEASURES}, "every declared measure has its maths, and only those"


def measure_matrix(measure: Measure, parts: LayerParts) -> torch.Tensor:
    """One measure's one-layer matrix (n, n): row-normalised over the allowed keys, or (a raw
    product, GlobEnc) raw on the allowed keys, rolled out unnormalised."""
    raw = RAW_MATRICES[measure.name](parts)
    if measure.raw_product:
        return raw * allowed_keys(raw.shape[0], parts.causal, raw.device)
    return row_normalise(raw, parts.causal)


def local_matrices(layer: MixingLayer, causal: bool) -> dict[str, torch.Tensor]:
    """Every measure's one-layer matrix (n, n) (``measure_matrix``); value zeroing only where the
    layer can be re-run."""
    parts = LayerParts(layer, causal)
    return {m.name: measure_matrix(m, parts) for m in MEASURES if layer.rerun is not None or not m.needs_rerun}


def rollout(matrices: list[torch.Tensor], causal: bool, identity: bool = False, normalise_each: bool = True
            ) -> torch.Tensor:
    """(L, n, n) ``R^l = M~^l R^{l-1}``, ``R^1 = M~^1``: with ``identity``, ``M~ = rownorm(M + I)``
    (attention rollout); without ``normalise_each``, raw matrices are multiplied and each product is
    row-normalised for reporting (GlobEnc)."""
    out, current = [], None
    for m in matrices:
        step = m + torch.eye(m.shape[-1], dtype=m.dtype, device=m.device) if identity else m
        step = row_normalise(step, causal) if normalise_each or identity else step
        current = step if current is None else step @ current
        out.append(current if normalise_each or identity else row_normalise(current, causal))
    return torch.stack(out)


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks along the last axis (ties share their mean rank)."""
    order = x.argsort(-1)
    ranks = torch.empty_like(x)
    ranks.scatter_(-1, order, torch.arange(x.shape[-1], dtype=x.dtype, device=x.device).expand_as(x))
    same = x.unsqueeze(-1) == x.unsqueeze(-2)  # (..., n, n)
    return (same.to(x.dtype) @ ranks.unsqueeze(-1)).squeeze(-1) / same.sum(-1)


@dataclass(frozen=True)
class Agreement:
    """Per-token agreement of a measure's rows with reference rows (both (n, n)): ``spearman`` (n,)
    over the keys a row may use (NaN for rows with fewer than three keys or constant rows),
    ``top`` (n,) whether the top contributor is the same, ``own_error`` (n,) ``|M_ii - c_ii|``."""

    spearman: torch.Tensor
    top: torch.Tensor
    own_error: torch.Tensor


def agreement(measure: torch.Tensor, reference: torch.Tensor, causal: bool) -> Agreement:
    n = measure.shape[-1]
    spearman = torch.full((n,), float("nan"), dtype=torch.float64)
    for i in range(n):
        keys = i + 1 if causal else n
        if keys < 3:
            continue
        a, b = _ranks(measure[i, :keys].double()), _ranks(reference[i, :keys].double())
        a, b = a - a.mean(), b - b.mean()
        denom = (a.square().sum() * b.square().sum()).sqrt()
        if denom > 0:
            spearman[i] = (a * b).sum() / denom
    top = measure.argmax(-1) == reference.argmax(-1)
    own = (measure.diagonal() - reference.diagonal()).abs()
    return Agreement(spearman, top, own.double())
