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
