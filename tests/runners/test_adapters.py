"""Every supported family, on a tiny random model saved to disk and read back as the runner does.

For each family the values and output rows are recomputed by hand from the module weights (with the
family's own layout: fused QKV, Conv1D, per-head fused QKV, grouped-query attention), and:
``sum_h A_h T_h + b_O`` equals the attention block's output projection, ``A_eff T == A T`` for every
head (causal and sliding-window rows included), and ``null_dim >= max(0, keys - d_h)`` with equality
when no token repeats (a rotary decoder's first layer gives repeated tokens identical values).
"""

import pytest
import torch
import transformers
from torch.func import jvp, vmap

from idsuite.runners.models.adapters import ADAPTERS, UnsupportedArchitecture, adapter_for
from idsuite.runners.probing import linearized_feed_forward
from idsuite.suite.null_space import value_output_matrix
from idsuite.suite.rank_deficiency import rank_deficiency
from tests.conftest import SENTENCES, TINY_CONFIGS, save_tiny
from tests.runners.test_tracing import encode, tracer_for

H, D_H, D = 4, 8, 32


def _linear(e, weight, bias):
    return e @ weight.T + (0 if bias is None else bias)


def _split(v, n_groups):
    return v.view(*v.shape[:2], n_groups, D_H).transpose(1, 2)  # (B, groups, N, d_h)


def _separate(value, output, groups=H):
    """Families with a value Linear of ``groups * d_h`` outputs and an output Linear (out, in)."""

    def hand(block, e):
        v = block.get_submodule(value)
        o = block.get_submodule(output)
        per_group = _split(_linear(e, v.weight, v.bias), groups)
        per_head = per_group[:, [h * groups // H for h in range(H)]]  # query head h reads group h // (H / groups)
        return per_head, o.weight.T.reshape(H, D_H, -1), o.bias

    return hand


def _gpt2(block, e):
    c_attn, c_proj = block.attn.c_attn, block.attn.c_proj  # Conv1D: y = x W + b, W (in, out) = (d, 3d)
    v = e @ c_attn.weight[:, 2 * D :] + c_attn.bias[2 * D :]
    return _split(v, H), c_proj.weight.reshape(H, D_H, -1), c_proj.bias


def _gpt_neox(block, e):
    qkv, dense = block.attention.query_key_value, block.attention.dense  # rows: per head [q k v]
    w = qkv.weight.view(H, 3, D_H, D)[:, 2]  # (H, d_h, d)
    b = qkv.bias.view(H, 3, D_H)[:, 2]
    v = torch.einsum("bnd,hkd->bhnk", e, w) + b.view(1, H, 1, D_H)
    return v, dense.weight.T.reshape(H, D_H, -1), dense.bias


# family -> (attention module whose input is E, output projection module, hand-made (V, W_O, b_O))
FAMILIES = {
    "bert": ("attention", "attention.output.dense", _separate("attention.self.value", "attention.output.dense")),
    "roberta": ("attention", "attention.output.dense", _separate("attention.self.value", "attention.output.dense")),
    "electra": ("attention", "attention.output.dense", _separate("attention.self.value", "attention.output.dense")),
    "albert": ("attention", "attention.dense", _separate("attention.value", "attention.dense")),
    "distilbert": ("attention", "attention.out_lin", _separate("attention.v_lin", "attention.out_lin")),
    "mpnet": ("attention", "attention.attn.o", _separate("attention.attn.v", "attention.attn.o")),
    "gpt2": ("attn", "attn.c_proj", _gpt2),
    "gpt_neox": ("attention", "attention.dense", _gpt_neox),
    **{
        name: ("self_attn", "self_attn.o_proj", _separate("self_attn.v_proj", "self_attn.o_proj", groups=2))
        for name in ("llama", "mistral", "qwen2", "qwen3", "gemma3_text")
    },
}
DISTINCT = "the dog sat on a big red mat , but it ran fast"  # 15 tokens, none repeated
TEXTS = [(DISTINCT, None), (SENTENCES[4], None), (SENTENCES[6], SENTENCES[1]), ("a dog .", None)]


def test_every_registered_family_is_tested_and_vice_versa():
    assert set(FAMILIES) | {"xlm-roberta", "camembert"} == set(ADAPTERS)
    assert set(FAMILIES) == set(TINY_CONFIGS)


def test_unsupported_model_type_names_what_is_missing():
    with pytest.raises(UnsupportedArchitecture, match=r"no adapter for model_type 't5'.*bert"):
        adapter_for("t5")


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory):
    folder = save_tiny(tmp_path_factory.mktemp("tiny") / request.param, request.param)
    if request.param == "gpt2":  # GPT-2 tokenizers have no pad token: the tracer must cope
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        tokenizer.pad_token = None
        tokenizer.save_pretrained(folder)
    return request.param, *tracer_for(folder)


def _record_calls(blocks, path, hook_input):
    """Inputs (E) or outputs of ``path`` in every block, in call order (a shared block is called per layer)."""
    calls = []
    modules = {id(m): m for m in (b.get_submodule(path) for b in blocks)}.values()
    if hook_input:
        handles = [m.register_forward_pre_hook(
            lambda m, a, k: calls.append(k.get("hidden_states", a[0] if a else None)), with_kwargs=True) for m in modules]
    else:
        handles = [m.register_forward_hook(lambda m, i, o: calls.append(o)) for m in modules]
    return calls, handles


def test_adapter_matches_hand_computation_and_invariants(family):
    name, tracer, model, tokenizer = family
    attention_path, output_path, hand = FAMILIES[name]
    ids = encode(tracer, tokenizer, TEXTS)
    blocks = tracer.blocks
    assert len(blocks) == model.config.num_hidden_layers
    inputs, in_handles = _record_calls(blocks, attention_path, hook_input=True)
    outputs, out_handles = _record_calls(blocks, output_path, hook_input=False)
    trace = tracer.trace(ids)
    for handle in in_handles + out_handles:
        handle.remove()
    lengths = trace.lengths
    n_max = trace.token_ids.shape[1]
    valid = (torch.arange(n_max) < lengths.view(-1, 1))
    rows = valid.view(len(ids), 1, -1, 1)
    assert lengths[0] == 15 and (lengths <= D_H).any()
    for layer, block in enumerate(blocks):
        v_hand, w_hand, b_out = hand(block, inputs[layer])
        lt = trace.layers[layer]
        torch.testing.assert_close(lt.values, (v_hand * rows).float(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(lt.w_out, w_hand.float())
        t = value_output_matrix(lt.values, lt.w_out)
        allowed = trace.allowed(layer)
        a = lt.attention * allowed.unsqueeze(1)
        assert lt.attention.masked_select(~allowed.unsqueeze(1) & rows.squeeze(-1).unsqueeze(-1)).abs().max() == 0
        # the heads' contributions add up to the block's output projection
        out = torch.einsum("bhij,bhjd->bid", a, t) + (0 if b_out is None else b_out)
        keep = valid.unsqueeze(-1)
        torch.testing.assert_close(out * keep, outputs[layer] * keep, atol=1e-5, rtol=1e-4)
        proj = trace.projection(layer, torch.float64)
        assert torch.equal(proj.attention, a)  # what A_eff is compared with: A, zero outside the allowed pairs
        head_out = a.double() @ t.double()
        assert ((proj.effective.double() @ t.double() - head_out).norm() / head_out.norm()).item() < 1e-6
        keys = proj.context.gather(1, (lengths - 1).view(-1, 1))
        bound = (keys - D_H).clamp(min=0).expand(-1, H)
        null_dim = rank_deficiency(proj.row_rank, proj.context, lengths).null_dim
        assert (null_dim >= bound).all() and torch.equal(null_dim[0], bound[0])
        assert torch.equal(proj.context[0] - proj.row_rank[0, 0], (proj.context[0] - D_H).clamp(min=0))
    # x = e^0 is what the embedding module hands the first block: layers_fn(x) reproduces e^1..e^L
    x, layers_fn = tracer.layers_fn(ids[0])
    n = int(lengths[0])
    torch.testing.assert_close(x, trace.hidden_states[0, 0, :n])
    torch.testing.assert_close(layers_fn(x), trace.hidden_states[1:, 0, :n], atol=1e-5, rtol=1e-5)


def test_grouped_query_heads_read_their_group(tmp_path):
    folder = save_tiny(tmp_path / "llama", "llama")
    tracer, _, tokenizer = tracer_for(folder)
    trace = tracer.trace(encode(tracer, tokenizer, TEXTS))
    v = trace.layers[0].values
    assert torch.equal(v[:, 0], v[:, 1]) and torch.equal(v[:, 2], v[:, 3])
    assert (v[:, 1] - v[:, 2]).abs().max() > 1e-3  # the two groups differ


def test_sliding_window_layers_are_masked_like_the_model(tmp_path):
    folder = save_tiny(tmp_path / "gemma", "gemma3_text")
    tracer, _, tokenizer = tracer_for(folder)
    assert tracer.windows == [6, None]
    trace = tracer.trace(encode(tracer, tokenizer, TEXTS))
    n = int(trace.lengths[0])
    assert n > 12
    sliding = trace.layers[0].attention[0, :, :n, :n]
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    assert sliding.masked_select((i - j >= 6).expand_as(sliding)).abs().max() == 0
    assert (trace.layers[1].attention[0, :, n - 1, 0] > 0).all()  # full attention reaches the first key
    assert trace.projection(0, torch.float64).context[0, :n].max() == 6


def test_linearised_feed_forward_gives_the_same_products(family, monkeypatch):
    """Exact attribution builds the function for n * d products: every family with a per-token
    feed-forward map then pushes them through its per-token Jacobians, with the same results."""
    name, tracer, _, tokenizer = family
    seq = encode(tracer, tokenizer, TEXTS)[0]
    x, plain = tracer.layers_fn(seq)
    formed = []
    real = linearized_feed_forward.token_jacobians
    monkeypatch.setattr(linearized_feed_forward, "token_jacobians", lambda fn, h: formed.append(h) or real(fn, h))
    x_lin, linearized = tracer.layers_fn(seq, products_per_token=tracer.hidden_size)
    assert len(formed) == (0 if name == "mpnet" else len(tracer.blocks))  # MPNet's map takes two inputs: not linearised
    torch.testing.assert_close(x_lin, x)
    tangents = torch.randn(5, *x.shape, generator=torch.Generator().manual_seed(0))
    push = [vmap(lambda t, fn=fn: jvp(fn, (x,), (t,))[1])(tangents) for fn in (plain, linearized)]
    scale = push[0].abs().max().item()
    assert scale > 1e-2
    torch.testing.assert_close(push[1], push[0], atol=1e-6 * scale, rtol=1e-5)  # float32 rounding
