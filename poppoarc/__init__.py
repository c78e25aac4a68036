"""poppoarc: backup and transactional restore for PoppoBuilder Suite installations."""

__version__ = "0.1.0"
