"""The model zoo (``robustlayers.models``): CIFAR-style classifiers for layer-wise robustness work.

Every zoo model takes images in [0, 1] and normalises them itself (first child ``normalize``, a
:class:`Normalize` with non-persistent mean/std buffers), sets ``input_shape`` (C, H, W) and
``layer_blocks`` (top-level child -> block: ``stem``, ``layer1``.., ``head``), and uses activation
modules so pre-activation points can be hooked. Parameter names match the community checkpoints
(kuangliu/pytorch-cifar ResNets and DenseNet, Rice et al. PreAct ResNet, TRADES/AWP WideResNet).

    model = create_model("resnet18", num_classes=10)
    report = load_checkpoint(model, "weights.safetensors")
"""

from .checkpoints import CheckpointError, LoadReport, load_checkpoint, save_weights
from .common import Normalize, ZooModel, make_activation
from .densenet import DenseBottleneck, DenseNet, Transition
from .preact_resnet import PreActBlock, PreActResNet
from .registry import ModelInfo, create_model, list_models, model_info, register_model
from .resnet import BasicBlock, Bottleneck, ResNet
from .smallcnn import SmallCNN
from .vgg import VGG
from .wide_resnet import NetworkBlock, WideBasicBlock, WideResNet

__all__ = [
    "create_model", "list_models", "model_info", "register_model", "ModelInfo",
    "load_checkpoint", "save_weights", "LoadReport", "CheckpointError",
    "Normalize", "ZooModel", "make_activation",
    "ResNet", "BasicBlock", "Bottleneck",
    "PreActResNet", "PreActBlock",
    "WideResNet", "WideBasicBlock", "NetworkBlock",
    "VGG", "DenseNet", "DenseBottleneck", "Transition",
    "SmallCNN",
]
