"""Tests of gateway/boardctl (edgeseal board) against the stand-in board of tools/boardvm."""
