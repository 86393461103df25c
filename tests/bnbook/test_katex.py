"""bnbook.katex: the book's math typeset at build time (the pages themselves are tested in tests/book)."""

import base64
import hashlib
import io
import re
import tarfile
from pathlib import Path

import pytest

from bnbook import katex

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tex():
    return katex.katex(katex.ensure_katex(ROOT))


def test_a_formula_becomes_html_for_the_eye_and_mathml_with_its_tex_for_screen_readers(tex):
    out = tex.render(r"\hat x_i = \frac{x_i - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}}", False)
    assert out.startswith('<span class="katex">')
    mathml = re.search(r'<span class="katex-mathml">(<math .*?</math>)</span>', out).group(1)
    assert "<mfrac>" in mathml and "<msqrt>" in mathml and "<mi>μ</mi>" in mathml
    assert r'<annotation encoding="application/x-tex">\hat x_i = \frac{x_i - \mu_B}' in mathml
    assert '<span class="katex-html" aria-hidden="true">' in out  # the visual copy is not read twice
    display = tex.render("x", True)
    assert display.startswith('<span class="katex-display">') and 'display="block"' in display
    assert "katex-display" not in tex.render("x", False)


def test_bad_tex_is_an_error_that_quotes_the_formula_and_says_why(tex):
    with pytest.raises(katex.MathError, match=r"KaTeX cannot typeset '\\\\frac\{1': Unexpected end of input"):
        tex.render(r"\frac{1", False)
    with pytest.raises(katex.MathError, match=r"Undefined control sequence: \\label at position 1$"):
        tex.render(r"\label{eq} x", True)
    # what KaTeX would only warn about is refused too: nobody reads a build's console
    with pytest.raises(katex.MathError, match="strict mode"):
        tex.render("é", False)
    with pytest.raises(TypeError, match="not bytes"):
        tex.render(b"x", False)
    assert tex.render("x", False)  # the engine is still usable after errors


def _tarball(files: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_ensure_katex_unpacks_only_what_the_build_uses_from_a_verified_tarball(tmp_path):
    data = _tarball(
        {
            "package/dist/katex.min.js": b"var katex;",
            "package/dist/katex.min.css": b".katex{}",
            "package/dist/fonts/KaTeX_Main-Regular.woff2": b"font",
            "package/dist/katex.mjs": b"unused",
            "package/package.json": b"{}",
        }
    )
    source = tmp_path / "katex.tgz"
    source.write_bytes(data)
    root = tmp_path / "project"
    folder = katex.ensure_katex(root, url=source.as_uri(), integrity=_integrity(data))
    assert folder == katex.katex_dir(root)
    found = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert found == ["katex.min.js", "static/katex/fonts/KaTeX_Main-Regular.woff2", "static/katex/katex.min.css"]
    assert (folder / katex.STATIC / katex.CSS).read_bytes() == b".katex{}"
    source.unlink()  # kept once fetched: no second download
    assert katex.ensure_katex(root, url=source.as_uri(), integrity=_integrity(data)) == folder


def test_ensure_katex_keeps_nothing_from_a_tarball_that_is_not_the_pinned_one(tmp_path):
    data = _tarball({"package/dist/katex.min.js": b"var katex = 'tampered';"})
    source = tmp_path / "katex.tgz"
    source.write_bytes(data)
    root = tmp_path / "project"
    with pytest.raises(RuntimeError, match="not the pinned"):
        katex.ensure_katex(root, url=source.as_uri(), integrity=_integrity(b"the real one"))
    assert not (root / ".tools").exists() or not any((root / ".tools").iterdir())


def test_ensure_katex_without_network_says_where_katex_is_expected(tmp_path):
    missing = (tmp_path / "nowhere.tgz").as_uri()
    with pytest.raises(RuntimeError, match=re.escape(str(katex.katex_dir(tmp_path))) + ".*could not be fetched"):
        katex.ensure_katex(tmp_path, url=missing)


def test_display_blocks_are_laid_out_as_sphinx_lays_them_out_for_mathjax(tex):
    assert katex.display_tex("a = b") == "a = b"
    assert katex.display_tex("a &= b \\\\ c &= d") == "\\begin{split}a &= b \\\\ c &= d\\end{split}"
    gathered = "\n\\begin{gathered} a = b, \\\\ c = d \\end{gathered}\n"
    assert katex.display_tex(gathered) == gathered  # an environment keeps its own layout
    assert katex.display_tex("a = b\n\nc = d\n\n") == "\\begin{aligned}a = b\\\\c = d\\end{aligned}"
    assert katex.display_tex("  ") == "  "
    for block in ("a &= b \\\\ c &= d", gathered, "a = b\n\nc &= d \\\\ e &= f"):
        out = tex.render(katex.display_tex(block), True)  # every layout is TeX that KaTeX typesets
        assert "<mtable" in out


def _sphinx(tmp_path, text):
    """A two-page Sphinx project with only this extension, built in its own process (Sphinx keeps
    docutils' node registry per process); its output folder and its warnings."""
    import subprocess
    import sys

    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(
        f"extensions = ['bnbook.katex']\nhtml_math_renderer = 'bnbook_katex'\nbnbook_katex_root = {str(ROOT)!r}\n"
    )
    (src / "index.rst").write_text(text + "\n.. toctree::\n\n   plain\n")
    (src / "plain.rst").write_text("Plain\n=====\n\nNo math here.\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-q", "--no-color", str(src), str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out, result.stderr


def test_a_sphinx_build_typesets_math_and_links_katex_only_where_there_is_math(tmp_path):
    out, warnings = _sphinx(
        tmp_path,
        "Title\n=====\n\nInline :math:`\\mu_B` here.\n\n.. math::\n   :label: eq-a\n\n   a = b\n\nSee :eq:`eq-a`.\n",
    )
    assert not warnings, warnings
    page = (out / "index.html").read_text()
    assert '<span class="math notranslate nohighlight"><span class="katex">' in page
    assert re.search(r'<div class="math notranslate nohighlight" id="equation-eq-a">\s*<span class="eqno">\(1\)', page)
    assert 'href="_static/katex/katex.min.css' in page and "mathjax" not in page.lower()
    assert "katex.min.css" not in (out / "plain.html").read_text()
    assert (out / "_static" / "katex" / "fonts" / "KaTeX_Main-Regular.woff2").is_file()


def test_a_formula_katex_refuses_is_a_warning_at_its_place_and_its_tex_is_shown(tmp_path):
    out, warnings = _sphinx(tmp_path, "Title\n=====\n\nBroken :math:`\\frac{1` here.\n")
    assert re.search(
        r"index\.rst:\d+: WARNING: " + re.escape("KaTeX cannot typeset '\\\\frac{1': Unexpected end of input"), warnings
    )
    assert '<code class="bnbook-math-error">\\frac{1</code>' in (out / "index.html").read_text()
