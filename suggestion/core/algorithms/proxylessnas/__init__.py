"""proxylessnas: ProxylessNAS in its two modes, one module per part.

algorithm   the Algorithm protocol and the settings of both modes (oneshot, reinforce)
reinforce   REINFORCE: path probabilities rebuilt by replaying finished trials
space       the supernet's layout: stages of searchable blocks from nasConfig and settings
"""

from .algorithm import ProxylessNas, ProxylessSettings
from .reinforce import INDEX_LABEL, POLICY_LABEL

__all__ = ["INDEX_LABEL", "POLICY_LABEL", "ProxylessNas", "ProxylessSettings"]
