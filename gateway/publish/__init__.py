"""Publishing the log to others: the witness server (C2SP tlog-witness) and, next, the witness
client, anchoring and tiles (docs/architecture.md, "Where the next pieces go")."""
