"""Disaster recovery: backups of a region's group (full, incremental, shipped log), point-in-time
restore into a new group, and rebuilding a group that lost its quorum for good (docs/dr.md)."""
