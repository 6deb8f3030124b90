"""Offline evaluation: retrieval and action metrics, reports and plots."""
