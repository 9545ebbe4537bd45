"""Tests of the sensor drivers against bus fakes replaying datasheet traces."""
