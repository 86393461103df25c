"""Importing bnlib needs NumPy only: the heavy libraries load only with the modules that use them."""

import subprocess
import sys


def test_import_bnlib_loads_no_heavy_dependency():
    code = (
        "import sys, bnlib; bnlib.BatchNorm(2)(__import__('numpy').ones((2, 2)));"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'matplotlib', 'sklearn', 'keras', 'ipywidgets', 'scipy'});"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import bnlib pulled in: {out.stdout.strip()}"
