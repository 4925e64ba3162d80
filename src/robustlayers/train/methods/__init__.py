"""Training methods: small objects computing one batch's loss (see :mod:`.base`).

Registered: natural, pgd-at, trades, mart, awp, fast-at, and the layer-targeted rat-lr, rat-wp
(RAT §3.3), partial-at (EARLY §3.1) and clat (CLAT §3.2, Algorithm 1). Fixed-parameter AT
(RAT §3.1) is any method with the
run's ``freeze`` selection. Methods register with :func:`register_method` and act on layers
through the :class:`~robustlayers.train.context.TrainContext` helpers.
"""

from .base import Method, StepOutput, list_methods, make_method, method_class, register_method
from .natural import Natural
from .pgd_at import PGDAT, AdversarialMethod
from .trades import TRADES, kl_clean_adv, trades_examples
from .mart import MART, mart_loss
from .awp import AWP
from .fast_at import FastAT
from .rat import RATLR, RATWP
from .partial import PartialAT
from .clat import CLAT

__all__ = [
    "AWP", "AdversarialMethod", "CLAT", "FastAT", "MART", "Method", "Natural", "PGDAT", "PartialAT",
    "RATLR", "RATWP", "StepOutput", "TRADES", "kl_clean_adv", "list_methods", "make_method",
    "mart_loss", "method_class", "register_method", "trades_examples",
]
