"""Playbooks in `gpuctl top`: from what is selected on screen to a verified, audited run.

    space, *     mark rows (every view; the heatmap marks nodes, or a pool on its header)
    a            ActionsScreen: the playbooks for the selection (offers.py), greyed out with the reason
                 when gpuctl's policy or the cluster says no (desk.check)
                 PlanScreen: the parameters as a typed form (param_form.py), the engine's plan; ctrl+y
                 submits it, nothing runs before
                 ProgressScreen: the run's steps from the audit log as they happen, the outcome, undo
    R            RunsScreen: PlaybookRuns live; approve/deny (y/n, or Y/N as someone the policy lets you act for)
    L            AuditScreen: recent records, filterable, the chain verified

One implementation: every action is a call on the playbook engine (`Desk`, which
opens `open_engine(settings, cluster=the running cluster)` the first time it is
needed), awaited in Textual workers; renderings come from gpuctl.render.
"""
