"""Gateway tests (pytest, CPython only)."""
