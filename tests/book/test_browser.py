"""Every page of the built book in a real, offline Chromium: no errors, math rendered, search works,
every static interactive control changes its figure. Screenshots go to test-artifacts/screenshots/.

Needs Debian's chromium (``apt-get install -y chromium``, as root); ``python3 dev.py test`` installs it
when it can. Set ``BNBOOK_SKIP_BROWSER=1`` to skip these tests on a machine without it.
"""

import os
from pathlib import Path
from urllib.parse import urlparse

import pytest
from book_helpers import ROOT, Server, build_book, pages

pytestmark = [pytest.mark.browser, pytest.mark.book]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
]
SHOTS = ROOT / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    if os.environ.get("BNBOOK_SKIP_BROWSER") == "1":
        pytest.skip("BNBOOK_SKIP_BROWSER=1: browser tests skipped on request")
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} not found. Install Debian's chromium as root: apt-get install -y chromium "
            "(python3 dev.py test does this when run as root), or set BNBOOK_SKIP_BROWSER=1 to skip.",
            pytrace=False,
        )
    rc, log, _ = build_book()
    assert rc == 0, f"the book build failed:\n{log[-4000:]}"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, Server() as server:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b, server.url
        b.close()


class PageLog:
    """Collects everything that counts as a failure while a page is open."""

    def __init__(self, page, base):
        self.problems = []
        host = urlparse(base).netloc
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console error: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed request: {r.url} ({r.failure})"))

        def route(r):
            url = urlparse(r.request.url)
            if url.scheme in ("data", "blob", "about") or url.netloc == host:
                return r.continue_()
            self.problems.append(f"request to another host: {r.request.url}")
            return r.abort()

        page.route("**/*", route)


def _open(browser_and_url, path):
    b, base = browser_and_url
    context = b.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log = PageLog(page, base)
    page.goto(f"{base}/{path}", wait_until="networkidle")
    return context, page, log


def _math_problems(page):
    """What is wrong with the page's math, typeset at build time by KaTeX: every ``.math`` element holds
    KaTeX's output, each formula has a visible box and a MathML copy for screen readers, and KaTeX's
    own fonts drew it (a missing font file would leave the browser's fallback fonts)."""
    found = page.evaluate(
        """async () => {
        await document.fonts.ready;
        const math = Array.from(document.querySelectorAll('.math'));
        const raw = math.filter(e => !e.querySelector('.katex')).map(e => e.textContent.slice(0, 60));
        // formulas in a closed <details> (the exercises' solutions) or a hidden menu are not drawn
        const flat = Array.from(document.querySelectorAll('.katex-html')).filter(e => {
            const r = e.getBoundingClientRect();
            return (r.width === 0 || r.height === 0) && e.checkVisibility();
        }).map(e => e.parentElement.querySelector('annotation').textContent.slice(0, 60));
        const spoken = document.querySelectorAll('.katex .katex-mathml math').length;
        const faces = Array.from(document.fonts).filter(f => f.family.startsWith('KaTeX'));
        return {math: math.length, raw, flat, spoken, katex: document.querySelectorAll('.katex').length,
                loaded: faces.filter(f => f.status === 'loaded').map(f => f.family),
                failed: faces.filter(f => f.status === 'error').map(f => f.family)};
    }"""
    )
    problems = [f"math not typeset: {text!r}" for text in found["raw"]]
    problems += [f"formula drawn with no size: {tex!r}" for tex in found["flat"]]
    if found["spoken"] != found["katex"]:
        problems.append(f"{found['katex'] - found['spoken']} formula(s) without MathML for screen readers")
    if found["math"] and not found["loaded"]:
        problems.append("KaTeX's fonts did not load: the math is drawn in fallback fonts")
    problems += [f"KaTeX font failed to load: {family}" for family in found["failed"]]
    return problems


def test_every_page_loads_cleanly(browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    failures = {}
    all_pages = pages()
    assert len(all_pages) >= 4
    for path in all_pages:
        context, page, log = _open(browser, path)
        try:
            log.problems += _math_problems(page)
            # lazy figures load when scrolled to: load them all now, then look for broken ones
            page.evaluate("() => document.querySelectorAll('img[loading=lazy]').forEach(i => (i.loading = 'eager'))")
            page.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=30000)
            broken = page.evaluate(
                "() => Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                ".map(i => (i.getAttribute('src') || '').slice(0, 80))"
            )
            log.problems += [f"broken image: {src}" for src in broken]
            # a figure narrower than its pixels is scaled, not squeezed: its shape is its PNG's
            squeezed = page.evaluate(
                "() => Array.from(document.images).filter(i => i.naturalWidth && i.clientWidth && i.clientHeight"
                " && Math.abs(i.clientWidth / i.clientHeight - i.naturalWidth / i.naturalHeight)"
                " > 0.02 * i.naturalWidth / i.naturalHeight)"
                ".map(i => `${(i.getAttribute('src') || '').slice(0, 60)}: ${i.clientWidth}x${i.clientHeight}"
                " shown, ${i.naturalWidth}x${i.naturalHeight} drawn`)"
            )
            log.problems += [f"image shown out of shape: {what}" for what in squeezed]
            # code and printed output fit the text column at 1280 px: no sideways scrolling to read them
            wide = page.evaluate(
                "() => Array.from(document.querySelectorAll('div.cell pre'))"
                ".filter(e => e.scrollWidth > e.clientWidth + 1)"
                ".map(e => e.textContent.split('\\n').reduce((a, b) => (b.length > a.length ? b : a), '').slice(0, 90))"
            )
            log.problems += [f"code or output wider than the column: {line!r}" for line in wide]
            page.screenshot(path=str(SHOTS / (path.replace("/", "__") + ".png")), full_page=True)
        finally:
            context.close()
        if log.problems:
            failures[path] = log.problems
    assert not failures, failures


def test_search_finds_running_mean(browser):
    context, page, log = _open(browser, "search.html?q=running+mean")
    try:
        page.wait_for_selector("#search-results ul.search li", timeout=30000)
        hits = page.locator("#search-results ul.search li").count()
        assert hits >= 1
        assert not log.problems, log.problems
    finally:
        context.close()


def _state(page, root):
    return page.evaluate(
        """(r) => { const img = r.querySelector('img.bnx-img');
                    return {src: img.getAttribute('src').length + ':' + img.getAttribute('src').slice(-200),
                            alt: img.alt, status: r.querySelector('.bnx-status').textContent}; }""",
        root,
    )


def test_every_static_control_changes_its_figure(browser):
    checked = 0
    failures = []
    for path in pages():
        context, page, log = _open(browser, path)
        try:
            for k in range(page.locator(".bnx").count()):
                root = page.locator(".bnx").nth(k)
                handle = root.element_handle()
                controls = root.locator("input, select")
                assert root.locator("label").count() >= controls.count()
                for c in range(controls.count()):
                    control = controls.nth(c)
                    before = _state(page, handle)
                    kind = control.evaluate("e => e.type")
                    control.focus()  # keyboard only: the controls must be reachable and usable without a mouse
                    if kind == "range":
                        at_end = control.evaluate("e => e.value === e.max")
                        page.keyboard.press("Home" if at_end else "End")
                    elif kind == "checkbox":
                        page.keyboard.press("Space")
                    else:  # select
                        at_end = control.evaluate("e => e.selectedIndex === e.options.length - 1")
                        page.keyboard.press("ArrowUp" if at_end else "ArrowDown")
                    # frames are files fetched on demand: the new one must arrive and decode
                    page.wait_for_function(
                        "(r) => { const i = r.querySelector('img.bnx-img'); return i.complete && i.naturalWidth > 0; }",
                        arg=handle,
                        timeout=10000,
                    )
                    after = _state(page, handle)
                    name = f"{path} figure {k} control {control.get_attribute('id')}"
                    if after["src"] == before["src"]:
                        failures.append(f"{name}: the image did not change")
                    if after["status"] == before["status"] or after["alt"] == before["alt"]:
                        failures.append(f"{name}: the shown values or alt text did not change")
                    checked += 1
            assert not log.problems, log.problems
        finally:
            context.close()
    assert checked >= 4, f"only {checked} controls found"
    assert not failures, failures


PHONE = {"width": 390, "height": 844}


def test_phones_can_open_the_navigation_and_never_scroll_sideways(browser):
    """At 390 px the theme's drawers open from the buttons a reader sees (pydata-sphinx-theme issue
    2451, fixed by book/_static/bnbook.js), no page is wider than the screen, and an equation that is
    scrolls in its own box, a tab stop (axe's scrollable-region-focusable), as bnbook.js makes it."""
    b, base = browser
    failures, wide_equations = [], 0
    for path in pages():
        context = b.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
        page = context.new_page()
        log = PageLog(page, base)
        try:
            page.goto(f"{base}/{path}", wait_until="networkidle")
            width = page.evaluate("() => document.documentElement.scrollWidth")
            if width > PHONE["width"]:
                failures.append(f"{path}: the page is {width} px wide on a {PHONE['width']} px screen")
            # an equation wider than the screen scrolls in its own box, which the keyboard can reach
            boxes = page.evaluate(
                "() => document.fonts.ready.then(() => Array.from(document.querySelectorAll('div.math .katex-display'))"
                ".map(e => [e.scrollWidth > e.clientWidth + 1, e.getAttribute('tabindex') === '0']))"
            )
            wide_equations += sum(wide for wide, _ in boxes)
            if any(wide != focusable for wide, focusable in boxes):
                failures.append(f"{path}: an equation's box is a tab stop if and only if it scrolls: {boxes}")
            for side in ("primary", "secondary"):
                button = page.locator(f".{side}-toggle:visible")
                if not button.count():
                    if side == "primary" and path != "404.html":
                        failures.append(f"{path}: no visible navigation button")
                    continue
                button.first.tap()
                page.wait_for_timeout(100)
                if not page.evaluate(f"() => !!document.getElementById('pst-{side}-sidebar-modal')?.open"):
                    failures.append(f"{path}: the {side} navigation did not open")
                page.keyboard.press("Escape")
                page.wait_for_timeout(100)
            failures += [f"{path}: {p}" for p in log.problems]
        finally:
            context.close()
    assert not failures, failures
    assert wide_equations > 0  # the book has equations wider than a phone: the check above is not vacuous


#: every page's initial load (uncompressed) may not exceed this: the issue's target
WEIGHT_LIMIT = 1_500_000
WEIGHTS = ROOT / "test-artifacts" / "page-weights.json"


def test_each_page_loads_light(browser):
    """No fontawesome.js, no MathJax and no inline frames anywhere; each page's initial load, everything the browser
    fetched until the network went idle, under WEIGHT_LIMIT (written to test-artifacts/page-weights.json)."""
    import json

    weights, failures = {}, []
    for path in pages():
        context, page, log = _open(browser, path)
        try:
            entries = page.evaluate(
                "() => performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
                ".map(e => [e.name, e.decodedBodySize || 0])"
            )
            total = sum(size for _, size in entries)
            weights[path] = total
            if total > WEIGHT_LIMIT:
                failures.append(f"{path}: {total / 1e6:.2f} MB on first load")
            failures += [f"{path}: loads {name}" for name, _ in entries if "fontawesome.js" in name]
            failures += [f"{path}: loads a math script {name}" for name, _ in entries if "mathjax" in name.lower()]
            if page.locator("img.bnx-img[src^='data:']").count() or "data:image/png" in page.content():
                failures.append(f"{path}: frames inline in the page")
            failures += [f"{path}: {p}" for p in log.problems]
        finally:
            context.close()
    WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    WEIGHTS.write_text(json.dumps(weights, indent=1, sort_keys=True))
    assert not failures, failures


AXE = ROOT / ".tools" / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def test_no_page_has_an_accessibility_violation_in_light_or_dark_mode(browser):
    """axe-core (vendored from npm by dev.py into .tools/) over every page, WCAG 2.2 A and AA rules, in the
    theme's light and dark modes: zero violations."""
    if not AXE.exists():
        pytest.fail(f"{AXE} not found: python3 dev.py test installs it with npm ({AXE.parent.name})", pytrace=False)
    b, base = browser
    failures = []
    for mode in ("light", "dark"):
        for path in pages():
            themed = path != "404.html"  # our own plain 404 page has one look
            if not themed and mode == "dark":
                continue
            context = b.new_context(viewport={"width": 1280, "height": 900})
            context.add_init_script(f"localStorage.setItem('mode', '{mode}'); localStorage.setItem('theme', '{mode}');")
            page = context.new_page()
            try:
                page.goto(f"{base}/{path}", wait_until="networkidle")
                if themed:
                    assert page.evaluate("() => document.documentElement.dataset.theme") == mode, (path, mode)
                page.add_script_tag(path=str(AXE))
                violations = page.evaluate(
                    "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}})).violations"
                    ".map(v => v.id + ' x' + v.nodes.length + ': ' + v.nodes[0].html.slice(0, 120))",
                    AXE_TAGS,
                )
                failures += [f"{path} ({mode}): {v}" for v in violations]
            finally:
                context.close()
    assert not failures, failures
