"""Training methods: small objects computing one batch's loss (see :mod:`.base`).

Registered: natural, pgd-at, trades, mart, awp, fast-at. Layer-targeted methods (partial AT,
fixed-parameter AT, RAT_LR, RAT_WP, CLAT) register with :func:`register_method` and use the
:class:`~robustlayers.train.context.TrainContext` helpers.
"""

from .base import Method, StepOutput, list_methods, make_method, register_method
from .natural import Natural
from .pgd_at import PGDAT, AdversarialMethod
from .trades import TRADES, kl_clean_adv, trades_examples
from .mart import MART, mart_loss
from .awp import AWP
from .fast_at import FastAT

__all__ = [
    "AWP", "AdversarialMethod", "FastAT", "MART", "Method", "Natural", "PGDAT", "StepOutput",
    "TRADES", "kl_clean_adv", "list_methods", "make_method", "mart_loss", "register_method",
    "trades_examples",
]
