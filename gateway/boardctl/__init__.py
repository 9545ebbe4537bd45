"""`edgeseal board`: flash MicroPython, deploy the firmware, provision and inspect a board over USB.

Modules: errors (BoardError codes), link (the serial REPL through mpremote's transport), image
(MicroPython images and esptool), deploy (compiled firmware, stale files, listing check),
provision (identity, attestation, enrollment, link key), progress (text progress bars),
cli (the subcommands). docs/boards.md walks through the three commands.
"""
