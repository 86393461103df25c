"""Sphinx extension for bn-book.

* Switches :func:`bnbook.explore.static_mode` on before any chapter executes, so the kernels that
  run chapters during the build inherit it and :func:`bnbook.explore.explore` emits precomputed
  HTML frames instead of live widgets (see the docstring of :mod:`bnbook.explore`).
* Adds the stylesheet for those static controls.
* The page head: a meta description per page (its first paragraph), one title on the front page
  (the book's title is also the front page's), and after the build a ``404.html`` for web hosts and,
  when a base URL is configured, a ``sitemap.xml``.
* Switches sphinx-thebe off. Jupyter Book 1 always loads it; it declares ``THEBE_JS_URL`` once per
  read of the environment (a page error, "already declared", on every page) and points at a CDN.
  The book is offline and its interactive figures need no kernel, so Thebe has nothing to do here.
"""

import html
import os
import re
from pathlib import Path

from .explore import STATIC_ENV

#: the book's own stylesheet folder (the repository's ``book/_static``), found from the source dir
STATIC = Path("book") / "_static"


def setup(app):
    os.environ[STATIC_ENV] = "1"
    app.connect("config-inited", _drop_thebe)
    app.connect("builder-inited", _add_static)
    app.add_css_file("bnbook.css")
    app.connect("html-page-context", _head)
    app.connect("build-finished", _after_build)
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


DESCRIPTION_LENGTH = 160


def page_description(body_html: str, fallback: str) -> str:
    """The first paragraph of a page's body as plain text, at most ``DESCRIPTION_LENGTH`` characters."""
    for paragraph in re.findall(r"<p>(.*?)</p>", body_html or "", flags=re.S):
        text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", paragraph))).strip()
        if len(text) >= 40:  # skip captions, labels and one-word paragraphs
            if len(text) > DESCRIPTION_LENGTH:
                text = text[: DESCRIPTION_LENGTH - 1].rsplit(" ", 1)[0] + "\u2026"
            return text
    return fallback


def _book_summary(app) -> str:
    """The description of a page with no paragraph of its own (search, index)."""
    return f"{app.config.html_title}: an interactive book on batch normalization in which every number is measured."


def _head(app, pagename, templatename, context, doctree):
    description = page_description(context.get("body", ""), _book_summary(app))
    context["metatags"] = (
        context.get("metatags", "") + f'\n<meta name="description" content="{html.escape(description)}" />'
    )


def sitemap_xml(base_url: str, pages) -> str:
    """A sitemap of ``pages`` (paths relative to the site root) under ``base_url``."""
    base = base_url if base_url.endswith("/") else base_url + "/"
    urls = "".join(f"  <url><loc>{html.escape(base + p)}</loc></url>\n" for p in sorted(pages))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        + urls
        + "</urlset>\n"
    )


DOUBLED_TITLE = re.compile(r"<title>([^<]+?) &#8212; \1</title>")

NOT_FOUND = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Page not found | {title}</title><meta name="description" content="This page does not exist in {title}.">
<link rel="icon" href="{root}_static/favicon.svg" type="image/svg+xml">
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;line-height:1.5}}
a{{color:#005a8c}}</style></head>
<body><main><h1>Page not found</h1><p>There is no page at this address in <em>{title}</em>.</p>
<p><a href="{root}index.html">Go to the book's front page</a>, or use its search.</p></main></body></html>
"""


def _after_build(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    # the front page's title is the book's: the theme's layout would write it twice ("X — X")
    for page in out.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        single = DOUBLED_TITLE.sub(r"<title>\1</title>", text, count=1)
        if single != text:
            page.write_text(single, encoding="utf-8")
    base = (app.config.html_baseurl or "").strip()
    # a 404 page served for any missing address: links are absolute from the base URL when there is one
    root = base if base.endswith("/") or not base else base + "/"
    (out / "404.html").write_text(NOT_FOUND.format(title=html.escape(app.config.html_title), root=root or "/"))
    if base:
        pages = [app.builder.get_target_uri(doc) for doc in sorted(app.env.found_docs)]
        (out / "sitemap.xml").write_text(sitemap_xml(base, pages))
