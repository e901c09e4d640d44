"""Bundled, dependency-free example scripts (the demo trains with train_demo.py)."""
