"""Evaluation: clean and robust accuracy/loss, ε sweeps, corruptions, transfer, sanity checks.

Implements the evaluation protocol of the papers (EARLY, SPECTRUM, CLAT, RAT): every robustness number carries its attack
configuration; accuracy *and* loss are reported (EARLY); the per-example worst case over an
ensemble of attacks; sanity checks that flag likely gradient masking and fail loudly.

    from robustlayers.attacks import PGD, FGSM, ThreatModel
    threat = ThreatModel("linf", 0.1)
    result = evaluate_model(model, x, y, {"fgsm": FGSM(threat), "pgd-20": PGD(threat, steps=20)})
    checks = run_sanity_checks(model, x, y, threat=threat, results=result, strict=True)
"""

from .checks import (MASKING, N_SE, RANDOMNESS_TOL, TOLERANCE, ZERO_GRAD_MAX_FRACTION,
                     SanityCheck, SanityError, check_eps_monotone, check_fgsm_vs_pgd,
                     check_large_eps, check_more_restarts, check_more_steps, check_no_rise,
                     check_randomness, check_train_mode, check_transfer, check_transfer_matrix,
                     check_zero_gradients, input_gradients, rise_threshold)
from .corruptions import SEVERITIES, corruption_accuracy
from .metrics import (binomial_se, clean_metrics, eval_mode, per_example_metrics, summarize,
                      training_modules)
from .robust import (AttackResult, EvaluationResult, attack_config, evaluate_attack,
                     evaluate_model, run_attack)
from .sanity import (checks_from_results, default_build, large_eps_for, report_checks,
                     run_sanity_checks)
from .sweeps import SweepResult, eps_sweep
from .transfer import TransferResult, transfer_matrix
from .validate import (validate_batch, validate_count, validate_eps, validate_eps_list,
                       validate_images, validate_labels, validate_model, validate_step)

__all__ = [
    "AttackResult", "EvaluationResult", "MASKING", "N_SE", "RANDOMNESS_TOL", "SEVERITIES",
    "SanityCheck", "SanityError", "SweepResult", "TOLERANCE", "TransferResult",
    "ZERO_GRAD_MAX_FRACTION", "attack_config", "binomial_se", "check_eps_monotone",
    "check_fgsm_vs_pgd", "check_large_eps", "check_more_restarts", "check_more_steps",
    "check_no_rise", "check_randomness", "check_train_mode", "check_transfer",
    "check_transfer_matrix", "check_zero_gradients", "checks_from_results", "clean_metrics",
    "corruption_accuracy", "default_build", "eps_sweep", "eval_mode", "evaluate_attack",
    "evaluate_model", "input_gradients", "large_eps_for", "per_example_metrics",
    "report_checks", "rise_threshold", "run_attack", "run_sanity_checks", "summarize",
    "training_modules", "transfer_matrix", "validate_batch", "validate_count", "validate_eps",
    "validate_eps_list", "validate_images", "validate_labels", "validate_model", "validate_step",
]

# robustlayers.evaluate(...) calls evaluate_model(...): the package object itself is callable
from robustlayers import _make_callable  # noqa: E402

_make_callable("evaluate")
