"""Catalog tooling without GNU gettext: extract, compile and check messages.

    python -m poppoarc.ui.msgfmt            # compile every locale/*/LC_MESSAGES/*.po to .mo
    python -m poppoarc.ui.msgfmt --check    # exit 1 if a .mo is stale or a message untranslated
    python -m poppoarc.ui.msgfmt --pot      # write locale/poppoarc.pot from the sources

Messages are found by reading the sources' syntax trees for calls of ``_``,
``N_`` and ``ngettext`` with literal strings, and for the descriptions in the
commands' tables of options and arguments (``OPTIONS``, ``GLOBAL_OPTIONS``,
``ARGUMENTS``: the help shows them translated), so nothing is imported or run.

Errors and warnings are written in English where they happen (a library's words in an
f-string, a warning recorded in an archive's manifest): the message of every ``raise``
of a poppoarc error class and of every warning recorded (``warnings.add``, ``.skip``) is
extracted as a template, its f-string fields written as they are in the source
(``"cannot read key: {exc.strerror}"``); the translation keeps the same fields, and
``poppoarc.i18n.translate_text`` shows a message in the operator's language by finding
the template it was made from.
The ``.mo`` files are committed (small, deterministic output of this
module), so neither ``pip install`` nor a wheel build needs gettext tools.
"""

from __future__ import annotations

import ast
import re
import struct
import sys
from pathlib import Path

from ..errors import all_error_classes
from ..i18n import DOMAIN, LOCALE_DIR, has_words
from .usage import descriptions

PACKAGE = Path(__file__).resolve().parent.parent
HEADER = ("Project-Id-Version: poppoarc\nMIME-Version: 1.0\n"
          "Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n"
          "Plural-Forms: nplurals=1; plural=0;\n")


# module-level names whose text is a table of option or argument lines (commands/)
TABLES = ("OPTIONS", "GLOBAL_OPTIONS", "ARGUMENTS")


ADJACENT_FIELDS = re.compile(r"(?<!\})\}\{(?!\{)")
ERROR_CLASSES = frozenset(cls.__name__ for cls in all_error_classes())
# calls that record a warning: the argument that holds its text
WARNING_CALLS = {"add": 0, "skip": 1, "warn": 0, "append": 0}


def template(node: ast.expr) -> list[str]:
    """The message templates an expression can make: literal text as it is, each field
    (an f-string's, or any non-literal part of a ``+``) as ``{its source}``; both
    branches of a conditional."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value.replace("{", "{{").replace("}", "}}")]
    if isinstance(node, ast.JoinedStr):
        text = ""
        for part in node.values:
            if isinstance(part, ast.Constant):
                text += str(part.value).replace("{", "{{").replace("}", "}}")
            else:
                text += "{" + _field(part) + "}"
        return [text]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return [a + b for a in template(node.left) for b in template(node.right)]
    if isinstance(node, ast.IfExp):
        return template(node.body) + template(node.orelse)
    if isinstance(node, ast.Call) and _is_catalog_call(node):
        return []                   # a catalog message already
    return ["{" + ast.unparse(node) + "}"]


def _is_catalog_call(node: ast.Call) -> bool:
    """``_("...")``, ``N_(...)``, ``Message(...)``, ``ngettext(...)``, or one of them
    ``.format(...)``-ed."""
    func = node.func
    if isinstance(func, ast.Attribute) and func.attr == "format" \
            and isinstance(func.value, ast.Call):
        return _is_catalog_call(func.value)
    return isinstance(func, ast.Name) and func.id in ("_", "N_", "Message", "ngettext")


def _field(part: ast.FormattedValue) -> str:
    text = ast.unparse(part.value)
    if part.conversion != -1:
        text += "!" + chr(part.conversion)
    if part.format_spec is not None:
        text += ":" + "".join(str(v.value) for v in part.format_spec.values
                              if isinstance(v, ast.Constant))
    return text


def _message_argument(node: ast.Call, position: int) -> ast.expr | None:
    if len(node.args) > position and not isinstance(node.args[position], ast.Starred):
        return node.args[position]
    for keyword in node.keywords:
        if keyword.arg in ("message", "why"):
            return keyword.value
    return None


def english_messages(tree: ast.AST) -> list[str]:
    """The templates of the errors raised and the warnings recorded in a module."""
    found = []
    for node in ast.walk(tree):
        argument = None
        if isinstance(node, ast.Call) and (
                getattr(node.func, "id", None) in ERROR_CLASSES
                or getattr(node.func, "attr", None) in ERROR_CLASSES):
            argument = _message_argument(node, 0)   # raised, or made to be raised later
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == "write_error" and len(node.args) > 2:
            # errors.write_error(cls, oserror, message, path): "message: strerror"
            found += [t + ": {exc.strerror}" for t in template(node.args[2]) if has_words(t)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in WARNING_CALLS:
            owner = ast.unparse(node.func.value)
            if owner.endswith(("warnings", "out")) and \
                    (node.func.attr != "append" or owner.endswith("warnings")):
                argument = _message_argument(node, WARNING_CALLS[node.func.attr])
        if argument is not None:
            made = [t for t in template(argument) if has_words(t)]
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "skip":
                # Warnings.skip(path, why) records "PATH: why"
                made += ["{path}: " + t for t in made]
            found += made
    return found


def extract(package: Path = PACKAGE) -> dict[str, str | None]:
    """msgid -> msgid_plural (or None), in source order, from every module."""
    found: dict[str, str | None] = {}
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for message in english_messages(tree):
            found.setdefault(message, None)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and \
                    any(isinstance(t, ast.Name) and t.id in TABLES for t in node.targets):
                for description in descriptions(node.value.value):
                    found.setdefault(description, None)
                continue
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            args = [a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None
                    for a in node.args]
            if node.func.id in ("_", "N_") and args and args[0]:
                found.setdefault(args[0], None)
            elif node.func.id == "N_" and node.args and isinstance(node.args[0], ast.JoinedStr):
                # N_(f"..."): an English message made here, translated where it is shown
                # by the template it was made from (i18n.translate_text)
                for message in template(node.args[0]):
                    found.setdefault(message, None)
            elif node.func.id == "ngettext" and len(args) >= 2 and args[0] and args[1]:
                found[args[0]] = args[1]
    return found


def _unquote(text: str) -> str:
    text = text.strip()
    if not (text.startswith('"') and text.endswith('"')):
        raise ValueError(f"expected a quoted string: {text!r}")
    body, out, i = text[1:-1], [], 0
    escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(escapes.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def parse_po(text: str) -> dict[str, list[str] | str]:
    """msgid -> msgstr (or, for plurals, key "singular\\0plural" -> list of forms).

    Fuzzy entries are skipped, like GNU msgfmt does by default.
    """
    entries: dict = {}
    current: dict = {}
    field = None
    fuzzy = False

    def flush():
        nonlocal current, fuzzy
        if "msgid" in current and not fuzzy:
            key = current["msgid"]
            if "msgid_plural" in current:
                key += "\0" + current["msgid_plural"]
                forms = current.get("plural", {})
                entries[key] = [forms[i] for i in sorted(forms)]
            else:
                entries[key] = current.get("msgstr", "")
        current, fuzzy = {}, False

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            flush()
            field = None
            continue
        if line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in line:
                if "msgid" in current:
                    flush()
                fuzzy = True
            continue
        if line.startswith('"'):
            value = _unquote(line)
            if isinstance(field, int):
                current["plural"][field] += value
            else:
                current[field] += value
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "msgid" and "msgid" in current:
            flush()
        if keyword.startswith("msgstr["):
            field = int(keyword[7:-1])
            current.setdefault("plural", {})[field] = _unquote(rest)
        else:
            field = keyword
            current[field] = _unquote(rest)
    flush()
    return entries


def compile_mo(entries: dict) -> bytes:
    """GNU .mo bytes (little endian, no hash table) for parsed entries."""
    pairs = []
    for key, value in entries.items():
        translated = "\0".join(value) if isinstance(value, list) else value
        if key and not translated:
            continue                      # untranslated: leave it to the fallback
        pairs.append((key.encode("utf-8"), translated.encode("utf-8")))
    pairs.sort()
    count = len(pairs)
    originals_at = 28
    translations_at = originals_at + 8 * count
    data_at = translations_at + 8 * count
    table_o, table_t, blob = [], [], b""
    for original, _ in pairs:
        table_o.append((len(original), data_at + len(blob)))
        blob += original + b"\0"
    for _, translation in pairs:
        table_t.append((len(translation), data_at + len(blob)))
        blob += translation + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, count, originals_at, translations_at, 0, 0)
    body = b"".join(struct.pack("<2I", *pair) for pair in table_o + table_t)
    return header + body + blob


def po_files() -> list[Path]:
    return sorted(LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def check() -> list[str]:
    """Problems: stale .mo files, and source messages a catalog lacks."""
    problems = []
    wanted = extract()
    for msgid in wanted:
        if ADJACENT_FIELDS.search(msgid):
            problems.append(f"{msgid!r}: two fields side by side cannot be told apart when the "
                            f"message is shown translated; put words between them")
    for po in po_files():
        entries = parse_po(po.read_text(encoding="utf-8"))
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.read_bytes() != compile_mo(entries):
            problems.append(f"{mo}: stale; run python -m poppoarc.ui.msgfmt")
        for msgid, plural in wanted.items():
            key = msgid if plural is None else f"{msgid}\0{plural}"
            value = entries.get(key)
            if not value or (isinstance(value, list) and not all(value)):
                problems.append(f"{po}: no translation for {msgid!r}")
    return problems


def pot_text() -> str:
    lines = ['msgid ""', 'msgstr ""']
    lines += [_quote(line + "\n") for line in HEADER.splitlines()] + [""]
    for msgid, plural in extract().items():
        lines.append(f"msgid {_quote(msgid)}")
        if plural is None:
            lines += ['msgstr ""', ""]
        else:
            lines += [f"msgid_plural {_quote(plural)}", 'msgstr[0] ""', ""]
    return "\n".join(lines)


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--check"]:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    if argv == ["--pot"]:
        (LOCALE_DIR / f"{DOMAIN}.pot").write_text(pot_text(), encoding="utf-8")
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    for po in po_files():
        po.with_suffix(".mo").write_bytes(compile_mo(parse_po(po.read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
