"""Anchoring the log's checkpoints on an EVM chain, so the chain itself refuses a fork or rollback.

Modules: EdgesealAnchor.sol (the contract; EdgesealAnchor.json its committed compiled artefact,
tools/compile_anchor.py), chain (web3.py client: deploy, anchor, read), source (what to anchor),
outbox (the durable SQLite outbox), service (the node's background task), evidence (build and
verify the anchor evidence a bundle carries), cli (`edgeseal anchor ...`). docs/anchoring.md.
"""
