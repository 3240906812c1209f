#!/usr/bin/env python3
"""A target and draft model pair for benchmarking speculative decoding with random weights.

Random models have nothing for a draft to predict, so a pair is made from one model (Q8_0, F16 or
F32 weights, as engine-mkmodel writes them): the draft is its first --draft-layers layers with its
embeddings, final norm and head; the target is the whole model with the output projections of
every later layer (attn_output, ffn_down) scaled by --scale. The later layers then move the
residual stream only a little, so the target's next token is mostly the draft's, and --scale sets
how often it is not (the acceptance rate, which engine-run reports). The target keeps its size and
cost per token: only the scales of its blocks change.

usage: make_draft_pair.py SOURCE.gguf TARGET.gguf DRAFT.gguf [--draft-layers 2] [--scale 0.1]
"""
import argparse
import re

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter


def copy_metadata(reader, writer, arch, overrides):
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = overrides.get(name, field.contents())
        vtype = field.types[0]
        if vtype == GGUFValueType.ARRAY:
            writer.add_key_value(name, value, vtype, sub_type=field.types[-1])
        else:
            writer.add_key_value(name, value, vtype)


def scaled(tensor, scale):
    """The tensor's data with every value times scale: Q8_0 by its blocks' fp16 scales."""
    if tensor.tensor_type == GGMLQuantizationType.Q8_0:
        blocks = np.array(tensor.data, dtype=np.uint8).reshape(-1, 34)
        d = blocks[:, :2].copy().view(np.float16)
        blocks[:, :2] = (d.astype(np.float32) * scale).astype(np.float16).view(np.uint8)
        return blocks.reshape(tensor.data.shape)
    if tensor.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        return (np.array(tensor.data, dtype=np.float32) * scale).astype(tensor.data.dtype)
    raise SystemExit(f"{tensor.name}: type {tensor.tensor_type.name}: only Q8_0, F16 and F32 weights can be scaled")


def write(reader, path, arch, n_layer, keep, transform):
    writer = GGUFWriter(path, arch)
    copy_metadata(reader, writer, arch, {f"{arch}.block_count": n_layer})
    for t in reader.tensors:
        if not keep(t.name):
            continue
        data = transform(t)
        if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            writer.add_tensor(t.name, data)  # the type from numpy's, the shape numpy's (ggml's reversed)
        else:  # the rows as bytes
            writer.add_tensor(t.name, data, raw_shape=list(data.shape), raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=False)
    writer.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source")
    ap.add_argument("target")
    ap.add_argument("draft")
    ap.add_argument("--draft-layers", type=int, default=2)
    ap.add_argument("--scale", type=float, default=0.1)
    a = ap.parse_args()
    reader = GGUFReader(a.source)
    arch = reader.fields["general.architecture"].contents()
    n_layer = int(reader.fields[f"{arch}.block_count"].contents())
    if not 0 < a.draft_layers < n_layer:
        raise SystemExit(f"--draft-layers {a.draft_layers}: the source has {n_layer} layers")

    def layer(name):
        m = re.match(r"blk\.(\d+)\.", name)
        return int(m.group(1)) if m else None

    def late_output(name):
        return layer(name) is not None and layer(name) >= a.draft_layers and \
            name.endswith(("attn_output.weight", "ffn_down.weight"))

    write(reader, a.target, arch, n_layer, lambda name: True,
          lambda t: scaled(t, a.scale) if late_output(t.name) else t.data)
    write(reader, a.draft, arch, a.draft_layers, lambda name: layer(name) is None or layer(name) < a.draft_layers,
          lambda t: t.data)


if __name__ == "__main__":
    main()
