"""The book's downloads run outside the repository: the wheel installs into an empty virtual environment,
and a chapter taken from the notebook zip executes there and prints what the book prints."""

import json
import os
import subprocess
import venv
import zipfile

import pytest
from book_helpers import HTML, ROOT, build_book

from bnbook.sphinx_ext import NOTEBOOKS_ZIP, wheel_name

pytestmark = [pytest.mark.book, pytest.mark.slow]

CHAPTER = "ch02_algorithm.ipynb"  # fast (seconds), and it uses bnlib, bnbook and matplotlib


@pytest.fixture(scope="module")
def downloads():
    rc, log, _ = build_book()
    assert rc == 0, f"the book build failed:\n{log[-4000:]}"
    return HTML / "downloads"


def _printed(notebook):
    """Each code cell's printed text (streams and plain-text results), in order."""
    out = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        text = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                text.append("".join(o["text"]))
            elif "text/plain" in o.get("data", {}) and "image/png" not in o["data"]:
                text.append("".join(o["data"]["text/plain"]))
        out.append("".join(text))
    return out


def test_the_downloads_are_built_linked_and_named_in_every_chapter(downloads):
    assert (downloads / wheel_name()).is_file() and (downloads / NOTEBOOKS_ZIP).is_file()
    page = (HTML / "book" / "running.html").read_text(encoding="utf-8")
    for name in (wheel_name(), NOTEBOOKS_ZIP):
        assert f'href="../downloads/{name}"' in page, name
    with zipfile.ZipFile(downloads / NOTEBOOKS_ZIP) as archive:
        names = archive.namelist()
    assert sorted(names) == sorted(f"bn-book/{p.name}" for p in (ROOT / "book").glob("*.ipynb"))
    for path in sorted((ROOT / "book").glob("ch*.ipynb")):
        first = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        assert f'"{wheel_name()}[book]"' in "".join(first["source"]), f"{path.name}: its first cell names the wheel"


RUN = """
import json, sys
import nbformat
from nbclient import NotebookClient
import bnbook
assert bnbook.__file__.startswith(sys.prefix), bnbook.__file__  # the wheel's copy, not the repository's
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=300, kernel_name="python3").execute()
nbformat.write(nb, sys.argv[2])
"""


def test_a_downloaded_chapter_runs_with_the_wheel_alone(downloads, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environment["PATH"] = f"{python.parent}{os.pathsep}{environment.get('PATH', '')}"
    install = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    install += ["-c", ROOT / "requirements.txt"]  # the book's versions, so the same numbers
    install += [f"{downloads / wheel_name()}[book]", "nbclient", "ipykernel"]
    result = subprocess.run([str(a) for a in install], capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    work = tmp_path / "reader"
    with zipfile.ZipFile(downloads / NOTEBOOKS_ZIP) as archive:
        archive.extract(f"bn-book/{CHAPTER}", work)
    notebook = work / "bn-book" / CHAPTER
    executed = work / "executed.ipynb"
    result = subprocess.run(
        [str(python), "-c", RUN, str(notebook), str(executed)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=work,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    committed = json.loads((ROOT / "book" / CHAPTER).read_text())
    assert _printed(json.loads(executed.read_text())) == _printed(committed)
