#!/usr/bin/env python3
"""DINOv2 ViT with registers in PyTorch: the forward LOST needs, for the
ONNX Runtime and PyTorch columns of `make bench`.

Reads a lostd safetensors file in the official DINOv2 naming (as written by
`lostd model init`) with the same math as tests/golden/ref_vit.py, and
computes exactly what `lostd bench` times as "forward" (core/vit.c,
vit_forward with VIT_WANT_K, as LOST asks for it):

  patch embedding (a stride-14 convolution, as lostd's im2col GEMM)
  + CLS and the position table, then the registers (no position)
  blocks 0 .. L-2 in full (LayerNorm, qkv, attention, proj, LayerScale,
    residual, LayerNorm, fc1, exact GELU, fc2, LayerScale, residual)
  block L-1: LayerNorm + the key third of qkv, for the patch tokens only
  output: the keys of the patch tokens, [1, N, D]

Neither side runs the last block's queries, values, attention, proj or MLP,
nor the final norm: LOST reads only the last block's keys. (`check` builds
the module with the whole qkv of the last block instead, [1, N, 3D], to
compare q, k and v with `lostd features`.) The position table is resampled
once per input size (lostd caches it per size in its workspace; here it is a
constant of the module, hence of each exported ONNX file), so neither side
pays for the bicubic resampling per image. Preprocessing (decode, resize,
normalise) is outside the timed forward on every side.

usage:
  model.py export MODEL.safetensors HxW OUT.onnx [--opset 17]
      writes OUT.onnx, plus OUT.onnx.in.f32 (a fixed input [1,3,H,W]) and
      OUT.onnx.out.f32 (PyTorch's output for it) for ort_bench.mjs --check
  model.py check MODEL.safetensors HxW LOSTD
      runs `LOSTD features --tensor` on the same fixed input and prints the
      max abs difference of q, k, v against this module, as JSON
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def load_safetensors(path):
    """name -> float32 tensor, and the header's __metadata__ (the container is
    an 8-byte header length, a JSON header, then raw little-endian data)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    meta = header.pop("__metadata__", {})
    out = {}
    for name, t in header.items():
        if t["dtype"] != "F32":
            raise SystemExit("%s: %s is %s, only F32 is read" % (path, name, t["dtype"]))
        b, e = t["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype="<f4").reshape(t["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out, meta


def position_table(table, gh, gw):
    """[1, 1 + M*M, D] -> [1, 1 + gh*gw, D]: DINOv2 with registers resamples
    with antialiased bicubic to the grid size (interpolate_pos_encoding),
    and keeps the table as is for a square input of the stored grid."""
    cls, grid = table[:, :1], table[:, 1:]
    dim = table.shape[-1]
    M = int(round(math.sqrt(grid.shape[1])))
    if gh == M and gw == M:
        return table
    g = grid.reshape(1, M, M, dim).permute(0, 3, 1, 2)
    g = F.interpolate(g, size=(gh, gw), mode="bicubic", antialias=True, align_corners=False)
    return torch.cat((cls, g.permute(0, 2, 3, 1).reshape(1, gh * gw, dim)), dim=1)


class Block(nn.Module):
    """One pre-norm block; with qkv_only, LayerNorm + qkv and nothing else
    (and `keys`, the key third of qkv alone, for keys())."""

    def __init__(self, W, i, n_head, qkv_only):
        super().__init__()
        p = "blocks.%d." % i
        D = W[p + "norm1.weight"].shape[0]
        self.n_head, self.qkv_only, self.eps = n_head, qkv_only, 1e-6
        self.norm1 = nn.LayerNorm(D, eps=self.eps)
        self.qkv = nn.Linear(D, 3 * D)
        self._set(self.norm1, W, p + "norm1")
        self._set(self.qkv, W, p + "attn.qkv")
        if qkv_only:
            self.keys = nn.Linear(D, D)
            wq, bq = W[p + "attn.qkv.weight"], W[p + "attn.qkv.bias"]
            self.keys.weight = nn.Parameter(wq[D:2 * D].clone(), requires_grad=False)
            self.keys.bias = nn.Parameter(bq[D:2 * D].clone(), requires_grad=False)
            return
        F_hidden = W[p + "mlp.fc1.weight"].shape[0]
        self.proj = nn.Linear(D, D)
        self.norm2 = nn.LayerNorm(D, eps=self.eps)
        self.fc1 = nn.Linear(D, F_hidden)
        self.fc2 = nn.Linear(F_hidden, D)
        for mod, name in ((self.proj, "attn.proj"), (self.norm2, "norm2"),
                          (self.fc1, "mlp.fc1"), (self.fc2, "mlp.fc2")):
            self._set(mod, W, p + name)
        self.ls1 = nn.Parameter(W[p + "ls1.gamma"].clone(), requires_grad=False)
        self.ls2 = nn.Parameter(W[p + "ls2.gamma"].clone(), requires_grad=False)

    @staticmethod
    def _set(mod, W, name):
        mod.weight = nn.Parameter(W[name + ".weight"].clone(), requires_grad=False)
        mod.bias = nn.Parameter(W[name + ".bias"].clone(), requires_grad=False)

    def key_rows(self, t):
        """LayerNorm + the keys of the rows of t (a qkv_only block)."""
        return self.keys(self.norm1(t))

    def forward(self, t):
        qkv = self.qkv(self.norm1(t))
        if self.qkv_only:
            return qkv
        B, T, D3 = qkv.shape
        D = D3 // 3
        hd = D // self.n_head
        h = qkv.reshape(B, T, 3, self.n_head, hd).permute(2, 0, 3, 1, 4)
        q, k, v = h[0] * hd ** -0.5, h[1], h[2]
        a = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        a = (a @ v).transpose(1, 2).reshape(B, T, D)
        t = t + self.proj(a) * self.ls1
        m = self.fc2(F.gelu(self.fc1(self.norm2(t))))
        return t + m * self.ls2


class LostForward(nn.Module):
    """x [1, 3, H, W] (normalised) -> last block's keys of the patch tokens
    [1, N, D] (what LOST reads), or with qkv=True its whole qkv [1, N, 3D].
    Built for one input size (the position table is fixed)."""

    def __init__(self, W, meta, h, w, qkv=False):
        super().__init__()
        self.whole_qkv = qkv
        if "register_tokens" not in W or "blocks.0.ls1.gamma" not in W:
            raise SystemExit("bench/model.py covers DINOv2 with registers only")
        pw = W["patch_embed.proj.weight"]
        D, P = pw.shape[0], pw.shape[2]
        if h % P or w % P:
            raise SystemExit("size %dx%d: sides must be multiples of %d" % (h, w, P))
        depth = len({k.split(".")[1] for k in W if k.startswith("blocks.")})
        n_head = int(meta.get("num_heads", D // 64))
        self.patch = nn.Conv2d(3, D, P, stride=P)
        self.patch.weight = nn.Parameter(pw.clone(), requires_grad=False)
        self.patch.bias = nn.Parameter(W["patch_embed.proj.bias"].clone(), requires_grad=False)
        pos = position_table(W["pos_embed"], h // P, w // P)
        self.register_buffer("cls_pos", W["cls_token"].reshape(1, 1, D) + pos[:, :1])
        self.register_buffer("pos", pos[:, 1:].contiguous())
        self.register_buffer("reg", W["register_tokens"].reshape(1, -1, D).clone())
        self.n_reg = self.reg.shape[1]
        self.blocks = nn.ModuleList(Block(W, i, n_head, i == depth - 1) for i in range(depth))
        self.shape = (h, w, P, D, depth, n_head)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        t = torch.cat((self.cls_pos, self.reg, t), dim=1)
        for b in self.blocks[:-1]:
            t = b(t)
        if self.whole_qkv:
            return self.blocks[-1](t)[:, 1 + self.n_reg:]
        return self.blocks[-1].key_rows(t[:, 1 + self.n_reg:])


def parse_size(s):
    h, w = s.lower().split("x")
    return int(h), int(w)


def build(model_path, size, qkv=False):
    W, meta = load_safetensors(model_path)
    h, w = parse_size(size)
    m = LostForward(W, meta, h, w, qkv).eval()
    return m, h, w


def fixed_input(h, w):
    """The same deterministic normalised input for every engine: smooth
    gradients in [-2, 2] (no RNG, so node can rebuild it if needed)."""
    y = torch.arange(h, dtype=torch.float32).reshape(1, 1, h, 1)
    x = torch.arange(w, dtype=torch.float32).reshape(1, 1, 1, w)
    c = torch.arange(3, dtype=torch.float32).reshape(1, 3, 1, 1)
    return 2.0 * torch.sin(0.05 * x + 0.031 * y + c)


def export(model_path, size, out, opset):
    m, h, w = build(model_path, size)
    x = fixed_input(h, w)
    with torch.no_grad():
        ref = m(x)
        torch.onnx.export(m, (x,), out, input_names=["x"], output_names=["keys"],
                          opset_version=opset, do_constant_folding=True)
    x.numpy().astype("<f4").tofile(out + ".in.f32")
    ref.numpy().astype("<f4").tofile(out + ".out.f32")
    print(json.dumps({"onnx": out, "opset": opset, "input": [1, 3, h, w],
                      "output": list(ref.shape)}))


def check(model_path, size, lostd):
    m, h, w = build(model_path, size, qkv=True)
    x = fixed_input(h, w)
    with torch.no_grad():
        qkv = m(x)[0].numpy()
    D = qkv.shape[1] // 3
    with tempfile.TemporaryDirectory() as d:
        np.save(os.path.join(d, "x.npy"), x[0].numpy())
        subprocess.run([lostd, "features", "--model", model_path, "--tensor",
                        os.path.join(d, "x.npy"), "--out", d], check=True,
                       stdout=subprocess.DEVNULL)
        diff = {}
        for j, name in enumerate(("queries", "keys", "values")):
            got = np.load(os.path.join(d, name + ".npy"))
            diff[name] = float(np.abs(got - qkv[:, j * D:(j + 1) * D]).max())
    diff["max_abs_keys"] = float(np.abs(qkv[:, D:2 * D]).max())
    print(json.dumps({"size": [h, w], "lostd_vs_torch_max_abs": diff}))


def main():
    a = sys.argv[1:]
    opset = 17
    if "--opset" in a:
        i = a.index("--opset")
        opset = int(a[i + 1])
        del a[i:i + 2]
    torch.set_grad_enabled(False)
    if len(a) == 4 and a[0] == "export":
        export(a[1], a[2], a[3], opset)
    elif len(a) == 4 and a[0] == "check":
        check(a[1], a[2], a[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
