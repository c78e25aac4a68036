"""The scheduled-backup service: the loop that runs ``pack`` and ``prune`` when the
schedule says (``scheduler``), the checks before each backup (``checks``), the state file
of what ran (``state``) and the notifications after (``notify``).  The decisions it
follows are pure rules in ``policy`` (``schedule.due_runs``, ``retention.decide``).
"""
