"""iter_batches / augmentation / subset: coverage, determinism in (seed, epoch), exact crops."""

import pytest
import torch

from robustlayers.data import (TensorData, epoch_generator, get_dataset_info, iter_batches,
                               num_batches, random_crop)


def _data(n=50, name="cifar10", shape=(3, 32, 32)):
    x = (torch.arange(n * shape[0] * shape[1] * shape[2], dtype=torch.float32)
         .reshape(n, *shape) % 251 + 1) / 252  # no zeros: padding is the only source of 0
    y = torch.arange(n) % 10
    return TensorData(x=x, y=y, info=get_dataset_info(name))


def _ids(batches):
    return [i for _, yb in batches for i in yb.tolist()]


def _indexed(n=50):
    d = _data(n)
    return TensorData(x=d.x, y=torch.arange(n), info=d.info)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("bs,drop_last", [(7, False), (7, True), (50, False), (64, False)])
def test_every_example_once_per_epoch(shuffle, bs, drop_last):
    data = _indexed(50)
    batches = list(iter_batches(data, bs, shuffle=shuffle, augment="crop_flip", epoch=3,
                                drop_last=drop_last))
    ids = _ids(batches)
    assert len(batches) == num_batches(data, bs, drop_last)
    if drop_last:
        assert len(ids) == 50 - 50 % bs and len(set(ids)) == len(ids)
        assert all(len(yb) == bs for _, yb in batches)
    else:
        assert sorted(ids) == list(range(50))
    if not shuffle:
        assert ids == sorted(ids)
    for xb, yb in batches:
        assert xb.shape[1:] == (3, 32, 32) and xb.dtype == torch.float32
        assert xb.device.type == "cpu" and yb.dtype == torch.int64


def test_num_batches():
    assert num_batches(50, 7) == 8 and num_batches(50, 7, drop_last=True) == 7
    assert num_batches(_data(10), 10) == 1


def test_same_seed_epoch_same_batches_and_resume():
    data = _indexed(40)
    kw = dict(augment="crop_flip", seed=5)
    a = list(iter_batches(data, 8, epoch=2, **kw))
    b = list(iter_batches(data, 8, epoch=2, **kw))
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # a "resumed" run: epoch 2 alone equals epoch 2 after epochs 0 and 1
    for epoch in range(3):
        run = list(iter_batches(data, 8, epoch=epoch, **kw))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(run, a))


def test_different_epoch_or_seed_differs():
    data = _indexed(40)
    e0 = _ids(iter_batches(data, 8, epoch=0))
    assert e0 != _ids(iter_batches(data, 8, epoch=1))
    assert e0 != _ids(iter_batches(data, 8, epoch=0, seed=1))
    x0 = next(iter(iter_batches(data, 40, shuffle=False, augment="crop", epoch=0)))[0]
    x1 = next(iter(iter_batches(data, 40, shuffle=False, augment="crop", epoch=1)))[0]
    assert not torch.equal(x0, x1)


def _manual_crops(x, gen, flips):
    """Loop version of the crop (and flip): same draws, one example at a time."""
    n, c, h, w = x.shape
    offsets = torch.randint(0, 9, (2, n), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5 if flips else torch.zeros(n, dtype=torch.bool)
    out = torch.empty_like(x)
    for i in range(n):
        padded = torch.zeros(c, h + 8, w + 8)
        padded[:, 4:4 + h, 4:4 + w] = x[i]
        oy, ox = int(offsets[0, i]), int(offsets[1, i])
        crop = padded[:, oy:oy + h, ox:ox + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out, offsets, flip


@pytest.mark.parametrize("augment", ["crop", "crop_flip"])
def test_crop_and_flip_match_manual(augment):
    data = _indexed(64)
    xb, _ = next(iter(iter_batches(data, 64, shuffle=False, augment=augment, seed=3, epoch=1)))
    gen = epoch_generator(3, 1)  # same stream: no permutation drawn when shuffle=False
    expect, offsets, flip = _manual_crops(data.x, gen, flips=augment == "crop_flip")
    assert xb.shape == data.x.shape
    assert torch.equal(xb, expect)
    # zero padding: offset 0 on rows means the first 4 rows are zeros, 8 means the last 4
    for i in range(64):
        oy = int(offsets[0, i])
        zero_rows = (xb[i] == 0).all(dim=(0, 2))
        assert zero_rows.sum() == abs(oy - 4)
    assert bool(flip.any()) == (augment == "crop_flip")


def test_no_augment_and_digit_default():
    data = _indexed(16)
    xb, yb = next(iter(iter_batches(data, 16, augment=None, shuffle=False)))
    assert torch.equal(xb, data.x)
    xn, _ = next(iter(iter_batches(data, 16, augment="none", shuffle=False)))
    assert torch.equal(xn, data.x)
    # digits: default augmentation is crop without flips
    svhn = TensorData(x=data.x, y=data.y, info=get_dataset_info("svhn"))
    xd, _ = next(iter(iter_batches(svhn, 16, augment="default", shuffle=False, seed=2)))
    expect, _, _ = _manual_crops(data.x, epoch_generator(2, 0), flips=False)
    assert torch.equal(xd, expect)


def test_crop_on_grey_28():
    x = torch.rand(6, 1, 28, 28) + 0.01
    out = random_crop(x, epoch_generator(0, 0))
    assert out.shape == x.shape


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch_size"):
        iter_batches(_data(4), bad)


def test_bad_augment_names_choices():
    with pytest.raises(ValueError, match="crop_flip"):
        iter_batches(_data(4), 2, augment="rotate")
    with pytest.raises(ValueError, match="epoch"):
        iter_batches(_data(4), 2, epoch=-1)


def test_tuple_input_and_device():
    x, y = torch.rand(5, 3, 32, 32), torch.arange(5)
    out = list(iter_batches((x, y), 2, device=torch.device("cpu")))
    assert sorted(_ids(out)) == list(range(5))


def test_subset_deterministic():
    data = _indexed(100)
    a, b = data.subset(10, seed=1), data.subset(10, seed=1)
    assert torch.equal(a.y, b.y) and torch.equal(a.x, b.x)
    assert a.y.tolist() == sorted(a.y.tolist()) and len(set(a.y.tolist())) == 10
    assert not torch.equal(a.y, data.subset(10, seed=2).y)
    assert data.subset(100) is data
    with pytest.raises(ValueError, match="1..100"):
        data.subset(101)
    assert data.to("cpu").x.device.type == "cpu" and len(data) == 100
