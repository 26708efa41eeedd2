"""The reference ops against their torch.nn.functional twins: outputs, gradients, errors.

Every comparison runs in float64 and checks the output and the gradients of input, weight
and bias for a random upstream gradient ``g`` (the loss is ``(out * g).sum()``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from torch.overrides import TorchFunctionMode

import transferkit.reference.conv as conv_module
from transferkit import reference as R
from transferkit.reference import ReferenceArgumentError

F64 = torch.float64
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TORCH_ERRORS = (RuntimeError, ValueError, TypeError, IndexError)
# torch warns that 'same' padding with an even kernel copies the input; it is what we test.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=F64)


def check_against_torch(
    ours: Callable[..., torch.Tensor],
    theirs: Callable[..., torch.Tensor],
    tensors: Sequence[torch.Tensor | None],
    **kwargs: object,
) -> torch.Tensor:
    """Compare output and the gradient of every tensor argument; return torch's output."""
    mine = [None if t is None else t.detach().clone().requires_grad_() for t in tensors]
    ref = [None if t is None else t.detach().clone().requires_grad_() for t in tensors]
    out, expected = ours(*mine, **kwargs), theirs(*ref, **kwargs)
    torch.testing.assert_close(out, expected)
    g = torch.randn_like(expected)
    leaves = [(i, a, b) for i, (a, b) in enumerate(zip(mine, ref)) if a is not None]
    grads = torch.autograd.grad((out * g).sum(), [a for _, a, _ in leaves], allow_unused=True)
    expected_grads = torch.autograd.grad(
        (expected * g).sum(), [b for _, _, b in leaves], allow_unused=True
    )
    for (i, _, _), got, want in zip(leaves, grads, expected_grads):
        torch.testing.assert_close(got, want, msg=lambda m, i=i: f"gradient of argument {i}: {m}")
    return expected


@pytest.fixture(params=["conv2d_im2col", "conv2d_shifted", "conv2d_loops"])
def conv_impl(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., torch.Tensor]:
    """Each form of the convolution, and each path of the vectorised conv2d.

    "shifted" makes conv2d take the shifted-matmul path wherever it applies (stride 1, one
    group; other cases still use the patch matrix), "im2col" never.
    """
    if request.param == "conv2d_loops":
        return R.conv2d_loops
    threshold = 0 if request.param == "conv2d_shifted" else float("inf")
    monkeypatch.setattr(conv_module, "_SHIFTED_MIN_ELEMENTS", threshold)
    return R.conv2d


def _pair_arg(draw: st.DrawFn, low: int, high: int) -> int | tuple[int, int]:
    """An int or an (h, w) tuple, both forms drawn."""
    if draw(st.booleans()):
        return draw(st.integers(low, high))
    return (draw(st.integers(low, high)), draw(st.integers(low, high)))


def _hw(arg: int | tuple[int, int]) -> tuple[int, int]:
    return (arg, arg) if isinstance(arg, int) else arg


@st.composite
def conv_cases(draw: st.DrawFn) -> dict:
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = _pair_arg(draw, 1, 3)
    padding = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    stride = 1 if padding == "same" else _pair_arg(draw, 1, 3)
    if padding in ("int", "tuple"):
        padding = (
            _pair_arg(draw, 0, 3)
            if padding == "int"
            else (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
        )
    pads = (0, 0) if padding == "valid" else (None, None) if padding == "same" else _hw(padding)
    sizes = []
    for k, d, p in zip(kernel, _hw(dilation), pads):
        reach = d * (k - 1) + 1
        smallest = 1 if p is None else max(1, reach - 2 * p)
        sizes.append(draw(st.integers(smallest, smallest + 5)))
    return dict(
        batch=draw(st.sampled_from([None, 1, 2])),
        c_in=c_in,
        c_out=c_out,
        groups=groups,
        kernel=kernel,
        size=tuple(sizes),
        stride=stride,
        padding=padding,
        dilation=dilation,
        bias=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


def _conv_tensors(case: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(case["seed"])
    lead = () if case["batch"] is None else (case["batch"],)
    x = _randn(gen, *lead, case["c_in"], *case["size"])
    w = _randn(gen, case["c_out"], case["c_in"] // case["groups"], *case["kernel"])
    b = _randn(gen, case["c_out"]) if case["bias"] else None
    return x, w, b


@SETTINGS
@given(case=conv_cases())
def test_conv2d_matches_torch(conv_impl: Callable[..., torch.Tensor], case: dict) -> None:
    x, w, b = _conv_tensors(case)
    args = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    check_against_torch(conv_impl, F.conv2d, [x, w, b], **args)


@pytest.mark.parametrize(
    "name, x_shape, w_shape, kwargs",
    [
        ("depthwise", (2, 4, 7, 6), (8, 1, 3, 3), dict(groups=4, padding=1)),
        ("depthwise_strided", (1, 3, 9, 9), (3, 1, 3, 3), dict(groups=3, stride=2)),
        ("one_by_one", (2, 5, 4, 6), (7, 5, 1, 1), {}),
        ("stride_larger_than_kernel", (2, 3, 11, 10), (4, 3, 2, 2), dict(stride=3)),
        ("dilation_with_padding", (1, 2, 8, 9), (3, 2, 3, 3), dict(dilation=2, padding=2)),
        ("same_even_kernel", (2, 3, 6, 5), (4, 3, 4, 2), dict(padding="same", dilation=(1, 3))),
        (
            "asymmetric",
            (1, 2, 9, 7),
            (2, 1, 3, 2),
            dict(stride=(2, 1), padding=(0, 2), dilation=(1, 2), groups=2),
        ),
        ("unbatched", (3, 7, 7), (2, 3, 3, 3), dict(padding="valid")),
    ],
)
def test_conv2d_pinned_examples(conv_impl, name, x_shape, w_shape, kwargs) -> None:
    gen = torch.Generator().manual_seed(1)
    x, w, b = _randn(gen, *x_shape), _randn(gen, *w_shape), _randn(gen, w_shape[0])
    check_against_torch(conv_impl, F.conv2d, [x, w, b], **kwargs)


def test_conv2d_chooses_the_shifted_path_for_large_stride_1_layers() -> None:
    def path(x_shape: tuple[int, ...], w_shape: tuple[int, ...], **kwargs: object) -> bool:
        x, w = torch.empty(x_shape), torch.empty(w_shape)
        geo = conv_module.conv2d_geometry(
            "conv2d", x, w, None, kwargs.get("stride", 1), 1, 1, kwargs.get("groups", 1)
        )
        image = torch.empty(x_shape[0], x_shape[2] + 2, x_shape[3] + 2, x_shape[1])
        return conv_module._use_shifted_matmuls(image, geo, kwargs.get("groups", 1))

    assert path((8, 64, 112, 112), (64, 64, 3, 3))  # VGG16's second layer
    assert not path((8, 3, 112, 112), (64, 3, 3, 3))  # small patch matrix
    assert not path((8, 64, 112, 112), (64, 64, 3, 3), stride=2)
    assert not path((8, 64, 112, 112), (64, 32, 3, 3), groups=2)


def test_conv2d_channels_last_and_empty_batch_inputs() -> None:
    x = torch.randn(2, 4, 6, 6, dtype=F64).to(memory_format=torch.channels_last)
    w = torch.randn(5, 4, 3, 3, dtype=F64)
    torch.testing.assert_close(R.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1))
    assert R.conv2d(x[:0], w).shape == F.conv2d(x[:0], w).shape == (0, 5, 4, 4)
    assert R.conv2d_loops(x[:0], w).shape == (0, 5, 4, 4)


@st.composite
def pool_cases(draw: st.DrawFn, dilation: bool) -> dict:
    kernel = _pair_arg(draw, 1, 4)
    padding = tuple(draw(st.integers(0, k // 2)) for k in _hw(kernel))
    dil = _pair_arg(draw, 1, 3) if dilation else 1
    sizes = []
    for k, d, p in zip(_hw(kernel), _hw(dil), padding):
        smallest = max(1, d * (k - 1) + 1 - 2 * p)
        sizes.append(draw(st.integers(smallest, smallest + 6)))
    case = dict(
        batch=draw(st.sampled_from([None, 1, 2])),
        channels=draw(st.integers(1, 3)),
        size=tuple(sizes),
        kernel_size=kernel,
        stride=draw(
            st.one_of(st.none(), st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4)))
        ),
        padding=draw(
            st.sampled_from([padding, padding[0] if padding[0] == padding[1] else padding])
        ),
        ceil_mode=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )
    if dilation:
        case["dilation"] = dil
    return case


def _pool_input(case: dict) -> torch.Tensor:
    gen = torch.Generator().manual_seed(case.pop("seed"))
    lead = () if case.pop("batch") is None else (2,)
    return _randn(gen, *lead, case.pop("channels"), *case.pop("size"))


@SETTINGS
@given(case=pool_cases(dilation=True))
def test_max_pool2d_matches_torch_with_indices(case: dict) -> None:
    x = _pool_input(case)
    # A dilated window can fall wholly in the padding: torch gives -inf there, with an index
    # outside the input (see test_max_pool2d_window_wholly_in_padding); leave those out here.
    assume(bool(F.max_pool2d(x, **case).isfinite().all()))
    check_against_torch(R.max_pool2d, F.max_pool2d, [x], **case)
    values, indices = R.max_pool2d(x, return_indices=True, **case)
    expected_values, expected_indices = F.max_pool2d(x, return_indices=True, **case)
    torch.testing.assert_close(values, expected_values)
    assert torch.equal(indices, expected_indices)  # random float64: no ties
    with torch.no_grad():  # the no-grad path (amax) gives the same values
        torch.testing.assert_close(R.max_pool2d(x, **case), expected_values)


@SETTINGS
@given(
    case=pool_cases(dilation=False),
    count_include_pad=st.booleans(),
    divisor_override=st.sampled_from([None, None, 1, 3, -2]),
)
def test_avg_pool2d_matches_torch(
    case: dict, count_include_pad: bool, divisor_override: int | None
) -> None:
    x = _pool_input(case)
    check_against_torch(
        R.avg_pool2d,
        F.avg_pool2d,
        [x],
        count_include_pad=count_include_pad,
        divisor_override=divisor_override,
        **case,
    )


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_pooling_window_over_the_edge_with_ceil_mode(count_include_pad: bool) -> None:
    # Height 6, kernel 3, stride 2, padding 1, ceil_mode: the 4th window covers rows 5, 6
    # (padding) and 7, one row past the padded input.
    x = torch.randn(1, 2, 6, 5, dtype=F64)
    kwargs = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    assert R.max_pool2d(x, **kwargs).shape == F.max_pool2d(x, **kwargs).shape == (1, 2, 4, 3)
    check_against_torch(R.max_pool2d, F.max_pool2d, [x], **kwargs)
    check_against_torch(
        R.avg_pool2d, F.avg_pool2d, [x], count_include_pad=count_include_pad, **kwargs
    )
    kwargs = dict(kernel_size=3, stride=2, ceil_mode=True)  # no padding, window past the end
    check_against_torch(R.max_pool2d, F.max_pool2d, [x], **kwargs)
    check_against_torch(
        R.avg_pool2d, F.avg_pool2d, [x], count_include_pad=count_include_pad, **kwargs
    )


def test_max_pool2d_sends_tied_gradients_to_the_first_maximum_like_torch() -> None:
    x = torch.zeros(1, 1, 4, 4, dtype=F64)  # every window is a tie, as after a ReLU
    check_against_torch(R.max_pool2d, F.max_pool2d, [x], kernel_size=2)
    check_against_torch(R.max_pool2d, F.max_pool2d, [x], kernel_size=3, stride=1, padding=1)


def test_max_pool2d_window_wholly_in_padding() -> None:
    # Width 2, padding 1, kernel 2, dilation 3: the only window reads columns -1 and 2, both
    # padding. The output is -inf, as in torch; torch's index (2) lies outside the 2-cell row.
    x = torch.randn(1, 2, 1, 2, dtype=F64)
    kwargs = dict(kernel_size=(1, 2), padding=(0, 1), dilation=3)
    torch.testing.assert_close(R.max_pool2d(x, **kwargs), F.max_pool2d(x, **kwargs))
    assert R.max_pool2d(x, **kwargs).isneginf().all()


def test_integer_pooling_matches_torch() -> None:
    x = torch.randint(-50, 50, (2, 3, 7, 7))
    assert torch.equal(R.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1))
    assert torch.equal(
        R.avg_pool2d(x, 3, 2, 1, ceil_mode=True), F.avg_pool2d(x, 3, 2, 1, ceil_mode=True)
    )


@SETTINGS
@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=3),
    in_features=st.integers(1, 5),
    out_features=st.integers(1, 5),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_linear_matches_torch(
    lead: list[int], in_features: int, out_features: int, bias: bool, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    x, w = _randn(gen, *lead, in_features), _randn(gen, out_features, in_features)
    check_against_torch(R.linear, F.linear, [x, w, _randn(gen, out_features) if bias else None])


def test_linear_with_a_vector_weight_matches_torch() -> None:
    x, w = torch.randn(3, 4, dtype=F64), torch.randn(4, dtype=F64)
    check_against_torch(R.linear, F.linear, [x, w])


GRADCHECK_CASES = {
    "conv2d": (
        R.conv2d,
        [(1, 4, 5, 5), (6, 2, 3, 3), (6,)],
        dict(stride=2, padding=1, dilation=(1, 2), groups=2),
    ),
    "conv2d_shifted": (
        R.conv2d,
        [(2, 3, 5, 4), (2, 3, 2, 3), (2,)],
        dict(padding=1, dilation=(2, 1)),
    ),
    "conv2d_loops": (
        R.conv2d_loops,
        [(1, 4, 5, 5), (6, 2, 3, 3), (6,)],
        dict(padding="same", groups=2),
    ),
    "max_pool2d": (
        R.max_pool2d,
        [(1, 2, 5, 5)],
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    ),
    "avg_pool2d": (
        R.avg_pool2d,
        [(1, 2, 5, 5)],
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    ),
    "linear": (R.linear, [(3, 4), (2, 4), (2,)], {}),
}


@pytest.mark.parametrize("name", GRADCHECK_CASES)
def test_gradcheck(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    op, shapes, kwargs = GRADCHECK_CASES[name]
    if name == "conv2d_shifted":
        monkeypatch.setattr(conv_module, "_SHIFTED_MIN_ELEMENTS", 0)
    tensors = tuple(torch.randn(*shape, dtype=F64, requires_grad=True) for shape in shapes)
    assert torch.autograd.gradcheck(lambda *t: op(*t, **kwargs), tensors)


class _RecordCalls(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.names.add(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


def test_reference_ops_never_call_the_op_they_reimplement() -> None:
    x, w = torch.randn(1, 2, 6, 6, requires_grad=True), torch.randn(2, 2, 3, 3, requires_grad=True)
    with _RecordCalls() as calls:
        R.conv2d(x, w, padding=1).sum().backward()
        R.conv2d_loops(x, w, padding=1).sum().backward()
        R.max_pool2d(x, 2, return_indices=True)[0].sum().backward()
        R.avg_pool2d(x, 3, 1, 1).sum().backward()
        R.linear(x, torch.randn(3, 6)).sum().backward()
    forbidden = {
        "conv2d",
        "convolution",
        "_convolution",
        "conv_transpose2d",
        "max_pool2d",
        "max_pool2d_with_indices",
        "avg_pool2d",
        "linear",
        "addmm_linear",
    }
    assert calls.names, "the recorder saw no torch calls"
    assert not calls.names & forbidden


# --- invalid arguments: where torch raises, the reference raises ReferenceArgumentError ---


def _verdict(fn: Callable[[], object]) -> tuple[bool, object]:
    try:
        return True, fn()
    except TORCH_ERRORS as error:
        return False, error


def _same_verdict(ours: Callable[[], object], theirs: Callable[[], object]) -> None:
    torch_ok, expected = _verdict(theirs)
    event("torch accepts" if torch_ok else "torch raises")
    if not torch_ok:
        with pytest.raises(ReferenceArgumentError):
            ours()
        return
    torch.testing.assert_close(ours(), expected)


def _mostly(valid: st.SearchStrategy, invalid: st.SearchStrategy) -> st.SearchStrategy:
    """Valid values about seven times in eight, so that a case often has one bad argument."""
    return st.sampled_from([valid] * 7 + [invalid]).flatmap(lambda strategy: strategy)


@st.composite
def maybe_invalid_conv_args(draw: st.DrawFn) -> tuple:
    groups = draw(_mostly(st.integers(1, 3), st.integers(-1, 0)))
    g = max(groups, 1)
    c_per_group = draw(st.integers(1, 2))
    c_in = max(1, g * c_per_group + draw(_mostly(st.just(0), st.sampled_from([-1, 1]))))
    c_out = max(1, g * draw(st.integers(1, 2)) + draw(_mostly(st.just(0), st.just(1))))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(_mostly(st.integers(1, 3), st.sampled_from([0, -1, (1, 0), (1, 1, 1)])))
    dilation = draw(_mostly(st.integers(1, 2), st.sampled_from([0, -1, (0, 1)])))
    padding = draw(
        _mostly(st.integers(0, 2), st.sampled_from([-1, (0, -1), "same", "valid", "full"]))
    )
    p = padding if isinstance(padding, int) else 0
    d = dilation if isinstance(dilation, int) else 1
    size = [max(1, abs(d) * (k - 1) + 1 - 2 * abs(p) + draw(st.integers(-2, 3))) for k in kernel]
    x = torch.randn(1, c_in, *size, dtype=F64)
    w = torch.randn(c_out, c_per_group, *kernel, dtype=F64)
    bias = draw(st.sampled_from([None, c_out, c_out, c_out + 1]))
    b = None if bias is None else torch.randn(bias, dtype=F64)
    return x, w, b, stride, padding, dilation, groups


@settings(max_examples=150, deadline=None)
@given(args=maybe_invalid_conv_args())
def test_conv2d_raises_where_torch_raises(args: tuple) -> None:
    for op in (R.conv2d, R.conv2d_loops):
        _same_verdict(lambda op=op: op(*args), lambda: F.conv2d(*args))


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_pooling_raises_where_torch_raises(data: st.DataObject) -> None:
    draw = data.draw
    kernel = draw(
        _mostly(
            st.tuples(st.integers(1, 3), st.integers(1, 3)),
            st.sampled_from([0, (2, 0), -1, (2, 2, 2)]),
        )
    )
    k = kernel if isinstance(kernel, tuple) and len(kernel) == 2 else (2, 2)
    stride = draw(
        _mostly(st.one_of(st.none(), st.integers(1, 3)), st.sampled_from([0, -1, (1, 0)]))
    )
    padding = draw(
        _mostly(
            st.tuples(*(st.integers(0, max(0, v) // 2) for v in k)),
            st.sampled_from([-1, 1, 2, (0, 2)]),
        )
    )
    dilation = draw(_mostly(st.integers(1, 2), st.sampled_from([0, -1])))
    channels = draw(_mostly(st.integers(1, 2), st.just(0)))
    size = [max(1, max(dilation, 1) * (v - 1) + 1 + draw(st.integers(-3, 3))) for v in k]
    x = torch.randn(2, channels, *size, dtype=F64)
    ceil_mode = draw(st.booleans())
    _same_verdict(
        lambda: R.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode),
        lambda: F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode),
    )
    _same_verdict(
        lambda: R.avg_pool2d(x, kernel, stride, padding, ceil_mode),
        lambda: F.avg_pool2d(x, kernel, stride, padding, ceil_mode),
    )


@settings(max_examples=60, deadline=None)
@given(
    x_shape=st.lists(st.integers(2, 3), min_size=0, max_size=3),
    w_shape=st.lists(st.integers(2, 3), min_size=1, max_size=3),
    b_shape=st.one_of(st.none(), st.lists(st.integers(1, 3), min_size=0, max_size=1)),
)
def test_linear_raises_where_torch_raises(x_shape, w_shape, b_shape) -> None:
    # The reference refuses 2-D biases, and a bias with a 1-D weight, which torch takes only
    # for some input ranks; those are left out.
    x, w = torch.randn(tuple(x_shape), dtype=F64), torch.randn(tuple(w_shape), dtype=F64)
    b = None if b_shape is None or w.dim() == 1 else torch.randn(tuple(b_shape), dtype=F64)
    _same_verdict(lambda: R.linear(x, w, b), lambda: F.linear(x, w, b))


X, W = torch.randn(2, 4, 6, 6), torch.randn(6, 2, 3, 3)


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda: R.conv2d(torch.randn(2, 5, 6, 6), torch.randn(6, 3, 3, 3), groups=2),
            r"conv2d: input has 5 channels but the weight expects 6 \(3 per group x groups=2\)\.",
        ),
        (
            lambda: R.conv2d(X, torch.randn(5, 2, 3, 3), groups=2),
            r"5 output channels .* divisible by groups=2",
        ),
        (lambda: R.conv2d(X, W, groups=0), r"groups must be an int >= 1, got 0"),
        (
            lambda: R.conv2d(X, W, stride=0, groups=2),
            r"stride must be >= 1 in each dimension, got \(0, 0\)",
        ),
        (
            lambda: R.conv2d(X, W, padding=(-1, 0), groups=2),
            r"padding must be >= 0 in each dimension, got \(-1, 0\)",
        ),
        (
            lambda: R.conv2d_loops(X, W, dilation=0, groups=2),
            r"conv2d_loops: dilation must be >= 1",
        ),
        (
            lambda: R.conv2d(X, W, stride=2, padding="same", groups=2),
            r"padding='same' needs stride 1",
        ),
        (
            lambda: R.conv2d(X, W, padding="full", groups=2),
            r"padding string must be 'same' or 'valid', got 'full'",
        ),
        (
            lambda: R.conv2d(X, W, dilation=3, groups=2),
            r"dilated kernel \(7 x 7\) is larger than the padded input \(6 x 6\)",
        ),
        (
            lambda: R.conv2d(X, W, stride=(1, 1, 1), groups=2),
            r"stride must be an int or a sequence of 1 or 2 ints",
        ),
        (
            lambda: R.conv2d(X[None], W, groups=2),
            r"input must be 3-D \(C, H, W\) or 4-D \(N, C, H, W\), got shape \(1, 2, 4, 6, 6\)",
        ),
        (lambda: R.conv2d(X, W[0], groups=2), r"weight must be 4-D"),
        (
            lambda: R.conv2d(X, W, torch.randn(5), groups=2),
            r"bias must be 1-D .* \(6,\), got shape \(5,\)",
        ),
        (
            lambda: R.conv2d(X, W.double(), groups=2),
            r"input, weight must share one dtype, got input float32, weight float64",
        ),
        (
            lambda: R.max_pool2d(X, 3, padding=2),
            r"max_pool2d: padding \(2, 2\) is more than half the kernel size \(3, 3\)",
        ),
        (lambda: R.avg_pool2d(X, 7), r"avg_pool2d: the output would be empty \(0 x 0\)"),
        (lambda: R.max_pool2d(X, 0), r"kernel_size must be >= 1"),
        (
            lambda: R.max_pool2d(X[:, :0], 2),
            r"input must have non-zero C, H and W \(only N may be 0\)",
        ),
        (
            lambda: R.avg_pool2d(X, 2, divisor_override=0),
            r"divisor_override must be a non-zero int or None, got 0",
        ),
        (
            lambda: R.linear(torch.randn(3, 4), torch.randn(5, 3)),
            r"linear: input has 4 features .* expects 3",
        ),
        (
            lambda: R.linear(torch.randn(3, 4), torch.randn(5, 4), torch.randn(4)),
            r"bias must have shape \(out_features,\) = \(5,\) or hold a single value, got shape \(4,\)",
        ),
        (
            lambda: R.linear(torch.randn(3, 4), torch.randn(5, 4), torch.randn(3, 5)),
            r"got shape \(3, 5\)",
        ),
        (
            lambda: R.linear(torch.tensor(1.0), torch.randn(5, 1)),
            r"input must have at least 1 dimension",
        ),
        (
            lambda: R.linear(torch.randn(3, 4), torch.randn(4), torch.randn(1)),
            r"weight must be 2-D",
        ),
    ],
)
def test_error_messages(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ReferenceArgumentError, match=message):
        call()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: R.conv2d(X.tolist(), W), r"conv2d: input must be a torch.Tensor, got list"),
        (
            lambda: R.conv2d(X, W, stride=1.5, groups=2),
            r"stride must be an int or a tuple of two ints, got float",
        ),
        (lambda: R.conv2d(X, W, groups=2.0), r"groups must be an int, got float"),
        (lambda: R.max_pool2d(X, (2, 2.0)), r"kernel_size must hold ints"),
        (
            lambda: R.avg_pool2d(X, 2, divisor_override=2.0),
            r"divisor_override must be an int or None",
        ),
    ],
)
def test_wrong_types_raise_type_error(call: Callable[[], object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        call()


def test_reference_argument_error_is_a_value_error() -> None:
    assert issubclass(ReferenceArgumentError, ValueError)


def test_docstring_examples_run() -> None:
    import doctest
    import importlib

    for name in ("", ".conv", ".pool", ".linear", ".modules", "._validation"):
        module = importlib.import_module(
            "transferkit.reference" + name
        )  # .linear is also a function
        failed, _ = doctest.testmod(module, extraglobs={"torch": torch, "nn": torch.nn})
        assert failed == 0, module.__name__


def test_smoke_benchmark_runs_and_gives_a_ratio_per_op() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "reference_ops.py"
    spec = importlib.util.spec_from_file_location("reference_ops_benchmark", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    assert set(benchmark.OPS) == {"conv2d", "conv2d_loops", "max_pool2d", "avg_pool2d", "linear"}
    ops = ["conv2d", "conv2d_loops", "max_pool2d", "avg_pool2d"]  # linear: 400 MB of weights
    ratios = benchmark.run(repeats=1, batch=1, size=32, ops=ops)
    assert list(ratios) == ops and all(r > 0 for r in ratios.values())
    with pytest.raises(ValueError, match=r"unknown ops \['conv3d'\]"):
        benchmark.run(ops=["conv3d"])
