"""In-process emulators of the HTTP APIs canaryflow drives (Kubernetes, Grafana), for tests."""
