"""Katib v1beta1 Suggestion API: generated message and service stubs (see api.proto)."""

#: The service a suggestion server reports SERVING for in grpc.health.v1, the name Katib's probes ask about.
HEALTH_SERVICE = "manager.v1beta1.Suggestion"
