"""The local runner: a small Katib controller that runs an Experiment YAML on one machine.

It starts `katib-nas serve`, asks it for trials exactly as Katib's controller
does, runs each trial's container command as a local subprocess, collects
metrics the way Katib's metrics collector does, and keeps all state in a
SQLite file so a run can be resumed.
"""
