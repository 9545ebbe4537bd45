"""Power-loss-safe append-only journal: records stay on flash until the gateway acks them."""

import struct

from micropython import const

from firmware.crc32 import crc32
from firmware.fs import join

MAX_RECORD_BYTES = const(244)  # wire format v1: one record fits one BLE notification
# Bound on the flash the journal may use. A 4 MB ESP32 keeps most of the flash for firmware and
# code; 64 KB holds ~270 full-size records (~45 min of backlog at one reading every 10 s).
MAX_JOURNAL_BYTES = const(65536)
# Segment file size: compaction deletes whole fully-acked segments (no rewriting of live data).
# Smaller segments free space sooner after acks; larger ones mean fewer files and directory updates.
_SEGMENT_BYTES = const(4096)
# Kept free of records for ack and dropped-count markers, so a full journal still records them.
_RESERVE_BYTES = const(256)
# While full, the dropped count is persisted at the first drop and then every this many drops.
_DROP_PERSIST_EVERY = const(16)

# Entry: crc32 (u32 little-endian, over everything after it), magic u8, kind u8, len u16 and
# seq u32 (big-endian), payload.
_HDR = const(12)
# CRC-32 of data followed by its own CRC (little-endian): the same constant for any data. Checking
# this residue compares CRCs without building a long int from the stored bytes.
_CRC_RESIDUE = const(0x2144DF1C)
_MAGIC = const(0xA7)
_K_RECORD = const(0)
_K_OVERFLOW = const(1)  # a record that also resets dropped_count (the sampler's overflow event)
_K_ACK = const(2)  # seq field: every record up to and including it was acked
_K_DROPPED = const(3)  # seq field: dropped_count at this point

_OK = const(0)
_BAD = const(1)

# Fields of a segment descriptor (a small list kept per segment file).
_ID = const(0)
_FIRST = const(1)
_LAST = const(2)
_SIZE = const(3)
_NREC = const(4)
_PATH = const(5)

_SEG_EXT = const(".seg")
_TMP_EXT = const(".tmp")


class JournalError(Exception):
    """Base class of the journal's errors."""


class JournalFull(JournalError):
    """The journal is at MAX_JOURNAL_BYTES: the record was not stored (dropped_count counts it)."""


class JournalCorrupt(JournalError):
    """Flash content changed under the journal (a record read back with a bad CRC)."""


class Journal:
    """Append-only store of (seq, record) on a filesystem, kept until acked.

    fs: firmware.fs.VfsFS or the simulated flash. Records live in segment files named
    %08x.seg under directory; each entry is a 12-byte header (CRC-32, magic, kind, length, seq)
    and the payload (docs/journal.md). Mounting (the constructor) scans every segment, truncates
    a torn tail of the newest segment, and counts corrupt entries (corrupt_count) without ever
    returning them. Preconditions: max_bytes >= 2 * segment_bytes + _RESERVE_BYTES + 256 and
    segment_bytes >= 256; the directory belongs to this journal alone.
    """

    def __init__(
        self, fs, directory="journal", max_bytes=MAX_JOURNAL_BYTES, segment_bytes=_SEGMENT_BYTES
    ):
        if segment_bytes < _HDR + MAX_RECORD_BYTES:
            raise ValueError("segment_bytes too small")
        if max_bytes < 2 * segment_bytes + _RESERVE_BYTES + _HDR + MAX_RECORD_BYTES:
            raise ValueError("max_bytes too small for segment_bytes")
        self._fs = fs
        self._dir = directory
        self._max = max_bytes
        self._seg_max = segment_bytes
        # An entry, plus 4 bytes where _read_entry copies the entry's CRC behind its data.
        self._buf = bytearray(_HDR + MAX_RECORD_BYTES + 4)
        self._mv = memoryview(self._buf)
        self._crc_n = -1  # payload length _crc_view was made for
        self._crc_view = self._mv[4:8]
        self._segs = []
        self._used = 0
        self._acked = -1
        self._last_seq = -1
        self._last_sid = -1
        self._last_off = 0
        self._kind = 0
        self._seq = 0
        self._n = 0
        self._dirty = False
        self._drop_sid = -1
        self.dropped_count = 0
        self.corrupt_count = 0
        self.torn_bytes = 0
        self._mount()

    # ---- public API ------------------------------------------------------------------------
    @property
    def last_seq(self):
        """Seq of the newest record ever appended (acked or not), -1 when none."""
        return self._last_seq

    @property
    def acked_seq(self):
        """Every record with seq <= acked_seq is acked (-1 when nothing is)."""
        return self._acked

    @property
    def used_bytes(self):
        """Bytes of flash the segment files take."""
        return self._used

    def room_for(self, nbytes):
        """Return True when a record of nbytes would be accepted now."""
        return self._used + _HDR + nbytes <= self._max - _RESERVE_BYTES

    def append(self, seq, record, overflow=False):
        """Store record (bytes, at most MAX_RECORD_BYTES) under seq (u32, above every earlier seq).

        Returns once the entry is flushed to the filesystem. overflow=True marks the sampler's
        overflow event that reports dropped_count; storing it resets dropped_count to 0.
        Raises JournalFull (and counts the record in dropped_count) when the journal is full,
        ValueError on a bad seq or size.
        """
        n = len(record)
        if n > MAX_RECORD_BYTES:
            raise ValueError("record larger than MAX_RECORD_BYTES")
        if seq < 0 or seq > 0xFFFFFFFF:
            raise ValueError("seq outside u32")
        if seq <= self._last_seq:
            raise ValueError("seq must increase")
        need = _HDR + n
        segs = self._segs
        if self._used + need > self._max - _RESERVE_BYTES:
            self.dropped_count += 1
            d = self.dropped_count
            if (d == 1 or d % _DROP_PERSIST_EVERY == 0) and self._used + _HDR <= self._max:
                self._put(segs[-1], _K_DROPPED, d, None, 0)
                self._drop_sid = segs[-1][_ID]
            raise JournalFull("journal full")
        if not segs or (segs[-1][_NREC] > 0 and segs[-1][_SIZE] + need > self._seg_max):
            sid = segs[-1][_ID] + 1 if segs else 1
            segs.append([sid, -1, -1, 0, 0, self._path(sid, _SEG_EXT)])
        seg = segs[-1]
        off = self._put(seg, _K_OVERFLOW if overflow else _K_RECORD, seq, record, n)
        if seg[_FIRST] < 0:
            seg[_FIRST] = seq
        seg[_LAST] = seq
        seg[_NREC] += 1
        self._last_seq = seq
        self._last_sid = seg[_ID]
        self._last_off = off
        if overflow:
            self.dropped_count = 0
            self._drop_sid = -1

    def ack(self, seq):
        """Mark every record with seq <= seq as delivered (cumulative) and delete the segments that
        hold only acked records. Returns nothing; an ack at or below acked_seq changes nothing."""
        if seq > self._last_seq:
            seq = self._last_seq
        if seq <= self._acked:
            return
        self._acked = seq
        self.compact()
        first = self._first_seq()
        # The marker matters only while acked records remain on flash (deleted ones are gone anyway).
        # Ack markers may use half the reserve; the other half stays for dropped-count markers.
        if 0 <= first <= seq and self._used + _HDR <= self._max - _RESERVE_BYTES // 2:
            self._put(self._segs[-1], _K_ACK, seq, None, 0)

    def compact(self):
        """Delete, oldest first, the segment files whose records are all acked, never the one holding
        the newest record (last() needs it). A pending dropped count kept in a segment about to go
        is first written again into the newest segment (from the reserve; if even that is full, the
        segment stays until the overflow event is stored)."""
        segs = self._segs
        if not segs:
            return
        keep = self._last_sid if self._last_sid >= 0 else segs[-1][_ID]
        while len(segs) > 1 and segs[0][_ID] < keep and segs[0][_LAST] <= self._acked:
            if self.dropped_count and segs[0][_ID] == self._drop_sid:
                if self._used + _HDR > self._max:
                    return
                self._put(segs[-1], _K_DROPPED, self.dropped_count, None, 0)
                self._drop_sid = segs[-1][_ID]
            self._fs.remove(segs[0][_PATH])
            self._used -= segs[0][_SIZE]
            segs.pop(0)

    def iter_from(self, seq=0):
        """Yield (seq, record bytes) for every unacked record with seq >= seq, in seq order.

        Reads one entry at a time (no file stays open between items), so appends, acks and
        compaction may happen while the caller is iterating; records acked meanwhile are skipped.
        """
        seg = self._next_seg(-1)
        off = 0
        while seg is not None:
            sid = seg[_ID]
            lo = max(seq, self._acked + 1)
            if seg[_NREC] == 0 or seg[_LAST] < lo:
                seg = self._next_seg(sid)
                off = 0
                continue
            try:
                f = self._fs.open(seg[_PATH], "rb")
            except OSError:  # compacted away meanwhile
                seg = self._next_seg(sid)
                off = 0
                continue
            out = None
            try:
                size = seg[_SIZE]
                while off < size:
                    if self._read_entry(f, off, size) == _OK:
                        off += _HDR + self._n
                        if self._kind <= _K_OVERFLOW and self._seq >= lo:
                            out = (self._seq, bytes(self._mv[_HDR : _HDR + self._n]))
                            break
                    else:
                        nxt = self._resync(f, off + 1, size)
                        off = size if nxt < 0 else nxt
            finally:
                f.close()
            if out is not None:
                yield out
                continue
            seg = self._next_seg(sid)
            off = 0

    def last(self):
        """Return (seq, record bytes) of the newest record ever appended, acked or not, or None.

        The chain head survives acks and compaction: the segment holding it is never deleted.
        Raises JournalCorrupt when it no longer reads back intact.
        """
        if self._last_sid < 0:
            return None
        seg = None
        for s in self._segs:
            if s[_ID] == self._last_sid:
                seg = s
        if seg is None:
            raise JournalCorrupt("segment of the newest record is missing")
        f = self._fs.open(seg[_PATH], "rb")
        try:
            st = self._read_entry(f, self._last_off, seg[_SIZE])
        finally:
            f.close()
        if st != _OK or self._seq != self._last_seq or self._kind > _K_OVERFLOW:
            raise JournalCorrupt("newest record fails its CRC")
        return self._last_seq, bytes(self._mv[_HDR : _HDR + self._n])

    # ---- internals ------------------------------------------------------------------------
    def _path(self, sid, ext):
        return join(self._dir, "%08x" % sid + ext)

    def _next_seg(self, sid):
        """Return the descriptor of the first segment with an id above sid, or None."""
        for s in self._segs:
            if s[_ID] > sid:
                return s
        return None

    def _first_seq(self):
        """Return the seq of the oldest record still on flash, -1 when none."""
        for s in self._segs:
            if s[_NREC]:
                return s[_FIRST]
        return -1

    def _read_entry(self, f, off, size):
        """Parse and check the entry at off (entries must end by size). Returns _OK (then _kind,
        _seq, _n and the payload in _buf[_HDR:] describe it) or _BAD."""
        if off + _HDR > size:
            return _BAD
        buf = self._buf
        f.seek(off)
        # One read of header and payload into the whole buffer (it may read past the entry):
        # no memoryview slice, so no allocation besides the CRC's result.
        got = f.readinto(buf)
        if got < _HDR:
            return _BAD
        kind = buf[5]
        n = (buf[6] << 8) | buf[7]
        if buf[4] != _MAGIC or kind > _K_DROPPED or n > MAX_RECORD_BYTES:
            return _BAD
        if (kind >= _K_ACK and n) or off + _HDR + n > size or got < _HDR + n:
            return _BAD
        # The residue check over the data followed by its CRC, in one crc32 call: the stored CRC's
        # 4 bytes are copied behind the data, and the view over both is kept for the next entry of
        # the same length. A mount (hundreds of entries) then allocates next to nothing per entry
        # (it was ~55 bytes: a view and a long-int CRC each).
        e = _HDR + n
        buf[e] = buf[0]
        buf[e + 1] = buf[1]
        buf[e + 2] = buf[2]
        buf[e + 3] = buf[3]
        if n != self._crc_n:
            self._crc_view = self._mv[4 : e + 4]
            self._crc_n = n
        if crc32(self._crc_view) != _CRC_RESIDUE:
            return _BAD
        self._kind = kind
        self._n = n
        self._seq = (buf[8] << 24) | (buf[9] << 16) | (buf[10] << 8) | buf[11]
        return _OK

    def _resync(self, f, off, size):
        """Return the offset of the first valid entry at or after off, -1 when there is none."""
        buf = self._buf
        while off + _HDR <= size:
            # Look for the magic byte of an entry starting at off or later (it sits at +4).
            f.seek(off + 4)
            got = f.readinto(self._mv[: min(len(buf), size - off - 4)])
            if not got:
                return -1
            i = 0
            while i < got and buf[i] != _MAGIC:
                i += 1
            if i == got:
                off += got
                continue
            cand = off + i
            if self._read_entry(f, cand, size) == _OK:
                return cand
            off = cand + 1
        return -1

    def _put(self, seg, kind, seq, payload, n):
        """Append one entry to segment seg and flush it; returns the entry's offset."""
        if self._dirty:
            self._fix()
        buf = self._buf
        mv = self._mv
        struct.pack_into(">BBHI", buf, 4, _MAGIC, kind, n, seq)
        if n:
            mv[_HDR : _HDR + n] = payload
        struct.pack_into("<I", buf, 0, crc32(mv[4 : _HDR + n]))
        off = seg[_SIZE]
        # If the write fails half way (an OSError), the next write first trims the file back.
        self._dirty = True
        f = self._fs.open(seg[_PATH], "ab")
        try:
            f.write(mv[: _HDR + n])
            f.flush()
        finally:
            f.close()
        self._dirty = False
        seg[_SIZE] = off + _HDR + n
        self._used += _HDR + n
        return off

    def _fix(self):
        """Trim the newest segment file back to the size the journal knows (after a failed write)."""
        seg = self._segs[-1]
        path = seg[_PATH]
        try:
            actual = self._fs.size(path)
        except OSError:
            actual = 0
        if actual != seg[_SIZE]:
            if seg[_SIZE] == 0:
                self._fs.remove(path)
            else:
                self._rewrite(seg[_ID], seg[_SIZE])
        self._dirty = False

    def _rewrite(self, sid, new_size):
        """Replace segment sid by its first new_size bytes (copy to a temp file, then rename)."""
        path = self._path(sid, _SEG_EXT)
        tmp = self._path(sid, _TMP_EXT)
        mv = self._mv
        src = self._fs.open(path, "rb")
        try:
            dst = self._fs.open(tmp, "wb")
            try:
                off = 0
                while off < new_size:
                    got = src.readinto(mv[: min(len(mv), new_size - off)])
                    if not got:
                        raise JournalCorrupt("segment shorter than expected")
                    dst.write(mv[:got])
                    off += got
                dst.flush()
            finally:
                dst.close()
        finally:
            src.close()
        self._fs.rename(tmp, path)

    def _mount(self):
        """Scan the segment files, repair a torn tail and rebuild the in-RAM index."""
        fs = self._fs
        fs.mkdir(self._dir)
        ids = []
        for name in fs.listdir(self._dir):
            if name.endswith(_TMP_EXT):
                fs.remove(join(self._dir, name))  # leftover of an interrupted rewrite
            elif name.endswith(_SEG_EXT) and len(name) == 8 + len(_SEG_EXT):
                try:
                    sid = int(name[:8], 16)
                except ValueError:
                    continue  # not ours
                ids.append(sid)
        ids.sort()
        ends = []
        for sid in ids:
            ends.append(self._scan(sid))
        segs = self._segs
        # A newest segment without a single valid entry is a torn first write: drop the file.
        while segs and ends[-1] == 0:
            self.torn_bytes += segs[-1][_SIZE]
            fs.remove(segs[-1][_PATH])
            self._used -= segs[-1][_SIZE]
            segs.pop()
            ends.pop()
        for i in range(len(segs)):
            if ends[i] < segs[i][_SIZE]:
                if i == len(segs) - 1:  # torn tail: the interrupted last write
                    self.torn_bytes += segs[i][_SIZE] - ends[i]
                    self._rewrite(segs[i][_ID], ends[i])
                    self._used -= segs[i][_SIZE] - ends[i]
                    segs[i][_SIZE] = ends[i]
                else:  # garbage at the end of a sealed segment: not from a power cut
                    self.corrupt_count += 1
        first = self._first_seq()
        if first >= 0 and first - 1 > self._acked:
            self._acked = first - 1  # older records were deleted, which only happens once acked
        if self._acked > self._last_seq:
            self._acked = self._last_seq

    def _scan(self, sid):
        """Index segment sid (append its descriptor, replay its markers); returns the offset just
        past its last valid entry. Garbage followed by a valid entry counts in corrupt_count."""
        path = self._path(sid, _SEG_EXT)
        size = self._fs.size(path)
        seg = [sid, -1, -1, size, 0, path]
        end = 0
        off = 0
        f = self._fs.open(path, "rb")
        try:
            while off < size:
                ok = self._read_entry(f, off, size) == _OK
                kind = self._kind
                seq = self._seq
                if ok and kind <= _K_OVERFLOW and seq <= self._last_seq:
                    ok = False  # out of order: not an entry this journal wrote here
                if ok:
                    if kind <= _K_OVERFLOW:
                        if seg[_FIRST] < 0:
                            seg[_FIRST] = seq
                        seg[_LAST] = seq
                        seg[_NREC] += 1
                        self._last_seq = seq
                        self._last_sid = sid
                        self._last_off = off
                        if kind == _K_OVERFLOW:
                            self.dropped_count = 0
                            self._drop_sid = -1
                    elif kind == _K_ACK:
                        if seq > self._acked:
                            self._acked = seq
                    else:
                        self.dropped_count = seq
                        self._drop_sid = sid
                    off += _HDR + self._n
                    end = off
                    continue
                nxt = self._resync(f, off + 1, size)
                if nxt < 0:
                    break
                self.corrupt_count += 1
                off = nxt
        finally:
            f.close()
        self._segs.append(seg)
        self._used += size
        return end
