"""The example Experiments (`*.yaml`) and what some need made first (`prepare/*.yaml`).

They ship inside the package, so `katib-nas example`, `katib-nas pipeline compile` and `katib-nas profile`
find them by name wherever katib-nas is installed. This package holds no code.
"""
