"""Katib v1beta1 Suggestion API: generated message and service stubs (see api.proto)."""
