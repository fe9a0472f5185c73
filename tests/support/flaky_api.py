"""A Kubernetes API whose reads fail for a while, as a busy or restarting API server answers them."""

from __future__ import annotations

from typing import Any, Callable

from kubernetes.client.rest import ApiException


def service_unavailable() -> Exception:
    return ApiException(status=503, reason="Service Unavailable")


class FlakyReads:
    """A CustomObjectsApi whose next `failures` reads (of `plural`, or of anything) fail with `error()`; with
    `failures` None every one does. Everything else goes to `api`."""

    def __init__(self, api: Any, failures: int | None, plural: str | None = None,
                 error: Callable[[], Exception] = service_unavailable):
        self.api, self.failures, self.plural, self.error = api, failures, plural, error

    def __getattr__(self, name: str) -> Any:
        return getattr(self.api, name)

    def fails(self) -> bool:
        """Whether this read fails (and counts it)."""
        if self.failures is None:
            return True
        if self.failures > 0:
            self.failures -= 1
            return True
        return False

    def get_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        plural = args[3] if len(args) > 3 else kwargs.get("plural")
        if (self.plural is None or plural == self.plural) and self.fails():
            raise self.error()
        return self.api.get_namespaced_custom_object(*args, **kwargs)
