"""Shoal's own top-level packages come first, whatever the current folder holds.

A job project often keeps its ``.avsc`` files in a ``schemas/`` folder of its own. Run
from that project (``python -m runtime.cli.main`` puts the current folder first on
``sys.path``), ``import schemas`` would find the project's folder instead of Shoal's
``schemas`` package. Importing this module loads Shoal's package from beside ``runtime/``
before any job is imported, so every later import gets it from ``sys.modules``.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
sys.path.insert(0, _ROOT)
try:
    import schemas  # noqa: F401 - cached in sys.modules for every later import
finally:
    sys.path.remove(_ROOT)
