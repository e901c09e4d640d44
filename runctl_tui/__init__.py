"""runctl-tui: a terminal cockpit for ML training runs, locally, on RunPod and on AWS EC2."""

__version__ = "0.1.0"
