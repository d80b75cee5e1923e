"""Small random ONNX conv/residual models (onnx.helper only) used as graph-importer test inputs.

Every builder takes a ``numpy.random.Generator`` and returns an ``onnx.ModelProto`` with one
float32 input (batch dim 1) and one float32 output ``[1, n_out]``; opset 13, IR version 8.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 8


class _G:
    """Incremental graph: nodes + initializers, fresh names, shape look-up by shape inference."""

    def __init__(self, rng: np.random.Generator, in_shape):
        self.rng = rng
        self.in_shape = [1, *map(int, in_shape)]
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0
        self.x = "input"

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, arr, base: str = "c") -> str:
        nm = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), nm))
        return nm

    def weight(self, shape, fan_in: int) -> str:
        w = self.rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=shape).astype(np.float32)
        return self.const(w, "W")

    def bias(self, n: int) -> str:
        return self.const(self.rng.uniform(-0.5, 0.5, size=n).astype(np.float32), "B")

    def op(self, op_type: str, inputs, n_out: int = 1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.name("n_" + op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def _model(self, out: str, out_shape) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "g",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, self.in_shape)],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
            initializer=self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="dpllnn-tests")
        m.ir_version = IR_VERSION
        return m

    def shape(self, t: str) -> list[int]:
        if t == "input":
            return list(self.in_shape)
        inf = onnx.shape_inference.infer_shapes(self._model(t, None), strict_mode=True)
        for vi in list(inf.graph.output) + list(inf.graph.value_info):
            if vi.name == t:
                dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
                assert dims and all(d > 0 for d in dims), (t, dims)
                return dims
        raise KeyError(t)

    def finish(self, out: str) -> onnx.ModelProto:
        return self._model(out, self.shape(out))

    # ---- layers -------------------------------------------------------------------------
    def relu(self, x: str) -> str:
        return self.op("Relu", [x])

    def conv(self, x: str, cout: int, kernel=3, stride=1, pads=None, dilation=1, groups=1,
             auto_pad=None, bias=True) -> str:
        cin = self.shape(x)[1]
        nd = len(self.shape(x)) - 2
        ks = [kernel] * nd if isinstance(kernel, int) else list(kernel)
        attrs = dict(kernel_shape=ks, strides=[stride] * nd, dilations=[dilation] * nd, group=groups)
        if auto_pad is not None:
            attrs["auto_pad"] = auto_pad
        elif pads is not None:
            attrs["pads"] = list(pads)
        w = self.weight([cout, cin // groups, *ks], cin // groups * int(np.prod(ks)))
        ins = [x, w] + ([self.bias(cout)] if bias else [])
        return self.op("Conv", ins, **attrs)

    def flatten(self, x: str) -> str:
        return self.op("Flatten", [x], axis=1)

    def gemm(self, x: str, n_out: int) -> str:
        f = self.shape(x)[1]
        return self.op("Gemm", [x, self.weight([n_out, f], f), self.bias(n_out)], transB=1)

    def head(self, x: str, n_out: int) -> onnx.ModelProto:
        """Flatten + Gemm to n_out, then finish."""
        return self.finish(self.gemm(self.flatten(x), n_out))

    def bn(self, x: str, eps: float = 1e-3) -> str:
        c, r = self.shape(x)[1], self.rng
        scale = (r.uniform(0.5, 1.5, c) * r.choice([-1.0, 1.0], c)).astype(np.float32)
        ins = [x, self.const(scale, "bn_scale"),
               self.const(r.uniform(-0.5, 0.5, c).astype(np.float32), "bn_bias"),
               self.const(r.normal(0.0, 0.3, c).astype(np.float32), "bn_mean"),
               self.const(r.uniform(0.5, 2.0, c).astype(np.float32), "bn_var")]
        return self.op("BatchNormalization", ins, epsilon=eps, momentum=0.9)


# ---- builders ---------------------------------------------------------------------------------

def conv_net(rng, *, in_shape=(1, 6, 6), channels=(3, 4), kernel=3, stride=1, pads=(1, 1, 1, 1),
             dilation=1, groups=1, auto_pad=None, bias=True, n_out=3) -> onnx.ModelProto:
    """[1,C,H,W] -> (Conv+Relu) per entry of channels -> Flatten -> Gemm -> [1,n_out]."""
    g = _G(rng, in_shape)
    x = g.x
    for c in channels:
        x = g.relu(g.conv(x, c, kernel, stride, pads, dilation, groups, auto_pad, bias))
    return g.head(x, n_out)


def conv1d_net(rng, *, in_shape=(2, 8), channels=(3,), kernel=3, stride=1, pads=(1, 1), dilation=1,
               n_out=3) -> onnx.ModelProto:
    """[1,C,L] -> (1-D Conv+Relu)* -> Flatten -> Gemm -> [1,n_out]."""
    g = _G(rng, in_shape)
    x = g.x
    for c in channels:
        x = g.relu(g.conv(x, c, kernel, stride, pads, dilation))
    return g.head(x, n_out)


def bn_conv_net(rng, *, in_shape=(2, 5, 5), channels=(3,), where="conv", bias=True, hidden=4,
                n_out=3) -> onnx.ModelProto:
    """BatchNormalization nets on [1,C,H,W] -> [1,n_out].

    where="conv": (Conv -> BN -> Relu)*; "input": BN on the input, then Conv -> Relu;
    "gemm": Conv -> Relu -> Flatten -> Gemm(hidden) -> BN (2-D) -> Relu -> Gemm.
    """
    g = _G(rng, in_shape)
    x = g.x
    if where == "input":
        x = g.bn(x)
    for c in channels:
        x = g.conv(x, c, pads=(1, 1, 1, 1), bias=bias)
        x = g.relu(g.bn(x) if where == "conv" else x)
    if where == "gemm":
        x = g.relu(g.bn(g.gemm(g.flatten(x), hidden), eps=1e-5))
    return g.head(x, n_out)


def resnet(rng, *, in_shape=(2, 6, 6), width=3, blocks=2, downsample=False, nested=False,
           merge="add", n_out=3) -> onnx.ModelProto:
    """Residual net on [1,C,H,W] -> [1,n_out].

    Stem Conv+Relu; `blocks` blocks x -> Relu(Conv(Relu(Conv(x))) + x); downsample=True adds a
    block with stride-2 main path and 1x1 stride-2 conv skip (width doubles); nested=True adds a
    block whose skip spans an inner residual block. merge="sub" uses Sub(main, skip) instead of Add.
    """
    g = _G(rng, in_shape)
    mop = {"add": "Add", "sub": "Sub"}[merge]
    p1 = (1, 1, 1, 1)

    def block(x):
        c = g.shape(x)[1]
        h = g.conv(g.relu(g.conv(x, c, pads=p1)), c, pads=p1)
        return g.relu(g.op(mop, [h, x]))

    x = g.relu(g.conv(g.x, width, pads=p1))
    for _ in range(blocks):
        x = block(x)
    if nested:
        h = block(g.relu(g.conv(x, width, pads=p1)))
        x = g.relu(g.op(mop, [g.conv(h, width, pads=p1), x]))
    if downsample:
        w2 = 2 * g.shape(x)[1]
        h = g.conv(g.relu(g.conv(x, w2, stride=2, pads=p1)), w2, pads=p1)
        skip = g.conv(x, w2, kernel=1, stride=2, pads=(0, 0, 0, 0))
        x = g.relu(g.op(mop, [h, skip]))
    return g.head(x, n_out)


def pool_net(rng, *, kind="avg", kernel=2, stride=2, pads=(0, 0, 0, 0), count_include_pad=0,
             ceil_mode=0, explicit_pad=False, in_shape=(1, 6, 6), channels=2,
             n_out=3) -> onnx.ModelProto:
    """[1,C,H,W] -> Conv(pad 1) -> Relu -> pool -> Flatten -> Gemm -> [1,n_out].

    kind: "avg" (AveragePool), "max" (MaxPool), "global_avg" (GlobalAveragePool).
    explicit_pad=True (avg): `pads` go to a Pad node (constant 0, pads as int64 input) before an
    unpadded AveragePool, as in VNN-COMP's verivital nets.
    """
    g = _G(rng, in_shape)
    x = g.relu(g.conv(g.x, channels, pads=(1, 1, 1, 1)))
    ks = dict(kernel_shape=[kernel, kernel], strides=[stride, stride], ceil_mode=ceil_mode)
    if kind == "global_avg":
        x = g.op("GlobalAveragePool", [x])
    elif explicit_pad:
        assert kind == "avg"
        t, l, b, r = pads
        pv = g.const(np.array([0, 0, t, l, 0, 0, b, r], np.int64), "pads")
        x = g.op("Pad", [x, pv, g.const(np.array(0.0, np.float32), "pad_value")], mode="constant")
        x = g.op("AveragePool", [x], **ks)
    elif kind == "avg":
        x = g.op("AveragePool", [x], pads=list(pads), count_include_pad=count_include_pad, **ks)
    elif kind == "max":
        x = g.op("MaxPool", [x], pads=list(pads), **ks)
    else:
        raise ValueError(kind)
    return g.head(x, n_out)


def nhwc_net(rng, *, in_shape=(5, 5, 2), channels=(3,), back="transpose", n_out=3) -> onnx.ModelProto:
    """tf2onnx style: [1,H,W,C] -> Transpose(0,3,1,2) -> (Conv+Relu)* -> back -> MatMul + Add.

    back="transpose": Transpose(0,2,3,1) then Reshape [1,-1]; back="flatten": Flatten (NCHW order).
    """
    g = _G(rng, in_shape)
    x = g.op("Transpose", [g.x], perm=[0, 3, 1, 2])
    for c in channels:
        x = g.relu(g.conv(x, c, pads=(1, 1, 1, 1)))
    if back == "transpose":
        x = g.op("Transpose", [x], perm=[0, 2, 3, 1])
        x = g.op("Reshape", [x, g.const(np.array([1, -1], np.int64), "shape")])
    else:
        x = g.flatten(x)
    f = g.shape(x)[1]
    y = g.op("MatMul", [x, g.weight([f, n_out], f)])
    return g.finish(g.op("Add", [y, g.bias(n_out)]))


def normalized_net(rng, *, in_shape=(3, 5, 5), channels=3, n_out=3) -> onnx.ModelProto:
    """[1,C,H,W] -> Sub(mean[C,1,1]) -> Div(std[C,1,1]) -> Conv(pads 1) -> Relu -> Flatten -> Gemm."""
    g = _G(rng, in_shape)
    c = in_shape[0]
    mean = rng.uniform(0.2, 0.6, (c, 1, 1)).astype(np.float32)
    std = rng.uniform(0.2, 0.5, (c, 1, 1)).astype(np.float32)
    x = g.op("Div", [g.op("Sub", [g.x, g.const(mean, "mean")]), g.const(std, "std")])
    return g.head(g.relu(g.conv(x, channels, pads=(1, 1, 1, 1))), n_out)


def concat_net(rng, *, in_shape=(2, 5, 5), branches=(2, 3), n_out=3) -> onnx.ModelProto:
    """[1,C,H,W] -> Mul(Constant) -> Add -> [Conv3x3, Conv1x1] -> Concat(axis 1) -> Relu ->
    Identity -> Dropout -> Reshape[1,-1] -> Unsqueeze(1) -> Squeeze(1) -> Cast -> Div -> Gemm."""
    g = _G(rng, in_shape)
    scale = g.op("Constant", [], value=numpy_helper.from_array(
        rng.uniform(0.5, 1.5, (1,)).astype(np.float32), "scale"))
    x = g.op("Mul", [g.x, scale])
    x = g.op("Add", [x, g.const(rng.uniform(-0.3, 0.3, in_shape).astype(np.float32), "offset")])
    a = g.conv(x, branches[0], kernel=3, pads=(1, 1, 1, 1))
    b = g.conv(x, branches[1], kernel=1, pads=(0, 0, 0, 0))
    x = g.op("Identity", [g.relu(g.op("Concat", [a, b], axis=1))])
    x = g.op("Dropout", [x, g.const(np.array(0.3, np.float32), "ratio")])
    x = g.op("Reshape", [x, g.const(np.array([1, -1], np.int64), "shape")])
    axes = g.const(np.array([1], np.int64), "axes")
    x = g.op("Squeeze", [g.op("Unsqueeze", [x, axes]), axes])
    x = g.op("Cast", [x], to=TensorProto.FLOAT)
    x = g.op("Div", [x, g.const(np.array(1.25, np.float32), "div")])
    return g.finish(g.gemm(x, n_out))


def dense_chain(rng, sizes=(4, 5, 3)) -> onnx.ModelProto:
    """[1,sizes[0]] -> (Gemm+Relu)* -> Gemm -> [1,sizes[-1]]."""
    g = _G(rng, (sizes[0],))
    x = g.x
    for i, n in enumerate(sizes[1:]):
        x = g.gemm(x, n)
        if i < len(sizes) - 2:
            x = g.relu(x)
    return g.finish(x)


def all_models(rng) -> list[tuple[str, onnx.ModelProto]]:
    """(name, model) for every builder and its main variants; all small (<200 inputs, <300 ReLUs)."""
    P0 = (0, 0, 0, 0)
    specs = [
        ("conv", conv_net, {}),
        ("conv_stride2", conv_net, dict(stride=2)),
        ("conv_dilation2", conv_net, dict(dilation=2)),
        ("conv_groups2", conv_net, dict(in_shape=(2, 6, 6), channels=(4, 2), groups=2)),
        ("conv_asym_pads", conv_net, dict(pads=(0, 1, 2, 1))),
        ("conv_k1_nopad", conv_net, dict(kernel=1, pads=P0)),
        ("conv_nobias", conv_net, dict(bias=False)),
        ("conv_k2_stride2_dil2", conv_net, dict(in_shape=(1, 7, 7), kernel=2, stride=2, dilation=2)),
        ("conv_same_upper", conv_net, dict(auto_pad="SAME_UPPER", stride=2)),
        ("conv_same_lower", conv_net, dict(auto_pad="SAME_LOWER", stride=2)),
        ("conv_same_upper_k2", conv_net, dict(auto_pad="SAME_UPPER", kernel=2)),
        ("conv_same_lower_k2", conv_net, dict(auto_pad="SAME_LOWER", kernel=2)),
        ("conv_valid", conv_net, dict(auto_pad="VALID")),
        ("conv1d", conv1d_net, {}),
        ("conv1d_stride2_dil2", conv1d_net, dict(in_shape=(2, 10), channels=(3, 2), stride=2,
                                                 dilation=2, pads=(2, 1))),
        ("bn_conv", bn_conv_net, {}),
        ("bn_conv_nobias", bn_conv_net, dict(channels=(3, 2), bias=False)),
        ("bn_input", bn_conv_net, dict(where="input")),
        ("bn_gemm", bn_conv_net, dict(where="gemm")),
        ("resnet", resnet, dict(in_shape=(2, 4, 4))),
        ("resnet_downsample", resnet, dict(in_shape=(2, 4, 4), blocks=1, downsample=True)),
        ("resnet_nested", resnet, dict(in_shape=(2, 4, 4), width=2, blocks=1, nested=True)),
        ("resnet_sub", resnet, dict(in_shape=(2, 4, 4), blocks=1, merge="sub")),
        ("pool_avg", pool_net, {}),
        ("pool_avg_k3s1", pool_net, dict(kernel=3, stride=1)),
        ("pool_avg_pads_include", pool_net, dict(kernel=3, stride=2, pads=(1, 1, 1, 1),
                                                 count_include_pad=1)),
        ("pool_avg_pads_exclude", pool_net, dict(kernel=3, stride=2, pads=(1, 0, 0, 1),
                                                 count_include_pad=0)),
        ("pool_avg_ceil", pool_net, dict(kernel=3, stride=2, ceil_mode=1)),
        ("pool_avg_ceil_pads_include", pool_net, dict(kernel=3, stride=2, pads=(1, 1, 1, 1),
                                                      ceil_mode=1, count_include_pad=1)),
        ("pool_avg_ceil_pads_exclude", pool_net, dict(kernel=3, stride=2, pads=(1, 1, 1, 1),
                                                      ceil_mode=1, count_include_pad=0)),
        ("pool_max", pool_net, dict(kind="max")),
        ("pool_max_pads", pool_net, dict(kind="max", kernel=3, stride=2, pads=(1, 0, 1, 1))),
        ("pool_max_ceil", pool_net, dict(kind="max", kernel=3, stride=2, ceil_mode=1)),
        ("pool_global_avg", pool_net, dict(kind="global_avg", channels=3)),
        ("pool_pad_node", pool_net, dict(explicit_pad=True, kernel=2, stride=2, pads=(1, 1, 1, 1))),
        ("nhwc_transpose", nhwc_net, {}),
        ("nhwc_flatten", nhwc_net, dict(back="flatten")),
        ("normalized", normalized_net, {}),
        ("concat", concat_net, {}),
        ("dense_chain", dense_chain, {}),
        ("dense_chain_deep", dense_chain, dict(sizes=(3, 6, 5, 2))),
    ]
    return [(name, fn(rng, **kw)) for name, fn, kw in specs]


def ort_forward(model: onnx.ModelProto, x) -> np.ndarray:
    """Run onnxruntime (CPU, no graph optimisations) on x (input shape incl. batch); float64 out."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.asarray(sess.run(None, {name: np.asarray(x, np.float32)})[0], np.float64)
