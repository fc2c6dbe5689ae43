"""What the context-mixing measures need from a model, for one sequence: every layer's attention,
transformed values, residual input, real attention-block output and norm scales, and the layer as a
function (``idsuite.suite.context_mixing.MixingLayer``).

One forward pass with hooks records, per layer, the block's call (its arguments), its value and
attention-output projections, and the norms named by the adapter. A layer is then re-run alone from
its recorded call: for value zeroing with the attention output reduced by what a token contributed
(a batch of all tokens at once: zeroing token j's values changes no attention weight, so it takes
exactly ``u_ij`` off row i's attention output), and for local Jacobians as a function of its input.
The re-run must reproduce the layer's own output (through the final norm at a decoder's last
layer, as the model reports it), or the probe fails rather than score something else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch

from idsuite.runners.failures import ModelFailure
from idsuite.runners.models.adapters import Adapter
from idsuite.suite.context_mixing import MixingLayer

REPRODUCE_TOLERANCE = 1e-3
"""Relative error allowed between a re-run layer's output and the model's own (float32 noise)."""


def _expand(obj: Any, batch: int) -> Any:
    """Tensors of batch size 1 (two or more dimensions) repeated to ``batch``; containers recursively."""
    if isinstance(obj, torch.Tensor):
        return obj.expand(batch, *obj.shape[1:]) if obj.ndim >= 2 and obj.shape[0] == 1 else obj
    if isinstance(obj, tuple | list):
        return type(obj)(_expand(o, batch) for o in obj)
    if isinstance(obj, dict):
        return {k: _expand(v, batch) for k, v in obj.items()}
    return obj


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple | list) else output


class MixingProbe:
    """Builds ``MixingLayer`` objects for one model (its tracer's model, adapter, blocks and ``W_O``)."""

    def __init__(self, model: torch.nn.Module, adapter: Adapter, blocks: list[torch.nn.Module],
                 w_out: list[torch.Tensor], n_heads: int, d_head: int) -> None:
        self.model, self.adapter, self.blocks, self.w_out = model, adapter, blocks, w_out
        self.n_heads, self.d_head = n_heads, d_head
        self.final_norm = model.get_submodule(adapter.final_norm) if adapter.final_norm else None

    def _unique(self, path: str | None) -> list[torch.nn.Module]:
        if path is None:
            return []
        return list({id(m): m for m in (b.get_submodule(path) for b in self.blocks)}.values())

    @contextmanager
    def _recording(self) -> Iterator[dict[str, list]]:
        seen: dict[str, list] = {"calls": [], "values": [], "outputs": [], "norm1": [], "norm2": []}
        with ExitStack() as stack:
            def hook(modules: list[torch.nn.Module], fn: Callable, **kwargs) -> None:
                for m in modules:
                    stack.callback(m.register_forward_hook(fn, **kwargs).remove)

            for block in {id(b): b for b in self.blocks}.values():
                handle = block.register_forward_pre_hook(lambda m, a, k: seen["calls"].append((m, a, k)),
                                                         with_kwargs=True)
                stack.callback(handle.remove)
            hook(self._unique(self.adapter.value), lambda m, i, o: seen["values"].append(o))
            hook(self._unique(self.adapter.output), lambda m, i, o: seen["outputs"].append(o))
            hook(self._unique(self.adapter.attention_norm), lambda m, i, o: seen["norm1"].append((m, i[0], o)))
            hook(self._unique(self.adapter.ffn_norm), lambda m, i, o: seen["norm2"].append((m, i[0], o)))
            yield seen

    def _rms_gain(self, module: torch.nn.Module) -> torch.Tensor:
        """An RMS norm's elementwise gain, ``norm_gain_offset + weight`` (``Adapter``)."""
        return self.adapter.norm_gain_offset + module.weight.detach().float()

    def _call(self, call: tuple, hidden: torch.Tensor, subtract: torch.Tensor | None, last: bool) -> torch.Tensor:
        """Re-run a recorded block call on ``hidden`` (B, n, d), the attention output reduced by
        ``subtract`` (B, n, d); through the final norm at a decoder's last layer."""
        block, args, kwargs = call
        batch = hidden.shape[0]
        args, kwargs = _expand(args, batch), _expand(kwargs, batch)
        if args:
            args = (hidden, *args[1:])
        else:
            kwargs = {**kwargs, "hidden_states": hidden}
        with ExitStack() as stack:
            if subtract is not None:
                output = block.get_submodule(self.adapter.output)
                stack.callback(output.register_forward_hook(lambda m, i, o: o - subtract.to(o.dtype)).remove)
            out = _first(block(*args, **kwargs))
        return self.final_norm(out) if last and self.final_norm is not None else out

    @torch.no_grad()
    def layers(self, inputs: dict[str, torch.Tensor]) -> list[MixingLayer]:
        """Every layer of one sequence (``inputs``: its batch-of-one model inputs)."""
        extra = {"use_cache": False} if self.adapter.causal else {}
        with self._recording() as seen:
            out = self.model(**inputs, output_attentions=True, output_hidden_states=True, **extra)
        hidden = [h[0].float() for h in out.hidden_states]
        n_layers = len(self.blocks)
        if len(seen["calls"]) != n_layers:
            raise ModelFailure(f"context mixing: saw {len(seen['calls'])} block calls for {n_layers} layers")
        dtype = next(self.model.parameters()).dtype
        result = []
        for index in range(n_layers):
            last = index == n_layers - 1
            call = seen["calls"][index]
            x, target = hidden[index], hidden[index + 1]
            v = self.adapter.values(seen["values"][index], self.d_head)[0].float()  # (H_kv, n, d_h)
            v = v.repeat_interleave(self.n_heads // v.shape[0], dim=0)
            transformed = torch.einsum("hnk,hkd->hnd", v, self.w_out[index])
            o = _first(seen["outputs"][index])[0].float()
            fields: dict[str, Any] = {}
            if self.adapter.mixing == "post":
                norm, s, t = seen["norm1"][index]
                fields["gain"] = norm.weight.detach().float()
                fields["scale"] = torch.rsqrt(s[0].float().var(-1, unbiased=False) + norm.eps)
                output = t[0].float()
                if seen["norm2"]:
                    norm2, q, _ = seen["norm2"][index]
                    fields["gain2"] = norm2.weight.detach().float()
                    fields["scale2"] = torch.rsqrt(q[0].float().var(-1, unbiased=False) + norm2.eps)
            elif self.adapter.mixing == "sandwich":
                norm, p_in, p_out = seen["norm1"][index]
                eps = getattr(norm, "eps", getattr(norm, "variance_epsilon", 1e-6))
                fields["gain"] = self._rms_gain(norm)
                fields["scale"] = torch.rsqrt(p_in[0].float().square().mean(-1) + eps)
                output = x + p_out[0].float()
            else:
                output = x + o

            def rerun(subtract: torch.Tensor, call=call, x=x, last=last) -> torch.Tensor:
                batch = x.to(dtype).unsqueeze(0).expand(len(subtract), -1, -1)
                return self._call(call, batch, subtract, last).float()

            def block(h: torch.Tensor, call=call, last=last) -> torch.Tensor:
                return self._call(call, h.to(dtype).unsqueeze(0), None, last)[0].float()

            again = block(x)
            if not torch.allclose(again, target, rtol=REPRODUCE_TOLERANCE, atol=REPRODUCE_TOLERANCE * target.abs().max()):
                raise ModelFailure(f"context mixing: re-running layer {index + 1} alone does not reproduce its output")
            result.append(MixingLayer(self.adapter.mixing, x, out.attentions[index][0].float(), transformed, output,
                                      target, rerun=rerun, block=block, **fields))
        return result
