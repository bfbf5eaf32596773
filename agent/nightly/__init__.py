"""Nightly operation: what `agent run` composes.

    configfile  the agent.toml model (pydantic): sources, repository, limits, retention, hooks,
                notifications, metrics
    paths       where agent.toml is looked for
    runner      sources in turn, each with its hooks; then retention and a sampled check
    hooks       pre/post commands with a timeout, secrets stripped from their environment
    report      the run report (what notifications, metrics and state show)
    notify      e-mail and webhook notifications
    metrics     Prometheus textfile metrics
    state       the last runs, for `schedule status`
    schedule    systemd timers or cron entries
"""
