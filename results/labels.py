"""The words a reader sees for the numbers of ``idsuite.results.headlines``: column titles, which way
is better, what ``±`` means, and counts as 22.7M. The terminal, the leaderboard and the paper export
all take their names from here, so a number is called the same everywhere.
"""

from __future__ import annotations

import re

import pandas as pd

from idsuite.suite.specs import MetricSpec

DIRECTION_WORDS = {"higher": "higher is better", "lower": "lower is better", "none": ""}
"""Which way is better, in words (arrows in a header read as sort indicators); "better" means more
identifiable, the suite's one direction of interest."""
INTERVAL_MEANING = ("± is half the 95% bootstrap interval over sentences; for a control run under several "
                    "init seeds, the interval spans every seed's 95% interval (seed spread and sentence sampling)")
"""The one meaning of ``±``, said wherever a ``±`` is printed."""


def headline_label(spec: MetricSpec) -> str:
    """Column title of a headline: the name, where it is taken, its unit and which way is better
    (in words: arrows in a header read as sort indicators)."""
    variant = spec.headline_variant()
    where = ", last layer" if spec.headline_layer == "last" else ""
    best = ", best g" if spec.headline_best_of else ""
    qualifiers = ", ".join(q for q in (variant.unit, DIRECTION_WORDS[variant.direction]) if q)
    return f"{spec.display_name}{where}{best}" + (f" ({qualifiers})" if qualifiers else "")


def variant_label(spec: MetricSpec, variant: str) -> str:
    """A variant in words for a selector or an axis: its declared description, unit and direction
    (``mlp/cosine`` -> 'identifiability rate with g = mlp, cosine distance (rate, higher is better)')."""
    declared = spec.variant(variant)
    offset = f" {variant.split(':', 1)[1]}" if ":" in variant and variant not in spec.variants else ""
    qualifiers = ", ".join(q for q in (declared.unit, DIRECTION_WORDS[declared.direction]) if q)
    return declared.description + offset + (f" ({qualifiers})" if qualifiers else "")


def count_label(n: object) -> str:
    """A parameter count as 21.2k, 22.7M or 1.2B ('' when unknown)."""
    if n is None or pd.isna(n):
        return ""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if int(n) >= scale:
            return f"{int(n) / scale:.1f}{unit}"
    return str(int(n))


def with_interval(value: float, low: float, high: float) -> str:
    """``0.512±0.012`` (half the interval, ``INTERVAL_MEANING``), or the value alone when it has none."""
    if pd.isna(value):
        return ""
    return f"{value:.3f}" if pd.isna(low) or pd.isna(high) else f"{value:.3f}±{(high - low) / 2:.3f}"


_CONTROL_PREFIX = re.compile(r"^(?:random_init|config)\(seed=\d+\):")


def model_card(fingerprint: object) -> str | None:
    """Where a reader finds what a model is, from its weight fingerprint: the hub page of a hub
    model (``hub:<repo>@<revision>``), the package's page of a packaged one
    (``package:<name>==<version>...``); a random-init control links to its base's page. None for
    local, GGUF and config-built weights."""
    if not isinstance(fingerprint, str):
        return None
    base = _CONTROL_PREFIX.sub("", fingerprint)
    if base.startswith("hub:"):
        return f"https://huggingface.co/{base[4:].rsplit('@', 1)[0]}"
    if base.startswith("package:"):
        name = re.split(r"==|:|\+", base[8:])[0]
        return f"https://pypi.org/project/{name}/"
    return None
