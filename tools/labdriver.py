"""Drive the chapters in a real JupyterLab from Debian's chromium, as a reader would.

Used by the live-Jupyter test (``tests/book/test_jupyter.py``, one chapter) and the latency benchmark
(``benchmarks/bench_jupyter.py``, every interactive figure). :class:`Lab` starts JupyterLab the way
the README does (``python3 dev.py lab``, root or not) on 127.0.0.1 with a token, on a copy of the
chapters so that saving changes nothing in the repository; the functions below open a notebook, run
it, move the controls of its interactive figures (``bnbook.explore`` panels) and time, in the page,
each change from the key press or click to the new image drawn on screen.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
PANEL = ".bnbook-explorer"  # the class bnbook.explore gives its ipywidgets panel
TOKEN = "bnbook-lab-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """``python3 dev.py lab COPY`` on a free port of 127.0.0.1; a context manager.

    ``chapters``: notebook names copied from ``book/`` (with ``_static`` and the bibliography) into a
    temporary folder, the one JupyterLab serves.
    """

    def __init__(self, chapters, *, python=None, startup_timeout=120):
        self.chapters = list(chapters)
        self.python = python or sys.executable
        self.startup_timeout = startup_timeout

    def __enter__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="bnbook-lab-"))
        self.folder = self.tmp / "book"
        self.folder.mkdir()
        for name in [*self.chapters, "references.bib"]:
            shutil.copy2(ROOT / "book" / name, self.folder / name)
        shutil.copytree(ROOT / "book" / "_static", self.folder / "_static")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.tmp / "lab.log"
        self._log = open(self.log_path, "w")
        cmd = [
            self.python,
            str(ROOT / "dev.py"),
            "lab",
            str(self.folder),
            "--no-browser",
            f"--port={self.port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={TOKEN}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: commands run as the menus run them
        ]
        env = dict(os.environ, BNBOOK_VENV=str(Path(self.python).resolve().parent.parent))
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log()}")
            try:
                self.api("status")
                return self
            except OSError:
                time.sleep(0.5)
        self.__exit__(None, None, None)
        raise RuntimeError(f"JupyterLab did not answer within {self.startup_timeout} s:\n{self.log()}")

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def api(self, path, method="GET"):
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method)
        request.add_header("Authorization", f"token {TOKEN}")
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self):
        """Stop every kernel (what closing JupyterLab does): a reopened notebook has only its file."""
        for kernel in self.api("kernels"):
            self.api(f"kernels/{kernel['id']}", method="DELETE")

    def notebook(self, name) -> dict:
        return json.loads((self.folder / name).read_text())


def browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)


def open_notebook(page, lab: Lab, name, timeout=90):
    """Open ``name`` alone in JupyterLab (``reset``: no tabs restored from earlier, so the page
    holds this notebook only) and wait until its kernel is connected and idle."""
    page.goto(f"{lab.url}/lab/tree/{name}?reset&token={TOKEN}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout * 1000)
    page.wait_for_function(
        """() => { const app = window.jupyterapp, w = app && app.shell.currentWidget;
          const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
          return !!k && k.status === 'idle' && k.connectionStatus === 'connected'; }""",
        timeout=timeout * 1000,
    )


def execute(page, command_id):
    """Run a JupyterLab command (what a menu entry or a shortcut runs) and wait for its promise."""
    return page.evaluate("(id) => window.jupyterapp.commands.execute(id).then(() => true)", command_id)


def dirty_tabs(page) -> list:
    return page.evaluate("Array.from(document.querySelectorAll('.lm-TabBar-tab.jp-mod-dirty')).map(e => e.textContent)")


def run_all(page, timeout=600) -> float:
    """Run > Run All Cells; returns the seconds until every cell has run (the command's promise
    settles when the last one has, or when one raised) and the kernel is idle again."""
    start = time.perf_counter()
    page.set_default_timeout(timeout * 1000)
    try:
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells').then(() => true)")
        page.wait_for_function(
            """() => { const w = window.jupyterapp.shell.currentWidget;
              const k = w && w.sessionContext.session && w.sessionContext.session.kernel;
              return !!k && k.status === 'idle'; }""",
            polling=100,
        )
    finally:
        page.set_default_timeout(30_000)
    return time.perf_counter() - start


def save(page, timeout=30):
    """File > Save Notebook (Ctrl+S), then wait until no tab is marked modified."""
    execute(page, "docmanager:save")
    page.wait_for_function(
        "() => document.querySelectorAll('.lm-TabBar-tab.jp-mod-dirty').length === 0", timeout=timeout * 1000
    )


def panel_count(page) -> int:
    return page.locator(PANEL).count()


def panel_title(page, i) -> str:
    return page.locator(PANEL).nth(i).locator("b").first.text_content().strip()


def scroll_to_panel(page, i):
    """Bring panel ``i`` into view (JupyterLab renders only the cells near the viewport)."""
    page.locator(PANEL).nth(i).scroll_into_view_if_needed()


def error_outputs(page) -> int:
    """Error outputs (tracebacks) shown in the open notebook."""
    return page.locator("[data-mime-type='application/vnd.jupyter.error']").count()


_ARM = """(i) => {
  const img = document.querySelectorAll('__PANEL__')[i].querySelector('img');
  const state = {t0: null, t1: null, before: img.src};
  window.__bnbookLatency = state;
  const start = () => { if (state.t0 === null) state.t0 = performance.now(); };
  for (const type of ['keydown', 'pointerdown', 'change'])
    document.addEventListener(type, start, {capture: true, once: true});
  const obs = new MutationObserver(() => {
    if (img.src === state.before) return;
    obs.disconnect();
    const drawn = () => requestAnimationFrame(() => { state.t1 = performance.now(); });
    img.decode().then(drawn, drawn);
  });
  obs.observe(img, {attributes: true, attributeFilter: ['src']});
}""".replace("__PANEL__", PANEL)


def controls(page, i) -> list:
    """The controls of panel ``i``: ``(kind, index)`` with kind slider, checkbox or dropdown."""
    panel = page.locator(PANEL).nth(i)
    found = []
    for kind, selector in (("slider", ".noUi-handle"), ("checkbox", "input[type=checkbox]"), ("dropdown", "select")):
        found += [(kind, k) for k in range(panel.locator(selector).count())]
    return found


def move(page, i, control, step, timeout=30) -> float:
    """Move one control of panel ``i`` by one position (``step`` +1 or -1; wraps for dropdowns; a
    checkbox is clicked); returns milliseconds from the reader's input to the new image drawn."""
    kind, k = control
    panel = page.locator(PANEL).nth(i)
    page.evaluate(_ARM, i)
    if kind == "slider":
        handle = panel.locator(".noUi-handle").nth(k)
        handle.focus()
        handle.press("ArrowRight" if step > 0 else "ArrowLeft")
    elif kind == "checkbox":
        panel.locator("input[type=checkbox]").nth(k).click()
    else:
        select = panel.locator("select").nth(k)
        options = select.locator("option").count()
        current = select.evaluate("s => s.selectedIndex")
        select.focus()
        select.select_option(index=(current + step) % options)
    page.wait_for_function("() => window.__bnbookLatency.t1 !== null", timeout=timeout * 1000, polling="raf")
    return page.evaluate("() => window.__bnbookLatency.t1 - window.__bnbookLatency.t0")


def slider_positions(page, i, k) -> tuple:
    """(position, count) of slider ``k`` of panel ``i`` (from the handle's ARIA values)."""
    handle = page.locator(PANEL).nth(i).locator(".noUi-handle").nth(k)
    now = float(handle.get_attribute("aria-valuenow"))
    low = float(handle.get_attribute("aria-valuemin"))
    high = float(handle.get_attribute("aria-valuemax"))
    return int(now - low), int(high - low) + 1


def status_text(page, i) -> str:
    """The values line under panel ``i``'s image (which combination it shows)."""
    return page.locator(PANEL).nth(i).locator(".widget-html-content").last.text_content()


def sweep(page, i, moves_per_control=6) -> list:
    """Move every control of panel ``i`` back and forth; returns ``(ms, first)`` per change, with
    ``first`` true when the panel had not shown that combination before (drawn, not recalled)."""
    seen = {status_text(page, i)}
    latencies = []
    for control in controls(page, i):
        step = 1
        for _ in range(moves_per_control):
            if control[0] == "slider":
                pos, count = slider_positions(page, i, control[1])
                if count < 2:
                    break
                if not 0 <= pos + step < count:
                    step = -step
            ms = move(page, i, control, step)
            shown = status_text(page, i)
            latencies.append((ms, shown not in seen))
            seen.add(shown)
    return latencies


def median(values):
    return statistics.median(values) if values else float("nan")
