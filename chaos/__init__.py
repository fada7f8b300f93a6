"""Chaos runs: a steady load, one fault, recovery, then the global auditor (``python -m chaos``)."""
