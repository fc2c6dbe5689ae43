"""idsuite: identifiability in transformers (Brunner et al., ICLR 2020) as a repeatable benchmark.

The package's one top-level name. Its parts install beneath it from the repository's top-level
folders: ``idsuite.suite`` (the metric battery, pure tensor maths), ``idsuite.runners`` (zoo, model
access, probing, the job loop), ``idsuite.results`` (the store), ``idsuite.leaderboard`` (the app and
the paper export) and ``idsuite.cli`` (the ``idsuite`` command). This folder (``api/`` in the
repository) is the package itself.

``idsuite.evaluate(model, tokenizer, corpus=..., metrics=..., store=...)`` runs the battery from
Python on an in-memory model or zoo entries and returns an ``Evaluation``; ``idsuite.open_results``
opens a store for querying. Both are imported on first use, so ``import idsuite`` stays light.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import TYPE_CHECKING

__version__ = importlib.metadata.version("idsuite")
__all__ = ["Evaluation", "evaluate", "open_results"]

if TYPE_CHECKING:
    from idsuite.evaluation import Evaluation, evaluate, open_results


def __getattr__(name: str) -> object:
    if name in __all__:
        return getattr(importlib.import_module("idsuite.evaluation"), name)
    raise AttributeError(f"module 'idsuite' has no attribute {name!r}")
