"""The Slack bot: `/gpu` commands, approvals and alert posts, a front end to the same live state as `gpuctl top`.

    commands     `/gpu …` text → a typed command (a real parser; user text is never interpolated)
    answers      read-only commands answered from a snapshot (gpuctl.query + gpuctl.render) as Block Kit
    blocks       Block Kit pieces: escaping, narrow code blocks, lists cut with a count
    desk         one request: parse → identity → policy → answer or engine seam
    identity     Slack user ids, emails and user groups → Kubernetes users and groups
    engine_seam  the one interface to the playbook engine
    engine_link  that interface over the engine: run, approve/deny, follow, runs, audit, alert proposals,
                 alert auto runs within the policy's hourly budget
    lazy_engine  the engine opened in the background, retried until the API server answers
    run_blocks   plans, decisions, outcomes, run lists and audit records as Block Kit
    alert_rules  alert → playbook rules file;  alerts  Alertmanager webhook → Slack posts
    metrics      the bot's own Prometheus metrics
    quick        the answers that need only the text (help, bad input), given in the ack itself
    app          the slack-bolt AsyncApp (acks, retry dedupe) and the work after an ack;  server  HTTP routes,
                 Socket Mode, start/stop
    front_door   the HTTP front door in a process of its own (door_process): acks beside, not behind, the
                 main process's work (which `gpuctl bot serve` runs at bot_work_nice, below the door)
"""
