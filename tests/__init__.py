"""Test suites for the edgeseal firmware and gateway."""
