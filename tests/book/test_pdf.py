"""``python3 dev.py pdf``: the whole book as one PDF, every chapter in it, no controls printed."""

import json
import os
import re
import subprocess
import sys

import pytest
from book_helpers import HTML, ROOT

pytestmark = [pytest.mark.book, pytest.mark.browser, pytest.mark.slow]


def _titles():
    """Each chapter's title (its notebook's first heading), as toc order gives them."""
    titles = []
    for line in (ROOT / "_toc.yml").read_text().splitlines():
        match = re.search(r"(?:file|root): (book/\S+)", line)
        path = ROOT / f"{match.group(1)}.ipynb" if match else None
        if path and path.exists():
            first = json.loads(path.read_text())["cells"][0]
            titles.append(re.match(r"#\s+(.+)", "".join(first["source"])).group(1).strip())
    return titles


@pytest.fixture(scope="module")
def pdf_text():
    if os.environ.get("BNBOOK_SKIP_BROWSER") == "1":
        pytest.skip("BNBOOK_SKIP_BROWSER=1: the PDF is printed by chromium")
    env = dict(os.environ, BNBOOK_VENV=sys.prefix)
    result = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), "pdf"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    from pypdf import PdfReader

    reader = PdfReader(ROOT / "_build" / "bn-book.pdf")
    return len(reader.pages), "\n".join(page.extract_text() or "" for page in reader.pages)


def test_the_pdf_has_every_chapter_and_no_controls(pdf_text):
    pages, text = pdf_text
    flat = re.sub(r"\s+", " ", text)
    titles = _titles()
    assert len(titles) >= 12
    missing = [t for t in titles if re.sub(r"\s+", " ", t) not in flat]
    assert not missing, f"chapters missing from the PDF: {missing}"
    assert pages > 5 * len(titles), f"{pages} pages for {len(titles)} chapters"
    assert "(interactive: move the controls)" not in flat  # the print stylesheet hides the hints


def test_the_pdf_is_in_the_site_and_the_intro_links_it(pdf_text):
    assert (HTML / "downloads" / "bn-book.pdf").is_file()
    assert 'href="../downloads/bn-book.pdf"' in (HTML / "book" / "intro.html").read_text(encoding="utf-8")
