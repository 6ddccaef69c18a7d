"""`gpuctl doctor`: a read-only check of a GPU cluster against the practices in docs/doctor.md.

`examine(settings, options)` gathers (inventory.py) and diagnoses (run.py); each family of checks is a
module with CHECKS and find(): scheduling (taints, tolerations), namespaces (quotas, LimitRanges), jobs,
priority (PriorityClasses, preemption), usage (idle GPUs, DCGM coverage), partitioning (MIG, time-slicing),
alerting (Prometheus rules).
"""
