"""Importing bnlib needs NumPy only: the heavy libraries load only with the modules that use them."""

import subprocess
import sys


def test_import_bnlib_loads_no_heavy_dependency():
    code = (
        "import sys, bnlib; bnlib.BatchNorm(2)(__import__('numpy').ones((2, 2)));"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'matplotlib', 'sklearn', 'keras', 'ipywidgets', 'scipy', 'PIL', 'bnbook'});"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import bnlib pulled in: {out.stdout.strip()}"


def test_bnlib_never_imports_bnbook():
    # the dependency runs one way: bnbook (the book's machinery) imports bnlib, never the reverse
    from pathlib import Path

    for path in (Path(__file__).resolve().parents[2] / "bnlib").glob("*.py"):
        imports = [line for line in path.read_text().splitlines() if line.lstrip().startswith(("import ", "from "))]
        assert not [line for line in imports if "bnbook" in line], path.name
