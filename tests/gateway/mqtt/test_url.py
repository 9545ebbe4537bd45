"""Broker URLs and topic prefixes: typed errors at start-up for anything unusable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.cli import EXIT_USAGE, main
from gateway.config import Settings
from gateway.errors import StartupRefused
from gateway.mqtt.url import BrokerUrl, check_topic_prefix, parse_broker_url


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("mqtt://127.0.0.1", BrokerUrl("127.0.0.1", 1883, False)),
        ("mqtts://broker.example:9999/", BrokerUrl("broker.example", 9999, True)),
        ("MQTT://[::1]:1884", BrokerUrl("::1", 1884, False)),
        ("mqtt://u%40x:p%3Aw@h:1", BrokerUrl("h", 1, False, "u@x", "p:w")),
        ("mqtt://user@h", BrokerUrl("h", 1883, False, "user", None)),
    ],
)
def test_good_urls_parse(url: str, want: BrokerUrl) -> None:
    got = parse_broker_url(url)
    assert got == want and got.password == want.password
    assert "p:w" not in repr(got) and "@" not in got.display()


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://broker:1883",
        "broker:1883",
        "mqtt://",
        "mqtt://:1883",
        "mqtt://h:0",
        "mqtt://h:65536",
        "mqtt://h:port",
        "mqtt://h/topic",
        "mqtt://h?x=1",
        "mqtt://h#frag",
        "mqtt://h\n:1883",
        "mqtt://h :1883",
        "mqtt://[::1",
        "mqtt://" + "h" * 3000,
    ],
)
def test_bad_urls_are_refused_with_a_typed_error(url: str) -> None:
    with pytest.raises(StartupRefused) as err:
        parse_broker_url(url)
    assert err.value.code == "bad-mqtt-url"


@pytest.mark.parametrize("prefix", ["", "/a", "a/", "a//b", "a/+/b", "a/#", "a\x00", "x" * 600])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(StartupRefused) as err:
        check_topic_prefix(prefix)
    assert err.value.code == "bad-mqtt-topic-prefix"


def test_settings_refuse_a_bad_url_or_prefix(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="bad-mqtt-url"):
        Settings(data_dir=tmp_path, mqtt_url="http://broker")
    with pytest.raises(ValidationError, match="bad-mqtt-topic-prefix"):
        Settings(data_dir=tmp_path, mqtt_url="mqtt://h", mqtt_topic_prefix="a/#")
    ok = Settings(data_dir=tmp_path, mqtt_url="mqtt://h", mqtt_topic_prefix="site/gw1")
    assert ok.mqtt_url == "mqtt://h"


def test_serve_with_a_bad_url_exits_before_touching_the_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    code = main(["serve", "--no-ble", "--data-dir", str(data), "--mqtt", "tcp://broker:1883"])
    assert code == EXIT_USAGE
    assert "bad-mqtt-url" in capsys.readouterr().err
    assert not data.exists()
