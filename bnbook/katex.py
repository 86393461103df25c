"""The book's math, typeset once at build time by KaTeX, so that pages carry no math engine.

MathJax typesets in the reader's browser: every page with an equation loaded its 1.16 MB
``tex-chtml.js`` before showing it. Here KaTeX runs at build time instead, inside the Python process
(the QuickJS engine from PyPI's ``quickjs``; no Node.js), and each equation reaches the page as HTML
and CSS for the eye plus MathML for screen readers. A page with math then loads KaTeX's 25 kB
stylesheet and the few fonts its equations use, and works offline and from ``file://`` like the rest.

As a Sphinx extension (``bnbook.sphinx_ext`` sets it up), this module adds the math renderer
``bnbook_katex``; ``html_math_renderer`` selects it (``_config.yml`` does).

KaTeX itself comes from the npm registry: the pinned release's tarball is fetched once into
``.tools/`` and checked against its published SHA-512 (:func:`ensure_katex`).

Where KaTeX differs from MathJax for this book: it has no ``\\label`` and no ``\\eqref`` inside math
(the book labels equations with MyST's ``:label:`` and cites them with ``{eq}``), and it refuses
TeX it does not know rather than showing it in red. A formula it cannot typeset is a build warning
that names the formula and the page (and an error under ``-W``, as ``python3 dev.py book`` builds).
"""

import base64
import hashlib
import html
import io
import os
import re
import shutil
import tarfile
import urllib.request
from functools import lru_cache
from pathlib import Path

KATEX_VERSION = "0.19.1"
KATEX_TARBALL = f"https://registry.npmjs.org/katex/-/katex-{KATEX_VERSION}.tgz"
#: the ``dist.integrity`` the npm registry publishes for that tarball
KATEX_INTEGRITY = "sha512-jG8uKntjSEcm2EpQOh0XturpPuuC9r3Sq5HLHdsFdWZT27E672SF19QEi+of0/YeOy15lDgRhKvr5614uRrEfA=="

#: the options of every ``katex.renderToString`` call: errors raise (never red text on the page), and
#: ``strict: "error"`` refuses what KaTeX would only warn about (text outside ``\\text``, unknown
#: Unicode), since no one reads a build's console warnings
OPTIONS = '{displayMode: display, throwOnError: true, strict: "error", output: "htmlAndMathml", trust: false}'


class MathError(ValueError):
    """KaTeX refused a formula; the message quotes the formula and KaTeX's reason."""


#: the subfolder of :func:`ensure_katex`'s folder that the site's ``_static`` takes in
STATIC = "static"
#: KaTeX's stylesheet, relative to ``_static`` (its fonts are beside it, in ``fonts/``)
CSS = "katex/katex.min.css"


def katex_dir(root: Path) -> Path:
    """Where :func:`ensure_katex` keeps KaTeX for the project at ``root``."""
    return Path(root) / ".tools" / f"katex-{KATEX_VERSION}"


def ensure_katex(root: Path, *, url: str = KATEX_TARBALL, integrity: str = KATEX_INTEGRITY) -> Path:
    """The folder under ``root/.tools`` holding KaTeX's ``katex.min.js`` (which typesets) and, under
    ``static/katex/``, its stylesheet and fonts (which the pages load), fetched from ``url`` first if
    it is not there. The download is refused unless its SHA-512 is ``integrity``; nothing is kept
    from a download that failed or did not match."""
    target = katex_dir(root)
    if (target / "katex.min.js").is_file() and (target / STATIC / CSS).is_file():
        return target
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except OSError as error:
        raise RuntimeError(
            f"KaTeX {KATEX_VERSION}, which typesets the book's math, is not in {target} and could not be "
            f"fetched from {url} ({error}). Fetch that file on a machine that can, unpack its package/dist/ "
            f"folder as {target}, and build again."
        ) from None
    algorithm, _, expected = integrity.partition("-")
    got = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if got != expected:
        raise RuntimeError(f"{url}: its {algorithm} is {got}, not the pinned {expected}; nothing was unpacked")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():
            name = member.name.removeprefix("package/dist/")
            if not member.isfile() or name == member.name or ".." in Path(name).parts:
                continue
            if name == "katex.min.js":
                dest = partial / name
            elif name == "katex.min.css" or name.startswith("fonts/"):
                dest = partial / STATIC / "katex" / name
            else:
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(archive.extractfile(member).read())
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


class Katex:
    """``katex.renderToString`` of the ``katex.min.js`` in ``dist``, run in one QuickJS context."""

    def __init__(self, dist: Path):
        import quickjs

        source = (Path(dist) / "katex.min.js").read_text(encoding="utf-8")
        self._render = quickjs.Function(
            "render", source + f"\nfunction render(tex, display) {{ return katex.renderToString(tex, {OPTIONS}); }}"
        )
        self._error = quickjs.JSException
        self.render = lru_cache(maxsize=None)(self._typeset)

    def _typeset(self, tex: str, display: bool) -> str:
        if not isinstance(tex, str):
            raise TypeError(f"a formula is a str of TeX, not {type(tex).__name__}")
        try:
            return self._render(tex, bool(display))
        except self._error as error:
            reason = str(error).splitlines()[0].removeprefix("ParseError: ").removeprefix("KaTeX parse error: ")
            # KaTeX underlines the place with combining characters after "at position N": the number says it
            reason = re.sub(r"( at position \d+):.*", r"\1", reason)
            raise MathError(f"KaTeX cannot typeset {tex!r}: {reason}") from None


_KATEX = {}


def katex(dist: Path) -> Katex:
    """One :class:`Katex` per process and folder (Sphinx's parallel writers are forked processes)."""
    key = (os.getpid(), str(dist))
    if key not in _KATEX:
        _KATEX[key] = Katex(dist)
    return _KATEX[key]


# ---- the Sphinx extension ------------------------------------------------------------------------

MATH_RENDERER = "bnbook_katex"  # _config.yml selects it: sphinx.config.html_math_renderer


def _katex_of(translator):
    """The KaTeX of this build (fetched into .tools/ on first use)."""
    return katex(ensure_katex(_root(translator.builder.config, translator.builder.srcdir)))


def _typeset(translator, node, tex, display):
    """``tex`` typeset by KaTeX; a formula KaTeX refuses is a warning at its place, shown as its TeX."""
    from sphinx.util import logging

    try:
        return _katex_of(translator).render(tex, display)
    except MathError as error:
        logging.getLogger(__name__).warning(str(error), location=node, type="bnbook", subtype="math")
        return f'<code class="bnbook-math-error">{html.escape(tex)}</code>'


def _visit_math(self, node):
    """Inline math: KaTeX's HTML and MathML in the ``span.math`` that Sphinx's MathJax renderer writes."""
    from docutils import nodes

    self.body.append(self.starttag(node, "span", "", CLASS="math notranslate nohighlight"))
    self.body.append(_typeset(self, node, node.astext(), False) + "</span>")
    raise nodes.SkipNode


def _visit_displaymath(self, node):
    """Display math, as Sphinx's MathJax renderer lays it out: the equation number with its permalink,
    then the equation (:func:`display_tex`); a ``nowrap`` block (MyST's amsmath environments) is
    typeset as written."""
    from docutils import nodes
    from sphinx.locale import _
    from sphinx.util.math import get_node_equation_number

    self.body.append(self.starttag(node, "div", CLASS="math notranslate nohighlight"))
    if node["number"] and not node["nowrap"]:
        self.body.append(f'<span class="eqno">({get_node_equation_number(self, node)})')
        self.add_permalink_ref(node, _("Link to this equation"))
        self.body.append("</span>")
    tex = node.astext() if node["nowrap"] else display_tex(node.astext())
    self.body.append(_typeset(self, node, tex, True) + "</div>\n")
    raise nodes.SkipNode


def display_tex(tex: str) -> str:
    """The TeX of one display block as KaTeX gets it, laid out as Sphinx lays it out for MathJax:
    paragraphs (parts separated by a blank line) become the aligned rows of one display, and a part
    with line breaks (``\\\\``) becomes a ``split``, unless it is an environment of its own
    (``gathered``, ``aligned``, ...), which keeps its layout."""
    parts = [part for part in tex.split("\n\n") if part.strip()]
    rows = [
        part if "\\\\" not in part or part.lstrip().startswith("\\begin{") else f"\\begin{{split}}{part}\\end{{split}}"
        for part in parts
    ]
    if not rows:
        return tex
    return rows[0] if len(rows) == 1 else "\\begin{aligned}" + "\\\\".join(rows) + "\\end{aligned}"


def _math_stylesheet(app, pagename, templatename, context, doctree):
    """KaTeX's stylesheet on the pages that have math (its fonts load as their glyphs are needed)."""
    if app.builder.format != "html" or getattr(app.builder, "math_renderer_name", None) != MATH_RENDERER:
        return
    if app.env.get_domain("math").has_equations(pagename):
        app.builder.add_css_file(CSS)


def _root(config, srcdir) -> Path:
    """The folder whose ``.tools/`` keeps KaTeX: ``bnbook_katex_root``, or else the source folder."""
    return Path(config.bnbook_katex_root or srcdir)


def _add_static(app):
    """KaTeX's stylesheet and fonts join the site's ``_static`` (fetched into .tools/ first if need be)."""
    if getattr(app.builder, "math_renderer_name", None) == MATH_RENDERER:
        static = str(ensure_katex(_root(app.config, app.srcdir)) / STATIC)
        if static not in app.config.html_static_path:
            app.config.html_static_path.append(static)


def setup(app):
    """The Sphinx extension: the math renderer ``bnbook_katex`` (select it with ``html_math_renderer``)."""
    app.add_config_value("bnbook_katex_root", "", "env", types=[str])
    app.add_html_math_renderer(MATH_RENDERER, (_visit_math, None), (_visit_displaymath, None))
    app.connect("builder-inited", _add_static)
    app.connect("html-page-context", _math_stylesheet)
    return {"version": KATEX_VERSION, "parallel_read_safe": True, "parallel_write_safe": True}
