"""Kubernetes' name rules (k8s.io/apimachinery/pkg/util/validation), checked wherever a user's text names an object."""

from __future__ import annotations

import re

#: A DNS-1123 label (dns1123LabelFmt, DNS1123LabelMaxLength): namespaces, Jobs, most generated names.
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_LABEL_MAX_LENGTH = 63
#: A DNS-1123 subdomain: labels joined by dots (ConfigMaps, training runtimes), at most 253 characters.
DNS1123_SUBDOMAIN = re.compile(rf"{DNS1123_LABEL.pattern}(\.{DNS1123_LABEL.pattern})*")
DNS1123_SUBDOMAIN_MAX_LENGTH = 253


def is_dns1123_label(name: str) -> bool:
    return len(name) <= DNS1123_LABEL_MAX_LENGTH and DNS1123_LABEL.fullmatch(name) is not None


def is_dns1123_subdomain(name: str) -> bool:
    return len(name) <= DNS1123_SUBDOMAIN_MAX_LENGTH and DNS1123_SUBDOMAIN.fullmatch(name) is not None
