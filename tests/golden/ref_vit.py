#!/usr/bin/env python3
"""PyTorch reference forward of the ViT families for parity tests of lostd.

DINOv2 mirrors the official implementation (facebookresearch/dinov2,
dinov2/models/vision_transformer.py and dinov2/layers/*) module by module:
PatchEmbed as a stride-P convolution, interpolate_pos_encoding with
torch.nn.functional.interpolate (antialiased bicubic to size for register
models, plain bicubic with the 0.1 scale-factor offset otherwise), registers
inserted after the position embedding, pre-norm blocks with LayerScale,
exact GELU MLP or SwiGLU, final LayerNorm, and LOST's forward hook on the
last block's attn.qkv. The other families follow their official code the
same way: DINO v1 (facebookresearch/dino: no LayerScale, the 0.1-offset
rule on its 14x14 table), DeiT-III (timm: no CLS position, antialiased
resampling to size, LayerScale) and the OpenCLIP image tower (open_clip:
conv1 without bias, ln_pre, eps 1e-5, packed in_proj, GELU or QuickGELU,
ln_post and proj, the table resampled with antialiasing when the grid
differs). Reads safetensors files in each family's official naming (parsed
by hand: the container is a JSON header plus raw little-endian data).

usage: ref_vit.py MODEL.safetensors INPUT.npy OUTDIR [--heads N] [--act quickgelu]
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


def resample_grid(table, gh, gw, mode):
    """table [M*M, D] -> [gh*gw, D] as each family's code does."""
    dim = table.shape[-1]
    M = int(round(math.sqrt(table.shape[0])))
    grid = table.reshape(1, M, M, dim).permute(0, 3, 1, 2)
    if mode == "offset":  # DINOv2 plain and DINO v1: scale_factor (g + 0.1) / M
        out = F.interpolate(grid, scale_factor=(float(gh + 0.1) / M, float(gw + 0.1) / M),
                            mode="bicubic", antialias=False)
    else:  # size + antialias: DINOv2 registers, DeiT-III (timm), OpenCLIP (at load)
        out = F.interpolate(grid, size=(gh, gw), mode="bicubic", antialias=True,
                            align_corners=False)
    assert out.shape[-2:] == (gh, gw)
    return out.permute(0, 2, 3, 1).reshape(-1, dim)


def block(t, p, nh, eps, act, ls, names):
    D = t.shape[-1]
    T = t.shape[1]
    hd = D // nh
    z = F.layer_norm(t, (D,), p(names["ln1"] + ".weight"), p(names["ln1"] + ".bias"), eps)
    qkv_out = F.linear(z, p(names["qkv_w"]), p(names["qkv_b"]))
    qkv = qkv_out.reshape(1, T, 3, nh, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * hd ** -0.5, qkv[1], qkv[2]
    a = (q @ k.transpose(-2, -1)).softmax(dim=-1)
    a = (a @ v).transpose(1, 2).reshape(1, T, D)
    a = F.linear(a, p(names["proj"] + ".weight"), p(names["proj"] + ".bias"))
    t = t + (a * p(names["ls1"]) if ls else a)
    z = F.layer_norm(t, (D,), p(names["ln2"] + ".weight"), p(names["ln2"] + ".bias"), eps)
    if names.get("swiglu"):
        x12 = F.linear(z, p("mlp.w12.weight"), p("mlp.w12.bias"))
        x1, x2 = x12.chunk(2, dim=-1)
        m = F.linear(F.silu(x1) * x2, p("mlp.w3.weight"), p("mlp.w3.bias"))
    else:
        u = F.linear(z, p(names["fc1"] + ".weight"), p(names["fc1"] + ".bias"))
        u = u * torch.sigmoid(1.702 * u) if act == "quickgelu" else F.gelu(u)
        m = F.linear(u, p(names["fc2"] + ".weight"), p(names["fc2"] + ".bias"))
    t = t + (m * p(names["ls2"]) if ls else m)
    return t, qkv_out


VIT_NAMES = dict(ln1="norm1", qkv_w="attn.qkv.weight", qkv_b="attn.qkv.bias",
                 proj="attn.proj", ls1="ls1.gamma", ls2="ls2.gamma", ln2="norm2",
                 fc1="mlp.fc1", fc2="mlp.fc2")
CLIP_NAMES = dict(ln1="ln_1", qkv_w="attn.in_proj_weight", qkv_b="attn.in_proj_bias",
                  proj="attn.out_proj", ln2="ln_2", fc1="mlp.c_fc", fc2="mlp.c_proj")


def main():
    args = sys.argv[1:]
    heads, act = None, "gelu"
    for flag in ("--heads", "--act"):
        if flag in args:
            i = args.index(flag)
            if flag == "--heads":
                heads = int(args[i + 1])
            else:
                act = args[i + 1]
            del args[i:i + 2]
    model_path, input_path, outdir = args
    W, meta = load_safetensors(model_path)
    x = torch.from_numpy(np.load(input_path)).float().unsqueeze(0)
    torch.set_grad_enabled(False)
    _, _, h, w = x.shape
    clip = "visual.conv1.weight" in W
    if clip:
        family, pre, names = "openclip", "visual.transformer.resblocks.%d.", CLIP_NAMES
        pw = W["visual.conv1.weight"]
    else:
        pw = W["patch_embed.proj.weight"]
        pre, names = "blocks.%d.", dict(VIT_NAMES)
        M2 = W["pos_embed"].shape[1]
        if "blocks.0.ls1.gamma" not in W:
            family = "dino"
        elif int(round(math.sqrt(M2))) ** 2 == M2 and "register_tokens" not in W:
            family = "deit3"  # no CLS row in the table
        else:
            family = "dinov2"
    D, P = pw.shape[0], pw.shape[2]
    nh = heads or int(meta.get("num_heads", meta.get("heads", D // 64)))
    gh, gw = h // P, w // P
    eps = 1e-5 if clip else 1e-6
    n_reg = 0

    t = F.conv2d(x, pw, None if clip else W["patch_embed.proj.bias"], stride=P)
    t = t.flatten(2).transpose(1, 2)
    if clip:
        table = W["visual.positional_embedding"]
        M = int(round(math.sqrt(table.shape[0] - 1)))
        grid = table[1:] if (gh, gw) == (M, M) else resample_grid(table[1:], gh, gw, "aa")
        pos = torch.cat((table[:1], grid), dim=0)
        t = torch.cat((W["visual.class_embedding"].reshape(1, 1, D), t), dim=1) + pos
        t = F.layer_norm(t, (D,), W["visual.ln_pre.weight"], W["visual.ln_pre.bias"], eps)
    elif family == "deit3":
        table = W["pos_embed"][0]
        M = int(round(math.sqrt(table.shape[0])))
        grid = table if (gh, gw) == (M, M) else resample_grid(table, gh, gw, "aa")
        t = torch.cat((W["cls_token"].reshape(1, 1, D), t + grid), dim=1)
        pos = torch.cat((torch.zeros(1, D), grid), dim=0)
    else:  # dino, dinov2
        table = W["pos_embed"][0]
        M = int(round(math.sqrt(table.shape[0] - 1)))
        n_reg = W["register_tokens"].shape[1] if "register_tokens" in W else 0
        mode = "aa" if n_reg else "offset"
        skip = gh * gw == M * M and h == w
        grid = table[1:] if skip else resample_grid(table[1:], gh, gw, mode)
        pos = torch.cat((table[:1], grid), dim=0)
        t = torch.cat((W["cls_token"].reshape(1, 1, D), t), dim=1) + pos
        if n_reg:
            t = torch.cat((t[:, :1], W["register_tokens"].expand(1, -1, -1), t[:, 1:]), dim=1)
        names["swiglu"] = "blocks.0.mlp.w12.weight" in W
    depth = len({k.split(".")[3 if clip else 1] for k in W if k.startswith(pre.split("%")[0])})
    ls = family in ("dinov2", "deit3")
    qkv_last = None
    for i in range(depth):
        t, qkv_last = block(t, lambda s, i=i: W[pre % i + s], nh, eps, act, ls, names)
    if clip:
        y = F.layer_norm(t, (D,), W["visual.ln_post.weight"], W["visual.ln_post.bias"], eps)
    else:
        y = F.layer_norm(t, (D,), W["norm.weight"], W["norm.bias"], eps)

    # LOST's hook: reshape/permute the last qkv output and flatten heads back
    T = t.shape[1]
    feat = qkv_last.reshape(1, T, 3, nh, D // nh).permute(2, 0, 3, 1, 4)
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
    save("pos_embed.npy", pos)
    if clip:
        save("image_embed.npy", y[0, 0] @ W["visual.proj"])


if __name__ == "__main__":
    main()
