"""Everything the command line shows: output, text tables, progress, messages.

The library never prints; these modules are used by ``poppoarc.cli`` only.
"""
