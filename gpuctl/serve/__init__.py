"""`gpuctl serve`: the in-cluster process. The Slack bot and the executor in one process, either switchable off.

`replica.py` composes them (and the leader election that decides which replica executes);
`health.py` is the small HTTP server the kubelet probes (/healthz, /readyz).
"""
