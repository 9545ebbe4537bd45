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

from pydantic import Field, field_validator, model_validator
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
    witness_policy: Path | None = Field(
        default=None,
        description="C2SP tlog-policy file of the witnesses that cosign the checkpoints "
        "(docs/witness.md); none: checkpoints are not witnessed",
    )
    mqtt_url: str | None = Field(
        default=None,
        description="MQTT broker to publish verified readings and contract events to: "
        "mqtt://user:pass@host:port or mqtts://... (docs/mqtt.md); none: no MQTT bridge",
    )
    mqtt_topic_prefix: str | None = Field(
        default=None, description="MQTT topic prefix (default edgeseal/<origin>; docs/mqtt.md)"
    )
    mqtt_ha_discovery: bool = Field(
        default=False,
        description="also publish retained Home Assistant MQTT discovery configs for every "
        "reading channel (docs/mqtt.md)",
    )
    public_url: str | None = Field(
        default=None,
        description="base URL clients reach the API at, for proof links such as "
        "<public_url>/v1/bundle/<index> (default http://<host>:<port>)",
    )
    # anchoring on an EVM chain (gateway/anchor/, docs/anchoring.md): on iff anchor_rpc_url
    anchor_rpc_url: str | None = Field(
        default=None, description="EVM chain JSON-RPC URL to anchor checkpoints on; none: off"
    )
    anchor_chain_id: int | None = Field(default=None, ge=1, description="the chain's id")
    anchor_contract: str | None = Field(
        default=None, description="EdgesealAnchor address (`edgeseal anchor deploy`)"
    )
    anchor_key_file: Path | None = Field(
        default=None, description="hex private key of the anchoring account (default data_dir)"
    )
    anchor_interval_s: float = Field(default=3600.0, gt=0, description="anchor at least this often")
    anchor_entries: int = Field(default=1024, ge=1, description="or after this many entries")
    anchor_finality_depth: int | None = Field(
        default=None, ge=0, description="final after this many blocks (default: `finalized` tag)"
    )
    anchor_poll_s: float = Field(default=5.0, gt=0, description="receipt and finality polling")
    anchor_stuck_after_s: float = Field(
        default=600.0, gt=0, description="re-price an anchor transaction unmined this long"
    )
    anchor_max_fee_gwei: float | None = Field(
        default=None, gt=0, description="the highest fee per gas a re-priced anchor may offer"
    )
    replica_urls: list[str] = Field(
        default_factory=list,
        description="participant replicas (docs/replica.md) the dashboard compares checkpoints "
        "with: http(s) base URLs, fetched by GET /v1/checkpoints (docs/dashboard.md)",
    )

    @field_validator("replica_urls")
    @classmethod
    def _replica_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
                raise ValueError(f"replica_urls: {url!r} is not an http(s) URL")
        return [url.rstrip("/") for url in value]

    @model_validator(mode="after")
    def _anchoring(self) -> Settings:
        """Return self if the anchoring settings are complete; raise ValueError otherwise."""
        if self.anchor_rpc_url and (self.anchor_chain_id is None or not self.anchor_contract):
            raise ValueError("anchor_rpc_url needs anchor_chain_id and anchor_contract")
        if self.anchor_contract and not (
            len(self.anchor_contract) == 42 and self.anchor_contract.startswith("0x")
        ):
            raise ValueError("anchor_contract must be a 0x-prefixed 20-byte hex address")
        return self

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str | None) -> str | None:
        from gateway.mqtt.url import parse_broker_url

        if value is not None:
            try:
                parse_broker_url(value)
            except ValueError as exc:  # StartupRefused("bad-mqtt-url") is a ValueError
                raise ValueError(str(exc)) from None
        return value

    @field_validator("mqtt_topic_prefix")
    @classmethod
    def _mqtt_prefix(cls, value: str | None) -> str | None:
        from gateway.mqtt.url import check_topic_prefix

        if value is not None:
            try:
                check_topic_prefix(value)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
        return value

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

    @property
    def anchor_key_path(self) -> Path:
        """Return the anchoring account's key file: anchor_key_file, else data_dir/anchor.key."""
        return self.anchor_key_file or self.data_dir / "anchor.key"


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
