"""Measured figures (never timed tests) for ``make bench``."""
