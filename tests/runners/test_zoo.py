"""models.yaml validation: every kind of mistake gives one line naming the entry."""

import textwrap

import pytest

from idsuite.runners.models.zoo import DEFAULT_ZOO, ConfigEntry, GgufEntry, PackageEntry, RandomInitEntry, ZooFileError, load_zoo

PACKAGED = ["all-MiniLM-L6-v2", "all-mpnet-base-v2", "SmolLM2-135M-Instruct", "gemma-3-270m-q4km"]
SHAPES = {"SmolLM2-135M-shape": "configs/SmolLM2-135M.json", "Llama-3.2-1B-shape": "configs/Llama-3.2-1B.json"}
HUB = ["bert-base-uncased", "bert-large-uncased", "roberta-base", "roberta-large", "distilbert-base-uncased",
       "albert-base-v2", "gpt2", "gpt2-medium", "pythia-70m", "pythia-160m", "pythia-410m", "Qwen2.5-0.5B",
       "Llama-3.2-1B", "gemma-3-270m"]

GOOD = """
  - id: good
    source: hub
    family: bert
"""


def zoo_with(tmp_path, body):
    path = tmp_path / "models.yaml"
    path.write_text("models:\n" + textwrap.dedent(body))
    return load_zoo(path)


@pytest.mark.parametrize(
    "entry, label, message",
    [
        ("  - id: typo\n    source: hub\n    famliy: bert\n", "'typo'", "unknown key 'famliy'"),
        ("  - source: hub\n    family: bert\n", "entry #2", "missing key 'id'"),
        ("  - id: wrongtype\n    source: hub\n    tags: 5\n", "'wrongtype'", "'tags'"),
        ("  - id: nosuch\n    source: ftp\n", "'nosuch'", "unknown source 'ftp'"),
        ("  - id: nosource\n    path: x\n", "'nosource'", "missing key 'source'"),
        ("  - id: orphan\n    source: random_init\n    base: missing\n", "'orphan'", "'base': 'missing'"),
        ("  - id: nowhere\n    source: gguf\n    file: m.gguf\n", "'nowhere'", "either 'path' or both 'packages' and 'file'"),
        ("  - id: nopkg\n    source: package\n    packages: []\n", "'nopkg'", "'packages'"),
        ("  - id: noconfig\n    source: config\n    tokenizer: good\n", "'noconfig'",
         "give either 'config' (a file) or 'repo' (a hub repo)"),
        ("  - id: twoconfigs\n    source: config\n    config: c.json\n    repo: org/m\n    tokenizer: good\n", "'twoconfigs'",
         "give either 'config' (a file) or 'repo' (a hub repo)"),
        ("  - id: filerev\n    source: config\n    config: c.json\n    revision: v1\n    tokenizer: good\n", "'filerev'",
         "'revision' goes with 'repo', not with 'config'"),
        ("  - id: notok\n    source: config\n    config: c.json\n", "'notok'", "missing key 'tokenizer'"),
        ("  - id: badtok\n    source: config\n    config: c.json\n    tokenizer: missing\n", "'badtok'",
         "'tokenizer': 'missing' is not a loadable entry of this zoo"),
        ("  - id: cfgtypo\n    source: config\n    config: c.json\n    tokenizer: good\n    overides: {}\n", "'cfgtypo'",
         "unknown key 'overides'"),
        ("  - id: badseed\n    source: config\n    config: c.json\n    tokenizer: good\n    init_seed: -1\n", "'badseed'",
         "'init_seed'"),
        ("  - id: " + "é" * 50 + "\n    source: hub\n", "entry #2", "its result folder name (percent-encoded) has 300 "
         "bytes, at most 255 fit"),
        ("  - id: dated\n    source: config\n    config: c.json\n    tokenizer: good\n    overrides: {x: 2020-01-01}\n",
         "'dated'", "'overrides.x': input was not a valid json value"),
    ],
)
def test_bad_entry_gives_one_line_naming_it(tmp_path, entry, label, message):
    zoo = zoo_with(tmp_path, GOOD + entry)
    assert list(zoo.entries) == ["good"]  # the good entry survives
    assert len(zoo.errors) == 1
    line = str(zoo.errors[0])
    assert "\n" not in line
    assert str(tmp_path / "models.yaml") in line and label in line and message in line


def test_a_duplicate_id_is_an_error_naming_every_entry_with_it_and_none_is_kept(tmp_path):
    zoo = zoo_with(tmp_path, GOOD + """
  - {id: other, source: hub}
  - {id: good, source: local, path: m, tags: [default]}
  - {id: control, source: random_init, base: good}
""")
    assert list(zoo.entries) == ["other"]  # which 'good' was meant cannot be known; its control has no base
    lines = {e.entry_id: str(e) for e in zoo.errors}
    assert lines["good"].endswith("entry #1 ('good'): duplicate id: entries #1 and #3 are all named 'good' (rename all "
                                  "but one)")
    assert "'base': 'good' is not a loadable entry" in lines["control"]
    assert zoo.select(["good"]) == (["good"], []) and zoo.select(["default"]) == (["good"], [])  # selected: it fails


def test_config_entries_need_the_hub_for_a_repo_or_a_hub_tokenizer_and_are_not_all_offline(tmp_path):
    zoo = zoo_with(tmp_path, GOOD + """
  - {id: here, source: local, path: m}
  - {id: file, source: config, config: c.json, tokenizer: here, overrides: {num_hidden_layers: 4}}
  - {id: remote, source: config, repo: org/m, tokenizer: here}
  - {id: hubtok, source: config, config: c.json, tokenizer: good}
""")
    assert zoo.errors == []
    assert [zoo.needs_hub(i) for i in ("file", "remote", "hubtok")] == [False, True, True]
    assert zoo.entries["file"].overrides == {"num_hidden_layers": 4} and zoo.entries["file"].init_seed == 0
    assert zoo.entries["remote"].revision == "main"
    assert zoo.select(["all-offline"])[0] == ["here"]
    assert zoo.select(["all"])[0] == ["good", "here", "file", "remote", "hubtok"]


def test_whole_file_errors(tmp_path):
    with pytest.raises(ZooFileError, match="no such file"):
        load_zoo(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("models: [\n")
    with pytest.raises(ZooFileError, match="not valid YAML"):
        load_zoo(tmp_path / "bad.yaml")
    (tmp_path / "flat.yaml").write_text("- id: x\n")
    with pytest.raises(ZooFileError, match="'models:' list"):
        load_zoo(tmp_path / "flat.yaml")


def test_repository_zoo_is_valid_and_has_the_required_entries():
    zoo = load_zoo()
    assert zoo.errors == []
    assert isinstance(zoo.entries["all-MiniLM-L6-v2"], PackageEntry)
    assert isinstance(zoo.entries["all-mpnet-base-v2"], PackageEntry)
    assert isinstance(zoo.entries["SmolLM2-135M-Instruct"], GgufEntry)
    assert isinstance(zoo.entries["gemma-3-270m-q4km"], GgufEntry)
    for model_id in PACKAGED:
        control = zoo.entries[f"{model_id}-random-init"]
        assert isinstance(control, RandomInitEntry) and control.base == model_id
    for hub_id in HUB:
        assert zoo.entries[hub_id].source == "hub"
    for shape_id, config in SHAPES.items():
        shape = zoo.entries[shape_id]
        assert isinstance(shape, ConfigEntry) and shape.config == config and shape.tags == ("config", "decoder", "shape")
        assert (DEFAULT_ZOO.parent / config).is_file() and not zoo.needs_hub(shape_id)
    assert zoo.select(None)[0] == ["all-MiniLM-L6-v2", "all-MiniLM-L6-v2-random-init"]
    offline = zoo.select(["all-offline"])[0]  # config entries (a 1B model among them) only by id or tag
    assert sorted(offline) == sorted(PACKAGED + [f"{m}-random-init" for m in PACKAGED])
    assert zoo.select(["shape"])[0] == list(SHAPES) and zoo.select(["config"])[0] == list(SHAPES)
    assert zoo.select(["nope"])[1] == ["nope"]
