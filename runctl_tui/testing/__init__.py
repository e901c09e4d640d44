"""Test and demo support that ships with the package: servers that speak a provider's real API.

Nothing here is imported by the dashboard or the CLI; tests and `just demo-cloud` start these
servers on 127.0.0.1 so every client runs against a real HTTP server instead of a mock.
"""
