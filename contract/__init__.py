"""What the suggestion side and the trial side share, and nothing else of the project.

The names of the algorithms, the architecture spec and its text codec, the errors for input a user can fix,
the metric formats the two sides exchange (metric lines, Branch-Stats /
Skip-Gates, Best-Architecture), the one-shot search settings text, the
derivation of a network from a supernet, the limits on assignment
values, and Kubernetes' name rules (which the adapters and the install checks
share). Every module here imports only the standard library.
"""
