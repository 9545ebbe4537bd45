"""The MQTT bridge: publishes the log's integrated device records and contract events (docs/mqtt.md).

- url: the broker URL (mqtt://, mqtts://) and the topic prefix, checked at start-up.
- messages: pure functions from a log entry to its topic and JSON payload.
- cursor: the durable cursor (the next log index to publish), stored atomically in data_dir.
- bridge: the task that reads the log in order and publishes with QoS 1 from the cursor.
"""

from gateway.mqtt.url import BrokerUrl, check_topic_prefix, parse_broker_url

__all__ = ["BrokerUrl", "check_topic_prefix", "parse_broker_url"]
