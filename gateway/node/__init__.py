"""The gateway node: one writer (sequencer), typed reads (read model), and their lifecycle.

- sequencer: the single writer thread; group commit of BLE uploads, engine feed, transaction
  admission, integration into checkpoints.
- index: in-memory indexes of the log the writer keeps in step (transactions, events, devices).
- reads: the read model, typed queries for the API.
- lifecycle: Node, which composes them with the BLE link, the loops and systemd.
"""

from gateway.node.lifecycle import BleStatus, Extension, Node, Radio
from gateway.node.reads import ReadModel
from gateway.node.sequencer import Admitted, Sequencer

__all__ = ["Admitted", "BleStatus", "Extension", "Node", "Radio", "ReadModel", "Sequencer"]
