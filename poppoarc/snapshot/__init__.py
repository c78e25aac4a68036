"""Reading the installation: targets, files, SQLite snapshots, environment, certificates."""
