"""The real local test bed: a Kubernetes control plane built from Go modules,
a simulated DCGM exporter, and real Prometheus and Alertmanager, all on
loopback. `python -m testbed up` starts it by hand; tests get it from the
`testbed` fixture in tests/conftest.py.
"""
