"""What ``pip install .`` puts in site-packages: the one ``idsuite`` name, every subpackage, the zoo.

The wheel is built from this checkout (no build isolation: the environment's setuptools), then
installed into a folder of its own that comes first on ``sys.path``, so the checks below run on the
installed copy, not on the editable one, from a folder that is not the repository.
"""

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from idsuite.runners.models.zoo import load_zoo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out, source = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("source") / "idsuite"
    # built from a copy of the tracked and untracked files, so that setuptools' build/ is not left in the checkout
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in files.stdout.splitlines():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
                   check=True, capture_output=True)
    return next(out.glob("idsuite-*.whl"))


def test_the_wheel_installs_one_top_level_name_and_every_subpackage(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"idsuite"}
    # every folder of the repository with an __init__.py is in the wheel, under its new name
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for top, folder in declared.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            inside = init.parent.relative_to(ROOT / folder).parts
            assert "/".join([*top.split("."), *inside, "__init__.py"]) in names, f"{init.relative_to(ROOT)} is not installed"
    assert "idsuite/runners/models/models.yaml" in names
    assert {"idsuite/runners/models/configs/SmolLM2-135M.json", "idsuite/runners/models/configs/Llama-3.2-1B.json"} <= set(names)


def test_the_installed_copy_lists_its_embedded_zoo_from_any_folder(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import idsuite, idsuite.runners.models.zoo as z; print(idsuite.__file__); print(z.DEFAULT_ZOO); "
            "zoo = z.load_zoo(); print(sorted(zoo.entries), zoo.errors)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""},
                         capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0].startswith(str(target)) and out[1].startswith(str(target))
    assert out[2] == f"{sorted(load_zoo().entries)} []"  # every shipped entry valid, config entries' files found
