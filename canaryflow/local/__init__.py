"""Embedded local platform: real processes on 127.0.0.1 for end-to-end canary releases.

The pieces (demo service, controller/proxy, load generator, Prometheus stack)
let a full canary release run on one machine without a cluster, so pipeline
logic can be exercised against real metrics and real failures.
"""
