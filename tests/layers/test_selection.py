import pytest
import torch
from torch import nn

from robustlayers.layers import Selection, SelectionError, layer_map, select
from robustlayers.models import create_model

from .toys import Shuffled


@pytest.fixture(scope="module")
def resnet():
    return create_model("resnet18", num_classes=10)


def names(model, expr, **kw):
    return list(select(model, expr, **kw).names)


def test_exact_names_and_globs(resnet):
    assert names(resnet, "layer2.0.conv1") == ["layer2.0.conv1"]
    assert names(resnet, "layer3.*.conv*") == [
        "layer3.0.conv1", "layer3.0.conv2", "layer3.1.conv1", "layer3.1.conv2"]
    assert names(resnet, "conv1,linear") == ["conv1", "linear"]


def test_container_name_means_its_layers(resnet):
    chosen = names(resnet, "layer2.0")
    assert chosen == ["layer2.0.conv1", "layer2.0.bn1", "layer2.0.conv2", "layer2.0.bn2",
                      "layer2.0.shortcut.0", "layer2.0.shortcut.1"]


def test_kind_and_block(resnet):
    assert len(names(resnet, "kind:conv")) == 20
    assert len(names(resnet, "kind:conv,linear")) == 21
    chosen = names(resnet, "block:3,4")
    assert chosen[0] == "layer3.0.conv1" and chosen[-1] == "layer4.1.bn2"
    assert len(chosen) == 2 * 10  # per stage: 2 blocks x 4 layers + shortcut conv/bn
    assert names(resnet, "block:stem,head") == ["conv1", "bn1", "linear"]


def test_positions(resnet):
    lmap = layer_map(resnet)
    cut = lmap["layer2.0.conv1"].index
    assert names(resnet, "before:layer2.0.conv1") == list(lmap.names[:cut])
    assert names(resnet, "until:layer2.0.conv1") == list(lmap.names[:cut + 1])
    assert names(resnet, "from:layer2.0.conv1") == list(lmap.names[cut:])
    assert names(resnet, "after:layer2.0.conv1") == list(lmap.names[cut + 1:])


def test_index_forms(resnet):
    lmap = layer_map(resnet)
    assert names(resnet, "index:0") == ["conv1"]
    assert names(resnet, "index:-1") == ["linear"]
    assert names(resnet, "index:2:5") == list(lmap.names[2:5])
    assert names(resnet, "index:-3:") == list(lmap.names[-3:])
    assert names(resnet, "index:0,40") == ["conv1", "linear"]


def test_set_algebra_and_execution_order(resnet):
    assert names(resnet, "linear | conv1") == ["conv1", "linear"]  # order is execution order
    assert names(resnet, "linear + conv1") == ["conv1", "linear"]
    assert names(resnet, "kind:conv & block:1") == [
        "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2"]
    assert len(names(resnet, "all - kind:bn")) == 21
    assert names(resnet, "(kind:bn | kind:linear) & block:head") == ["linear"]
    assert names(resnet, "all - (kind:bn | kind:conv)") == ["linear"]


def test_python_api_matches_text(resnet):
    sel = (Selection.kind("conv") | Selection.names("linear")) - Selection.block(1)
    assert str(sel) == "kind:conv | linear - block:1"
    assert names(resnet, sel) == names(resnet, str(sel))
    assert Selection.parse(str(sel)) == sel


def test_predicate(resnet):
    big = Selection.where(lambda info: info.params > 500_000, "big")
    assert str(big) == "where:big"
    assert all(info.params > 500_000 for info in select(resnet, big).layers)
    with pytest.raises(SelectionError, match="Python"):
        Selection.parse("where:big")


def test_list_of_names(resnet):
    assert names(resnet, ["linear", "conv1"]) == ["conv1", "linear"]


@pytest.mark.parametrize("text", [
    "(kind:bn | kind:linear) & index:1:", "a - (b | c)", "a - b - c", "(a | b) & c", "all"])
def test_text_round_trip(text):
    assert str(Selection.parse(str(Selection.parse(text)))) == str(Selection.parse(text))


@pytest.mark.parametrize("expr, message", [
    ("layer2.0.conv3", "closest: .*layer2.0.conv2"),
    ("layer9.*", "matches no layer"),
    ("module.layer3.0.conv1", "DataParallel"),
    ("kind:cnv", "layer kinds are: bn, conv, linear"),
    ("block:7", "blocks are: stem, layer1, layer2, layer3, layer4, head"),
    ("before:layer2.0.conv9", "closest layers: .*layer2.0.conv1"),
    ("index:41", "out of range"),
    ("index:x", "not an integer"),
    ("foo:3", "valid prefixes"),
    ("kind:", "needs a value"),
    ("kind:conv -block:1", "spaces around the minus"),
    ("(kind:conv", "missing ')'"),
    ("kind:conv |", "ends where a term"),
    ("kind:bn - kind:bn", "resolved to no layers"),
    ("", "empty selection"),
    ("before:a,b", "takes one layer name"),
])
def test_errors_name_the_problem(resnet, expr, message):
    with pytest.raises(SelectionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        select(resnet, expr)


def test_selection_error_is_a_value_error():
    assert issubclass(SelectionError, ValueError)


def test_allow_empty_for_a_cut_before_the_first_layer(resnet):
    assert names(resnet, "before:conv1", allow_empty=True) == []
    with pytest.raises(SelectionError):
        select(resnet, "before:conv1")


def test_selection_on_any_module():
    model = Shuffled()
    assert names(model, "block:1") == ["body.0", "body.1", "skip"]
    assert names(model, "kind:linear - unused") == ["fc"]
    plain = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    assert names(plain, "kind:linear", input_shape=(2,)) == ["0", "2"]
    assert names(plain, "block:2") == ["2"]  # a digit block name is taken literally first


def test_resolved_selection_record(resnet):
    chosen = select(resnet, "block:head")
    assert chosen.to_dict() == {"expression": "block:head", "names": ["linear"]}
    assert isinstance(chosen.modules(resnet)["linear"], torch.nn.Linear)
    assert "linear" in chosen and len(chosen) == 1


def test_depth_limits_keep_parsing_out_of_recursion_errors(resnet):
    from robustlayers.layers._syntax import MAX_DEPTH, MAX_NESTING

    chain = " | ".join(["conv1"] * MAX_DEPTH)  # MAX_DEPTH terms: MAX_DEPTH levels, accepted
    assert names(resnet, chain) == ["conv1"]
    with pytest.raises(SelectionError, match=f"{MAX_DEPTH + 1} levels, at most {MAX_DEPTH}"):
        select(resnet, chain + " | conv1")
    nested = "(" * MAX_NESTING + "conv1" + ")" * MAX_NESTING
    assert str(Selection.parse(nested)) == "conv1"
    with pytest.raises(SelectionError, match=f"more than {MAX_NESTING} deep"):
        Selection.parse("(" + nested + ")")
    with pytest.raises(SelectionError, match=r"\(1000007 characters\)"):  # message stays short
        Selection.parse("(" * 1_000_000 + "conv1" + ")" * 2)
    built = Selection.names("conv1")
    for _ in range(MAX_DEPTH - 1):
        built = built | Selection.names("linear")
    assert names(resnet, built) == ["conv1", "linear"]
    with pytest.raises(SelectionError, match="too deep"):
        built | Selection.names("linear")


@pytest.mark.parametrize("expr, message", [
    ("", "empty selection ''"), ("  \t", "empty selection"), (5, "got the int 5"),
    (None, "got the NoneType None"), (b"conv1", "got the bytes"), ([], "got the list \\[\\]"),
    ([1, 2], "got the list"), (["conv1", ""], "got the list"),
])
def test_non_selections_are_selection_errors(resnet, expr, message):
    with pytest.raises(SelectionError, match=message):
        select(resnet, expr)


def test_a_model_name_is_not_a_model():
    with pytest.raises(SelectionError, match="got the str 'smallcnn'; build the model first"):
        select("smallcnn", "all")
    with pytest.raises(SelectionError, match="must be non-empty strings"):
        Selection.names("conv1", 3)
