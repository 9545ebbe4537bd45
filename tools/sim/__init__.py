"""The simulated world behind `make run` and the system tests: never imported by the gateway.

Virtual boards run the real firmware (tools/sim/fleet.py) on bumble's virtual radio; the demo
stories (tools/sim/stories.py) post signed participant transactions; tools/sim/run.py composes
them with a gateway node (`python -m tools.sim.run`). The package is outside the gateway wheel:
the firmware and the simulation need a source checkout.

Importing it on CPython makes the firmware importable there (tools.sim.host). Inside the
MicroPython VM (tools/mpvm.mjs runs tests/firmware, whose fakes are tools.sim.buses) nothing is
installed: MicroPython has its own `micropython` module, and host.py needs importlib/pathlib.
"""

import sys

if sys.implementation.name == "cpython":
    from tools.sim import host

    host.install()
