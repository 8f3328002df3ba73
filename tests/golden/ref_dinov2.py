#!/usr/bin/env python3
"""PyTorch reference forward of DINOv2 for parity tests of lostd.

Mirrors the official implementation (facebookresearch/dinov2,
dinov2/models/vision_transformer.py and dinov2/layers/*) module by module:
PatchEmbed as a stride-P convolution, interpolate_pos_encoding with
torch.nn.functional.interpolate (antialiased bicubic to size for register
models, plain bicubic with the 0.1 scale-factor offset otherwise), registers
inserted after the position embedding, pre-norm blocks with LayerScale,
exact GELU MLP or SwiGLU, final LayerNorm, and LOST's forward hook on the
last block's attn.qkv. Reads a safetensors file in the official naming
(parsed by hand: the container is a JSON header plus raw little-endian data).

usage: ref_dinov2.py MODEL.safetensors INPUT.npy OUTDIR [--heads N]
writes keys.npy queries.npy values.npy patch_tokens.npy cls_token.npy
register_tokens.npy (when R > 0) and pos_embed.npy to OUTDIR.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        data = np.memmap(path, dtype=np.uint8, mode="r")
    meta = header.pop("__metadata__", {})
    out = {}
    for name, t in header.items():
        assert t["dtype"] == "F32", (name, t["dtype"])
        b, e = t["data_offsets"]
        arr = np.frombuffer(data[base + b: base + e].tobytes(), dtype="<f4")
        out[name] = torch.from_numpy(arr.reshape(t["shape"]).copy())
    return out, meta


def interpolate_pos_encoding(pos_embed, n_reg, gh, gw, h, w):
    # official DinoVisionTransformer.interpolate_pos_encoding
    npatch = gh * gw
    N = pos_embed.shape[1] - 1
    if npatch == N and w == h:
        return pos_embed
    class_pos = pos_embed[:, 0]
    patch_pos = pos_embed[:, 1:]
    dim = pos_embed.shape[-1]
    M = int(math.sqrt(N))
    grid = patch_pos.reshape(1, M, M, dim).permute(0, 3, 1, 2)
    if n_reg > 0:  # interpolate_antialias=True, interpolate_offset=0.0
        out = F.interpolate(grid, size=(gh, gw), mode="bicubic", antialias=True)
    else:  # interpolate_antialias=False, interpolate_offset=0.1
        sx, sy = float(gh + 0.1) / M, float(gw + 0.1) / M
        out = F.interpolate(grid, scale_factor=(sx, sy), mode="bicubic", antialias=False)
    assert out.shape[-2:] == (gh, gw)
    out = out.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((class_pos.unsqueeze(0), out), dim=1)


def main():
    args = sys.argv[1:]
    heads = None
    if "--heads" in args:
        i = args.index("--heads")
        heads = int(args[i + 1])
        del args[i:i + 2]
    model_path, input_path, outdir = args
    W, meta = load_safetensors(model_path)
    x = torch.from_numpy(np.load(input_path)).float().unsqueeze(0)
    D = W["patch_embed.proj.weight"].shape[0]
    P = W["patch_embed.proj.weight"].shape[2]
    depth = len({k.split(".")[1] for k in W if k.startswith("blocks.")})
    nh = heads or int(meta.get("num_heads", D // 64))
    n_reg = W["register_tokens"].shape[1] if "register_tokens" in W else 0
    swiglu = "blocks.0.mlp.w12.weight" in W
    eps = 1e-6
    _, _, h, w = x.shape
    gh, gw = h // P, w // P
    torch.set_grad_enabled(False)

    t = F.conv2d(x, W["patch_embed.proj.weight"], W["patch_embed.proj.bias"], stride=P)
    t = t.flatten(2).transpose(1, 2)
    t = torch.cat((W["cls_token"].expand(1, -1, -1), t), dim=1)
    pos = interpolate_pos_encoding(W["pos_embed"], n_reg, gh, gw, h, w)
    t = t + pos
    if n_reg:
        t = torch.cat((t[:, :1], W["register_tokens"].expand(1, -1, -1), t[:, 1:]), dim=1)
    T = t.shape[1]
    hd = D // nh
    qkv_last = None
    for i in range(depth):
        p = lambda s: W["blocks.%d.%s" % (i, s)]
        z = F.layer_norm(t, (D,), p("norm1.weight"), p("norm1.bias"), eps)
        qkv_out = F.linear(z, p("attn.qkv.weight"), p("attn.qkv.bias"))
        if i == depth - 1:
            qkv_last = qkv_out
        qkv = qkv_out.reshape(1, T, 3, nh, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * hd ** -0.5, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        a = (attn @ v).transpose(1, 2).reshape(1, T, D)
        a = F.linear(a, p("attn.proj.weight"), p("attn.proj.bias"))
        t = t + a * p("ls1.gamma")
        z = F.layer_norm(t, (D,), p("norm2.weight"), p("norm2.bias"), eps)
        if swiglu:
            x12 = F.linear(z, p("mlp.w12.weight"), p("mlp.w12.bias"))
            x1, x2 = x12.chunk(2, dim=-1)
            m = F.linear(F.silu(x1) * x2, p("mlp.w3.weight"), p("mlp.w3.bias"))
        else:
            m = F.linear(F.gelu(F.linear(z, p("mlp.fc1.weight"), p("mlp.fc1.bias"))),
                         p("mlp.fc2.weight"), p("mlp.fc2.bias"))
        t = t + m * p("ls2.gamma")
    y = F.layer_norm(t, (D,), W["norm.weight"], W["norm.bias"], eps)

    # LOST's hook: reshape/permute the last qkv output and flatten heads back
    feat = qkv_last.reshape(1, T, 3, nh, hd).permute(2, 0, 3, 1, 4)
    q, k, v = (feat[j].transpose(1, 2).reshape(1, T, -1) for j in range(3))
    os.makedirs(outdir, exist_ok=True)
    s = 1 + n_reg

    def save(name, arr):
        np.save(os.path.join(outdir, name), arr.contiguous().numpy().astype(np.float32))

    save("queries.npy", q[0, s:])
    save("keys.npy", k[0, s:])
    save("values.npy", v[0, s:])
    save("patch_tokens.npy", y[0, s:])
    save("cls_token.npy", y[0, 0])
    if n_reg:
        save("register_tokens.npy", y[0, 1:s])
    save("pos_embed.npy", pos[0])


if __name__ == "__main__":
    main()
