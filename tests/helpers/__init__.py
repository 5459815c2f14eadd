"""Helpers shared by the tests (pytest puts tests/ on the import path): one place for each."""
