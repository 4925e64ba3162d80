"""Partial adversarial training (Bakiskan, Cekic & Madhow, "Early Layers Are More Important For
Adversarial Robustness", §3.1): stage 2 of a two-stage experiment.

Stage 1 trains the whole network adversarially (A) or naturally (N); stage 2 (this method) starts
from that run (``init_from``), freezes one part, re-initialises the other and retrains it, A or N.
Four-letter codes (EARLY §3.1): letters 1–2 describe the layers *before* the cut, letters 3–4 the
layers *from* the cut on; "1" = trained in stage 1 then frozen, "2" = re-initialised and retrained
in stage 2. A1N2: adversarial stage 1, earlier part frozen, later part retrained naturally; A2A1:
adversarial stage 1, later part frozen, earlier part retrained adversarially. The stage-1 kind is
the letter next to "1", the stage-2 kind the letter next to "2".

Single-layer retraining (EARLY §3.1.3, Tables 9–12): ``XsYr`` — the single layer ``s`` is
re-initialised and retrained with X in stage 2, the rest of the network ``r`` comes from a
stage-1 run trained with Y and stays frozen. NsAr: adversarial network, one layer retrained
naturally.

Batch-norm rule (EARLY §3.1): a frozen BN layer keeps its affine parameters, its running
statistics keep updating (stage 2 trains in ``train()``) and are not reset; a re-initialised BN
layer resets them. A cut before the first layer freezes nothing (the whole network is retrained);
a code that would retrain nothing is an error. Stage 2 uses a fresh optimiser and the full
schedule again; a stage 2 that collapses to chance is recorded as ``collapsed`` in result.json.
"""

from __future__ import annotations

from dataclasses import dataclass

from robustlayers.layers import Selection
from robustlayers.train.settings import ConfigError, setting

from .base import Method, StepOutput, make_method, method_class, register_method

SPLIT_CODES = ("A1N2", "N1A2", "A1A2", "N1N2", "A2N1", "N2A1", "A2A1", "N2N1")
SINGLE_CODES = ("NsNr", "NsAr", "AsAr", "AsNr")
KIND_METHOD = {"A": "pgd-at", "N": "natural"}


def parse_code(code: str) -> dict:
    """``{"stage1", "stage2", "frozen"}`` of a partial-AT code: the stage-1 kind (A/N), the
    stage-2 kind, and the frozen side (``earlier``, ``later`` or ``rest`` for single-layer)."""
    if code in SPLIT_CODES:
        first, second = code[:2], code[2:]
        stage1, stage2 = (first, second) if first[1] == "1" else (second, first)
        return {"stage1": stage1[0], "stage2": stage2[0],
                "frozen": "earlier" if first[1] == "1" else "later"}
    if code in SINGLE_CODES:
        return {"stage1": code[2], "stage2": code[0], "frozen": "rest"}
    raise ConfigError(f"unknown partial-at code {code!r}; valid codes: "
                      f"{', '.join(SPLIT_CODES + SINGLE_CODES)}")


def stage1_kind(source_config: dict) -> str:
    """A or N: how a stage-1 run trained the whole network (its method)."""
    method = source_config.get("method")
    if method == "partial-at" or source_config.get("freeze") or source_config.get("reinit"):
        raise ConfigError(f"a stage-1 run must train the whole network with one method; this "
                          f"one used method {method!r} with freeze={source_config.get('freeze')!r}"
                          f" and reinit={source_config.get('reinit')!r}")
    return "A" if method_class(method).adversarial else "N"


@dataclass
class PartialSettings:
    code: str = setting("", "partial-AT code: A1N2 N1A2 A1A2 N1N2 A2N1 N2A1 A2A1 N2N1 (cut), "
                            "or NsNr NsAr AsAr AsNr (one layer)")
    cut: str = setting("", "layer the cut comes before (split codes): earlier = the layers "
                           "before it, later = it and every layer after")
    layer: str = setting("", "the one layer retrained by a single-layer code")

    def check(self) -> None:
        code = self.code.strip()
        canonical = {c.lower(): c for c in SPLIT_CODES + SINGLE_CODES}
        if code.lower() not in canonical:
            parse_code(code)  # raises, listing the valid codes
        self.code = canonical[code.lower()]
        if self.code in SPLIT_CODES:
            if not self.cut or self.layer:
                raise ConfigError(f"partial-at code {self.code} takes cut (the layer the cut "
                                  f"comes before) and no layer; got cut={self.cut!r}, "
                                  f"layer={self.layer!r}")
        elif not self.layer or self.cut:
            raise ConfigError(f"partial-at code {self.code} retrains one layer: give layer (and "
                              f"no cut); got layer={self.layer!r}, cut={self.cut!r}")


@register_method("partial-at")
class PartialAT(Method):
    """Stage 2 of EARLY's partial adversarial training (see the module docstring)."""

    Settings = PartialSettings

    def __init__(self, config, settings=None) -> None:
        super().__init__(config, settings)
        self.plan = parse_code(self.settings.code)
        self.adversarial = self.plan["stage2"] == "A"
        self.inner = make_method(KIND_METHOD[self.plan["stage2"]], config, {})
        self.stage1_method: str | None = None

    def setup(self, ctx) -> None:
        """Check the stage-1 run, then re-initialise the retrained side and freeze the other."""
        source = ctx.init_source
        if source is None or source.get("config") is None:
            raise ConfigError(f"partial-at code {self.settings.code} is stage 2: start it from "
                              f"a stage-1 run with init_from (--init-from RUN_DIR[@TAG]); a "
                              f"weights file does not say how it was trained")
        kind = stage1_kind(source["config"])
        if kind != self.plan["stage1"]:
            raise ConfigError(
                f"partial-at code {self.settings.code} needs a stage-1 run trained "
                f"{'adversarially' if self.plan['stage1'] == 'A' else 'naturally'} "
                f"({self.plan['stage1']}), but {source['path']} was trained with "
                f"{source['config'].get('method')!r} ({kind})")
        self.stage1_method = source["config"].get("method")
        retrain, frozen = self.sides(ctx)
        if not ctx.select(retrain, allow_empty=True).names:
            raise ConfigError(f"partial-at code {self.settings.code} with the cut before "
                              f"{self.settings.cut!r} retrains nothing (no layer lies before "
                              f"it); choose a later cut")
        ctx.reinit(retrain, label="partial:retrained")
        ctx.freeze(frozen, label="partial:frozen", allow_empty=True)
        self.inner.setup(ctx)

    def sides(self, ctx) -> tuple[Selection, Selection]:
        """(retrained, frozen) selections of the code."""
        if self.plan["frozen"] == "rest":
            layer = ctx.select(self.settings.layer)
            if len(layer.names) != 1:
                raise ConfigError(f"partial-at layer {self.settings.layer!r} selects "
                                  f"{len(layer.names)} layers {list(layer.names)[:5]}; a "
                                  f"single-layer code retrains exactly one")
            one = Selection.names(layer.names[0])
            return one, Selection.all() - one
        cut = ctx.select(self.settings.cut)
        if len(cut.names) != 1:
            raise ConfigError(f"partial-at cut {self.settings.cut!r} selects {len(cut.names)} "
                              f"layers {list(cut.names)[:5]}; name the one layer the cut comes "
                              f"before")
        earlier = Selection.position("before", cut.names[0])
        later = Selection.position("from", cut.names[0])
        return (later, earlier) if self.plan["frozen"] == "earlier" else (earlier, later)

    def loss(self, ctx, x, y) -> StepOutput:
        return self.inner.loss(ctx, x, y)

    def describe(self) -> dict:
        return {**super().describe(), **self.plan, "stage1_method": self.stage1_method,
                "stage2_method": self.inner.name}
