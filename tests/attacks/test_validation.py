"""Every bad input raises ValueError with a message naming the problem (architecture.md)."""
import pytest
import torch

from robustlayers.attacks import (
    BPDA, FGSM, PGD, AutoAttackAdapter, FeaturePGD, ThreatModel, TransferAttack, check_inputs,
    make_attack,
)

from .toys import MLP

LINF = ThreatModel("linf", 8 / 255)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return MLP().eval()


def _x(n=4):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def _one_pixel(value):
    """A valid batch with a single bad pixel (the rest must not hide it)."""
    x = _x(4)
    x[2, 0, 5, 7] = value
    return x


@pytest.mark.parametrize("make", [
    lambda: PGD(LINF, steps=2), lambda: FGSM(LINF), lambda: FGSM(LINF, random_start=True),
    lambda: PGD(ThreatModel("l2", 0.5), steps=2, loss="cw"),
])
@pytest.mark.parametrize("x, y, match", [
    (torch.rand(4, 28, 28), torch.zeros(4, dtype=torch.long), "4-D NCHW"),
    (torch.rand(4, 1, 28, 28) * 2, torch.zeros(4, dtype=torch.long), r"outside \[0, 1\]"),
    (torch.rand(4, 1, 28, 28) - 0.5, torch.zeros(4, dtype=torch.long), r"outside \[0, 1\]"),
    (torch.full((4, 1, 28, 28), float("nan")), torch.zeros(4, dtype=torch.long), "NaN"),
    (torch.full((4, 1, 28, 28), float("inf")), torch.zeros(4, dtype=torch.long), "infinite"),
    (_one_pixel(float("nan")), torch.zeros(4, dtype=torch.long), "NaN"),
    (_one_pixel(float("-inf")), torch.zeros(4, dtype=torch.long), "infinite"),
    (_one_pixel(float("inf")), torch.zeros(4, dtype=torch.long), "infinite"),
    (torch.randint(0, 2, (4, 1, 28, 28)), torch.zeros(4, dtype=torch.long), "float tensor"),
    (_x(4), torch.zeros(3, dtype=torch.long), "label count mismatch: x has 4 examples, y has 3"),
    (_x(4), torch.zeros(4), "int64"),
    (_x(4), torch.zeros(4, 1, dtype=torch.long), "1-D"),
    (_x(4), [0, 0, 0, 0], "torch.Tensor"),
    ("image", torch.zeros(4, dtype=torch.long), "torch.Tensor"),
    (_x(4), torch.full((4,), 10, dtype=torch.long), r"labels must lie in \[0, 9\]"),
    (_x(4), torch.full((4,), -1, dtype=torch.long), r"negative label \(-1\)"),
    (_x(4), torch.zeros(4, dtype=torch.bool), "integer class labels"),
])
def test_bad_inputs(model, make, x, y, match):
    with pytest.raises(ValueError, match=match):
        make()(model, x, y)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_any_integer_label_dtype_is_accepted_as_int64(model, dtype):
    x, y = _x(4), torch.tensor([0, 3, 7, 9])
    expect = PGD(LINF, steps=2)(model, x, y)
    assert torch.equal(PGD(LINF, steps=2)(model, x, y.to(dtype)), expect)
    _, checked = check_inputs(x, y.to(dtype))
    assert checked.dtype == torch.int64 and torch.equal(checked, y)


def test_attacks_and_evaluation_share_one_rule_set(model):
    """The same batch is accepted or refused, with the same message, by attacks and by
    evaluation; the one difference is that evaluation refuses an empty batch."""
    from robustlayers.evaluate import clean_metrics, validate_batch

    bad = [
        (torch.rand(4, 28, 28), torch.zeros(4, dtype=torch.long)),
        (_x(4) * 2, torch.zeros(4, dtype=torch.long)),
        (torch.full((4, 1, 28, 28), float("nan")), torch.zeros(4, dtype=torch.long)),
        (_x(4), torch.zeros(4)),
        (_x(4), torch.zeros(3, dtype=torch.long)),
        (_x(4), torch.full((4,), -2, dtype=torch.long)),
        (_x(4), torch.zeros(4, 1, dtype=torch.long)),
    ]
    for x, y in bad:
        messages = []
        for check in (check_inputs, validate_batch, PGD(LINF, steps=1).__call__):
            args = (model, x, y) if check.__name__ == "__call__" else (x, y)
            with pytest.raises(ValueError) as info:
                check(*args)
            messages.append(str(info.value))
        assert len(set(messages)) == 1, messages
    x, y = _x(4), torch.tensor([1, 2, 3, 4], dtype=torch.int32)
    assert torch.equal(validate_batch(x, y)[1], check_inputs(x, y)[1])
    assert clean_metrics(model, x, y)["n"] == 4
    empty = (_x(4)[:0], torch.zeros(0, dtype=torch.long))
    assert PGD(LINF, steps=1)(model, *empty).shape == (0, 1, 28, 28)
    assert check_inputs(*empty)[0].shape == (0, 1, 28, 28)
    with pytest.raises(ValueError, match="empty"):
        validate_batch(*empty)
    with pytest.raises(ValueError, match="empty"):
        check_inputs(*empty, allow_empty=False)


def test_label_range_against_known_class_count():
    with pytest.raises(ValueError, match=r"label 10 but the model has 10 classes"):
        check_inputs(_x(4), torch.full((4,), 10), num_classes=10)
    assert check_inputs(_x(4), torch.full((4,), 9), num_classes=10)[1].tolist() == [9] * 4


def test_bad_model():
    with pytest.raises(ValueError, match="torch.nn.Module"):
        PGD(LINF)(lambda t: t, _x(), torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("make, match", [
    (lambda: ThreatModel("linf", -8 / 255), ">= 0"),
    (lambda: ThreatModel("l3", 0.1), "choose one of linf, l2"),
    (lambda: PGD(LINF, steps=0), "steps must be an integer >= 1, got 0"),
    (lambda: PGD(LINF, steps=2.5), "steps must be an integer"),
    (lambda: PGD(LINF, alpha=0.0), "alpha must be a finite number > 0"),
    (lambda: PGD(LINF, alpha=-1e-3), "alpha must be a finite number > 0"),
    (lambda: PGD(LINF, alpha=float("nan")), "alpha must be a finite number > 0"),
    (lambda: FGSM(LINF, alpha=0), "alpha must be a finite number > 0"),
    (lambda: PGD(LINF, restarts=0), "restarts must be an integer >= 1"),
    (lambda: PGD(LINF, restarts=3, random_start=False), "needs random_start=True"),
    (lambda: PGD(LINF, loss="mse"), r"unknown loss 'mse'; choose one of ce, cw"),
    (lambda: PGD(LINF, seed=1.5), "seed must be an int"),
    (lambda: PGD((("linf", 0.1))), "ThreatModel"),
    (lambda: FeaturePGD(LINF, "all", random_start=False), "needs random_start=True"),
    (lambda: FeaturePGD(LINF, "all", objective=3), "objective must be callable"),
    (lambda: AutoAttackAdapter(LINF, version="fast"), "choose one of standard, custom"),
    (lambda: AutoAttackAdapter(LINF, attacks=["apgd-ce"]), "needs version='custom'"),
    (lambda: AutoAttackAdapter(LINF, version="custom", attacks=["pgd"]), "choose from apgd-ce"),
    (lambda: AutoAttackAdapter(LINF, batch_size=0), "batch_size"),
    (lambda: BPDA("pgd", ["q"]), "BPDA wraps an Attack"),
    (lambda: BPDA(PGD(LINF), []), "module paths"),
    (lambda: TransferAttack(MLP(), "pgd"), "needs an Attack"),
    (lambda: TransferAttack("model", PGD(LINF)), "torch.nn.Module"),
    (lambda: make_attack("deepfool", LINF), r"unknown attack 'deepfool'; choose one of apgd, "
                                             r"autoattack, feature-pgd, fgsm, fgsm-rs, pgd, pgd-cw"),
    (lambda: make_attack("pgd", LINF, stpes=3), "does not take stpes; options: steps"),
    (lambda: make_attack("pgd-cw", LINF, loss="ce"), "fixes loss"),
    (lambda: make_attack("feature-pgd", LINF), "needs selection"),
])
def test_bad_configuration(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_transfer_validates_target(model):
    attack = TransferAttack(model, PGD(LINF, steps=1))
    with pytest.raises(ValueError, match="torch.nn.Module"):
        attack(None, _x(), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="label count mismatch"):
        attack(model, _x(), torch.zeros(2, dtype=torch.long))


def test_attack_base_classes_are_abstract():
    from robustlayers.attacks import Attack, GradientAttack, ThreatModel

    threat = ThreatModel("linf", 0.1)
    for base in (Attack, GradientAttack):
        with pytest.raises(TypeError, match="abstract"):
            base(threat)

    class Identity(GradientAttack):
        def _perturb(self, model, x, y, generator):
            return x

    x = torch.rand(2, 1, 4, 4)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    assert torch.equal(Identity(threat)(model, x, torch.tensor([0, 1])), x)
