"""Tests of the helper scripts in tools/."""
