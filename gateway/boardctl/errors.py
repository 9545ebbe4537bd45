"""The typed errors of `edgeseal board`: one stable code per way a board step can fail."""

from __future__ import annotations

from gateway.errors import EdgesealError

# codes (docs/boards.md, Errors)
NO_PORT = "no-port"  # the serial device does not exist
PERMISSION_DENIED = "permission-denied"  # the user may not open it (dialout group)
PORT_BUSY = "port-busy"  # another program holds the port open (mpremote, screen, a gateway)
NOT_MICROPYTHON = "not-micropython"  # something answers, but no MicroPython REPL
BOARD_FAILED = "board-failed"  # code run on the board raised (the traceback is in the message)
BAD_IMAGE = "bad-image"  # the image file is not an ESP image, or its sha256 is not the pinned one
NO_BOOTLOADER = "no-bootloader"  # esptool found no ESP ROM bootloader on the port
WRONG_CHIP = "wrong-chip"  # the image (or profile) is for another chip than the one attached
NO_FIRMWARE = "no-firmware"  # the firmware sources (a source checkout) are not there
BAD_PROFILE = "bad-profile"  # the board profile does not validate
VERIFY_FAILED = "verify-failed"  # what is on the board differs from what was written
BAD_ATTESTATION = "bad-attestation"  # the board's self-signed attestation does not verify
NO_MASTER = "no-link-master"  # the gateway's link.key is not readable here
NO_TOKEN = "no-token"  # no operator token
ENROLL_REFUSED = "enroll-refused"  # the gateway answered the enrollment with an error
GATEWAY_UNREACHABLE = "gateway-unreachable"  # no HTTP answer from the gateway
BAD_RELEASE_KEY = "bad-release-key"  # --release-key is not a 32-byte public key in hex
KEY_CONFLICT = "key-conflict"  # the gateway holds another key for this device id, or revoked it


class BoardError(EdgesealError):
    """A board step failed; code is one of the constants above, message says what to do."""
