"""Screens and modal dialogs of the dashboard."""
