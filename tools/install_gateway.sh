#!/bin/sh
# Install the edgeseal gateway as a systemd service on a Raspberry Pi (or any Debian host).
# Run as root from a source checkout: `sudo make install-gateway` (or sudo tools/install_gateway.sh).
#
#   - creates the system user `edgeseal` (no login shell, no home), in group `bluetooth` if it
#     exists so BlueZ's D-Bus policy lets it talk to bluetoothd;
#   - installs the gateway into /opt/edgeseal/venv (pinned dependencies from pyproject.toml)
#     and copies docs/ to /opt/edgeseal/docs;
#   - installs tools/systemd/edgeseal.service to /etc/systemd/system, creates /etc/edgeseal,
#     enables and (re)starts the service.
# Idempotent: run it again to upgrade. The ledger and keys in /var/lib/edgeseal are never touched.
set -eu

PREFIX=${PREFIX:-/opt/edgeseal}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
CONF_DIR=${CONF_DIR:-/etc/edgeseal}
PYTHON=${PYTHON:-python3}
SRC=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "install_gateway: run as root (sudo make install-gateway)" >&2
    exit 2
fi

if ! id edgeseal >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /var/lib/edgeseal \
        --shell /usr/sbin/nologin edgeseal
fi
if getent group bluetooth >/dev/null 2>&1; then
    usermod -a -G bluetooth edgeseal
fi

mkdir -p "$PREFIX"
"$PYTHON" -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install -q --disable-pip-version-check --upgrade "$SRC"
rm -rf "$PREFIX/docs"
cp -r "$SRC/docs" "$PREFIX/docs"

install -d -m 0755 "$CONF_DIR"
install -m 0644 "$SRC/tools/systemd/edgeseal.service" "$UNIT_DIR/edgeseal.service"
if command -v systemd-analyze >/dev/null 2>&1; then
    systemd-analyze verify "$UNIT_DIR/edgeseal.service"
fi
systemctl daemon-reload
systemctl enable edgeseal.service
systemctl restart edgeseal.service

echo "edgeseal installed: systemctl status edgeseal; journalctl -u edgeseal -f"
echo "verifier key: sudo -u edgeseal $PREFIX/venv/bin/edgeseal vkey --key /var/lib/edgeseal/gateway.key"
