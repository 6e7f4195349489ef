"""An int8 Paddle Inference model (QAT/PTQ export) as an ONNX QDQ model, with the same scales.

paddle2onnx 2.1 maps Paddle's `quantize_linear`/`dequantize_linear` only as FP8 (opset 19,
e4m3/e5m2) and aborts on int8 ones, so the int8 model is taken apart instead:
`float_program` removes the quantize/dequantize ops from the Paddle program (weights
dequantized exactly from their int8 values, which is what the int8 kernels compute with)
and records every quantized layer's int8 weights, weight scales and input scale;
paddle2onnx converts that float program; `insert_qdq` puts the scales back as ONNX
QuantizeLinear/DequantizeLinear pairs in front of the same Conv/MatMul nodes (found by
their weight's name, which paddle2onnx keeps). ONNX Runtime then fuses what it can into
int8 kernels. The result is verified against Paddle's predictor like every export.
"""

import numpy as np

from ..core.errors import ModelError

QUANTIZED_CONSUMERS = {"conv2d", "depthwise_conv2d", "matmul_v2", "matmul"}


def float_program(prefix, target):
    """Write the float twin of the int8 program `prefix` to `target`; returns {weight: layer record}."""
    import paddle

    from .. import compat

    with compat.legacy_ir():
        paddle.enable_static()  # undone by legacy_ir()
        executor = paddle.static.Executor(paddle.CPUPlace())  # rewrites files on disk: host memory on any run
        scope = paddle.static.Scope()
        with paddle.static.scope_guard(scope):
            program, feeds, fetches = paddle.static.load_inference_model(str(prefix), executor)
            layers = _strip_quantize_ops(program, scope)
            block = program.global_block()
            paddle.static.save_inference_model(str(target), [block.var(n) for n in feeds], fetches, executor,
                                               program=program, clip_extra=True)
    return layers


def _tensor(scope, name):
    return np.array(scope.find_var(name).get_tensor())


def _strip_quantize_ops(program, scope):
    block = program.global_block()
    ops = list(block.ops)
    producer = {name: op for op in ops for name in op.output_arg_names}
    renames, weights, inputs, removed = {}, {}, {}, set()
    for op in ops:
        if op.type != "dequantize_linear":
            continue
        source, out = op.input("X")[0], op.output("Y")[0]
        qmax = float((1 << (op.attr("bit_length") - 1)) - 1)
        if block.var(source).persistable:  # a weight stored as int8 with its scales
            weights[out] = _dequantize_weight(block, scope, op, source, qmax)
            renames[out] = source
        else:  # an activation: quantize_linear -> dequantize_linear
            quantize = producer.get(source)
            if quantize is None or quantize.type != "quantize_linear":
                raise ModelError(f"dequantize_linear of {source} has no quantize_linear before it",
                                 "export the model with slimkit (QAT/PTQ stages)")
            renames[out] = quantize.input("X")[0]
            inputs[out] = _tensor(scope, quantize.input("Scale")[0]).astype(np.float32).reshape(-1)[:1] / qmax
            removed.add(id(quantize))
        removed.add(id(op))
    layers = {}
    for op in ops:
        if id(op) in removed:
            continue
        for name in op.input_arg_names:
            if name in weights and op.type in QUANTIZED_CONSUMERS:
                layers[renames[name]] = {**weights[name], "input_scale": _input_scale(op, name, inputs)}
        for name in set(op.input_arg_names) & renames.keys():
            op._rename_input(name, renames[name])
    for index in reversed(range(len(block.ops))):
        if id(block.ops[index]) in removed:
            block._remove_op(index)
    return layers


def _input_scale(op, weight, inputs):
    other = [n for n in op.input_arg_names if n != weight and n in inputs]
    return inputs[other[0]] if other else None


def _dequantize_weight(block, scope, op, source, qmax):
    from paddle.framework import core

    values = _tensor(scope, source)
    scale = _tensor(scope, op.input("Scale")[0]).astype(np.float32).reshape(-1) / qmax
    axis = op.attr("quant_axis")
    shape = [1] * values.ndim
    if scale.size > 1:
        shape[axis] = scale.size
    scope.find_var(source).get_tensor().set((values.astype(np.float32) * scale.reshape(shape)), core.CPUPlace())
    block.var(source).desc.set_dtype(core.VarDesc.VarType.FP32)
    return {"int8": values.astype(np.int8), "scale": scale, "axis": axis if scale.size > 1 else None}


def insert_qdq(path, layers):
    """Put each layer's int8 weight and input scale back into the ONNX file at `path` as Q/DQ nodes."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    nodes = list(graph.node)
    constants = {n.output[0]: n for n in nodes if n.op_type == "Constant"}
    found = set()
    new_nodes = []
    for node in nodes:
        if node.op_type == "Constant" and node.output[0] in layers:
            continue  # replaced by int8 initializer + DequantizeLinear below
        weight = node.input[1] if node.op_type in ("Conv", "MatMul") and len(node.input) > 1 else None
        if weight in layers and weight in constants:
            found.add(weight)
            new_nodes += _weight_dq(graph, weight, layers[weight], helper, numpy_helper)
            if layers[weight]["input_scale"] is not None:
                new_nodes += _input_qdq(graph, node, layers[weight]["input_scale"], helper, numpy_helper)
        new_nodes.append(node)
    missing = sorted(set(layers) - found)
    if missing:
        raise ModelError(f"the ONNX graph has no Conv/MatMul reading {missing[:3]}",
                         "this model's int8 layers cannot be mapped to ONNX QDQ; ship it with --format paddle")
    del graph.node[:]
    graph.node.extend(new_nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(found)


def _weight_dq(graph, name, layer, helper, numpy_helper):
    scale = layer["scale"] if layer["axis"] is not None else layer["scale"][:1].reshape([])
    zero = np.zeros(scale.shape, np.int8)
    graph.initializer.extend([numpy_helper.from_array(layer["int8"], f"{name}.int8"),
                              numpy_helper.from_array(scale.astype(np.float32), f"{name}.scale"),
                              numpy_helper.from_array(zero, f"{name}.zero_point")])
    axis = {"axis": layer["axis"]} if layer["axis"] is not None else {}
    return [helper.make_node("DequantizeLinear", [f"{name}.int8", f"{name}.scale", f"{name}.zero_point"], [name],
                             name=f"{name}.dequantize", **axis)]


def _input_qdq(graph, node, scale, helper, numpy_helper):
    source = node.input[0]
    tag = f"{node.output[0]}.input"
    graph.initializer.extend([numpy_helper.from_array(np.float32(scale[0]), f"{tag}.scale"),
                              numpy_helper.from_array(np.int8(0), f"{tag}.zero_point")])
    node.input[0] = f"{tag}.dequantized"
    return [helper.make_node("QuantizeLinear", [source, f"{tag}.scale", f"{tag}.zero_point"], [f"{tag}.quantized"],
                             name=f"{tag}.quantize"),
            helper.make_node("DequantizeLinear", [f"{tag}.quantized", f"{tag}.scale", f"{tag}.zero_point"],
                             [f"{tag}.dequantized"], name=f"{tag}.dequantize")]
