"""Pytest setup shared by the firmware and gateway suites: host shims and the repo root on sys.path."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIMS = os.path.join(ROOT, "tests", "shims")
for path in (SHIMS, ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)
