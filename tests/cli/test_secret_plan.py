"""A sealed secret (``.env``: always sealed) in the restore plan.  The live walk keeps
secret files apart (they are archived only sealed) and never gave them to the plan, so an
unchanged ``.env`` was "add" in every plan: the dry run and the real run said a file was
added that the swap in fact replaced.  The plan pairs a sealed record with the live secret
at its path (``restore.plan.live_match``): unchanged, changed, or added when there is none."""

from __future__ import annotations

from poppoarc.restore.plan import ADD, CHANGE, KEEP, make_plan


def _security(document: dict) -> dict:
    plan = document["plan"]
    return next(t for t in plan["targets"] if t["target"] == "security")


def _actions(target: dict) -> dict[str, str]:
    return {c["path"]: c["action"] for c in target["changes"]}


def test_an_unchanged_secret_is_unchanged_and_a_changed_one_changes(cli, installation):
    archive = cli.pack("--full")
    env = installation / ".env"
    original = env.read_bytes()

    code, dry = cli.json("unpack", archive["id"], "--dry-run")
    assert code in (0, 1), dry
    security = _security(dry)
    assert security["add"]["paths"] == 0 and ".env" not in _actions(security)
    assert security["unchanged"]["paths"] >= 1

    env.write_bytes(original + b"ADDED_LATER=1\n")
    code, dry = cli.json("unpack", archive["id"], "--dry-run")
    assert _actions(_security(dry)).get(".env") == CHANGE, dry
    code, real = cli.json("unpack", archive["id"])
    assert code in (0, 1), real
    assert _security(real) == _security(dry)            # the plan the real run executed
    assert env.read_bytes() == original

    env.unlink()
    code, dry = cli.json("unpack", archive["id"], "--dry-run")
    assert _actions(_security(dry)).get(".env") == ADD
    code, real = cli.json("unpack", archive["id"])
    assert _security(real) == _security(dry)
    assert env.read_bytes() == original


class _Record:
    def __init__(self, path, sealed=True, **facts):
        self.path, self.target, self.type = path, "security", "file"
        self.sealed, self.hmac_sha256, self.generated, self.sqlite = (
            ({} if sealed else None), None, False, None)
        self.changed, self.link = False, None
        self.mode, self.size, self.mtime_ns = facts.get("mode", 0o600), facts.get("size", 5), \
            facts.get("mtime_ns", 7)

    def needs_key(self):
        return self.sealed is not None


def test_the_pairing_of_sealed_records_is_a_pure_decision():
    from poppoarc.snapshot.scan import FILE, SourceEntry

    def live(**facts):
        return SourceEntry(".env", None, FILE, facts.get("mode", 0o600), 0, 0,
                           facts.get("mtime_ns", 7), facts.get("size", 5))

    def action(record, secrets, keyed=True):
        plan = make_plan({"id": "x"}, [record], [], ("security",), {}, None, keyed,
                         live_secrets=secrets)
        return [(c.path, c.action) for c in plan.targets[0].changes()], plan.targets[0].count(KEEP)

    assert action(_Record(".env"), {".env": live()}) == ([], 1)
    assert action(_Record(".env"), {".env": live(size=6)}) == ([(".env", CHANGE)], 0)
    assert action(_Record(".env"), {}) == ([(".env", ADD)], 0)
    # without its key a sealed record is not restored; the live secret stays as it is
    assert action(_Record(".env"), {".env": live()}, keyed=False) == ([], 0)
