"""The API's routers, one module per resource: ops, log (entries, checkpoints, proofs,
bundles), devices (registry, ingest events), transactions (and participants), contracts."""
