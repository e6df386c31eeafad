"""The fixture app the golden histories were recorded with (tests/golden/record.py)."""
