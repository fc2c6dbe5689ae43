"""GGUF weights: dequantised once through transformers, then cached as a safetensors folder.

``transformers`` reads GGUF files (it needs the ``gguf`` package) and dequantises every tensor,
which takes tens of seconds; the result is saved under ``<cache>/gguf/<sha256 of the file>`` so a
second run loads a plain safetensors folder in seconds. The key is the file's content hash, so a
changed file is never served from a stale cache.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch
import transformers

from idsuite.runners.models.cache import cache_root, file_sha256
from idsuite.runners.models.package_files import scratch_dir


class GgufError(Exception):
    """A GGUF file cannot be read; one line naming the file and the cause."""


def dequantised_folder(path: Path) -> Path:
    """A transformers folder (config, float32 safetensors, tokenizer) holding the GGUF file's model."""
    target = cache_root() / "gguf" / file_sha256(path)[:16]
    if (target / "config.json").exists():
        return target
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise GgufError("reading GGUF files needs the 'gguf' package (pip install gguf accelerate, or .[zoo])") from None
    print(f"  dequantising {path.name} once; cached in {target}", file=sys.stderr)
    scratch = scratch_dir(target)
    try:
        kwargs = {"gguf_file": path.name}
        tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, **kwargs)
        model = transformers.AutoModel.from_pretrained(path.parent, dtype=torch.float32, **kwargs)
        # the tensors are plain float32 now; drop the GGUF quantiser so that the model saves as such
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        shutil.rmtree(scratch, ignore_errors=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GgufError(f"cannot read GGUF file {str(path)!r}: {first}") from e
    os.replace(scratch, target)
    return target
