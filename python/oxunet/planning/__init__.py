"""Fingerprint and experiment planning."""

from .fingerprint import extract_fingerprint

__all__ = ["extract_fingerprint"]
