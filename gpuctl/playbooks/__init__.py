"""Remediation playbooks: plan → authorize → approve → execute → verify.

The one engine behind the CLI (`gpuctl playbook`), `gpuctl top` and the Slack
bot. Definitions live in the repository's `playbooks/*.yaml`.
"""
