"""Heap used by the journal + sequence counter at steady state, inside the MicroPython VM.

Run from the repo root: node tools/mpvm.mjs --heap-kb 100 --run tools/journal_heap.py [CYCLES]

How it measures (the webassembly port differs from a board in two ways that matter here):
- gc.collect() only requests a collection; it runs when control returns to JS (at an await at the
  top level). Until then nothing is freed, so the gc.mem_alloc() difference across an operation
  is exactly what the operation allocated.
- The heap grows instead of raising MemoryError, so --heap-kb alone proves nothing; and every
  await leaks a little (JS-side proxies freed only when node's own GC runs).
So the script collects at the top level once per cycle (few awaits, little leak) to read the live
heap, records the allocation of every single operation, and fails unless
max live heap + largest single-operation allocation <= BUDGET_BYTES (100 KB): a bound on the peak
that holds even if the board's GC never ran during an operation.
"""

import asyncio
import gc
import os
import sys

if not hasattr(gc, "mem_alloc"):
    print("journal_heap.py needs MicroPython (gc.mem_alloc); run it through tools/mpvm.mjs")
    sys.exit(2)

ARGS = globals().get("ARGV", [])
CYCLES = int(ARGS[1]) if len(ARGS) > 1 else 90
BUDGET_BYTES = 100 * 1024
APPENDS_PER_CYCLE = 12
OFFLINE = (20, 55)  # cycles with the gateway away: the 64 KB journal fills up and drops readings
REBOOT_EVERY = 10
WARMUP_CYCLES = 3
JDIR = "/jheap"
SDIR = "/jheap_st"


async def live():
    """Collect garbage at the top level; returns the live heap in bytes."""
    gc.collect()
    await asyncio.sleep(0)
    return gc.mem_alloc()


def wipe(directory):
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        os.remove(directory + "/" + name)


class Meter:
    """Largest allocation of a single operation, and which one."""

    def __init__(self):
        self.max_op = 0
        self.max_op_name = ""
        self.a0 = 0

    def start(self):
        self.a0 = gc.mem_alloc()

    def stop(self, name):
        d = gc.mem_alloc() - self.a0
        if d > self.max_op:
            self.max_op = d
            self.max_op_name = name


async def main():
    heap_base = await live()
    from firmware.fs import VfsFS
    from firmware.journal import MAX_RECORD_BYTES, Journal, JournalFull
    from firmware.seqcounter import FileKV, SeqCounter

    heap_code = await live()
    wipe(JDIR)
    wipe(SDIR)
    fs = VfsFS()
    m = Meter()
    payload = bytearray(MAX_RECORD_BYTES)  # the sampler's reusable record buffer
    pmv = memoryview(payload)
    j = c = None
    stored = dropped = sent = overflow_events = boots = 0
    max_used = 0
    max_live = 0
    max_live_segments = 0
    x = 12345
    for cycle in range(CYCLES):
        if cycle % REBOOT_EVERY == 0:
            j = c = None
            m.start()
            j = Journal(fs, JDIR)
            last = j.last()
            c = SeqCounter(FileKV(fs, SDIR), 0 if last is None else last[0])
            last = None
            m.stop(f"boot: mount {len(os.listdir(JDIR))} segments, {j.used_bytes} bytes")
            boots += 1
        for _ in range(APPENDS_PER_CYCLE):
            m.start()
            if j.dropped_count and j.room_for(16):
                payload[0] = 0xEE
                j.append(c.next(), pmv[:16], True)
                overflow_events += 1
            x = (x * 1103515245 + 12345) & 0x3FFFFFFF
            n = 100 + x % (MAX_RECORD_BYTES - 99)
            payload[0] = cycle & 0xFF
            try:
                j.append(c.next(), pmv[:n])
                stored += 1
            except JournalFull:
                dropped += 1
            m.stop("append")
            if j.used_bytes > max_used:
                max_used = j.used_bytes
        if not OFFLINE[0] <= cycle < OFFLINE[1]:
            # The uploader: one record per BLE notification (each next() is one operation).
            top = -1
            it = j.iter_from(j.acked_seq + 1)
            while True:
                m.start()
                try:
                    seq, data = next(it)
                except StopIteration:
                    break
                m.stop("iter_from: next record")
                if len(data) < 16:
                    raise AssertionError("short record")
                top = seq
                sent += 1
                data = None
            it = None
            m.start()
            if top >= 0:
                j.ack(top)
            m.stop("ack + compaction")
        a = await live()
        if cycle >= WARMUP_CYCLES and a > max_live:
            max_live = a
            max_live_segments = len(j._segs)
    end_live = await live()
    bound = max_live + m.max_op
    print(
        f"journal_heap: {CYCLES} cycles, {boots} boots, {stored} stored, {dropped} dropped while "
        f"offline, {overflow_events} overflow events, {sent} sent, max journal {max_used} bytes"
    )
    print(f"heap before import      {heap_base:6d} bytes (VM, runner)")
    print(
        f"heap after import       {heap_code:6d} bytes "
        f"(bytecode of crc32, fs, journal, seqcounter: {heap_code - heap_base})"
    )
    print(
        f"max live heap           {max_live:6d} bytes (objects: {max_live - heap_code}, "
        f"at {max_live_segments} segments; includes await leak)"
    )
    print(f"live heap at the end    {end_live:6d} bytes (objects: {end_live - heap_code})")
    print(f"largest op allocation   {m.max_op:6d} bytes ({m.max_op_name})")
    print(f"peak bound              {bound:6d} bytes (max live + largest op allocation)")
    wipe(JDIR)
    wipe(SDIR)
    if bound > BUDGET_BYTES:
        raise MemoryError(f"peak bound {bound} bytes > budget {BUDGET_BYTES} bytes")
    print(f"budget                  {BUDGET_BYTES:6d} bytes: OK")


await main()  # noqa: F704 (the VM runner runs this file with top-level await)
