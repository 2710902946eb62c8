"""Conflicts: multi-region writes of VM records, detected and resolved by policy, audited.

* :mod:`.record` - the VM record (schema 2): lifecycle, placement, NICs, causal version;
  old records upgraded;
* :mod:`.merge` - three-way merge of JSON records against their common ancestor;
* :mod:`.strategies` - the eight strategies; :mod:`.policy` - which decide which fields;
* :mod:`.resolve` - from the regions' copies of a VM to the record every replica shows;
* :mod:`.ipam` - address pools and the double-allocation rule;
* :mod:`.writes` - a region's write on top of what it knows;
* :mod:`.engine` - the per-node engine (sans-IO) the region machine runs;
* :mod:`.audit` - the append-only audit trail.

``docs/conflicts.md`` describes the semantics and the figures.
"""
