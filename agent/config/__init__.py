"""Configuration as the user writes it, read once and validated with messages that name the field.

    settings   flags < AGENT_* environment < agent.toml; passphrase sources (file, command, env)
    env        every AGENT_* variable name the agent reads or sets
    secrets    which environment variables hold secrets (hidden from hooks, redacted from --debug)
    units      sizes, rates, durations and percentages for humans
    times      instants (--at, --stop-at), clock times and run durations
    bandwidth  rates and daily timetables (`08:00-18:00=1MiB/s,18:00-08:00=off`)

The model of agent.toml itself is agent.nightly.configfile: it embeds the nightly pieces
(hooks, notifications, metrics).
"""
