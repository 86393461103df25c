"""Every chapter run in a real JupyterLab, every interactive figure timed as the reader sees it.

JupyterLab is started as ``python3 dev.py lab`` starts it (on a copy of the chapters, 127.0.0.1, a
token) and driven from Debian's chromium by Playwright (``tools/labdriver.py``). For each chapter:
open it, Run All Cells and time it until the kernel is idle, count error outputs; then, in each of
its interactive figures, move every control back and forth (``--moves`` positions each) and time
every change in the page, from the key press or click to the new image decoded and drawn. The goal
is a median under 150 ms per figure on the 2-core reference machine. ``bench_figures.py`` times only
the kernel's part (compute, draw, encode); this is the whole path, messages and browser included.

Results are printed and written to benchmarks/results/latest/bench_jupyter.json (not committed);
--save overwrites the committed benchmarks/results/bench_jupyter.json.

    python benchmarks/bench_jupyter.py [CHAPTER.ipynb ...] [--moves 6] [--out PATH | --save]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tools"))

import labdriver  # noqa: E402

COMMITTED = HERE / "results" / "bench_jupyter.json"
LATEST = HERE / "results" / "latest" / "bench_jupyter.json"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="*", help="notebooks in book/ (default: every chapter)")
    parser.add_argument("--moves", type=int, default=6, help="changes per control (default 6)")
    parser.add_argument("--out", default=None, help=f"where to write the JSON (default {LATEST})")
    parser.add_argument("--save", action="store_true", help=f"overwrite the committed results, {COMMITTED}")
    parser.add_argument("--limit-ms", type=float, default=150.0, help="goal for the median latency (default 150)")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else (COMMITTED if args.save else LATEST)
    chapters = args.chapters or sorted(p.name for p in (labdriver.ROOT / "book").glob("*.ipynb"))
    from playwright.sync_api import sync_playwright

    rows, figures = [], []
    started = time.perf_counter()
    with labdriver.Lab(chapters) as lab, sync_playwright() as p:
        browser = labdriver.browser(p)
        for i, name in enumerate(chapters, 1):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            print(f"[{i}/{len(chapters)}] {name}: opening", end="", flush=True)
            labdriver.open_notebook(page, lab, name)
            print(", running all cells", end="", flush=True)
            seconds = labdriver.run_all(page)
            errors = labdriver.error_outputs(page)
            panels = labdriver.panel_count(page)
            print(f": {seconds:.1f} s, {errors} error output(s), {panels} interactive figure(s)", flush=True)
            rows.append({"chapter": name, "run_all_s": round(seconds, 2), "errors": errors, "figures": panels})
            for k in range(panels):
                labdriver.scroll_to_panel(page, k)
                title = labdriver.panel_title(page, k)
                changes = labdriver.sweep(page, k, args.moves)
                every = [ms for ms, _ in changes]
                first = [ms for ms, new in changes if new]
                median, median_first = labdriver.median(every), labdriver.median(first)
                figures.append(
                    {
                        "chapter": name,
                        "figure": title,
                        "changes": len(every),
                        "median_ms": round(median, 1),
                        "max_ms": round(max(every), 1) if every else None,
                        "first_views": len(first),
                        "median_first_view_ms": round(median_first, 1),
                    }
                )
                flag = "" if max(median, median_first) <= args.limit_ms else f"  over the {args.limit_ms:.0f} ms goal"
                print(
                    f"    {title}: median {median:.0f} ms over {len(every)} changes, "
                    f"{median_first:.0f} ms over the {len(first)} first views of a frame{flag}",
                    flush=True,
                )
            page.close()  # unsaved: the copy is thrown away with the Lab
            lab.shutdown_kernels()
        browser.close()
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "goal_ms": args.limit_ms,
        "chapters": rows,
        "figures": figures,
        "total_s": round(time.perf_counter() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    worst = max((max(f["median_ms"], f["median_first_view_ms"]) for f in figures), default=0.0)
    print(f"worst figure median {worst:.0f} ms (goal {args.limit_ms:.0f} ms); results written to {out}")
    return 0 if worst <= args.limit_ms and not any(r["errors"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
