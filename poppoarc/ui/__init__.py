"""Everything the command line shows: output, the text reports of each command's result,
progress, the crash log of a bug.

The library never prints; these modules are used by ``poppoarc.cli`` only (translated
messages and text measures are ``poppoarc.i18n`` and ``poppoarc.text``, which lower
layers use to mark and shape their messages).
"""
