"""Named presets: the papers' training schedules as plain functions returning config values.

Each preset is a dict of :class:`~robustlayers.train.config.TrainConfig` keys; flags, config
files and ``--set`` override them. ``robustlayers train --list-presets`` prints their docstrings.
"""

from __future__ import annotations

from robustlayers.train.config import TrainConfig, config_from_dict
from robustlayers.train.config_checks import choice


def _rat_cifar10() -> dict:
    """RAT AT baseline (Rice et al. settings): PreAct ResNet-18, 200 epochs, batch 128, SGD 0.1
    momentum 0.9, wd 5e-4, x0.1 at 50% and 75%, PGD-10 alpha=2/255 eps=8/255 attacking in train()
    mode, PGD-20 test; best by PGD-20 on the whole test split."""
    return dict(model="preact_resnet18", dataset="cifar10", method="pgd-at", epochs=200,
                batch_size=128, lr=0.1, weight_decay=5e-4, schedule="piecewise",
                milestones=[0.5, 0.75], eps=8 / 255, alpha=2 / 255, steps=10, eval_steps=20,
                eval_size=None, attack_mode="train")


def _rat_lr_cifar10() -> dict:
    """RAT_LR (RAT §3.3): blocks 3-4 keep lr 0.1 (constant) while the rest decays."""
    return dict(_rat_cifar10(), method="rat-lr")


def _rat_wp_cifar10() -> dict:
    """RAT_WP (RAT §3.3, Eqs. 8-10): AWP on the weights of blocks 3-4 only, gamma=0.01."""
    return dict(_rat_cifar10(), method="rat-wp", method_args={"gamma": 0.01})


def _rat_wp_trades_cifar10() -> dict:
    """TRADES-RAT_WP (RAT Table 1): TRADES beta=6 base, AWP on blocks 3-4 with gamma=0.005 after
    10 warm-up epochs."""
    return dict(_rat_cifar10(), method="rat-wp",
                method_args={"base": "trades", "gamma": 0.005, "warmup": 10, "beta": 6.0})


def _rat_svhn() -> dict:
    """RAT on SVHN: the RAT AT baseline with PGD-10 step alpha=1/255 (RAT §4 settings)."""
    return dict(_rat_cifar10(), dataset="svhn", alpha=1 / 255)


def _rat_l2_cifar10() -> dict:
    """RAT under the l2 threat model: eps=128/255, alpha=15/255 (RAT §4 settings)."""
    return dict(_rat_cifar10(), norm="l2", eps=128 / 255, alpha=15 / 255)


def _early_resnet() -> dict:
    """EARLY ResNet schedule: SGD 0.1, wd 2e-4, batch 128, 80 epochs, one x0.1 drop at epoch 75,
    PGD-10 eps=8/255 alpha=2/255 in eval() mode, seed 2022; final evaluation PGD-100 with
    alpha=1/255. Stage 2 of partial AT runs this schedule again."""
    return dict(model="resnet18", dataset="cifar10", method="pgd-at", epochs=80, lr=0.1,
                weight_decay=2e-4, schedule="piecewise", milestones=[75], eps=8 / 255,
                alpha=2 / 255, steps=10, seed=2022, final_steps=100, final_alpha=1 / 255)


def _early_vgg() -> dict:
    """EARLY VGG schedule: VGG-16 (BN), Adam 1e-3, no weight decay, 100 epochs, x0.1 at epochs 50
    and 75, PGD-10 eps=8/255 alpha=2/255; final evaluation PGD-100 with alpha=1/255."""
    return dict(model="vgg16_bn", dataset="cifar10", method="pgd-at", epochs=100,
                optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="piecewise",
                milestones=[50, 75], eps=8 / 255, alpha=2 / 255, steps=10, seed=2022,
                final_steps=100, final_alpha=1 / 255)


def _spectrum_resnet() -> dict:
    """SPECTRUM PGD-AT (Sridhar et al., Analysis of Adversarial Training at a Spectrum of
    Perturbations, Table 5): SGD 0.1, wd 2e-4, decays at 75 and 90, 100 epochs, batch 256,
    PGD-10 with alpha = (eps/8)·2/255 = eps/4 at every eps (alpha_ratio 0.25), per-epoch test
    PGD-20 with alpha = eps/10 (eval_alpha_ratio 0.1); --eps 4/255 trains with alpha 1/255 and
    tests with 0.4/255. SPECTRUM evaluates a fixed epoch's checkpoint: ResNet-18 epoch 76 (kept
    here: RUN@epoch-76), WideResNet-28-10 epoch 80, the eps=0 models 19 (ResNet-18) and 18
    (WRN) of their 50-epoch natural training. --model resnet18_spectrum trains SPECTRUM's own
    ResNet-18 variant (raw inputs, no ReLU between the two blocks of a stage)."""
    return dict(model="resnet18", dataset="cifar10", method="pgd-at", epochs=100, batch_size=256,
                lr=0.1, weight_decay=2e-4, schedule="piecewise", milestones=[75, 90],
                eps=8 / 255, alpha_ratio=0.25, eval_alpha_ratio=0.1, steps=10, eval_steps=20,
                keep_epochs=[76])


def _clat_pretrain() -> dict:
    """CLAT's base AT (Gopal et al., CLAT §4.1): 50 epochs PGD-AT, SGD lr 0.1 with cosine
    decay, eps=0.03, alpha=0.007, PGD-10 for training and the PGD-10 test attack. Continue with
    clat-finetune --init-from THIS_RUN (the same base for TRADES/MART/AWP: --method)."""
    return dict(model="resnet18", dataset="cifar10", method="pgd-at", epochs=50, lr=0.1,
                schedule="cosine", eps=0.03, alpha=0.007, steps=10, eval_steps=10)


def _clat_finetune() -> dict:
    """CLAT fine-tuning (CLAT §4.1, Algorithm 1): 50 epochs of CLAT after clat-pretrain (give
    --init-from RUN), cosine from lr 0.1 again, eps=0.03, alpha=0.007, PGD-10; critical layers
    reselected every 10 epochs from 10 training images; k per architecture (ResNet-18: 1)."""
    return dict(_clat_pretrain(), method="clat")


def _clat_pretrain_70() -> dict:
    """CLAT appendix variant (CLAT App. D.9): 70 epochs of base PGD-AT, then clat-finetune-30."""
    return dict(_clat_pretrain(), epochs=70)


def _clat_finetune_30() -> dict:
    """CLAT appendix variant (CLAT App. D.9): 30 epochs of CLAT after clat-pretrain-70."""
    return dict(_clat_finetune(), epochs=30)


def _clat_fmnist_pretrain() -> dict:
    """A CPU-sized CLAT base on Fashion-MNIST: fmnist-quick's small CNN PGD-AT (5 epochs on 10k
    images, PGD-5 eps=0.1 alpha=0.025); continue with clat-fmnist --init-from THIS_RUN."""
    return _fmnist_quick()


def _clat_fmnist() -> dict:
    """CLAT on the small CNN after clat-fmnist-pretrain (give --init-from RUN): 5 epochs, k=1,
    critical layers reselected every 2 epochs."""
    return dict(_fmnist_quick(), method="clat", method_args={"reselect_every": 2})


def _fmnist_quick() -> dict:
    """A few-minute CPU run on the embedded Fashion-MNIST: small CNN, 5 epochs on 10k images,
    PGD-5 eps=0.1 alpha=0.025, eval PGD-20 on 500 test images per epoch; the final best/last
    numbers on 2 000 test images (the whole split costs minutes of PGD-20 on a CPU)."""
    return dict(model="smallcnn", dataset="fashion-mnist", method="pgd-at", epochs=5,
                train_size=10000, test_size=2000, lr=0.05, weight_decay=5e-4,
                schedule="cosine", eps=0.1, alpha=0.025, steps=5, eval_steps=20, eval_size=500)


def _fmnist_study() -> dict:
    """The base of the studies' demo and quick presets on the embedded Fashion-MNIST (about a
    minute per adversarial run on 2 CPU cores): small CNN, 4 epochs on 4k images, PGD-5 eps=0.1
    alpha=0.025; per epoch PGD-10 on 300 test images and RAT's train robust accuracy on 300
    training images; final best/last with PGD-10 on 500 test images (about ±4 points of
    sampling error, which the studies' verdicts take into account)."""
    return dict(model="smallcnn", dataset="fashion-mnist", method="pgd-at", epochs=4,
                train_size=4000, test_size=500, lr=0.05, weight_decay=5e-4, schedule="cosine",
                eps=0.1, alpha=0.025, steps=5, eval_steps=10, eval_size=300, final_steps=10,
                train_eval_size=300)


PRESETS = {
    "rat-cifar10": _rat_cifar10,
    "rat-lr-cifar10": _rat_lr_cifar10,
    "rat-wp-cifar10": _rat_wp_cifar10,
    "rat-wp-trades-cifar10": _rat_wp_trades_cifar10,
    "rat-svhn": _rat_svhn,
    "rat-l2-cifar10": _rat_l2_cifar10,
    "early-resnet": _early_resnet,
    "early-vgg": _early_vgg,
    "spectrum-resnet": _spectrum_resnet,
    "clat-pretrain": _clat_pretrain,
    "clat-finetune": _clat_finetune,
    "clat-pretrain-70": _clat_pretrain_70,
    "clat-finetune-30": _clat_finetune_30,
    "clat-fmnist-pretrain": _clat_fmnist_pretrain,
    "clat-fmnist": _clat_fmnist,
    "fmnist-quick": _fmnist_quick,
    "fmnist-study": _fmnist_study,
}


def list_presets() -> list[str]:
    return list(PRESETS)


def preset_values(name: str) -> dict:
    """The config values of preset ``name`` (ConfigError listing the presets if unknown)."""
    if not isinstance(name, str) or name not in PRESETS:
        choice("preset", name, list(PRESETS))
    return PRESETS[name]()


def preset(name: str, **overrides) -> TrainConfig:
    """A validated config from a named preset, with keyword overrides."""
    return config_from_dict(dict(preset_values(name), **overrides), where=f"preset {name!r}")
