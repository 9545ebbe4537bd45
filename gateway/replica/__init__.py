"""A participant's replica of the gateway's log (C2SP tlog-tiles client, replay, evidence); docs/replica.md."""
