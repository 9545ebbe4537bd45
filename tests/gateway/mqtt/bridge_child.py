"""Child process of test_crash: a real gateway node with the MQTT bridge, ingesting until killed.

Usage: python -m tests.gateway.mqtt.bridge_child DATA_DIR MQTT_URL

Enrolls one board, then delivers one signed reading per upload and prints "ACK <seq>" after each
durable upload, forever (the parent SIGKILLs it while the bridge is publishing).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gateway.node import Node
from tests.gateway.contracts.helpers import Board
from tests.gateway.node.helpers import make_settings, record_payload

BOARD_NAME = "mqtt-crash"
LIMIT_ACKS = 100_000  # stop on our own if nobody kills us
T0 = 1_800_000_000


async def main(data_dir: Path, url: str) -> None:
    settings = make_settings(data_dir.parent, data_dir=data_dir, mqtt_url=url)
    node = await asyncio.to_thread(Node, settings)
    await node.start()
    board = Board(BOARD_NAME)
    await node.sequencer.enroll(board.public_key, {"board": BOARD_NAME})
    print("READY", flush=True)
    for i in range(LIMIT_ACKS):
        rec = board.record(T0 + i, [(1, 0, 2000 + i % 1000)])
        ack = await node.sequencer.deliver(board.device_id, [record_payload(rec)])
        print(f"ACK {ack}", flush=True)
        await asyncio.sleep(0.005)  # a steady stream, not a flood: the bridge keeps up


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
