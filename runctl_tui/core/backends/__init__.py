"""Backends: one module per provider (local, RunPod, AWS), all answering the protocol in base.py."""
