"""One chapter in a real JupyterLab, as a reader runs it (tools/labdriver.py).

JupyterLab is started as ``python3 dev.py lab`` starts it (root or not) on 127.0.0.1 with a token,
on a copy of chapter 2 (short: one interactive figure, about 3 s to run). Debian's chromium opens it
before it runs (not marked modified; the book's markup rendered; the figure's preview shown), runs all
cells (no error output), moves every control of the interactive figure (each move changes the image;
the latency from the key press or click to the new image drawn is printed: the goal lives in
benchmarks/bench_jupyter.py, which times every figure), saves, stops the kernel and reopens it: the
panel comes back from the saved widget state, with no "model not found". Skipped with the browser
tests (``BNBOOK_SKIP_BROWSER=1``).
"""

import json
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import labdriver  # noqa: E402

CHAPTER = "ch02_algorithm.ipynb"
RAW_MYST = (":::{admonition}", ":::{figure}", "{numref}`", "{eq}`", "$$")


@pytest.fixture(scope="module")
def lab_page():
    if os.environ.get("BNBOOK_SKIP_BROWSER") == "1":
        pytest.skip("BNBOOK_SKIP_BROWSER=1: browser tests skipped on request")
    if not Path(labdriver.CHROMIUM).exists():
        pytest.fail(f"{labdriver.CHROMIUM} not found: apt-get install -y chromium (as root)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with labdriver.Lab([CHAPTER]) as lab, sync_playwright() as p:
        browser = labdriver.browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        messages = []
        page.on("console", lambda m: messages.append(m.text) if m.type in ("error", "warning") else None)
        yield lab, page, messages
        browser.close()


def _notebook_text(page) -> str:
    """What the notebook shows (rendered markdown and outputs, of every cell, on screen or not);
    not the sources, which stay in the page's hidden editors."""
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('.jp-MarkdownCell .myst, .jp-MarkdownCell .jp-MarkdownOutput, .jp-OutputArea'))"
        ".map(e => e.textContent).join('\\n')"
    )


def test_a_chapter_runs_saves_and_reopens_in_jupyterlab(lab_page):
    lab, page, messages = lab_page
    stored = lab.notebook(CHAPTER)

    # opened before it runs: unmodified, the markup rendered, the interactive figure's preview shown
    labdriver.open_notebook(page, lab, CHAPTER)
    page.wait_for_timeout(3000)  # what JupyterLab fills in on opening, it fills in now
    assert labdriver.dirty_tabs(page) == [], "opening the chapter marked it modified"
    text = _notebook_text(page)
    assert not [m for m in RAW_MYST if m in text], [m for m in RAW_MYST if m in text]
    assert page.locator(".jp-MarkdownCell aside.myst-admonition").count() >= 1, "no admonition rendered"
    captions = sum(1 for c in stored["cells"] if c["metadata"].get("bnbook") == "jupyter-caption")
    shown = re.findall(r"Figure\s\d+:", text)  # jupyterlab-myst numbers them: "Figure 1:" (no-break space)
    assert captions >= 3 and len(shown) == captions, ("figure captions shown", shown, captions)
    assert not re.search(r"\((eq|fig)-[a-z-]+\)", text), "a cross-reference shown as its raw label"
    previews = page.locator(".jp-OutputArea-output[data-mime-type='image/png'] img")
    assert previews.count() >= 1 + 3, "the interactive figure's preview and the static figures"
    assert "Cross reference target was not found" not in "\n".join(messages)
    assert not [m for m in messages if "Unsatisfied version" in m], messages

    # run all: no errors, one live panel
    seconds = labdriver.run_all(page)
    assert labdriver.error_outputs(page) == 0
    assert labdriver.panel_count(page) == 1
    print(f"\n{CHAPTER}: Run All Cells took {seconds:.1f} s in JupyterLab")

    # every control changes the image
    before = page.locator(labdriver.PANEL).first.locator("img").get_attribute("src")
    changes = labdriver.sweep(page, 0, moves_per_control=3)
    assert len(changes) >= 3 * len(labdriver.controls(page, 0)) >= 6
    assert page.locator(labdriver.PANEL).first.locator("img").get_attribute("src") != before
    ms = sorted(m for m, _ in changes)
    print(f"latency from input to the new image: median {labdriver.median(ms):.0f} ms, max {ms[-1]:.0f} ms")
    values = labdriver.status_text(page, 0)

    # save, stop the kernel (as closing JupyterLab does), reopen: the panel is back, as it was left
    labdriver.save(page)
    saved = lab.notebook(CHAPTER)
    assert not [o for c in saved["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert saved["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    lab.shutdown_kernels()
    labdriver.open_notebook(page, lab, CHAPTER)
    page.wait_for_selector(labdriver.PANEL, timeout=30_000)
    assert "model not found" not in _notebook_text(page)
    assert labdriver.panel_count(page) == 1
    assert labdriver.status_text(page, 0) == values


def test_stored_chapters_hold_no_widget_views_and_open_unmodified():
    # what the test above checks in the browser for one chapter, checked on the files for all of them:
    # no view of a model that only a finished kernel had; the fields JupyterLab would add are there
    for path in sorted((ROOT / "book").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        assert nb["metadata"]["language_info"].get("codemirror_mode"), path.name
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {}), path.name
            if cell["metadata"].get("jupyter", {}).get("outputs_hidden"):
                assert cell["metadata"].get("collapsed") is True, (path.name, cell["id"])
