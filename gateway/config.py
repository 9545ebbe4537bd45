"""Gateway configuration: defaults, an optional TOML file and EDGESEAL_* environment variables.

Precedence, highest first: explicit values (command-line flags), environment variables
(`EDGESEAL_DATA_DIR`, `EDGESEAL_PORT`, ...), the TOML file, the defaults below. The file is the
one named by `--config` or `EDGESEAL_CONFIG`, else `/etc/edgeseal/edgeseal.toml` if it exists.
Every path the service writes lives under `data_dir` (docs/operations.md).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "EDGESEAL_"
DEFAULT_CONFIG_FILE = "/etc/edgeseal/edgeseal.toml"
# why: systemd's StateDirectory= exports STATE_DIRECTORY (/var/lib/edgeseal); elsewhere a
# directory next to where the command runs keeps a laptop demo self-contained.
DEFAULT_DATA_DIR = os.environ.get("STATE_DIRECTORY", "").split(":")[0] or "edgeseal-data"
DEFAULT_HOST = "127.0.0.1"  # loopback: put a reverse proxy with TLS in front for remote access
DEFAULT_PORT = 8000


class Settings(BaseSettings):
    """The service's settings; paths derived from data_dir are properties."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    data_dir: Path = Field(default=Path(DEFAULT_DATA_DIR), description="ledger, keys, state")
    host: str = Field(default=DEFAULT_HOST, description="HTTP API listen address")
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535, description="HTTP API port")
    origin: str | None = Field(default=None, description="log origin (default from the key)")
    operator_token: str | None = Field(
        default=None, min_length=16, description="admin bearer token (default: generated file)"
    )
    ble: bool = Field(default=True, description="run the BLE link (BlueZ through bleak)")
    batch_interval_ms: float = Field(default=1000.0, ge=0, description="checkpoint latency bound")
    max_batch_entries: int = Field(default=4096, ge=1, description="checkpoint batch size bound")
    log_level: str = Field(default="info", description="debug, info, warning, error")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or CIDR networks of reverse proxies whose X-Forwarded-For is "
        "believed (default none: the client address is the TCP peer)",
    )
    accept_loss: bool = Field(
        default=False,
        description="start on a ledger that lost acknowledged history (docs/operations.md)",
    )

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in ("debug", "info", "warning", "error"):
            raise ValueError("log_level must be debug, info, warning or error")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {entry!r} is not an IP address or CIDR network"
                ) from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Return the sources by precedence: init kwargs, environment, the TOML file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    # ---- derived paths -----------------------------------------------------------------

    @property
    def ledger_path(self) -> Path:
        """Return the ledger SQLite file (the log: back this up)."""
        return self.data_dir / "ledger.db"

    @property
    def state_path(self) -> Path:
        """Return the derived-state SQLite file (rebuilt from the log if lost)."""
        return self.data_dir / "state.db"

    @property
    def key_path(self) -> Path:
        """Return the gateway signing key file (mode 0600)."""
        return self.data_dir / "gateway.key"

    @property
    def checkpoint_path(self) -> Path:
        """Return the file holding the newest signed checkpoint (gateway.ledger.trusted)."""
        return self.data_dir / "checkpoint"

    @property
    def token_path(self) -> Path:
        """Return the operator token file (mode 0600), used unless operator_token is set."""
        return self.data_dir / "operator.token"


_CONFIG_FILE_OVERRIDE: str | None = None


def _config_file() -> str | None:
    """Return the TOML file to read, or None."""
    path = _CONFIG_FILE_OVERRIDE or os.environ.get(ENV_PREFIX + "CONFIG")
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file {path} does not exist")
        return path
    return DEFAULT_CONFIG_FILE if os.path.isfile(DEFAULT_CONFIG_FILE) else None


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Return Settings from overrides (None values ignored), the environment and the file.

    Raises pydantic.ValidationError for bad values and FileNotFoundError for a missing
    explicit config file.
    """
    global _CONFIG_FILE_OVERRIDE
    _CONFIG_FILE_OVERRIDE = config_file
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    finally:
        _CONFIG_FILE_OVERRIDE = None
