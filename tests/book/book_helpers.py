"""Shared by the book tests: build the book once per session, serve it on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"


@functools.cache
def build_book():
    """Build with dev.py (warnings are errors); returns (returncode, log, seconds)."""
    env = dict(os.environ, BNBOOK_VENV=sys.prefix)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), "book"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    return result.returncode, result.stdout + result.stderr, time.perf_counter() - start


def pages():
    """Every HTML page of the built book, relative to _build/html."""
    skip = {"genindex.html"}
    return sorted(
        str(p.relative_to(HTML))
        for p in HTML.rglob("*.html")
        if p.name not in skip and "_static" not in p.parts and "_sources" not in p.parts
    )


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class Server:
    """``python -m http.server`` on 127.0.0.1 and a free port, in a thread."""

    def __enter__(self):
        handler = functools.partial(_Quiet, directory=str(HTML))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
