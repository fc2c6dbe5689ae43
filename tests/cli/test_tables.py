"""Terminal tables: every line within the width, each block led by the key column."""

from __future__ import annotations

import pandas as pd
import pytest

from idsuite.cli.tables import fit


@pytest.fixture
def zoo_table() -> pd.DataFrame:
    return pd.DataFrame({
        "id": ["all-MiniLM-L6-v2", "SmolLM2-135M-Instruct-random-init", "gpt2"],
        "source": ["package", "random_init", "hub"],
        "tags": ["default,packaged,encoder", "control,decoder", "hub,decoder"],
        "L": pd.array([6, 30, None], dtype="Int64"),
        "d": pd.array([384, 576, None], dtype="Int64"),
        "stale": pd.array([1, None, None], dtype="Int64"),
    })


def blocks(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Each block back as its header and rows, split on runs of spaces."""
    out = []
    for block in text.split("\n\n"):
        header, *rows = block.splitlines()
        out.append((header.split(), [row.split() for row in rows]))
    return out


def test_a_table_that_fits_is_one_block_text_left_numbers_right_missing_blank(zoo_table):
    text = fit(zoo_table, width=200, key="id")
    (header, rows), = blocks(text)
    assert header == list(zoo_table.columns)
    lines = text.splitlines()
    assert lines[1].startswith("all-MiniLM-L6-v2 ") and lines[3].startswith("gpt2 ")  # text left-aligned
    assert lines[0].endswith("  d stale") and lines[1].endswith("384     1")  # numbers right-aligned under their titles
    assert rows[2] == ["gpt2", "hub", "hub,decoder"]  # its missing numbers are blank


@pytest.mark.parametrize("width", [60, 70, 80])
def test_a_narrow_terminal_gets_blocks_each_led_by_the_key(zoo_table, width):
    text = fit(zoo_table, width=width, key="id")
    assert all(len(line) <= width for line in text.splitlines())
    parts = blocks(text)
    assert len(parts) > 1
    assert all(header[0] == "id" and [row[0] for row in rows] == zoo_table["id"].tolist() for header, rows in parts)
    assert [c for header, _ in parts for c in header[1:]] == list(zoo_table.columns[1:])  # each column once, in order


def test_without_a_key_pandas_wraps_and_the_key_is_not_repeated(zoo_table):
    text = fit(zoo_table, width=60, index=False)
    assert all(len(line) <= 60 for line in text.splitlines())
    assert sum(line.split()[0] == "id" for line in text.splitlines() if line.strip()) == 1


def test_missing_floats_are_blank_and_the_key_must_exist():
    table = pd.DataFrame({"id": ["a", "bb"], "x": [1.5, float("nan")]})
    assert fit(table, 80, key="id").splitlines()[2].split() == ["bb"]
    with pytest.raises(ValueError, match="no column 'name'"):
        fit(table, 80, key="name")
