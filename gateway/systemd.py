"""sd_notify for Type=notify units: READY, WATCHDOG, STOPPING and STATUS over $NOTIFY_SOCKET.

A few lines of socket code instead of a dependency (the protocol is one datagram per message,
sd_notify(3)). Outside systemd ($NOTIFY_SOCKET unset) every call is a no-op returning False.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends sd_notify datagrams to the socket systemd passed in $NOTIFY_SOCKET."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        """Read NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID from environ (default os.environ)."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        if address and address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        self.address = address
        self.watchdog_usec = 0
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and (not pid or pid == str(os.getpid())):
            self.watchdog_usec = int(usec)

    @property
    def enabled(self) -> bool:
        """Return True if running under systemd with a notify socket."""
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Return how often to send WATCHDOG=1 (half the configured timeout), or None if off."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec and self.enabled else None

    def notify(self, message: str) -> bool:
        """Send message (e.g. "READY=1"); return True if it was sent. Never raises."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> bool:
        """Tell systemd start-up is complete; return True if sent."""
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        """Tell systemd the service is alive; return True if sent."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        """Tell systemd shutdown has begun; return True if sent."""
        return self.notify("STOPPING=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, status: str) -> bool:
        """Set the status line `systemctl status` shows; return True if sent."""
        return self.notify(f"STATUS={status}")
