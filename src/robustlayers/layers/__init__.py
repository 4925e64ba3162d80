"""The spine of robustlayers: layer map, selection, and operations on a selection .

A *layer* is a leaf module with parameters, named by its dotted module path; the layer map lists
them in forward execution order; a selection (text or Python) picks a subset that every analysis
and training method takes.
"""

from robustlayers.layers.capture import WHAT, FeatureCapture, capture, resolve_module
from robustlayers.layers.groups import param_groups
from robustlayers.layers.layermap import (
    KINDS,
    LayerInfo,
    LayerMap,
    build_layer_map,
    is_layer,
    layer_kind,
    layer_map,
    mark_shortcut,
    numel,
)
from robustlayers.layers._syntax import PREFIXES
from robustlayers.layers.selection import (
    ResolvedSelection,
    Selection,
    SelectionError,
    closest,
    select,
)
from robustlayers.layers.surgery import count_params, freeze, reinit, unfreeze

__all__ = [
    "KINDS", "PREFIXES", "WHAT", "FeatureCapture", "LayerInfo", "LayerMap", "ResolvedSelection",
    "Selection", "SelectionError", "build_layer_map", "capture", "closest", "count_params",
    "freeze", "is_layer", "layer_kind", "layer_map", "mark_shortcut", "numel", "param_groups", "reinit",
    "resolve_module", "select", "unfreeze",
]
