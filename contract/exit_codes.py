"""Exit codes of every katib-nas command: the CLI's subcommands and the training commands inside a trial."""

EXIT_OK = 0
#: A failure that is not the input's: a full disk, a failed export, push or checkpoint, a suggestion service
#: that failed, a run that failed, or another process of a distributed trial that did.
EXIT_FAILED = 1
#: Bad input, named in one line.
EXIT_BAD_INPUT = 2
#: A training run's loss became NaN or infinite (`katib-nas trial`, `katib-nas proxyless-search`).
EXIT_DIVERGED = 3
#: Stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130
