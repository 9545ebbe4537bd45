"""The gateway's BLE side: protocol codec, bleak central (link), bumble virtual radio."""
