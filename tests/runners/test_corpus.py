"""Probe corpora through ``datasets``: the packaged Lee corpus and local files."""

import pytest

from idsuite.runners.probing.corpus import CorpusError, CorpusSpec, load_corpus, split_sentences


def test_sentence_split_keeps_closing_quotes():
    text = 'He said "no way." Then Mr Smith left! Did 3 men go? 4:00pm AEDT, ok.'
    assert split_sentences(text) == ['He said "no way."', "Then Mr Smith left!", "Did 3 men go?", "4:00pm AEDT, ok."]


def test_lee_corpus_is_seeded_and_mixes_singles_and_pairs():
    a = load_corpus(CorpusSpec(max_sequences=100, seed=1))
    b = load_corpus(CorpusSpec(max_sequences=100, seed=1))
    c = load_corpus(CorpusSpec(max_sequences=100, seed=2))
    assert a.items == b.items and a.content_hash == b.content_hash
    assert a.content_hash != c.content_hash
    pairs = sum(p is not None for _, p in a.items)
    assert len(a.items) == 100 and 20 < pairs < 80


def test_local_csv_with_pair_column(tmp_path):
    path = tmp_path / "probe.csv"
    path.write_text("s1,s2\nThe cat sat.,It was red.\nA dog ran.,\n")
    corpus = load_corpus(CorpusSpec(source=str(path), text_column="s1", pair_column="s2"))
    assert sorted(corpus.items, key=str) == sorted([("The cat sat.", "It was red."), ("A dog ran.", None)], key=str)
    assert corpus.corpus_id == "probe.csv:train"


def test_bad_corpus_sources_name_the_cause(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        load_corpus(CorpusSpec(source=str(tmp_path / "absent.csv")))
    path = tmp_path / "probe.csv"
    path.write_text("s1\nThe cat sat.\n")
    with pytest.raises(CorpusError, match="no column 'text'"):
        load_corpus(CorpusSpec(source=str(path)))
