"""Sphinx extension for bn-book.

* Switches :func:`bnbook.explore.static_mode` on before any chapter executes, so the kernels that
  run chapters during the build inherit it and :func:`bnbook.explore.explore` emits precomputed
  HTML frames instead of live widgets (see the docstring of :mod:`bnbook.explore`).
* Adds the stylesheet for those static controls.
* The page head: a meta description per page (its first paragraph), one title on the front page
  (the book's title is also the front page's), and after the build a ``404.html`` for web hosts and,
  when a base URL is configured, a ``sitemap.xml``.
* Lightens every page after the build (:func:`lighten_page`): the frames of interactive figures
  become image files that the page fetches when a control needs them (only the first frame is in
  the page); every local PNG gets its width and height; the theme's 1.45 MB ``fontawesome.js``,
  which every page loaded to draw about fifteen icons, is replaced by a small stylesheet drawing
  the same icons from the same Font Awesome paths (:func:`icon_css`).
* Fixes the narrow-screen navigation of pydata-sphinx-theme 0.17 (its issue 2451): the theme binds
  the drawers to the first, hidden ``.primary-toggle``/``.secondary-toggle``; ``bnbook.js`` forwards
  clicks on the visible buttons to those.
* Downloads that run anywhere (:func:`write_downloads`): a wheel of ``bnlib`` and ``bnbook`` built
  from this checkout and a zip of every chapter notebook, under ``downloads/``; the chapters' first
  cells name the wheel, and "Running the book yourself" links both.
* Sets up :mod:`bnbook.katex`, the math renderer ``bnbook_katex``: the math is typeset at build
  time, and pages with math load KaTeX's stylesheet and fonts only, instead of MathJax's 1.16 MB
  script.
* Switches sphinx-thebe off. Jupyter Book 1 always loads it; it declares ``THEBE_JS_URL`` once per
  read of the environment (a page error, "already declared", on every page) and points at a CDN.
  The book is offline and its interactive figures need no kernel, so Thebe has nothing to do here.
"""

import base64
import hashlib
import html
import json
import os
import re
import struct
from html.parser import HTMLParser
from pathlib import Path

from .explore import STATIC_ENV

#: the book's own stylesheet folder (the repository's ``book/_static``), found from the source dir
STATIC = Path("book") / "_static"


def setup(app):
    os.environ[STATIC_ENV] = "1"
    app.connect("config-inited", _drop_thebe)
    app.connect("builder-inited", _add_static)
    app.setup_extension("bnbook.katex")
    app.connect("env-get-outdated", _static_changed)
    app.add_css_file("bnbook.css")
    app.add_css_file(ICON_CSS)  # written after the build, from the icons the pages use
    app.add_js_file("bnbook.js")
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


def _static_changed(app, env, added, changed, removed):
    """Every page, when a file of book/_static differs from its copy in the build: Sphinx copies static
    files only in a build that rewrites some page, so an edited stylesheet alone never reached the
    site until a clean build."""
    return list(env.found_docs) if static_outdated(Path(app.srcdir) / STATIC, Path(app.outdir) / "_static") else []


def static_outdated(source: Path, built: Path) -> bool:
    """True when a file under ``source`` is missing under ``built`` or has other bytes."""
    for path in source.rglob("*"):
        if path.is_file():
            copy = built / path.relative_to(source)
            if not copy.is_file() or copy.read_bytes() != path.read_bytes():
                return True
    return False


DESCRIPTION_LENGTH = 160


def page_description(body_html: str, fallback: str) -> str:
    """The first paragraph of a page's body as plain text, at most ``DESCRIPTION_LENGTH`` characters."""
    for paragraph in re.findall(r"<p>(.*?)</p>", body_html or "", flags=re.S):
        text = re.sub(r"\s+", " ", spoken_text(paragraph)).strip()
        if len(text) >= 40:  # skip captions, labels and one-word paragraphs
            if len(text) > DESCRIPTION_LENGTH:
                text = text[: DESCRIPTION_LENGTH - 1].rsplit(" ", 1)[0] + "\u2026"
            return text
    return fallback


class _SpokenText(HTMLParser):
    _VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self._hidden = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in self._VOID:
            if tag == "br" and not self._hidden:
                self.parts.append(" ")
            return
        if self._hidden or ("aria-hidden", "true") in attrs or tag == "annotation":
            self._hidden += 1

    def handle_endtag(self, tag):
        if self._hidden and tag not in self._VOID:
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)


def spoken_text(fragment: str) -> str:
    """The text of an HTML fragment as a screen reader gets it: without what is ``aria-hidden`` and
    without MathML's TeX annotation, so an equation typeset by KaTeX counts once, as its MathML text
    (``\\mu_B`` reads "μB"), not three times over."""
    parser = _SpokenText()
    parser.feed(fragment)
    parser.close()
    return "".join(parser.parts)


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
    # the single-page builder writes the page at the root document's path but links from the site root
    _lighten_site(out, links_from_root=app.builder.name == "singlehtml")
    write_downloads(Path(app.srcdir), out / DOWNLOADS)
    base = (app.config.html_baseurl or "").strip()
    # a 404 page served for any missing address: links are absolute from the base URL when there is one
    root = base if base.endswith("/") or not base else base + "/"
    (out / "404.html").write_text(NOT_FOUND.format(title=html.escape(app.config.html_title), root=root or "/"))
    if base:
        pages = [app.builder.get_target_uri(doc) for doc in sorted(app.env.found_docs)]
        (out / "sitemap.xml").write_text(sitemap_xml(base, pages))


# ---- lighter pages -------------------------------------------------------------------------------

ICON_CSS = "bnbook-icons.css"
FRAMES = "frames"  # under _static: one PNG per frame of every interactive figure

_FRAMES_JSON = re.compile(r'(<script type="application/json" id="(bnx-[0-9a-f]+)-frames">)(.*?)(</script>)', re.S)
_FRAME_IMG = re.compile(r'(<img class="bnx-img" id="(bnx-[0-9a-f]+)-img" )src="data:image/png;base64,([^"]+)"')
_LOCAL_PNG = re.compile(r'<img (?![^>]*\bwidth=)([^>]*?)src="((?!data:|https?:)[^"]+\.png)"')
_FONTAWESOME = re.compile(r'<script[^>]*src="[^"]*_static/scripts/fontawesome\.js[^"]*"[^>]*></script>\s*')
_ICON_CLASSES = re.compile(r'class="([^"]*\b(?:fa-solid|fas)\b[^"]*)"')


def png_size(data: bytes):
    """``(width, height)`` of a PNG from its IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def lighten_page(text: str, page: Path, out: Path, *, links_from=None) -> str:
    """One built page, lighter: interactive frames as files under ``_static/frames`` (the JSON list
    then holds their relative URLs, which the controls' script loads as before), the first frame and
    every local PNG with ``width`` and ``height`` (the static figures also ``loading="lazy"``), and no
    ``fontawesome.js``. Relative links are written and read from ``links_from`` (default: the page's
    folder). A page lightened before is returned unchanged."""
    links_from = page.parent if links_from is None else links_from
    frames_dir = out / "_static" / FRAMES
    rel = os.path.relpath(frames_dir, links_from).replace(os.sep, "/")

    def frame_file(uid, i, b64):
        data = base64.b64decode(b64)
        name = f"{uid}-{i:03d}-{hashlib.sha1(data).hexdigest()[:8]}.png"
        frames_dir.mkdir(parents=True, exist_ok=True)
        (frames_dir / name).write_bytes(data)
        return f"{rel}/{name}", png_size(data)

    first = {}

    def frames(m):
        uris = json.loads(m.group(3))
        urls = []
        if not all(isinstance(u, str) and u.startswith("data:image/png;base64,") for u in uris):
            return m.group(0)  # already files
        for i, uri in enumerate(uris):
            urls.append(frame_file(m.group(2), i, uri.split(",", 1)[1])[0])
        first[m.group(2)] = urls
        payload = json.dumps(urls).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        return m.group(1) + payload + m.group(4)

    text = _FRAMES_JSON.sub(frames, text)

    def first_frame(m):
        data = base64.b64decode(m.group(3))
        width, height = png_size(data)
        urls = first.get(m.group(2))
        index = [u.rsplit("-", 1)[1] for u in urls].index(hashlib.sha1(data).hexdigest()[:8] + ".png") if urls else None
        src = urls[index] if index is not None else frame_file(m.group(2), 999, m.group(3))[0]
        return f'{m.group(1)}src="{src}" width="{width}" height="{height}"'

    text = _FRAME_IMG.sub(first_frame, text)

    def sized(m):
        path = (links_from / m.group(2)).resolve()
        try:
            width, height = png_size(path.read_bytes()[:24])
        except (OSError, ValueError):
            return m.group(0)
        # figures below the fold load when the reader gets near them; the size keeps the layout still
        return f'<img {m.group(1)}src="{m.group(2)}" width="{width}" height="{height}" loading="lazy"'

    text = _LOCAL_PNG.sub(sized, text)
    return accessible(_FONTAWESOME.sub("", text))


_SEARCH_FIELD = re.compile(r'(<button class="btn search-button-field[^"]*"[^>]*?) aria-label="Search"')


def accessible(text: str) -> str:
    """The axe-core (WCAG 2.2 A/AA) failures of the theme and myst-nb, fixed in the built page. The search
    field's ``aria-label="Search"`` and the hidden cells' ``aria-label="Toggle hidden content"`` hide
    their visible text ("Search the book...", "Show code cell content": label-content-name-mismatch),
    so both are named by that text; the bibliography's entries carry the deprecated role
    ``doc-biblioentry`` inside a ``role="list"``, which needs list items."""
    text = _SEARCH_FIELD.sub(r"\1", text)
    text = text.replace('<summary aria-label="Toggle hidden content">', "<summary>")
    return text.replace(' role="doc-biblioentry"', ' role="listitem"')


_ICON_DEF = re.compile(r'(?:"([a-z0-9-]+)"|\b([a-z][a-z0-9]*)):\[(\d+),(\d+),\[[^\]]*\],"[0-9a-f]+","(M[^"]+)"\]')


def solid_icons(fontawesome_js: str) -> dict:
    """name -> ``(width, height, path)`` of every icon in the solid pack of the theme's fontawesome.js."""
    packs = [m.start() for m in re.finditer(r'\(\s*"fa[srb]"\s*,', fontawesome_js)]
    solid = next(i for i, start in enumerate(packs) if fontawesome_js.startswith('("fas"', start))
    region = fontawesome_js[packs[solid - 1] if solid else 0 : packs[solid]]
    return {
        (m.group(1) or m.group(2)): (int(m.group(3)), int(m.group(4)), m.group(5)) for m in _ICON_DEF.finditer(region)
    }


def icon_css(icons: dict, names) -> str:
    """A stylesheet drawing each ``class="fa-solid fa-NAME"`` (or ``fas``) as its Font Awesome path, in the text
    colour (a CSS mask over ``currentColor``), sized like Font Awesome's own SVGs."""
    rules = [
        "/* Font Awesome Free icons (CC BY 4.0, https://fontawesome.com/license/free), drawn as CSS masks:",
        "   the few icons the theme uses, instead of the 1.45 MB fontawesome.js that draws them all. */",
        ":is(.fa-solid,.fas){display:inline-block;height:1em;width:1em;vertical-align:-0.125em;"
        "background-color:currentColor;-webkit-mask:var(--bnb-icon) center/contain no-repeat;"
        "mask:var(--bnb-icon) center/contain no-repeat}",
        ":is(.fa-solid,.fas).fa-lg{font-size:1.25em;line-height:0.05em;vertical-align:-0.2em}",
    ]
    missing = []
    for name in sorted(names):
        if name not in icons:
            missing.append(name)
            continue
        width, height, path = icons[name]
        svg = f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}'><path d='{path}'/></svg>"
        uri = "data:image/svg+xml," + svg.replace("<", "%3C").replace(">", "%3E").replace("#", "%23")
        rules.append(f':is(.fa-solid,.fas).fa-{name}{{--bnb-icon:url("{uri}");width:{width / height:.4g}em}}')
    if missing:
        raise ValueError(f"icons not found in fontawesome.js: {', '.join(missing)}")
    return "\n".join(rules) + "\n"


_ICON_MODIFIERS = {"fa-solid", "fas", "fa-lg", "fa-xs", "fa-sm", "fa-xl", "fa-fw", "fa-2x", "fa-3x"}


def _lighten_site(out: Path, links_from_root=False):
    fontawesome = out / "_static" / "scripts" / "fontawesome.js"
    names = set()
    for page in out.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        for classes in _ICON_CLASSES.findall(text):
            names |= {c[3:] for c in classes.split() if c.startswith("fa-") and c not in _ICON_MODIFIERS}
        lighter = lighten_page(text, page, out, links_from=out if links_from_root else None)
        if lighter != text:
            page.write_text(lighter, encoding="utf-8")
    if fontawesome.exists():
        css = icon_css(solid_icons(fontawesome.read_text(encoding="utf-8")), names)
        (out / "_static" / ICON_CSS).write_text(css, encoding="utf-8")
        for leftover in (fontawesome, fontawesome.with_name("fontawesome.js.map")):
            leftover.unlink(missing_ok=True)


# ---- downloads -----------------------------------------------------------------------------------

DOWNLOADS = "downloads"
NOTEBOOKS_ZIP = "bn-book-notebooks.zip"


def wheel_name() -> str:
    """The file name of the book's wheel: ``bnlib-<version>-py3-none-any.whl``."""
    from bnlib import __version__

    return f"bnlib-{__version__}-py3-none-any.whl"


def write_downloads(root: Path, target: Path):
    """Build the wheel of ``bnlib`` and ``bnbook`` (pip, from the checkout at ``root``, offline: no
    build isolation) and zip every chapter notebook of ``root/book`` into ``target``."""
    import subprocess
    import sys
    import tempfile
    import zipfile

    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # build from a copy: setuptools writes build/ and *.egg-info next to the sources it builds
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            (src / name).write_bytes((root / name).read_bytes())
        for package in ("bnlib", "bnbook"):
            for f in (root / package).glob("*.py"):
                (src / package).mkdir(exist_ok=True)
                (src / package / f.name).write_bytes(f.read_bytes())
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp, str(src)],
            capture_output=True,
            text=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode or [w.name for w in wheels] != [wheel_name()]:
            raise RuntimeError(f"building {wheel_name()} failed:\n{result.stdout}{result.stderr}")
        (target / wheel_name()).write_bytes(wheels[0].read_bytes())
    with zipfile.ZipFile(target / NOTEBOOKS_ZIP, "w", zipfile.ZIP_DEFLATED) as archive:
        for notebook in sorted((root / "book").glob("*.ipynb")):
            archive.write(notebook, f"bn-book/{notebook.name}")
