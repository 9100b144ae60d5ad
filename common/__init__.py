"""Code shared by every gatehouse service: configuration, logging, internal calls."""
