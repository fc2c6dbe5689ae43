"""Facts recorded with every result row: library versions, hardware, time."""

from __future__ import annotations

import importlib.metadata
import platform
from datetime import UTC, datetime

import torch
import transformers


def library_versions() -> dict[str, str]:
    return {"suite_version": importlib.metadata.version("idsuite"), "torch_version": torch.__version__,
            "transformers_version": transformers.__version__}


def device_name(device: str) -> str:
    """The accelerator's name for CUDA, else the CPU's (``platform.processor`` or the machine type)."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu:{platform.processor() or platform.machine()}"


def utc_now() -> str:
    """ISO 8601 in microseconds: a cell written later sorts later, also within one second."""
    return datetime.now(UTC).isoformat(timespec="microseconds")
