"""The demo's simulated Kubernetes API: the real playbook engine acts on the simulated fleet through it.

`SimTransport(SimApiServer(world, ...))` goes where an HttpTransport would
(`KubeApi(transport)`); see server.py for what it serves and how it answers.
"""
