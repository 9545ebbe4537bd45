"""Hardware-in-the-loop tests: run only with a board attached (`make hil PORT=/dev/ttyUSB0`)."""
