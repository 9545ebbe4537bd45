"""`edgeseal board info`: what is on a board: MicroPython and firmware versions, free heap, the
device key and link key (public fingerprints only), and the files with sizes and hashes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.boardctl.link import BoardFile, BoardLink
from gateway.boardctl.provision import Identity, read_identity

# Runs first on a fresh soft-reset heap, so mem_free is what the firmware would start with.
_STATUS = """import gc,sys,json
gc.collect()
f,a=gc.mem_free(),gc.mem_alloc()
try:
 from firmware.runtime import FIRMWARE_VERSION as v
 v='.'.join(str(x) for x in v)
except ImportError:
 v=None
i=sys.implementation
print(json.dumps({'mem_free':f,'mem_alloc':a,'firmware':v,'machine':getattr(i,'_machine',sys.platform),
 'micropython':'.'.join(str(x) for x in i.version[:3])}))
"""


@dataclass
class BoardInfo:
    """What info() found; identity is None when no firmware is deployed."""

    status: dict[str, Any]
    identity: Identity | None
    files: list[BoardFile]

    def lines(self) -> list[str]:
        """Return the report as text lines a person can paste into an issue."""
        s = self.status
        out = [
            f"board:        {s.get('machine')}",
            f"MicroPython:  {s.get('micropython')}",
            f"firmware:     {s.get('firmware') or 'not deployed'}",
            f"free heap:    {s.get('mem_free')} bytes after a soft reset "
            f"({s.get('mem_alloc')} allocated)",
        ]
        ident = self.identity
        if ident is not None:
            out.append(f"firmware hash: {ident.firmware_hash.hex()}")
            pk = ident.public_key
            out.append(
                f"device id:    {ident.device_id.hex() if ident.device_id else 'no key yet'}"
            )
            out.append(f"public key:   {pk.hex() if pk else '-'}")
            lk = ident.link_key_id
            out.append(f"link key:     {'id ' + lk.hex() if lk else 'not installed'}")
            rk = ident.release_key
            out.append(f"release key:  {rk.hex() if rk else 'not installed'}")
            out.append(f"chip MAC:     {ident.mac.hex()}")
        files = [f for f in self.files if not f.is_dir]
        out.append(f"files:        {len(files)}, {sum(f.size for f in files)} bytes")
        out += [f"  {f.size:>7}  {f.sha256[:16]}  {f.path}" for f in files]
        return out


def info(link: BoardLink) -> BoardInfo:
    """Return what is on the board on link (never creates a key)."""
    status = link.exec_json(_STATUS)
    ident = read_identity(link, create=False) if status.get("firmware") else None
    return BoardInfo(status, ident, link.list_files())
