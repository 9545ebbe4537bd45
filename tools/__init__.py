"""Helper scripts for people: vector generator, benchmarks, toolchain checks, flashing."""
