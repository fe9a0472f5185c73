"""envelopenet: EnvelopeNet construction (NAC), one module per part.

algorithm   the Algorithm protocol: validation, proposals replayed from the history
config      settings and the construction plan they resolve to
construct   one construction step: branch pruning, cell growth, skip pruning
schedule    the construction rebuilt from Katib's trial history; trial seeds and phases
stats       a trial's branch statistics and skip gates, averaged over replicas
"""

from .algorithm import PHASE_LABEL, EnvelopeNet

__all__ = ["PHASE_LABEL", "EnvelopeNet"]
