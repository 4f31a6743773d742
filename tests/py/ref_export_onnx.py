#!/usr/bin/env python3
"""Checks a model written by `vggcache-export --format onnx` with Debian's python3-onnx and
prepares the inputs an ONNX runtime needs, from the model's own metadata alone.

  ref_export_onnx.py MODEL.onnx INPUTS.f32 IMAGE...

onnx.checker.check_model(full_check=True) (shape inference included); the graph's input is
"input" (float, batch × 3 × size × size) and its output "probabilities" (float, batch × outputs)
with `outputs` from the "head" metadata; opset 13. Then each image is preprocessed as predict's
eval view with size, mean and std read from metadata_props (ref_export_load.eval_inputs), and the
N × 3 × size × size float32 tensor is written little-endian, C order, to INPUTS.f32. Prints the
metadata as JSON on stdout.
"""
import json
import sys

import onnx
from onnx import TensorProto

from ref_export_load import eval_inputs


def dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def main():
    model_path, inputs_path, images = sys.argv[1], sys.argv[2], sys.argv[3:]
    m = onnx.load(model_path)
    onnx.checker.check_model(m, full_check=True)
    props = {p.key: p.value for p in m.metadata_props}
    head = json.loads(props["head"])
    size = int(props["preprocessing.size"])
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [13], m.opset_import
    g = m.graph
    assert [i.name for i in g.input] == ["input"], [i.name for i in g.input]
    assert [o.name for o in g.output] == ["probabilities"], [o.name for o in g.output]
    for v in (g.input[0], g.output[0]):
        assert v.type.tensor_type.elem_type == TensorProto.FLOAT, v
    assert dims(g.input[0]) == ["batch", 3, size, size], dims(g.input[0])
    assert dims(g.output[0]) == ["batch", head["outputs"]], dims(g.output[0])
    x = eval_inputs(images, size, json.loads(props["preprocessing.mean"]),
                    json.loads(props["preprocessing.std"]))
    x.numpy().astype("<f4").tofile(inputs_path)
    json.dump(props, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
