"""The DWCP agent process (``novacron agent``)."""
