"""Author and execute the book's chapter notebooks.

    python tools/notebooks.py convert SOURCE.md.py OUT.ipynb   # from the plain-text form below
    python tools/notebooks.py execute [NOTEBOOK ...]           # re-run in place (default: all)

Execution is deterministic: the kernel of the current environment, cells in order, the working
directory the notebook's own, widget state and volatile metadata dropped, so running it three times in
a row leaves the files byte-for-byte unchanged. A code cell that starts with ``# Solution`` is an
exercise's solution and is stored hidden (see ``_hide_solution``). ``BNBOOK_STATIC_HTML`` is removed from the kernel's
environment: the committed notebooks store live-widget outputs, the book build renders frames.

The plain-text form: cells start with a line ``%% md`` or ``%% code [TAG ...]``; in a code cell,
leading ``#| caption: ...``, ``#| name: ...`` and ``#| alt: ...`` lines become myst-nb figure
metadata (a numbered figure with a caption and alt text) and are removed from the source.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import textwrap
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def convert(source: Path, out: Path) -> None:
    cells = []
    kind, tags, lines = None, [], []

    def flush():
        if kind is None:
            return
        text = "\n".join(lines).strip("\n")
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(text)
        else:
            meta, body = {}, []
            for line in text.splitlines():
                if line.startswith("#| ") and not body:
                    key, _, value = line[3:].partition(":")
                    meta[key.strip()] = value.strip()
                else:
                    body.append(line)
            cell = nbformat.v4.new_code_cell("\n".join(body))
            if tags:
                cell.metadata["tags"] = list(tags)
            mystnb = {}
            if "caption" in meta or "name" in meta:
                mystnb["figure"] = {k: meta[k] for k in ("caption", "name") if k in meta}
            if "alt" in meta:
                mystnb["image"] = {"alt": meta["alt"]}
            if mystnb:
                cell.metadata["mystnb"] = mystnb
        cell.id = f"c{len(cells):03d}"
        cells.append(cell)

    for line in source.read_text().splitlines():
        if line.startswith("%% "):
            flush()
            parts = line[3:].split()
            kind, tags, lines = parts[0], parts[1:], []
            if kind not in ("md", "code"):
                raise ValueError(f"{source}: unknown cell kind {kind!r} in line {line!r}")
        else:
            lines.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, out)


def _coalesce_streams(outputs):
    """Merge consecutive stream outputs of the same name: how prints are split into messages depends
    on timing, and the stored notebook must not."""
    merged = []
    for out in outputs:
        if (
            merged
            and out.get("output_type") == "stream"
            and merged[-1].get("output_type") == "stream"
            and merged[-1].get("name") == out.get("name")
        ):
            merged[-1]["text"] = merged[-1]["text"] + out["text"]
        else:
            merged.append(out)
    return merged


def _digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _hide_solution(cell) -> None:
    """An exercise's solution stays hidden until the reader asks: behind a toggle in the book
    (myst-nb's ``hide-cell``: input and output), collapsed in Jupyter (``source_hidden`` and
    ``outputs_hidden``; the cell still runs, so nbval still checks it)."""
    tags = [t for t in cell.metadata.get("tags", []) if t not in ("hide-input", "hide-output")]
    cell.metadata["tags"] = tags + ["hide-cell"] if "hide-cell" not in tags else tags
    cell.metadata["jupyter"] = {"source_hidden": True, "outputs_hidden": True}
    # the nbformat 3 name of outputs_hidden, which JupyterLab writes back on opening a notebook that
    # lacks it: stored here, opening a chapter does not mark it modified
    cell.metadata["collapsed"] = True


CAPTION = "jupyter-caption"  # metadata bnbook= of the caption cells below


def _caption_cell(figure: dict):
    """The caption of a figure (myst-nb's cell metadata, which Jupyter does not show) as a MyST
    figure in a markdown cell after it, for JupyterLab and Notebook 7 (jupyterlab-myst numbers it
    and resolves {numref} to its label); tagged remove-cell, so the book shows the caption once."""
    caption = textwrap.fill(figure["caption"], 88, break_long_words=False, break_on_hyphens=False)
    label = [f":label: {figure['name']}"] if figure.get("name") else []
    cell = nbformat.v4.new_markdown_cell("\n".join([":::{figure}", *label, "", caption, ":::"]))
    cell.metadata = {"tags": ["remove-cell"], "bnbook": CAPTION}
    return cell


_EXPLORE = re.compile(r"^explore\((?:ch\d\d|intro)\.(\w+)[,)]", re.M)


def number_interactive_figures(nb) -> None:
    """An interactive figure's cell gets myst-nb figure metadata from its registered figure (title,
    alt text, controls), unless the chapter wrote its own: the book numbers it with the static
    figures and {numref}`fig-<function name>` refers to it (dashes for underscores)."""
    from bnbook.explore import all_figures, explore

    registry = all_figures()
    for cell in nb.cells:
        match = _EXPLORE.search(cell.source) if cell.cell_type == "code" else None
        if not match or "figure" in cell.metadata.get("mystnb", {}):
            continue
        fn = registry[match.group(1)]
        panel = explore(fn)
        caption = f"{fn.title} (interactive). {fn.alt}; the controls set {panel.control_names()}."
        cell.metadata["mystnb"] = {
            "figure": {"caption": caption, "name": "fig-" + fn.__name__.replace("_", "-")},
            "image": {"alt": fn.alt},
        }


def add_jupyter_captions(nb) -> None:
    """After every code cell with a myst-nb figure caption, its caption cell (made afresh)."""
    cells = []
    for cell in nb.cells:
        if cell.metadata.get("bnbook") == CAPTION:
            continue
        cells.append(cell)
        figure = cell.metadata.get("mystnb", {}).get("figure")
        if cell.cell_type == "code" and figure and figure.get("caption"):
            cells.append(_caption_cell(figure))
    nb.cells = cells


def execute(path: Path) -> float:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # outputs that are measurements (timings), tagged nbval-ignore-output: kept from the stored notebook
    # while the cell's source is the one they were measured with (its digest is stored beside them), so
    # re-running does not churn the file; an edited cell is measured again (the book build re-measures
    # them anyway)
    volatile = {
        cell.source: cell.outputs
        for cell in nb.cells
        if cell.cell_type == "code"
        and "nbval-ignore-output" in cell.metadata.get("tags", [])
        and cell.outputs
        and cell.metadata.get("source_digest") == _digest(cell.source)
    }
    env_backup = os.environ.pop("BNBOOK_STATIC_HTML", None)
    os.environ.setdefault("KERAS_BACKEND", "torch")
    start = time.perf_counter()
    try:
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
    finally:
        if env_backup is not None:
            os.environ["BNBOOK_STATIC_HTML"] = env_backup
    elapsed = time.perf_counter() - start
    nb.metadata.pop("widgets", None)
    # nbclient's language_info is kept whole: JupyterLab fills in any field that is missing when it
    # opens a notebook, which marks it modified (and autosaves it two minutes later)
    number_interactive_figures(nb)
    add_jupyter_captions(nb)
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i:03d}"
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        if cell.source.lstrip().startswith("# Solution"):
            _hide_solution(cell)
        if "nbval-ignore-output" in cell.metadata.get("tags", []):
            cell.metadata["source_digest"] = _digest(cell.source)
        if cell.source in volatile:
            cell.outputs = volatile[cell.source]
        cell.outputs = _coalesce_streams(cell.outputs)
        for out in cell.outputs:
            # a live widget's view points at a model that exists only in the kernel that ran it; stored,
            # a reopened notebook would show "Error displaying widget: model not found" in its place.
            # What remains is its text/plain and, for interactive figures, the first frame (image/png).
            out.get("data", {}).pop("application/vnd.jupyter.widget-view+json", None)
    nbformat.write(nb, path)
    return elapsed


def main(argv):
    if argv[:1] == ["convert"] and len(argv) == 3:
        convert(Path(argv[1]), Path(argv[2]))
        return 0
    if argv[:1] == ["execute"]:
        paths = [Path(p) for p in argv[1:]] or sorted((ROOT / "book").glob("*.ipynb"))
        for i, path in enumerate(paths, 1):
            print(f"[{i}/{len(paths)}] executing {path} ...", end=" ", flush=True)
            print(f"{execute(path):.1f} s", flush=True)
        print(f"{len(paths)} notebook(s) executed and saved in place")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
