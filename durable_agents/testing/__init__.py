"""Placeholder; the test kit lands here."""
