"""Restoring an archive into an installation root.

``fsops`` holds the durable filesystem primitives, ``journal`` the on-disk
record of an unfinished restore, and ``swap`` the transaction that puts the
staged top-level entries in place atomically and recovers after a crash.
"""
