"""Tests of the gateway's BLE link, protocol codec and virtual radio."""
