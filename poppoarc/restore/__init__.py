"""Restoring an archive into an installation root.

``journal`` is the on-disk record of an unfinished restore, ``swap`` the transaction
that puts the staged paths in place atomically and recovers after a crash (on the
durable primitives of ``poppoarc.fs``).
"""
