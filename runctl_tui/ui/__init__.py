"""The Textual dashboard. Talks to runctl_tui.core only through async calls in workers."""
