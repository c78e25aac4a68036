"""Where archives are kept."""
