"""robustlayers: layer-wise adversarial robustness for image classifiers."""

__version__ = "0.1.0"
