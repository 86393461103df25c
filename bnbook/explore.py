"""Interactive figures, live in Jupyter and static in the HTML book: :func:`explore`.

``explore(plot_fn, batch_size=[2, 8, 64], momentum=[0.01, 0.1])`` returns an :class:`Explorer`.
Displayed in Jupyter it is a live ipywidgets panel (one control per parameter) driving the PNG
of ``plot_fn(**values)``. Displayed while the book is built it is plain HTML instead: every
combination of the values is rendered once, embedded as PNG data, and native ``<input
type=range>``/``<select>``/checkbox controls switch between the frames with about 1 kB of inline
JavaScript, so the page stays interactive with no kernel, no widget manager and no network.

Why this design, rather than the alternatives:

* Embedding ipywidgets state (what Jupyter Book does by default) needs require.js and the widget
  manager from a CDN, and the callbacks never run without a kernel: the controls move and the
  figure does not change. Neither is acceptable for an offline book.
* matplotlib's ``to_jshtml`` animates along one axis only and ships its own player controls; a grid
  over two or three parameters does not fit it.
* Panel's ``embed`` precomputes states too but brings Bokeh and its JavaScript bundle (megabytes)
  into every page for what a dozen lines of script do here.

One object carries both views through ``_repr_mimebundle_``: the widget view for Jupyter, and
``text/html`` when :func:`static_mode` is on, which the book's Sphinx extension
(:mod:`bnbook.sphinx_ext`) switches on for the kernels that execute chapters during a build. The
switch is defined here once (:data:`STATIC_ENV`). The same ``text/plain`` line is produced in both
modes, so nbval compares it strictly.

Figures that are interactive carry their default grid (``@interactive``) and are listed in
:data:`REGISTRY` once their chapter module is imported; :func:`all_figures` imports every chapter
so the latency benchmark times every interactive figure of the book.
"""

from __future__ import annotations

import base64
import hashlib
import html
import importlib
import inspect
import io
import itertools
import json
import numbers
import os
import time

from .style import compact_png, figure_to_png

STATIC_ENV = "BNBOOK_STATIC_HTML"


MAX_FRAMES = 64


def static_mode() -> bool:
    """True while the book is being built: interactive figures render as static HTML frames."""
    return os.environ.get(STATIC_ENV) == "1"


def _check_value(name, value):
    if isinstance(value, (bool, str)) or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
        return value
    raise TypeError(f"{name}: expected numbers, strings or booleans, got {type(value).__name__} ({value!r})")


def _format(value):
    """A value as the reader reads it: ``0.1``, ``tanh``, and switches as ``on``/``off`` (not
    Python's True/False)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _is_switch(values) -> bool:
    """A parameter with the values False and True: a checkbox (its values ordered off, on)."""
    return len(values) == 2 and all(isinstance(v, bool) for v in values) and values[0] != values[1]


class Explorer:
    """An interactive figure: a plotting function and a grid of parameter values.

    Args:
        plot_fn: called as ``plot_fn(**values)``; returns a matplotlib Figure.
        grid: parameter name -> non-empty list of values (numbers, strings or booleans).
        title: a short name shown above the controls and used in the alt text.
        alt: alt text describing what the figure shows; the current values are appended.
        labels: optional parameter name -> label shown next to its control.
        max_frames: the largest grid accepted (every combination is rendered for the HTML book).
    """

    def __init__(self, plot_fn, grid, *, title=None, alt=None, labels=None, max_frames=MAX_FRAMES):
        if not callable(plot_fn):
            raise TypeError(f"plot_fn: expected a callable returning a matplotlib Figure, got {type(plot_fn).__name__}")
        if not grid:
            raise ValueError("grid: expected at least one parameter with a list of values, got none")
        accepted = _accepted_parameters(plot_fn)
        unknown = [name for name in grid if accepted is not None and name not in accepted]
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(map(repr, unknown))} for {getattr(plot_fn, '__name__', 'plot_fn')}; "
                f"it accepts {', '.join(sorted(accepted)) or 'no keyword arguments'}"
            )
        self.grid = {}
        for name, values in grid.items():
            if not (isinstance(name, str) and name.isidentifier()):
                raise ValueError(f"grid: parameter names must be Python identifiers, got {name!r}")
            if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
                raise TypeError(f"{name}: expected a list of values, got {type(values).__name__}")
            values = [_check_value(name, v) for v in values]
            if not values:
                raise ValueError(f"{name}: expected at least one value, got an empty list")
            if len(set(map(repr, values))) != len(values):
                raise ValueError(f"{name}: expected distinct values, got {values}")
            self.grid[name] = [False, True] if _is_switch(values) else values
        n_frames = self.n_frames
        if n_frames > max_frames:
            raise ValueError(
                f"grid: {n_frames} combinations, more than max_frames={max_frames}; "
                "use fewer values or raise max_frames"
            )
        self.plot_fn = plot_fn
        self.title = title or getattr(plot_fn, "__name__", "figure").replace("_", " ")
        self.alt = alt or self.title
        self.labels = {name: (labels or {}).get(name, name.replace("_", " ")) for name in self.grid}
        self.initial = {name: _initial(plot_fn, name, values) for name, values in self.grid.items()}
        self._pngs = {}  # frame index -> PNG, for the live panel: a frame seen once redraws at once

    # ---- the grid ----------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        n = 1
        for values in self.grid.values():
            n *= len(values)
        return n

    def combinations(self):
        """Every combination of values, the last parameter varying fastest (the frames' order)."""
        names = list(self.grid)
        for combo in itertools.product(*self.grid.values()):
            yield dict(zip(names, combo))

    def render(self, **values) -> bytes:
        """PNG of the figure for one combination of values (defaults: the initial ones)."""
        params = {**self.initial, **values}
        return figure_to_png(self.plot_fn(**params))

    def time_update(self, **values) -> float:
        """Seconds for one update: compute and draw the figure, encode the PNG."""
        start = time.perf_counter()
        self.render(**values)
        return time.perf_counter() - start

    def describe(self, values=None) -> str:
        values = values or self.initial
        return ", ".join(f"{self.labels[k]} = {_format(v)}" for k, v in values.items())

    def __repr__(self):
        parts = "; ".join(f"{self.labels[k]}: {', '.join(_format(v) for v in vals)}" for k, vals in self.grid.items())
        return f"Interactive figure '{self.title}' ({self.n_frames} combinations; {parts})"

    # ---- Jupyter: live widgets ---------------------------------------------------------
    def frame_png(self, values=None) -> bytes:
        """PNG of one combination, drawn once per Explorer and kept: moving a control back to a
        position already seen shows its frame without recomputing (at most ``n_frames`` PNGs)."""
        values = {**self.initial, **(values or {})}
        for name, value in values.items():
            if name not in self.grid:
                raise ValueError(f"unknown parameter {name!r}; the grid has {', '.join(self.grid)}")
            if not any(type(v) is type(value) and v == value for v in self.grid[name]):
                raise ValueError(f"{name}: {value!r} is not one of the grid's values {self.grid[name]}")
        key = self._index(values)
        if key not in self._pngs:
            self._pngs[key] = self.render(**values)
        return self._pngs[key]

    def preview_png(self) -> bytes:
        """The first frame as a compact PNG under a line that says how to make it live: what a
        notebook shows before its cells run (the stored output, which Jupyter also shows in an
        untrusted notebook, where the widget cannot render)."""
        return compact_png(_with_hint(self.frame_png(), f"Preview. Run this cell to change {self.control_names()}."))

    def control_names(self) -> str:
        """The controls' labels as a phrase: "depth, gain and batch norm"."""
        labels = list(self.labels.values())
        return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]

    def widget(self):
        """An ipywidgets panel: one control per parameter, the figure, the current values."""
        import ipywidgets as w

        controls = {}
        for name, values in self.grid.items():
            label = self.labels[name]
            if _is_switch(values):
                control = w.Checkbox(value=self.initial[name], description=label, indent=False)
            elif all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
                control = w.SelectionSlider(
                    options=[(_format(v), v) for v in values],
                    value=self.initial[name],
                    description=label,
                    continuous_update=False,
                )
            else:
                control = w.Dropdown(
                    options=[(_format(v), v) for v in values], value=self.initial[name], description=label
                )
            control.style.description_width = "initial"
            control.layout.width = "auto"  # the label on one line with its control
            control.layout.margin = "2px 16px 2px 0"
            controls[name] = control
        # at its own pixel size (sharp text), narrower when the notebook column is narrower
        image = w.Image(
            value=self.frame_png(),
            format="png",
            layout=w.Layout(max_width="100%", height="auto", align_self="flex-start"),
        )
        status = w.HTML(value=html.escape(self.describe()))

        def update(_change=None):
            values = {name: c.value for name, c in controls.items()}
            image.value = self.frame_png(values)
            status.value = html.escape(self.describe(values))

        for control in controls.values():
            control.observe(update, names="value")
        panel = w.VBox(
            [
                w.HTML(f"<b>{html.escape(self.title)}</b>"),
                w.HBox(list(controls.values()), layout=w.Layout(flex_flow="row wrap", align_items="center")),
                image,
                status,
            ]
        )
        panel.add_class("bnbook-explorer")
        return panel

    # ---- the HTML book: precomputed frames ---------------------------------------------
    def to_html(self) -> str:
        """Self-contained HTML: native controls, every frame as PNG data, a few lines of script.

        A change is announced once, by the control the reader moved (a slider's ``aria-valuetext``,
        the checkbox's state, the chosen option): no live region repeats it (an ``<output>`` is
        one by default, hence ``aria-live="off"``); the image's alt text and the status line under
        it carry every current value for a reader who moves to them."""
        uid = "bnx-" + hashlib.sha1(repr((self.title, self.grid)).encode()).hexdigest()[:10]
        frames = [
            "data:image/png;base64," + base64.b64encode(compact_png(self.render(**combo))).decode()
            for combo in self.combinations()
        ]
        controls = []
        for name, values in self.grid.items():
            cid = html.escape(f"{uid}-{name}")
            label = html.escape(self.labels[name])
            index = values.index(self.initial[name])
            if _is_switch(values):
                checked = " checked" if self.initial[name] == values[1] else ""
                controls.append(
                    f'<div class="bnx-control"><input type="checkbox" id="{cid}" data-param="{name}"{checked}>'
                    f'<label for="{cid}">{label}</label> <output id="{cid}-value" aria-live="off">{html.escape(_format(self.initial[name]))}</output></div>'
                )
            elif all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
                controls.append(
                    f'<div class="bnx-control"><label for="{cid}">{label}</label> '
                    f'<input type="range" id="{cid}" data-param="{name}" min="0" max="{len(values) - 1}" step="1" '
                    f'value="{index}" aria-valuetext="{html.escape(_format(self.initial[name]))}"> '
                    f'<output id="{cid}-value" aria-live="off">{html.escape(_format(self.initial[name]))}</output></div>'
                )
            else:
                options = "".join(
                    f'<option value="{i}"{" selected" if i == index else ""}>{html.escape(_format(v))}</option>'
                    for i, v in enumerate(values)
                )
                controls.append(
                    f'<div class="bnx-control"><label for="{cid}">{label}</label> '
                    f'<select id="{cid}" data-param="{name}">{options}</select> '
                    f'<output id="{cid}-value" aria-live="off">{html.escape(_format(self.initial[name]))}</output></div>'
                )
        spec = {
            "names": list(self.grid),
            "values": {k: [_format(v) for v in vals] for k, vals in self.grid.items()},
            "labels": self.labels,
            "alt": self.alt,
        }
        start = self._index(self.initial)
        return (
            f'<div class="bnx" id="{uid}" data-frames="{self.n_frames}">'
            f'<p class="bnx-title"><strong>{html.escape(self.title)}</strong> '
            f'<span class="bnx-hint">(interactive: move the controls)</span></p>'
            f'<form class="bnx-controls" aria-label="Controls for {html.escape(self.title)}" onsubmit="return false">'
            f"{''.join(controls)}</form>"
            f'<img class="bnx-img" id="{uid}-img" src="{frames[start]}" '
            f'alt="{html.escape(self.alt)} ({html.escape(self.describe())})" style="max-width:100%">'
            f'<p class="bnx-status" id="{uid}-status">{html.escape(self.describe())}</p>'
            f'<script type="application/json" id="{uid}-frames">{_script_json(frames)}</script>'
            f'<script type="application/json" id="{uid}-spec">{_script_json(spec)}</script>'
            f"<script>{_SCRIPT.replace('__UID__', uid)}</script>"
            f"</div>"
        )

    def _index(self, values) -> int:
        index = 0
        for name, options in self.grid.items():
            index = index * len(options) + options.index(values[name])
        return index

    # ---- display -------------------------------------------------------------------------
    def _repr_mimebundle_(self, include=None, exclude=None):
        if static_mode():
            return {"text/html": self.to_html(), "text/plain": repr(self)}
        preview = {"image/png": base64.b64encode(self.preview_png()).decode(), "text/plain": repr(self)}
        try:
            bundle = self.widget()._repr_mimebundle_(include=include, exclude=exclude)
        except ImportError:  # no ipywidgets: the first frame only
            return preview
        # the live panel where a widget manager runs; the preview in a stored or untrusted notebook
        return {**bundle, **preview}


_SCRIPT = """(function(){var r=document.getElementById('__UID__');
var f=JSON.parse(document.getElementById('__UID__-frames').textContent);
var s=JSON.parse(document.getElementById('__UID__-spec').textContent);
var img=document.getElementById('__UID__-img'),st=document.getElementById('__UID__-status');
var cs=s.names.map(function(n){return document.getElementById('__UID__-'+n);});
function pos(c){return c.type==='checkbox'?(c.checked?1:0):parseInt(c.value,10);}
function upd(){var i=0,d=[];cs.forEach(function(c,k){var n=s.names[k],p=pos(c),v=s.values[n][p];
i=i*s.values[n].length+p;document.getElementById(c.id+'-value').textContent=v;
if(c.type==='range'){c.setAttribute('aria-valuetext',v);}d.push(s.labels[n]+' = '+v);});
img.src=f[i];img.alt=s.alt+' ('+d.join(', ')+')';st.textContent=d.join(', ');r.dataset.frame=i;}
cs.forEach(function(c){c.addEventListener('input',upd);c.addEventListener('change',upd);});})();"""


def _with_hint(png: bytes, hint: str) -> bytes:
    """``png`` under a strip with ``hint`` written in it (matplotlib's DejaVu Sans, 13 px)."""
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    image = Image.open(io.BytesIO(png)).convert("RGB")
    font = ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"), 13)
    strip = 24
    out = Image.new("RGB", (image.width, image.height + strip), "white")
    draw = ImageDraw.Draw(out)
    draw.rectangle([0, 0, image.width - 1, strip - 2], fill=(232, 240, 250))
    draw.text((8, 4), hint, fill=(20, 40, 80), font=font)
    out.paste(image, (0, strip))
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return buffer.getvalue()


def _script_json(value) -> str:
    """JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` as JSON escapes, not HTML
    entities (a script's text is not HTML-decoded, so ``&amp;`` would reach the reader as is)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _initial(fn, name, values):
    """The first frame shows plot_fn's own default for a parameter when the grid has it, else the
    middle value (the first for booleans)."""
    try:
        default = inspect.signature(fn).parameters[name].default
    except (TypeError, ValueError, KeyError):
        default = inspect.Parameter.empty
    for v in values:
        if default is not inspect.Parameter.empty and type(v) is type(default) and v == default:
            return v
    return values[0] if isinstance(values[0], bool) else values[len(values) // 2]


def _accepted_parameters(fn):
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {
        p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


def explore(plot_fn, *, title=None, alt=None, labels=None, max_frames=MAX_FRAMES, **grid) -> Explorer:
    """An interactive figure over a grid of parameter values; see the module docstring.

    ``plot_fn(**values)`` must return a matplotlib Figure. If ``plot_fn`` carries a default grid
    (``plot_fn.grid``, as the chapters' ``@interactive`` figures do), keyword arguments override
    its entries.

    Examples::

        >>> from bnbook import ch04_running_stats as ch04
        >>> explore(ch04.running_estimates_plot, batch_size=[2, 8], steps=[10], momentum=[0.1])
        Interactive figure 'Running estimates' (2 combinations; momentum: 0.1; batch size: 2, 8; training steps: 10)
    """
    base = dict(getattr(plot_fn, "grid", {}) or {})
    base.update(grid)
    title = title or getattr(plot_fn, "title", None)
    alt = alt or getattr(plot_fn, "alt", None)
    labels = {**(getattr(plot_fn, "labels", None) or {}), **(labels or {})}
    return Explorer(plot_fn, base, title=title, alt=alt, labels=labels, max_frames=max_frames)


#: name -> function, for every interactive figure of the book
REGISTRY: dict = {}


def interactive(*, title, alt, labels=None, **grid):
    """Register an interactive figure with its default grid of control values."""

    def decorate(fn):
        fn.grid, fn.title, fn.alt, fn.labels = grid, title, alt, labels or {}
        REGISTRY[fn.__name__] = fn
        return fn

    return decorate


CHAPTER_MODULES = (
    "intro",
    "ch01_why_normalize",
    "ch02_algorithm",
    "ch03_backward",
    "ch04_running_stats",
    "ch05_small_batches",
    "ch06_convolutions",
    "ch07_training",
    "ch08_pytorch",
    "ch09_pitfalls",
    "ch10_scale_depth",
    "ch11_in_the_wild",
)


def all_figures() -> dict:
    """Import every chapter module and return :data:`REGISTRY` (name -> interactive figure)."""
    for name in CHAPTER_MODULES:
        importlib.import_module(f"bnbook.{name}")
    return dict(REGISTRY)
