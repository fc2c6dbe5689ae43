"""The settings shared by every model of a run, validated before anything runs."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

import pydantic

from idsuite.results.leases import MAX_TTL
from idsuite.runners.models.zoo import DTypeName
from idsuite.suite.registry import RegistryError
from idsuite.suite.specs import SPECS, MetricConfig

DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
RUN_DTYPES = ["auto", *get_args(DTypeName)]
"""The forward-pass dtypes a run may ask for: ``auto`` or one a zoo entry may declare."""


class RunConfig(pydantic.BaseModel):
    """``metrics``: the metrics to run (default all declared ones, in ``SPECS`` order);
    ``metric_settings`` maps metric names to config overrides; ``lease_ttl``: seconds a cell's lease
    lives without renewal (a dead worker's cells are taken over after that). A batch holds at most
    ``batch_size`` sequences and at most ``batch_map_elements`` attention-map entries (sequences x
    heads x n^2 for its longest n; one sequence at least): the memory of one layer's maps is bounded,
    whatever the sequence lengths."""

    model_config = pydantic.ConfigDict(extra="forbid")

    seed: Annotated[int, pydantic.Field(ge=0)] = 0
    batch_size: Annotated[int, pydantic.Field(ge=1, le=4096)] = 16
    batch_map_elements: Annotated[int, pydantic.Field(ge=1, le=1 << 40)] = 1 << 24
    max_tokens: Annotated[int, pydantic.Field(ge=2, le=1 << 20)] = 128
    device: str = "auto"
    dtype: Literal["auto"] | DTypeName = "auto"
    metrics: tuple[str, ...] | None = None
    metric_settings: dict[str, dict[str, Any]] = {}
    recompute: bool = False
    lease_ttl: Annotated[float, pydantic.Field(gt=0, le=MAX_TTL)] = 300.0

    @pydantic.field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            if not value:
                raise ValueError("name at least one metric")
            for name in value:
                try:
                    SPECS.get(name)
                except RegistryError as e:  # one line with a "did you mean"
                    raise ValueError(str(e)) from None
            if len(set(value)) < len(value):
                raise ValueError("a metric is named twice")
        return value

    @pydantic.field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not DEVICE.fullmatch(value):
            raise ValueError(f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {value[:40]!r}")
        return value

    def check_device(self) -> None:
        """Raise ``ValueError`` when a GPU is asked for and this machine has none (or not that one)."""
        import torch

        if self.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ValueError(f"--device {self.device}: CUDA is not available on this machine")
            index = int(self.device.partition(":")[2] or 0)
            if index >= torch.cuda.device_count():
                raise ValueError(f"--device {self.device}: this machine has {torch.cuda.device_count()} GPU(s)")

    def resolved_device(self) -> str:
        """``auto``: the GPU where CUDA is present, else the CPU."""
        if self.device == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def forward_dtype(self, entry_dtype: str) -> str:
        """The dtype of the forward pass: ``auto`` gives bfloat16 on a GPU (the metrics still run in
        float32 / float64) and the entry's own dtype on the CPU."""
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if self.resolved_device().startswith("cuda") and entry_dtype == "float32" else entry_dtype

    def metric_configs(self) -> dict[str, MetricConfig]:
        """The config of every metric to run, overrides applied (``metric_settings`` may name any
        declared metric, run or not)."""
        for name in self.metric_settings:
            SPECS.get(name)  # an unknown name raises, with a "did you mean"
        chosen = set(self.metrics) if self.metrics is not None else set(SPECS)
        return {name: spec.config_type(**self.metric_settings.get(name, {})) for name, spec in SPECS.items() if name in chosen}
