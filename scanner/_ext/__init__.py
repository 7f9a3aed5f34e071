"""Compiled hot path, built from ext/*.pyx by setup.py."""
