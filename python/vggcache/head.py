"""Trained heads: ``RUN_DIR/head.bin`` (head/head_file.h, head/head_file.cpp).

Format versions 1 and 2, little-endian: magic ``VGGHEAD\\0`` (8 bytes) | u32 version | u32 N |
N bytes of JSON header, zero-padded to a multiple of 16 | float32 row-major tensors at the
offsets the header lists (relative to the end of the padded header) | u32 CRC-32C of every byte
before it. The head: x' = (x − mean) / std when standardised, Linear(dim, hidden), ReLU,
(Dropout, training only), Linear(hidden, outputs), then a sigmoid (two classes, one output:
probabilities (1 − p, p)) or a softmax (more classes). Version 2 may also hold a linear probe
(hidden 0): one Linear(dim, outputs), weight ``w1`` (outputs × dim) and bias ``b1``, no ``w2``,
``b2``, then the same sigmoid or softmax. Version 2 may also hold a block 5 fine-tuned with the
head from pool4 maps: ``features.24/26/28.weight`` (512 × 512 × 3 × 3) and ``.bias`` (512), with
``architecture.input`` "pool4". train_head writes version 1 for every other head.
"""
import json
import struct

import numpy as np

from . import crc as _crc
from .errors import CorruptError, SchemaError, VggCacheError

HEAD_MAGIC = b"VGGHEAD\0"
HEAD_FORMAT_VERSION = 2  # the newest version read; 1 is read too


def read_head(path, verify=True):
    """Reads ``head.bin``. Returns a dict of NumPy float32 arrays and metadata:

    ``w1`` (hidden × dim), ``b1`` (hidden), ``w2`` (outputs × hidden), ``b2`` (outputs); a probe
    (``hidden`` 0): ``w1`` (outputs × dim), ``b1`` (outputs), no ``w2`` or ``b2``;
    ``mean``/``std`` (dim each, only when ``standardize``), ``standardize`` (bool), ``dim``,
    ``hidden``, ``outputs``, ``output`` ("sigmoid"/"softmax"), ``dropout``, ``classes`` (names in
    label order), ``features`` (the training cache's feature settings), ``feature_fingerprint``,
    ``training`` (informational), ``architecture`` and ``header`` (the whole JSON header); a head
    fine-tuned with block 5 also ``features.{24,26,28}.{weight,bias}`` (torchvision's names and
    shapes) and ``block5`` True (else False).
    Raises CorruptError (bad magic, checksum, sizes) or SchemaError (unknown version).
    """
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as e:
        raise VggCacheError(f"cannot read head file {path}: {e}") from None
    if len(buf) < 20 or buf[:8] != HEAD_MAGIC:
        raise CorruptError(f"head file {path}: not a vggcache head (bad magic)")
    version, n = struct.unpack_from("<II", buf, 8)
    if not 1 <= version <= HEAD_FORMAT_VERSION:
        raise SchemaError(f"head file {path}: format version {version} (this reader reads "
                          f"versions 1 to {HEAD_FORMAT_VERSION})")
    if verify:
        (stored,) = struct.unpack_from("<I", buf, len(buf) - 4)
        if _crc.crc32c(memoryview(buf)[:-4]) != stored:
            raise CorruptError(f"head file {path}: checksum mismatch (truncated or damaged)")
    if 16 + n > len(buf) - 4:
        raise CorruptError(f"head file {path}: header length past the end")
    try:
        header = json.loads(buf[16:16 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptError(f"head file {path}: bad JSON header: {e}") from None
    data_start = (16 + n + 15) // 16 * 16
    data_end = len(buf) - 4
    try:
        arch = header["architecture"]
        dim, hidden, classes = int(arch["dim"]), int(arch["hidden"]), int(arch["classes"])
        out = {"header": header, "architecture": arch, "dim": dim, "hidden": hidden,
               "outputs": 1 if classes == 2 else classes,
               "output": "sigmoid" if classes == 2 else "softmax",
               "dropout": float(arch.get("dropout", 0.0)), "classes": list(header["classes"]),
               "features": header["features"], "training": header.get("training", {})}
        tensors = {}
        for t in header["tensors"]:
            name, off, cnt = t["name"], int(t["offset"]), int(t["floats"])
            if data_start + off + 4 * cnt > data_end:
                raise CorruptError(f"head file {path}: tensor {name} past the end")
            a = np.frombuffer(buf, dtype="<f4", count=cnt, offset=data_start + off)
            tensors[name] = a.astype(np.float32).reshape([int(s) for s in t["shape"]])
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptError(f"head file {path}: bad header: {e!r}") from None
    o = out["outputs"]
    std = "mean" in tensors or "std" in tensors
    if hidden == 0 and version < 2:
        raise CorruptError(f"head file {path}: hidden 0 (a probe) in a version 1 file")
    if hidden == 0:  # the probe: one layer, w1 (outputs × dim) and b1
        layers = (all(k in tensors for k in ("w1", "b1")) and "w2" not in tensors
                  and "b2" not in tensors and tensors["w1"].shape == (o, dim)
                  and tensors["b1"].shape == (o,))
    else:
        layers = (all(k in tensors for k in ("w1", "b1", "w2", "b2"))
                  and tensors["w1"].shape == (hidden, dim) and tensors["b1"].shape == (hidden,)
                  and tensors["w2"].shape == (o, hidden) and tensors["b2"].shape == (o,))
    ok = (dim >= 1 and hidden >= 0 and classes >= 2 and len(out["classes"]) == classes and layers
          and (not std or (tensors.get("mean", np.empty(0)).shape == (dim,)
                           and tensors.get("std", np.empty(0)).shape == (dim,))))
    if not ok:
        raise CorruptError(f"head file {path}: tensor sizes do not match the architecture")
    tuned = [f"features.{i}.{k}" for i in (24, 26, 28) for k in ("weight", "bias")]
    have = [n in tensors for n in tuned]
    if any(have) and (not all(have) or version < 2 or any(
            tensors[n].shape != ((512, 512, 3, 3) if n.endswith("weight") else (512,))
            for n in tuned)):
        raise CorruptError(f"head file {path}: an incomplete or misshapen tuned block 5")
    out.update(tensors)
    out["block5"] = all(have)
    out["standardize"] = std
    out["feature_fingerprint"] = out["features"].get("fingerprint")
    return out


def head_module(path_or_head):
    """The head as a ``torch.nn.Module`` in eval mode: ``module(x)`` maps vectors ``(n, dim)``
    (or one ``(dim,)``) to probabilities ``(n, classes)`` in label order — for two classes
    ``(1 − p, p)`` with p = sigmoid of the single output, else a softmax — what train_head's
    evaluation and ``predict`` compute per view (average the views of an image yourself).
    ``module.logits(x)`` gives the last layer's outputs (a probe's only layer: ``fc1``, no
    ``fc2``). Takes a path or ``read_head``'s dict;
    ``module.classes``, ``module.features`` and ``module.feature_fingerprint`` come with it.

    A head fine-tuned with block 5 (``block5``) takes what its cache holds instead: pool4 maps
    ``(n, 512, h, w)``, or their flattened vectors ``(n, 512·h·w)`` (square maps), and runs the
    tuned conv5_1..conv5_3 + ReLU, 2×2 max-pool and adaptive 7×7 average pool before the head,
    as train_head and predict do (``module.block5``, a torchvision-style Sequential)."""
    import torch
    from torch import nn

    h = read_head(path_or_head) if not isinstance(path_or_head, dict) else path_or_head

    class VggHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.probe = h["hidden"] == 0
            self.fc1 = nn.Linear(h["dim"], h["outputs"] if self.probe else h["hidden"])
            with torch.no_grad():
                self.fc1.weight.copy_(torch.from_numpy(h["w1"]))
                self.fc1.bias.copy_(torch.from_numpy(h["b1"]))
            if not self.probe:
                self.fc2 = nn.Linear(h["hidden"], h["outputs"])
                with torch.no_grad():
                    self.fc2.weight.copy_(torch.from_numpy(h["w2"]))
                    self.fc2.bias.copy_(torch.from_numpy(h["b2"]))
            self.standardize = h["standardize"]
            if self.standardize:
                self.register_buffer("mean", torch.from_numpy(h["mean"].copy()))
                self.register_buffer("std", torch.from_numpy(h["std"].copy()))
            self.block5 = None
            if h.get("block5"):
                layers = []
                for i in (24, 26, 28):
                    conv = nn.Conv2d(512, 512, 3, padding=1)
                    with torch.no_grad():
                        conv.weight.copy_(torch.from_numpy(h[f"features.{i}.weight"]))
                        conv.bias.copy_(torch.from_numpy(h[f"features.{i}.bias"]))
                    layers += [conv, nn.ReLU()]
                self.block5 = nn.Sequential(*layers, nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(7))
            self.classes = h["classes"]
            self.features = h["features"]
            self.feature_fingerprint = h["feature_fingerprint"]

        def logits(self, x):
            x = torch.as_tensor(x, dtype=torch.float32)
            if self.block5 is not None:
                if x.dim() in (1, 3):
                    x = x.unsqueeze(0)
                if x.dim() == 2:  # flattened square maps
                    side = int(round((x.shape[1] // 512) ** 0.5))
                    x = x.reshape(x.shape[0], 512, side, side)
                x = torch.flatten(self.block5(x), 1)
            if x.dim() == 1:
                x = x.unsqueeze(0)
            if self.standardize:
                x = (x - self.mean) / self.std
            if self.probe:
                return self.fc1(x)
            return self.fc2(torch.relu(self.fc1(x)))

        def forward(self, x):
            z = self.logits(x)
            if z.shape[1] == 1:
                p = torch.sigmoid(z)
                return torch.cat([1.0 - p, p], dim=1)
            return torch.softmax(z, dim=1)

    return VggHead().eval()
