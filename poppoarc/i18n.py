"""Messages in the operator's language, through gettext catalogs.

Catalogs live in ``poppoarc/locale/<lang>/LC_MESSAGES/poppoarc.mo`` (compiled
from the ``.po`` beside them by ``python -m poppoarc.ui.msgfmt``; both are
committed, and a test checks that the ``.mo`` matches its ``.po``).

The language is the first of ``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES`` and
``LANG`` that is set (gettext's order): Japanese for ``ja*``, English
otherwise.  ``setup()`` is called once per command-line invocation, so tests
that change the environment in-process see the change.

Message texts are ``str.format`` templates with named fields, so a
translation may put the fields in another order.
"""

from __future__ import annotations

import gettext as _gettext
import os
import re
from functools import lru_cache
from pathlib import Path

DOMAIN = "poppoarc"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"

_current: _gettext.NullTranslations = _gettext.NullTranslations()
_language = "en"


def detect(environ=None) -> str:
    """'ja' or 'en', from the locale variables."""
    env = os.environ if environ is None else environ
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(name)
        if value:
            return "ja" if value.split(":")[0].lower().startswith("ja") else "en"
    return "en"


def setup(environ=None) -> str:
    """Load the catalog for the environment's language; returns the language."""
    global _current, _language
    _language = detect(environ)
    if _language == "en":
        _current = _gettext.NullTranslations()
    else:
        _current = _gettext.translation(DOMAIN, LOCALE_DIR, languages=[_language],
                                        fallback=True)
    return _language


def language() -> str:
    """The language ``setup`` chose ('ja' or 'en')."""
    return _language


def _(message: str) -> str:
    """The translation of ``message`` (itself when there is none)."""
    return _current.gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    return _current.ngettext(singular, plural, count)


def N_(message: str) -> str:
    """Marks a message for the catalog without translating it now."""
    return message


# a template's field: ``{path}``, ``{exc.strerror}``, ``{size:.1f}`` (``{{`` is a brace)
FIELD = re.compile(r"(?<!\{)\{([^{}]+)\}(?!\})")
LETTERS = re.compile(r"[A-Za-z]{2,}")
MAX_MATCHED = 8192
MIN_TEMPLATE_LETTERS = 5    # a template says this much besides its fields to be recognised          # longer texts are shown as they are (a template match backtracks)


def has_words(template: str) -> bool:
    """Whether a template says something outside its fields (else there is nothing to
    translate: ``{path}: {why}``)."""
    return bool(LETTERS.search(FIELD.sub("", template)))


def translate_text(message: str) -> str:
    """An English message (an error's, a warning's, one an archive recorded) in the
    operator's language: its own translation, or the translation of the template it was
    made from (``ui/msgfmt.py`` extracts them: f-strings of the sources with their fields
    as written), the fields' values translated in turn (a message that quotes another)."""
    if _language == "en" or not message:
        return message
    translated = getattr(message, "translated", None)      # an errors.Message
    if translated is not None:
        return translated(_)
    return _translated(str(message), 0)


def _translated(message: str, depth: int) -> str:
    direct = _current.gettext(message)
    if direct != message or depth > 4 or len(message) > MAX_MATCHED:
        return direct
    for literals, pattern, fields, msgid in _templates(id(_current)):
        if not all(part in message for part in literals):
            continue
        match = pattern.fullmatch(message)
        if match is None:
            continue
        values: dict[str, str] = {}
        for name, value in zip(fields, match.groups()):
            values.setdefault(name, _translated(value, depth + 1))
        text = FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), _current.gettext(msgid))
        return text.replace("{{", "{").replace("}}", "}")
    return message


@lru_cache(maxsize=4)
def _templates(catalog_id: int) -> list[tuple[list[str], re.Pattern, list[str], str]]:
    """The catalog's templates with fields, most specific (longest literal text) first."""
    found = []
    for msgid in getattr(_current, "_catalog", {}):
        if not isinstance(msgid, str) or not FIELD.search(msgid) or not has_words(msgid) \
                or "}{" in msgid.replace("{{", "").replace("}}", ""):
            continue        # (fields side by side could not be told apart)
        if len(re.sub(r"[^A-Za-z]", "", FIELD.sub("", msgid))) < MIN_TEMPLATE_LETTERS:
            continue        # "{a} and {b}" would match any text with " and " in it
        parts = FIELD.split(msgid)
        literals = [p.replace("{{", "{").replace("}}", "}") for p in parts[0::2]]
        pattern = "(.+?)".join(re.escape(text) for text in literals)
        found.append(([p for p in literals if p], re.compile(pattern, re.S), parts[1::2], msgid))
    found.sort(key=lambda t: -sum(len(p) for p in t[0]))
    return found
