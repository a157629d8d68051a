"""The engine never imports the widgets or their UI libraries (data flows one way)."""

import subprocess
import sys


def test_engine_imports_no_ui():
    code = (
        "import importlib, pkgutil, sys\n"
        "import nuskybgd_engine\n"
        "for m in pkgutil.walk_packages(nuskybgd_engine.__path__, 'nuskybgd_engine.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in "
        "('nuskybgd_widgets', 'ipywidgets', 'bqplot', 'bqplot_image_gl', 'voila', 'xspectrampoline'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the engine imported {out.stdout.strip()}"
