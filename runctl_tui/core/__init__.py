"""Plain-Python core of runctl-tui: never imports textual or rich (tests/core/test_import_hygiene.py)."""
