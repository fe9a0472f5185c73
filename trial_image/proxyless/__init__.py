"""ProxylessNAS on the trial side: binarized supernet search, latency lookup tables and their profiler.

Importing this package loads no torch; the modules that need it import it themselves.
"""
