"""DS18B20 1-Wire thermometer on onewire.OneWire: scratchpad with CRC-8, temperature in 0.01 degC."""

import struct

from micropython import const

from firmware.drivers.base import (
    CRCError,
    NoDeviceError,
    RangeError,
    SensorError,
    crc8_maxim,
    default_sleep_ms,
    emitter,
    new_source,
)

# Wire registry values: private copies of firmware/wire.py's constants (no name in RAM);
# tests/firmware/test_wire.py pins every copy to wire.py's value.
_CH_TEMPERATURE = const(1)

# 1-Wire ROM and function commands (DS18B20 datasheet, "ROM commands" / "Function commands").
_CMD_MATCH_ROM = const(0x55)
_CMD_SKIP_ROM = const(0xCC)
_CMD_CONVERT_T = const(0x44)
_CMD_WRITE_SCRATCHPAD = const(0x4E)
_CMD_READ_SCRATCHPAD = const(0xBE)
_FAMILY_CODE = const(0x28)  # first ROM byte of every DS18B20
_SCRATCHPAD_BYTES = const(9)  # temp LSB, temp MSB, TH, TL, config, 3 reserved, CRC
# Power-on reset value of the temperature register: +85 degC. Reading it usually means the conversion
# never ran (sensor browned out / reset during conversion), so it is confirmed by a second conversion.
_RAW_POWER_ON = const(0x0550)
# Datasheet operating range -55..+125 degC in 1/16 degC counts; anything outside is a corrupt read.
_RAW_MIN = const(-880)
_RAW_MAX = const(2000)
# Alarm registers written with the config: TH=+127, TL=-128, so the alarm-search flag never fires.
_TH_DISABLED = const(0x7F)
_TL_DISABLED = const(0x80)
# Max conversion time tCONV per resolution 9..12 bits: 93.75, 187.5, 375, 750 ms (rounded up).
_CONVERSION_MS = const((94, 188, 375, 750))


class PowerOnValueError(SensorError):
    """The scratchpad still holds the 85 degC power-on value; convert again before trusting it."""


def check_rom(rom):
    """Return rom as bytes if it is an 8-byte DS18B20 ROM code with a valid CRC, else raise ValueError."""
    if rom is None or len(rom) != 8:
        raise ValueError("DS18B20 ROM must be 8 bytes")
    if rom[0] != _FAMILY_CODE:
        raise ValueError("ROM family 0x%02x is not a DS18B20 (0x28)" % rom[0])
    if crc8_maxim(rom) != 0:
        raise ValueError("DS18B20 ROM CRC mismatch")
    return bytes(rom)


def resolution_from_config(config_byte):
    """Return the resolution in bits (9..12) encoded in R1:R0 (bits 6:5) of the config register."""
    return 9 + ((config_byte >> 5) & 3)


def raw_to_c01(raw, resolution_bits):
    """Return the signed raw temperature register (1/16 degC) as 0.01 degC, halves away from zero.

    Undefined low bits at 9..11-bit resolution are cleared first (datasheet: bits 2..0 undefined at
    9 bits, 1..0 at 10 bits, 0 at 11 bits). 1/16 degC = 6.25 x 0.01 degC, i.e. raw * 25 / 4.
    """
    raw &= ~((1 << (12 - resolution_bits)) - 1)
    num = raw * 25
    if num >= 0:
        return (num + 2) // 4
    return -((-num + 2) // 4)


class DS18B20:
    """One DS18B20 on a onewire.OneWire bus (reset/write/readinto), addressed by ROM or SKIP ROM."""

    def __init__(self, ow, rom=None, resolution_bits=12, sleep_ms=None):
        """ow: onewire.OneWire; rom: 8-byte ROM code, or None for a single-drop bus (SKIP ROM).

        resolution_bits: 9..12 (12 bits = 0.0625 degC, 750 ms). sleep_ms: injected delay function.
        """
        if resolution_bits < 9 or resolution_bits > 12:
            raise ValueError("resolution_bits must be 9..12")
        self._ow = ow
        self._rom = None if rom is None else check_rom(rom)
        self.resolution_bits = resolution_bits
        self._sleep_ms = sleep_ms or default_sleep_ms()
        self._buf = bytearray(_SCRATCHPAD_BYTES)
        self._cmd = bytearray(9)
        self._cmd1 = bytearray(1)

    def _address(self):
        """Reset the bus (presence required) and address this sensor; raises NoDeviceError."""
        if not self._ow.reset():
            raise NoDeviceError("no 1-Wire presence pulse")
        if self._rom is None:
            self._cmd1[0] = _CMD_SKIP_ROM
            self._ow.write(self._cmd1)
        else:
            cmd = self._cmd
            cmd[0] = _CMD_MATCH_ROM
            for i in range(8):
                cmd[1 + i] = self._rom[i]
            self._ow.write(cmd)

    def _command(self, cmd):
        self._cmd1[0] = cmd
        self._ow.write(self._cmd1)

    def read_scratchpad(self):
        """Return the 9 scratchpad bytes (a reused bytearray) after checking the CRC.

        Raises CRCError on a CRC mismatch or an all-0xFF read (no device driving the line),
        NoDeviceError without a presence pulse, OSError from the bus unchanged.
        """
        self._address()
        self._command(_CMD_READ_SCRATCHPAD)
        buf = self._buf
        self._ow.readinto(buf)
        if crc8_maxim(buf) != 0:
            raise CRCError("DS18B20 scratchpad CRC mismatch")
        if buf[4] & 0x9F != 0x1F:
            # The config register has fixed bits 0b_0011111 around R1:R0; an all-zero scratchpad has a
            # valid CRC (0), so this check catches a line held low.
            raise SensorError("DS18B20 config byte 0x%02x invalid" % buf[4])
        return buf

    def configure(self):
        """Write TH/TL/config for self.resolution_bits and read them back; returns None.

        Raises SensorError if the read-back config differs (wrong part or a failed write).
        """
        config = ((self.resolution_bits - 9) << 5) | 0x1F
        self._address()
        self._cmd[0] = _CMD_WRITE_SCRATCHPAD
        self._cmd[1] = _TH_DISABLED
        self._cmd[2] = _TL_DISABLED
        self._cmd[3] = config
        self._ow.write(memoryview(self._cmd)[:4])
        buf = self.read_scratchpad()
        if buf[4] != config:
            raise SensorError("DS18B20 config read back 0x%02x, wrote 0x%02x" % (buf[4], config))

    def start_conversion(self):
        """Start a temperature conversion; return the datasheet max conversion time in ms to wait."""
        self._address()
        self._command(_CMD_CONVERT_T)
        return _CONVERSION_MS[self.resolution_bits - 9]

    def read_c01(self, accept_power_on=False):
        """Return the last converted temperature in 0.01 degC (int).

        Precondition: start_conversion() was called and its time has elapsed. Raises CRCError,
        PowerOnValueError for the 85 degC reset value unless accept_power_on, RangeError outside
        -55..+125 degC. The resolution used for masking is the one reported by the config register.
        """
        buf = self.read_scratchpad()
        raw = struct.unpack_from("<h", buf, 0)[0]
        if raw == _RAW_POWER_ON and not accept_power_on:
            raise PowerOnValueError("DS18B20 reads the 85 degC power-on value")
        if raw < _RAW_MIN or raw > _RAW_MAX:
            raise RangeError("DS18B20 raw temperature %d outside -55..125 degC" % raw)
        return raw_to_c01(raw, resolution_from_config(buf[4]))

    def measure_c01(self):
        """Convert, wait and return the temperature in 0.01 degC (blocking up to 2 conversions).

        An 85 degC reading is converted once more: a second 85 degC after a full conversion is
        genuine and returned; any other value replaces it.
        """
        self._sleep_ms(self.start_conversion())
        try:
            return self.read_c01()
        except PowerOnValueError:
            self._sleep_ms(self.start_conversion())
            return self.read_c01(accept_power_on=True)


# ---- profile: spec (firmware/board.py) and source (firmware/app.py) ---------------------------


def _check(params, chans):
    """Raise ValueError unless the optional "rom" parameter is a DS18B20 ROM code in hex."""
    rom = params.get("rom")
    if rom is not None:
        from firmware.board import hex_bytes  # only called while firmware.board validates

        rom = hex_bytes(rom, "rom")
        try:
            check_rom(rom)
        except ValueError as e:
            raise ValueError("rom: %s" % e) from None


def specs():
    """Return {driver name: spec} of this module's profile driver (fields: firmware/drivers)."""
    return {
        "ds18b20": {
            "bus": "onewire",
            "channels": ("temperature",),
            "params": {
                "resolution_bits": (int, False, (9, 10, 11, 12), None),
                "rom": (str, False, None, None),  # hex; omit for the only sensor on the bus
            },
            "check": _check,
        },
    }


def source(sensor, buses, clock, readings, hooks):
    """Return the sampler Source of a ds18b20 profile sensor: measure_c01() (blocking through
    clock.block_ms for the conversion) into its temperature channels.

    The resolution is written to the chip before the first conversion and again after any
    failed read: a DS18B20 powers up with the resolution in its EEPROM (12 bits from the
    factory), and measure_c01 waits only the conversion time of the profile's resolution."""
    params = sensor.get("params") or {}
    emit = emitter(sensor, readings)
    rom = params.get("rom")
    dev = DS18B20(
        buses[sensor["bus"]],
        None if rom is None else bytes.fromhex(rom),
        params.get("resolution_bits", 12),
        getattr(clock, "block_ms", None),
    )

    configured = [False]

    def read():
        if not configured[0]:
            dev.configure()
            configured[0] = True
        try:
            return emit({_CH_TEMPERATURE: dev.measure_c01()})
        except Exception:
            configured[0] = False  # a power-cycled chip is back at its EEPROM resolution
            raise

    return new_source(sensor, read)
