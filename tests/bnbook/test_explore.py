"""bnbook.explore: the grid, labels, both displays, the markup, and bad arguments."""

import base64
import io
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from bnbook import explore as explore_module
from bnbook.explore import explore


def plot(a=1.0, kind="sin", flip=False):
    fig, ax = plt.subplots(figsize=(2, 1.5))
    x = np.linspace(0, 6, 50)
    y = getattr(np, kind)(a * x)
    ax.plot(x, -y if flip else y)
    return fig


def test_grid_order_initial_values_and_labels():
    e = explore(plot, a=[0.5, 1.0, 2.0], kind=["sin", "cos"], flip=[False, True], labels={"a": "frequency"})
    assert e.n_frames == 12
    combos = list(e.combinations())
    assert combos[0] == {"a": 0.5, "kind": "sin", "flip": False}
    assert combos[1] == {"a": 0.5, "kind": "sin", "flip": True}  # the last parameter varies fastest
    assert all(e._index(c) == i for i, c in enumerate(combos))
    assert e.initial == {"a": 1.0, "kind": "sin", "flip": False}  # the function's own defaults
    assert e.labels["a"] == "frequency" and e.labels["kind"] == "kind"
    assert repr(e) == "Interactive figure 'plot' (12 combinations; frequency: 0.5, 1, 2; kind: sin, cos; flip: off, on)"


def test_static_html_has_one_distinct_frame_per_combination_and_labelled_controls():
    e = explore(plot, a=[0.5, 2.0], kind=["sin", "cos"], flip=[False, True])
    page = e.to_html()
    frames = re.search(r'-frames">(\[.*?\])</script>', page).group(1)
    decoded = [base64.b64decode(f.split(",", 1)[1]) for f in __import__("json").loads(frames)]
    assert len(decoded) == 8 and len(set(decoded)) == 8
    assert all(d.startswith(b"\x89PNG") for d in decoded)
    for name, kind in (("a", "range"), ("flip", "checkbox")):
        assert re.search(rf'<input type="{kind}" id="(bnx-\w+-{name})"', page)
        assert re.search(rf'<label for="bnx-\w+-{name}">', page)
    assert '<select id="' in page and "<option" in page
    assert "http" not in page  # nothing to fetch


def test_mimebundle_static_vs_live(monkeypatch):
    e = explore(plot, a=[1.0, 2.0])
    monkeypatch.setenv("BNBOOK_STATIC_HTML", "1")
    static = e._repr_mimebundle_()
    assert set(static) == {"text/html", "text/plain"}
    monkeypatch.delenv("BNBOOK_STATIC_HTML")
    live = e._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in live and "text/html" not in live
    assert live["text/plain"] == static["text/plain"]  # what nbval compares is the same in both modes
    # the preview a stored or untrusted notebook shows: the first frame under a hint strip
    preview = Image.open(io.BytesIO(base64.b64decode(live["image/png"])))
    first = Image.open(io.BytesIO(e.render()))
    assert preview.width == first.width and preview.height == first.height + 24


def test_switches_read_as_words_and_are_checkboxes():
    e = explore(plot, flip=[True, False])
    assert e.grid["flip"] == [False, True]  # off, on: the checkbox's order
    assert e.describe({"flip": True}) == "flip = on" and "True" not in repr(e)
    panel = e.widget()
    box = panel.children[1].children[0]
    assert type(box).__name__ == "Checkbox" and box.description == "flip"
    box.value = True
    assert panel.children[3].value == "flip = on"
    page = e.to_html()
    assert ">off</output>" in page and '"off", "on"' in page and "True" not in page


def test_live_panel_draws_each_frame_once(monkeypatch):
    e = explore(plot, a=[1.0, 2.0])
    calls = []
    render = e.render
    monkeypatch.setattr(e, "render", lambda **v: calls.append(v) or render(**v))
    panel = e.widget()
    slider, image = panel.children[1].children[0], panel.children[2]
    first = image.value
    slider.value = 2.0
    slider.value = 1.0
    assert image.value == first and len(calls) == 2  # back to a frame seen: no redraw
    assert image.layout.align_self == "flex-start"  # shown at its pixel size, not stretched


def test_live_widget_updates_the_image():
    e = explore(plot, a=[1.0, 2.0], kind=["sin", "cos"])
    panel = e.widget()
    image = panel.children[2]
    before = image.value
    controls = panel.children[1].children
    controls[1].value = "cos"
    assert image.value != before
    assert "kind = cos" in panel.children[3].value


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({}, ValueError, "expected at least one parameter"),
        ({"a": []}, ValueError, "a: expected at least one value, got an empty list"),
        ({"speed": [1, 2]}, ValueError, "unknown parameter\\(s\\) 'speed' for plot; it accepts a, flip, kind"),
        ({"a": 3}, TypeError, "a: expected a list of values, got int"),
        ({"a": "abc"}, TypeError, "a: expected a list of values, got str"),
        ({"a": [1, [2]]}, TypeError, "a: expected numbers, strings or booleans, got list"),
        ({"a": [1, 1]}, ValueError, "a: expected distinct values"),
        (
            {"a": list(range(10)), "kind": ["sin", "cos"], "flip": [False, True], "max_frames": 30},
            ValueError,
            "grid: 40 combinations, more than max_frames=30",
        ),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        explore(plot, **kwargs)


def test_plot_fn_must_be_callable():
    with pytest.raises(TypeError, match="plot_fn: expected a callable"):
        explore("plot", a=[1])


def test_every_registered_figure_has_a_valid_grid_and_alt_text():
    assert len(explore_module.all_figures()) >= 2
    for name, fn in explore_module.all_figures().items():
        e = explore(fn)
        assert e.alt and e.title, name
        assert 2 <= e.n_frames <= explore_module.MAX_FRAMES, name


def test_every_explore_call_in_the_book_uses_a_registered_figure():
    # so the latency benchmark, which walks the registry, times every interactive figure of the book
    from pathlib import Path

    book = Path(__file__).resolve().parents[2] / "book"
    calls = []
    for nb in book.glob("*.ipynb"):
        calls += re.findall(r"[^.\w]explore\((ch\d\d)\.(\w+)", nb.read_text())
    assert len(calls) >= 8, f"expected the book's 8 interactive figures, found {calls}"
    registry = explore_module.all_figures()
    for module, name in calls:
        assert name in registry and registry[name].__module__.split(".")[-1].startswith(module), (module, name)


def test_values_in_the_json_blocks_are_json_escaped_not_html_escaped():
    def plot(kind="a&b"):
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.set_title(kind)
        return fig

    page = explore(plot, kind=["a&b", "</script><b>"]).to_html()
    spec = re.search(r'-spec">(.*?)</script>', page).group(1)
    assert "&amp;" not in spec and "a\\u0026b" in spec  # the reader's script decodes JSON, not HTML
    assert "</script><b>" not in page.split("<select")[0]  # no early end of a script element
    with pytest.raises(ValueError, match="identifiers"):
        explore(lambda **values: plot(), **{'kind" onmouseover="x': ["a"]})


def test_progress_bar_only_in_a_live_kernel():
    from bnbook.progress import progress_bar

    assert progress_bar("Training 4 networks", 4) is None  # plain Python: nothing shown, nothing to call
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(ValueError, match="total: expected a positive int"):
            progress_bar("x", bad)


def test_a_change_is_announced_once_by_the_control_itself():
    page = explore(plot, a=[0.5, 2.0], kind=["sin", "cos"], flip=[False, True]).to_html()
    assert page.count("<output ") == 3 == page.count('aria-live="off"')  # outputs are live regions by default
    assert 'aria-live="polite"' not in page and 'aria-live="assertive"' not in page
    assert 'role="status"' not in page and 'role="alert"' not in page


def test_a_frame_outside_the_grid_is_refused_by_name():
    e = explore(plot, a=[1.0, 2.0], flip=[False, True])
    with pytest.raises(ValueError, match="unknown parameter 'speed'"):
        e.frame_png({"speed": 1})
    with pytest.raises(ValueError, match=r"a: 3.0 is not one of the grid's values \[1.0, 2.0\]"):
        e.frame_png({"a": 3.0})
    with pytest.raises(ValueError, match="flip: 1 is not one of"):
        e.frame_png({"flip": 1})  # 1 == True, but a switch takes booleans
    assert e._pngs == {}  # nothing drawn, nothing kept
