"""Work over a whole installation that several commands share: a restore as steps
(``unpack``, which the ``unpack`` command and a drill run) and the restore drill
(``drill``).  Above ``pack`` (a restore writes a safety archive), below ``service`` (the
scheduler runs drills)."""
