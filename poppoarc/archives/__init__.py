"""Archives of a store as this installation sees them: found, listed, opened with its
pinned keys and its decryption keys, verified, read through their incremental chains,
chosen as the parent of the next incremental, pruned.

``store`` keeps the bytes (a directory or a bucket) and ``format`` reads them; this
package adds the installation's trust: which signers it pins (``backup.signing``), which
keys open an encrypted archive, and the confinement rule every index record must pass
(``restore/safety.py``) before anything restores or verifies it.
"""
