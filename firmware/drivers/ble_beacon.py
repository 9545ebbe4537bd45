"""Vehicle id from BLE advertising data (iBeacon, Eddystone-UID), fed by bluetooth _IRQ_SCAN_RESULT."""

from micropython import const

from firmware.drivers.base import SensorError, emitter, new_source

# Wire registry values: private copies of firmware/wire.py's constants (no name in RAM);
# tests/firmware/test_wire.py pins every copy to wire.py's value.
_CH_RSSI = const(20)
_CH_VEHICLE_COMMITMENT = const(11)

# AD types (Bluetooth Assigned Numbers, "Common Data Types").
AD_FLAGS = const(0x01)
AD_UUID16_INCOMPLETE = const(0x02)
AD_UUID16_COMPLETE = const(0x03)
AD_SERVICE_DATA_16 = const(0x16)
AD_MANUFACTURER = const(0xFF)
_APPLE_COMPANY_ID = const(0x004C)  # little-endian 4C 00 on air
_IBEACON_TYPE = const(0x02)
_IBEACON_LEN = const(0x15)  # 21 bytes follow: UUID 16, major 2, minor 2, measured power 1
_EDDYSTONE_UUID = const(0xFEAA)  # little-endian AA FE on air
_EDDYSTONE_UID_FRAME = const(0x00)
KIND_IBEACON = const(1)  # id = proximity UUID (16) + major (2, BE) + minor (2, BE): 20 bytes
KIND_EDDYSTONE_UID = const(2)  # id = namespace (10) + instance (6): 16 bytes
_MAX_ADV_BYTES = const(31)  # legacy advertising payload limit
# adv_type 1 (ADV_DIRECT_IND) carries no advertising data.
_ADV_DIRECT_IND = const(1)
# RSSI below this is a beacon in a neighbouring bay or passing by; tune on site.
MIN_RSSI_DBM_DEFAULT = const(-75)
# Adverts of the same id needed in one window before it is believed (one stray packet is not a car).
MIN_HITS_DEFAULT = const(2)


class AdvError(SensorError):
    """Advertising data is malformed (an AD structure runs past the end)."""


def ad_structures(adv_data):
    """Return a list of (ad_type, start, end) for each AD structure in adv_data.

    A zero length byte ends the significant part (the rest is padding). Raises AdvError if a
    structure overruns the buffer or the payload exceeds 31 bytes.
    """
    n = len(adv_data)
    if n > _MAX_ADV_BYTES:
        raise AdvError("advertising data longer than 31 bytes")
    out = []
    i = 0
    while i < n:
        length = adv_data[i]
        if length == 0:
            break
        if i + 1 + length > n:
            raise AdvError("AD structure overruns advertising data")
        out.append((adv_data[i + 1], i + 2, i + 1 + length))
        i += 1 + length
    return out


def vehicle_id(adv_data):
    """Return (kind, id_bytes) for an iBeacon or Eddystone-UID advert, or None for anything else.

    adv_data: bytes/memoryview of the advertising payload. Raises AdvError for malformed data.
    """
    eddystone_listed = False
    service_data = None
    for ad_type, start, end in ad_structures(adv_data):
        if ad_type == AD_MANUFACTURER and end - start == 25:
            company = adv_data[start] | (adv_data[start + 1] << 8)
            if (
                company == _APPLE_COMPANY_ID
                and adv_data[start + 2] == _IBEACON_TYPE
                and adv_data[start + 3] == _IBEACON_LEN
            ):
                return KIND_IBEACON, bytes(adv_data[start + 4 : start + 24])
        elif ad_type in (AD_UUID16_COMPLETE, AD_UUID16_INCOMPLETE):
            for j in range(start, end - 1, 2):
                if adv_data[j] | (adv_data[j + 1] << 8) == _EDDYSTONE_UUID:
                    eddystone_listed = True
        elif (
            ad_type == AD_SERVICE_DATA_16
            and end - start >= 2
            and adv_data[start] | (adv_data[start + 1] << 8) == _EDDYSTONE_UUID
        ):
            service_data = (start + 2, end)
    if service_data is not None and eddystone_listed:
        start, end = service_data
        # UID frame: type 0x00, TX power, namespace 10, instance 6, 2 RFU bytes (often omitted).
        if end - start >= 18 and adv_data[start] == _EDDYSTONE_UID_FRAME:
            return KIND_EDDYSTONE_UID, bytes(adv_data[start + 2 : start + 18])
    return None


class BeaconReader:
    """Picks the vehicle's beacon from scan results: strongest allowed id seen often enough.

    Call on_scan_result() from the BLE IRQ handler for _IRQ_SCAN_RESULT; after the scan window call
    take(). Filters: min RSSI, and optionally an iBeacon UUID / Eddystone namespace prefix that the
    operator's vehicle tags use.
    """

    def __init__(
        self, min_rssi_dbm=MIN_RSSI_DBM_DEFAULT, id_prefix=None, min_hits=MIN_HITS_DEFAULT
    ):
        """id_prefix: bytes every accepted id must start with (iBeacon UUID / Eddystone namespace)."""
        self.min_rssi_dbm = min_rssi_dbm
        self.id_prefix = None if id_prefix is None else bytes(id_prefix)
        self.min_hits = min_hits
        self.malformed = 0
        self.reset()

    def reset(self):
        """Forget the current window's candidates; returns None."""
        self._seen = {}

    def on_scan_result(self, addr_type, addr, adv_type, rssi, adv_data):
        """Consume one _IRQ_SCAN_RESULT (argument order as MicroPython's bluetooth IRQ); returns None.

        adv_data is only valid during the IRQ: the id is copied out (vehicle_id returns bytes).
        """
        if adv_type == _ADV_DIRECT_IND or rssi < self.min_rssi_dbm:
            return
        try:
            found = vehicle_id(adv_data)
        except AdvError:
            self.malformed += 1
            return
        if found is None:
            return
        key = bytes([found[0]]) + found[1]
        if self.id_prefix is not None and found[1][: len(self.id_prefix)] != self.id_prefix:
            return
        entry = self._seen.get(key)
        if entry is None:
            self._seen[key] = [1, rssi]
        else:
            entry[0] += 1
            if rssi > entry[1]:
                entry[1] = rssi

    def take(self):
        """Return (kind, id_bytes, best_rssi_dbm) of the strongest id with >= min_hits, or None.

        Ties on RSSI go to the id seen more often, then to the smaller id (deterministic). Resets
        the window.
        """
        best = None
        for key, (hits, rssi) in self._seen.items():
            if hits < self.min_hits:
                continue
            rank = (rssi, hits)
            if best is None or rank > best[0] or (rank == best[0] and key < best[1]):
                best = (rank, key)
        self.reset()
        if best is None:
            return None
        key = best[1]
        return key[0], key[1:], best[0][0]


# ---- profile: spec (firmware/board.py) and source (firmware/app.py) ---------------------------

_COMMITMENT_BYTES = const(16)
_MIN_SALT_BYTES = const(16)


def commitment(salt, vehicle_id):
    """Return the wire vehicle_commitment: SHA-256(salt || vehicle id)[0:16] (bytes)."""
    import hashlib

    h = hashlib.sha256(salt)
    h.update(vehicle_id)
    return h.digest()[:_COMMITMENT_BYTES]


def _check(params, chans):
    """Raise ValueError unless the optional id_prefix_hex is hex (the salt is checked at build)."""
    prefix = params.get("id_prefix_hex")
    if prefix is not None:
        from firmware.board import hex_bytes  # only called while firmware.board validates

        hex_bytes(prefix, "id_prefix_hex")


def specs():
    """Return {driver name: spec} of this module's profile driver (fields: firmware/drivers)."""
    return {
        "ble_beacon": {
            "channels": ("vehicle_commitment", "rssi"),
            "params": {
                "min_rssi_dbm": (int, False, None, None),
                "min_hits": (int, False, None, 1),
                "id_prefix_hex": (str, False, None, None),
                "commitment_salt_hex": (str, True, None, None),  # no salt, no privacy: required
            },
            "check": _check,
        },
    }


def source(sensor, buses, clock, readings, hooks):
    """Return the sampler Source of a ble_beacon profile sensor: the tag of the last completed scan
    as vehicle_commitment (commitment() with the profile's salt; the id never leaves the board) and
    rssi; nothing when no tag was heard. Adds the reader to hooks.scanners. Raises ValueError when
    commitment_salt_hex is missing or shorter than 16 bytes."""
    params = sensor.get("params") or {}
    emit = emitter(sensor, readings)
    prefix = params.get("id_prefix_hex")
    reader = BeaconReader(
        params.get("min_rssi_dbm", MIN_RSSI_DBM_DEFAULT),
        None if prefix is None else bytes.fromhex(prefix),
        params.get("min_hits", MIN_HITS_DEFAULT),
    )
    salt_hex = params.get("commitment_salt_hex")
    salt = None if salt_hex is None else bytes.fromhex(salt_hex)
    if salt is None or len(salt) < _MIN_SALT_BYTES:
        # unsalted, a commitment could be reversed by hashing every known tag id
        raise ValueError("sensor %s: commitment_salt_hex needs >= 16 bytes of hex" % sensor["name"])
    window = [reader.take()]  # take() of the last completed scan: (kind, id, rssi) or None
    cache = [b"", b""]  # [vehicle id, its commitment]: hash once per vehicle

    def on_done():
        # IRQ context, like on_scan_result: the reader is never touched by two contexts
        window[0] = reader.take()

    hooks.scanners.append((reader.on_scan_result, on_done))

    def read():
        got = window[0]
        if got is None:
            return []  # no tag in the last scan: no commitment, not a fault
        vid = got[1]
        if vid != cache[0]:
            cache[0] = vid
            cache[1] = commitment(salt, vid)
        rssi = got[2]
        return emit({_CH_VEHICLE_COMMITMENT: cache[1], _CH_RSSI: max(-127, min(20, rssi))})

    return new_source(sensor, read)
