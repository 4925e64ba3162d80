"""Device path: generators live on the data's device; runs only where CUDA is available."""
import pytest
import torch

from robustlayers.attacks import PGD, AutoAttackAdapter, FeaturePGD, ThreatModel

from .toys import TinyNet

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_attacks_on_cuda(batch):
    x, y = batch[0].cuda(), batch[1].cuda()
    torch.manual_seed(0)
    model = TinyNet().cuda().eval()
    t = ThreatModel("linf", 8 / 255)
    for attack in (PGD(t, steps=3, restarts=2), FeaturePGD(t, "kind:conv", steps=2)):
        x_adv = attack(model, x, y)
        assert x_adv.device == x.device and (x_adv - x).abs().max() <= t.eps + 1e-6
        torch.testing.assert_close(x_adv, attack(model, x, y))
    rng = torch.cuda.get_rng_state()
    aa = AutoAttackAdapter(t, version="custom", attacks=["apgd-ce"])
    x_adv = aa(model, x[:16], y[:16])
    assert x_adv.device == x.device and torch.equal(torch.cuda.get_rng_state(), rng)
