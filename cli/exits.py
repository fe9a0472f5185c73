"""Exit codes every katib-nas subcommand shares (`katib-nas trial` adds 3 for a diverged training run)."""

EXIT_OK = 0
#: A failure that is not the input's: a full disk, a suggestion service that failed, a run that failed.
EXIT_FAILED = 1
#: Bad input, named in one line.
EXIT_BAD_INPUT = 2
#: Stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
EXIT_INTERRUPTED = 130
