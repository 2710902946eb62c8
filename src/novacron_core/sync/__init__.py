"""Asynchronous state sync: delta-state CRDTs, a store, gossip and Merkle anti-entropy.

See ``docs/sync.md`` for the design and the semantics each type guarantees.
"""
