"""Prefect tasks of the release flow. Each wraps one operation of ``canaryflow`` and records metrics."""
