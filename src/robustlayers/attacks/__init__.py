"""Attacks: ``attack(model, x, y) -> x_adv`` with x float NCHW in [0, 1].

Every attack runs the model in eval() (mode restored afterwards), differentiates only with
respect to the perturbation, is deterministic for a given seed, and describes itself with
``.config()`` (JSON-able) for run records.
"""
from .autoattack import AA_ATTACKS, VERSIONS, AutoAttackAdapter
from .base import LOSSES, Attack, GradientAttack, attack_mode, check_inputs, margin_loss
from .bpda import BPDA, BPDAWrapper, straight_through
from .checks import check_images, check_labels
from .feature_pgd import FeaturePGD, feature_distance, feature_l2, resolve_layer_names
from .fgsm import FGSM
from .pgd import PGD
from .registry import describe_attacks, list_attacks, make_attack
from .threat import NORMS, ThreatModel, as_threat, describe_eps, parse_eps, parse_norm
from .transfer import TransferAttack, quantize_8bit

__all__ = [
    "AA_ATTACKS", "Attack", "AutoAttackAdapter", "BPDA", "BPDAWrapper", "FGSM", "FeaturePGD",
    "GradientAttack",
    "LOSSES", "NORMS", "PGD", "ThreatModel", "TransferAttack", "VERSIONS", "as_threat",
    "attack_mode",
    "check_images", "check_inputs", "check_labels", "describe_attacks", "describe_eps",
    "feature_distance", "feature_l2", "list_attacks", "make_attack", "margin_loss", "parse_eps",
    "parse_norm",
    "quantize_8bit", "resolve_layer_names", "straight_through",
]
