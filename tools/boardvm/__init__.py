"""The stand-in board: a MicroPython VM behind a pseudo-terminal (tools/boardvm/standin.py)."""
