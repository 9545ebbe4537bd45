"""edgeseal gateway: verifies signed device records, sequences them into a Merkle log, runs contracts."""
