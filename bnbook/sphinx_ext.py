"""Sphinx extension for bn-book.

* Switches :func:`bnbook.explore.static_mode` on before any chapter executes, so the kernels that
  run chapters during the build inherit it and :func:`bnbook.explore.explore` emits precomputed
  HTML frames instead of live widgets (see the docstring of :mod:`bnbook.explore`).
* Adds the stylesheet for those static controls.
* Switches sphinx-thebe off. Jupyter Book 1 always loads it; it declares ``THEBE_JS_URL`` once per
  read of the environment (a page error, "already declared", on every page) and points at a CDN.
  The book is offline and its interactive figures need no kernel, so Thebe has nothing to do here.
"""

import os
from pathlib import Path

from .explore import STATIC_ENV

#: the book's own stylesheet folder (the repository's ``book/_static``), found from the source dir
STATIC = Path("book") / "_static"


def setup(app):
    os.environ[STATIC_ENV] = "1"
    app.connect("config-inited", _drop_thebe)
    app.connect("builder-inited", _add_static)
    app.add_css_file("bnbook.css")
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}


def _drop_thebe(app, config):
    for listeners in app.events.listeners.values():
        for listener in list(listeners):
            if getattr(listener.handler, "__module__", "").startswith("sphinx_thebe"):
                app.disconnect(listener.id)
    # its stylesheet was registered at set-up; without the (disconnected) static path it would be a 404
    app.registry.css_files[:] = [(name, attrs) for name, attrs in app.registry.css_files if "thebe" not in name]


def _add_static(app):
    static = str(Path(app.srcdir) / STATIC)
    if static not in app.config.html_static_path:
        app.config.html_static_path.append(static)
