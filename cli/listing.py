"""``idsuite list``: the zoo's entries, sizes of the models already run, stale cells, the entries
whose weights are unavailable or that are invalid, and the store's files it could not read (no
torch is imported)."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from idsuite.cli.errors import CliError
from idsuite.cli.tables import fit, terminal_width
from idsuite.results.labels import count_label
from idsuite.results.query import ResultQuery
from idsuite.results.schema import SIZE_FACTS
from idsuite.results.selection import with_settings
from idsuite.runners.models.weights import ModelLoadError, fingerprint
from idsuite.runners.models.zoo import ZooFileError, load_zoo

SHORT_NAMES = {"n_params": "params", "n_layers": "L", "n_heads": "H", "n_kv_heads": "kv", "d_head": "d_h",
               "d_model": "d"}


def list_command(args: argparse.Namespace) -> int:
    try:
        zoo = load_zoo(args.zoo)
    except ZooFileError as e:
        raise CliError(str(e)) from None
    rows, unavailable = [], []
    for entry_id, entry in zoo.entries.items():
        try:
            weights = fingerprint(entry, zoo)
        except ModelLoadError as e:
            weights = ""
            unavailable.append(f"{entry_id}: {e}")
        rows.append({"id": entry_id, "source": entry.source, "tags": ",".join(entry.tags), "weights": weights})
    table = pd.DataFrame(rows, columns=["id", "source", "tags", "weights"])
    query = ResultQuery(args.results)
    cells = with_settings(query.cells())
    if len(cells):  # sizes as read from each model's config when it ran; stale cells
        sizes = cells[cells["ok"]].groupby("model_id")[SIZE_FACTS].first()
        table = table.join(sizes, on="id")
        table["n_params"] = table["n_params"].map(count_label)
        table[SIZE_FACTS[1:]] = table[SIZE_FACTS[1:]].astype("Int64")
        table["stale"] = table["id"].map(cells[cells["stale"]].groupby("model_id")["metric"].nunique()).astype("Int64")
    table = table.rename(columns=SHORT_NAMES)
    if not args.wide:
        table = table.drop(columns="weights")
    width = terminal_width()
    print(fit(table, width, key="id") if rows else "(no valid entries)")
    for line in unavailable:
        print("unavailable: " + (line if args.wide or len(line) <= width - 13 else line[: width - 14] + "…"))
    if unavailable and not args.wide:
        print("(idsuite list --wide shows whole lines and the weight fingerprints)")
    for error in zoo.errors:
        print(f"error: {error}", file=sys.stderr)
    for path, reason in query.bad_files:  # left out above; the next run of that model quarantines them
        print(f"skipped: {path}: {reason}", file=sys.stderr)
    return 1 if zoo.errors else 0
