"""The suggestion service's gRPC message size limits, in MiB: light to import for the CLI's --help."""

#: Katib sends every trial in each request; gRPC's 4 MiB default is reached after a few thousand trials.
DEFAULT_MAX_MESSAGE_MB = 32
#: gRPC message sizes are int32 bytes.
MAX_MESSAGE_MB = 2047
