"""The ``prepool-f32`` codec's expansion (common/prepool.h, common/prepool.cpp), bit for bit.

A record stores VGG16's last feature map z (C × h × w, row-major float32) instead of the
C × 7 × 7 = 25088-d vector AdaptiveAvgPool2d(7, 7) makes from it. Output cell (i, j) of channel c
averages rows [start(i, 7, h), end(i, 7, h)) × columns [start(j, 7, w), end(j, 7, w)) of z[c],
exactly as the C++ reader does in float32: ``sum = 0.0f``, then ``sum += z[r][q]`` over the rows
then the columns of the window, then ``sum / float(rows) / float(cols)`` (two divisions). NumPy's
float32 elementwise add and divide are IEEE single-precision operations, so doing the same steps
over whole arrays (all channels and records at once) gives the same bits.
"""
import numpy as np


def adaptive_start(o, out, inp):
    return (o * inp) // out


def adaptive_end(o, out, inp):
    return ((o + 1) * inp + out - 1) // out


def pool_windows(h, w, oh=7, ow=7):
    """The distinct windows (r0, r1, c0, c1) and, per output cell (row-major), its window index."""
    windows, index, cell_window = [], {}, []
    for i in range(oh):
        for j in range(ow):
            key = (adaptive_start(i, oh, h), adaptive_end(i, oh, h),
                   adaptive_start(j, ow, w), adaptive_end(j, ow, w))
            if key not in index:
                index[key] = len(windows)
                windows.append(key)
            cell_window.append(index[key])
    return windows, cell_window


def expand_prepool(z, shape, oh=7, ow=7, out=None):
    """Expands pre-pool maps to pooled vectors.

    ``z``: float32 array of ``C*h*w`` values (one record) or ``(N, C*h*w)`` (N records), or
    already shaped ``(..., C, h, w)``; ``shape`` = ``(C, h, w)`` (``meta["prepool_shape"]``).
    Returns a float32 array of ``C*oh*ow`` values (``(N, C*oh*ow)`` for N records), in the
    layout of the C++ reader's vector: index c*oh*ow + i*ow + j; written into ``out`` when given
    (a C-contiguous float32 array of that shape).
    """
    C, h, w = (int(v) for v in shape)
    z = np.asarray(z)
    if z.dtype != np.float32:
        raise TypeError(f"prepool maps are float32, got {z.dtype}")
    lead = z.shape[:-3] if z.shape[-3:] == (C, h, w) else z.shape[:-1]
    z = z.reshape(lead + (C, h, w))
    windows, cell_window = pool_windows(h, w, oh, ow)
    means = np.empty(lead + (C, len(windows)), dtype=np.float32)
    s = np.empty(lead + (C,), dtype=np.float32)
    for k, (r0, r1, c0, c1) in enumerate(windows):
        s.fill(0.0)
        for r in range(r0, r1):
            for q in range(c0, c1):
                np.add(s, z[..., r, q], out=s)  # same order as the C++ loop: rows, then columns
        np.divide(s, np.float32(r1 - r0), out=s)
        np.divide(s, np.float32(c1 - c0), out=means[..., k])
    if out is None:
        out = np.empty(lead + (C * oh * ow,), dtype=np.float32)
    elif out.dtype != np.float32 or not out.flags.c_contiguous or out.size != means.size // \
            len(windows) * oh * ow:
        raise ValueError("out must be a C-contiguous float32 array of the expanded size")
    np.take(means, np.asarray(cell_window, dtype=np.intp), axis=-1,
            out=out.reshape(lead + (C, oh * ow)))
    return out
