"""Golden histories: recorded agent runs replayed on every test run (tests/unit/test_golden_histories.py)."""
