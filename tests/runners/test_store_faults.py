"""Faults of the store under a run: a read-only or full file system, an id too long for it, damaged
or foreign files anywhere under the store. Each is contained: the cell fails with one line (or the
file is quarantined with its reason) and the run, ``list``, ``export`` and the leaderboard go on."""

from __future__ import annotations

import errno

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from idsuite.cli.main import main
from idsuite.leaderboard.data import Board
from idsuite.results.query import ResultQuery
from idsuite.results.store import CARD_KEY, ResultStore
from idsuite.runners.failures import MAX_MESSAGE
from idsuite.runners.jobs import Runner
from idsuite.runners.models.zoo import load_zoo
from idsuite.runners.probing.corpus import Corpus
from idsuite.runners.run_config import RunConfig
from idsuite.suite.specs import SPECS
from tests.conftest import SENTENCES
from tests.filesystem import refused_writes
from tests.runners.test_faults import FAST


@pytest.fixture
def zoo(tmp_path, tiny_bert_dir, tiny_llama_dir):
    (tmp_path / "models.yaml").write_text(f"""
models:
  - {{id: tiny, source: local, path: {tiny_bert_dir}}}
  - {{id: tiny-decoder, source: local, path: {tiny_llama_dir}}}
  - {{id: "{'é' * 50}", source: local, path: {tiny_bert_dir}}}
""")
    return load_zoo(tmp_path / "models.yaml")


def run(zoo, root, models, log=None):
    corpus = Corpus("tiny", [(s, None) for s in SENTENCES])
    lines = [] if log is None else log
    runner = Runner(zoo, corpus, RunConfig(metric_settings=FAST, batch_size=4), ResultStore(root), "r", log=lines.append)
    return {o.model_id: o for o in runner.run(models)}


def one_line_each(failed: dict[str, str], text: str) -> None:
    assert sorted(failed) == sorted(SPECS), failed
    for message in failed.values():
        assert text in message and "\n" not in message and len(message) <= MAX_MESSAGE, message


def test_a_read_only_store_fails_every_cell_with_one_line_and_every_model_is_tried(zoo, tmp_path):
    root = tmp_path / "results"
    with refused_writes(root, errno.EROFS):  # root may not change permissions away: the kernel's error is injected
        outcomes = run(zoo, root, ["tiny", "tiny-decoder"])
    for model in ("tiny", "tiny-decoder"):
        one_line_each(outcomes[model].failed, "store: OSError: [Errno 30] Read-only file system")
    assert not root.exists()


def test_a_full_disk_fails_only_the_cells_that_need_writing(zoo, tmp_path):
    root = tmp_path / "results"
    log: list[str] = []
    run(zoo, root, ["tiny"])
    store = ResultStore(root)
    lost = store.summary_path(store.ref_of(store.cell_files()[0]))
    lost.unlink()  # its rebuild needs the disk
    with refused_writes(root, errno.ENOSPC):
        outcomes = run(zoo, root, ["tiny", "tiny-decoder"], log)
    assert sorted(outcomes["tiny"].cached) == sorted(SPECS) and not outcomes["tiny"].failed  # nothing to compute: fine
    one_line_each(outcomes["tiny-decoder"].failed, "No space left on device")
    assert "  all metrics cached; nothing to compute" in log
    cells = ResultQuery(root).cells()  # the cell with no summary is read from the cell itself
    assert sorted(cells["metric"]) == sorted(SPECS) and cells["ok"].all()
    assert run(zoo, root, ["tiny"])["tiny"].cached and lost.exists()  # rebuilt once the disk has room


def test_an_id_too_long_for_the_file_system_fails_alone(zoo, tmp_path):
    long_id = "é" * 50  # 50 characters, 300 bytes once percent-encoded: past NAME_MAX = 255
    outcomes = run(zoo, tmp_path / "results", [long_id, "tiny"])
    one_line_each(outcomes[long_id].failed, "'id' is too long for a file system")
    assert sorted(outcomes["tiny"].computed) == sorted(SPECS)


def damage(store: ResultStore) -> dict[str, object]:
    """Five kinds of damage across the store of one model; what was damaged."""
    summaries = {store.ref_of(p).metric: p for p in store.summary_sources()}
    bad_card, cut, replaced = (summaries[m] for m in ("rank_deficiency", "effective_attention", "context_mixing"))
    table = pq.read_table(bad_card)
    pq.write_table(table.replace_schema_metadata(table.schema.metadata | {CARD_KEY: b"{\xff not json"}), bad_card)
    cut.write_bytes(cut.read_bytes()[:-20])  # the footer cut short
    replaced.unlink()
    replaced.mkdir()  # a folder where a summary belongs
    foreign = bad_card.parent.parent.parent / "cells" / bad_card.parent.name / "notes-0.parquet"
    pq.write_table(pa.table({"layer": ["first", "second"], "value": ["a", "b"]}), foreign)  # valid Parquet, not ours
    (store.staging / "left-behind").mkdir(parents=True)  # a folder in the staging area
    return {"summaries": [bad_card, cut, replaced], "foreign": foreign}


def test_damaged_and_foreign_files_are_skipped_by_readers_and_quarantined_by_the_run(zoo, tmp_path, capsys):
    root, out = tmp_path / "results", tmp_path / "paper"
    run(zoo, root, ["tiny"])
    store = ResultStore(root)
    damaged = damage(store)
    query = ResultQuery(root)
    cells = query.cells()
    # the two damaged summaries are left out; where a folder stands the cell itself is read
    assert sorted(cells["metric"]) == sorted(set(SPECS) - {"rank_deficiency", "effective_attention"})
    assert {p for p, _ in query.bad_files} == {*damaged["summaries"][:2], damaged["foreign"]}
    assert set(query.all_rows()["metric"]) == set(SPECS)  # every whole cell, nothing of the foreign file
    assert "damaged card" in dict(query.bad_files)[damaged["summaries"][0]]
    assert "not an idsuite cell: no column 'model_id'" in dict(query.bad_files)[damaged["foreign"]]
    zoo_file = str(tmp_path / "models.yaml")
    assert main(["list", "--zoo", zoo_file, "--results", str(root)]) == 1  # 1: the zoo's long id is an error
    assert "skipped: " in capsys.readouterr().err
    assert len(Board(root).model_table()) == 1
    assert main(["export", "--results", str(root), "--out", str(out)]) == 0 and (out / "leaderboard.tex").exists()

    log: list[str] = []
    outcome = run(zoo, root, ["tiny"], log)["tiny"]
    assert sorted(outcome.cached) == sorted(SPECS)  # the cells were whole: nothing is recomputed
    reasons = sorted(p.read_text() for p in store.quarantined.glob("*.reason"))
    assert len(reasons) == 5 and all("\n" not in r.strip() for r in reasons)
    for path in [*damaged["summaries"], damaged["foreign"], store.staging / "left-behind"]:
        assert any(r.startswith(f"{path}: ") for r in reasons), path
    query = ResultQuery(root)
    assert sorted(query.cells()["metric"]) == sorted(SPECS) and query.bad_files == []  # summaries rebuilt
