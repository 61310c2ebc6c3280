"""Prefect flows of canaryflow."""
