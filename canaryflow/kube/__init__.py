"""Kubernetes support, free of Prefect: API access, rollout logic, traffic routers, query presets.

``canaryflow.platforms.kubernetes`` assembles these into the ``Platform`` the release flow drives.
"""
