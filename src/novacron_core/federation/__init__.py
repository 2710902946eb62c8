"""Cross-region state flow: a region's committed VM records become CRDT deltas for the others."""
