#!/usr/bin/python3
"""Generate the whole-network PyTorch fixtures that package u2net is tested
against (u2net/torch_test.go).

Run from anywhere with Debian's python3-torch (1.13) and python3-numpy:

    /usr/bin/python3 testdata/model/make_fixtures.py

This is an independent PyTorch definition of the 3D U²-Net of DESIGN.md §4,
built from PyTorch's own layers (nn.Conv3d, nn.ConvTranspose3d,
nn.InstanceNorm3d, F.leaky_relu, F.pad, F.interpolate) and computed in
float64. Its parameters are named by the project's scheme (the u2net package
doc): a layer's scope, then the domain's name for a per-domain layer (every
layer in independent mode), then "weight" or "bias".

Every case gets a folder testdata/model/<case>/ holding

    config.json                the model config (DESIGN.md §5 schema)
    params/<name>.npy          every parameter, float32
    <domain>/x.npy             the input batch [N, in, D, H, W], float32
    <domain>/labels.npy        class labels [N, D, H, W], int32
    <domain>/logits.npy        the network's output [N, classes, D, H, W]
    <domain>/loss.npy          [cross-entropy, soft Dice], float64
    <domain>/grads/<name>.npy  d(CE + Dice)/d(parameter) for every parameter
                               the domain uses (shared and its own), float64

Parameters and inputs are drawn from a fixed seed and rounded to float32, so
the Go model reads exactly the values that PyTorch used. The loss is the
training loss of u2net.Net: cross-entropy averaged over every voxel of the
batch, plus the soft Dice loss over the foreground classes with sums over
the whole batch and smoothing 1e-5 (ops/ref/loss.go).
"""

import json
import os
import shutil

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.abspath(__file__))
SLOPE = 0.01
DICE_EPS = 1e-5

torch.set_default_dtype(torch.float64)


def act(x):
    return F.leaky_relu(x, SLOPE)


class UNet:
    """The network of every domain of a config; layers are made on first use
    and kept by their parameter scope, so shared layers are shared."""

    def __init__(self, cfg, gen):
        self.cfg = cfg
        self.gen = gen
        self.layers = {}
        self.dom = None
        self.levels = max(cfg["pools_per_axis"]) + 1

    # --- configuration -------------------------------------------------
    def channels(self, i):
        return self.cfg["base_channels"] * 2 ** i

    def stride(self, i):
        return tuple(2 if i < p else 1 for p in self.cfg["pools_per_axis"])

    def scope(self, name, per_domain):
        if per_domain or self.cfg["mode"] == "independent":
            return name + "." + self.dom["name"]
        return name

    def layer(self, name, per_domain, make):
        key = self.scope(name, per_domain)
        if key not in self.layers:
            m = make()
            self.init(m)
            self.layers[key] = m
        return self.layers[key]

    def init(self, m):
        """Random values rounded to float32: PyTorch's default bounds for
        convolutions, and scales near 1 and shifts near 0 for the norms
        (not exactly 1 and 0, so that their gradients carry through)."""
        with torch.no_grad():
            if isinstance(m, nn.InstanceNorm3d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=self.gen))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=self.gen))
            else:
                # Conv3d and ConvTranspose3d both take the fan-in from weight
                # dimension 1 times the kernel size.
                w = m.weight
                fan_in = w.shape[1] * w[0, 0].numel()
                bound = 1 / fan_in ** 0.5
                w.copy_((2 * torch.rand(w.shape, generator=self.gen) - 1) * bound)
                m.bias.copy_((2 * torch.rand(m.bias.shape, generator=self.gen) - 1) * bound)
            for p in m.parameters():
                p.copy_(p.float().double())

    # --- layers ----------------------------------------------------------
    def conv(self, name, per_domain, x, cout, k, stride=1, padding=0):
        c = self.layer(name, per_domain, lambda: nn.Conv3d(x.shape[1], cout, k, stride=stride, padding=padding))
        return c(x)

    def depthwise(self, name, x):
        c = x.shape[1]
        m = self.layer(name, True, lambda: nn.Conv3d(c, c, 3, padding=1, groups=c))
        return m(x)

    def norm(self, name, x):
        c = x.shape[1]
        m = self.layer(name, True, lambda: nn.InstanceNorm3d(c, eps=1e-5, affine=True))
        return m(x)

    def tconv(self, name, x, cout, s):
        m = self.layer(name, False, lambda: nn.ConvTranspose3d(x.shape[1], cout, s, stride=s))
        return m(x)

    def unit(self, name, x, cout, k):
        """The conv unit; the caller applies the activation."""
        if self.cfg["mode"] == "universal":
            h = self.depthwise(name + ".dw", x)
            h = act(self.norm(name + ".dwnorm", h))
            h = self.conv(name + ".pw", False, h, cout, 1)
            return self.norm(name + ".norm", h)
        h = self.conv(name + ".conv", False, x, cout, k, padding=k // 2)
        return self.norm(name + ".norm", h)

    # --- the network -----------------------------------------------------
    def forward(self, dom, x):
        self.dom = dom
        cfg, L = self.cfg, self.levels
        h = self.conv("in.conv", True, x, self.channels(0), 3, padding=1)
        h = act(self.norm("in.norm", h))

        skips = []
        for i in range(L):
            c = self.channels(i)
            a = act(self.unit("enc%d.u1" % i, h, c, 3))
            r = self.unit("enc%d.u2" % i, a, c, 3)
            r = act(h + r) if cfg["residual"] else act(r)
            skips.append(r)
            if i == L - 1:
                break
            s = self.stride(i)
            before = [0 if si == 2 else 1 for si in s]
            after = [1, 1, 1]
            # F.pad lists the last axis first.
            h = F.pad(r, (before[2], after[2], before[1], after[1], before[0], after[0]))
            h = self.conv("down%d.conv" % i, False, h, self.channels(i + 1), 3, stride=s)
            h = act(self.norm("down%d.norm" % i, h))

        deeper = skips[L - 1]
        outs = [None] * L
        for i in range(L - 2, -1, -1):
            c, s = self.channels(i), self.stride(i)
            if cfg["upsample"] == "transpose":
                up = self.tconv("dec%d.up.tconv" % i, deeper, c, s)
                up = act(self.norm("dec%d.up.norm" % i, up))
            else:
                up = F.interpolate(deeper, scale_factor=tuple(float(f) for f in s), mode="nearest")
                up = act(self.unit("dec%d.up" % i, up, c, 3))
            h = torch.cat([up, skips[i]], 1)
            h = act(self.unit("dec%d.u1" % i, h, c, 3))
            h = act(self.unit("dec%d.u2" % i, h, c, 3 if cfg["mode"] == "universal" else 1))
            outs[i] = h
            deeper = h

        classes = dom["classes"]
        ds = None
        if cfg["deep_supervision"]:
            for i in (2, 1):
                if i > L - 2:
                    continue  # no decoder output at this level
                t = self.conv("ds%d.conv" % i, True, outs[i], classes, 1)
                t = act(self.norm("ds%d.norm" % i, t))
                if ds is not None:
                    t = t + ds
                ds = F.interpolate(t, scale_factor=tuple(float(f) for f in self.stride(i - 1)), mode="nearest")
        last = outs[0] if L > 1 else skips[0]
        logits = self.conv("out.conv", True, last, classes, 1)
        if ds is not None:
            logits = logits + ds
        return logits

    def named_params(self):
        for scope, m in self.layers.items():
            yield scope + ".weight", m.weight
            yield scope + ".bias", m.bias


def losses(logits, labels, classes):
    ce = F.cross_entropy(logits, labels)
    p = torch.softmax(logits, 1)
    g = F.one_hot(labels, classes).permute(0, 4, 1, 2, 3).to(p.dtype)
    dims = (0, 2, 3, 4)
    dice = (2 * (p * g).sum(dims) + DICE_EPS) / (p.sum(dims) + g.sum(dims) + DICE_EPS)
    return ce, 1 - dice[1:].mean()


def save(path, a, dtype):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(a, torch.Tensor):
        a = a.detach().numpy()
    np.save(path, np.ascontiguousarray(a, dtype=dtype))


def make_case(name, cfg, batch, size, seed):
    gen = torch.Generator().manual_seed(seed)
    net = UNet(cfg, gen)
    d = os.path.join(ROOT, name)
    inputs = {}
    # Build every domain's layers first (in a fixed order), so the values
    # do not depend on which domain's gradient is taken first.
    for dom in cfg["domains"]:
        x = torch.randn(batch, dom["in_channels"], *size, generator=gen).float().double()
        lab = torch.randint(dom["classes"], (batch,) + tuple(size), generator=gen)
        inputs[dom["name"]] = (x, lab)
        with torch.no_grad():
            net.forward(dom, x)
    params = dict(net.named_params())
    for pname, p in params.items():
        save(os.path.join(d, "params", pname + ".npy"), p, np.float32)

    for dom in cfg["domains"]:
        x, lab = inputs[dom["name"]]
        for p in params.values():
            p.grad = None
        logits = net.forward(dom, x)
        ce, dice = losses(logits, lab, dom["classes"])
        (ce + dice).backward()
        dd = os.path.join(d, dom["name"])
        save(os.path.join(dd, "x.npy"), x, np.float32)
        save(os.path.join(dd, "labels.npy"), lab, np.int32)
        save(os.path.join(dd, "logits.npy"), logits, np.float64)
        save(os.path.join(dd, "loss.npy"), torch.stack([ce, dice]), np.float64)
        for pname, p in params.items():
            if p.grad is not None:
                save(os.path.join(dd, "grads", pname + ".npy"), p.grad, np.float64)

    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
        f.write("\n")
    print("%s: %d parameter tensors, %d values" % (name, len(params), sum(p.numel() for p in params.values())))


DOMAINS = [{"name": "ct", "in_channels": 1, "classes": 2},
           {"name": "mr", "in_channels": 2, "classes": 3}]


def config(mode, upsample, pools, deep_supervision=True, residual=True):
    return {"mode": mode, "base_channels": 2, "pools_per_axis": pools,
            "upsample": upsample, "deep_supervision": deep_supervision,
            "residual": residual, "domains": DOMAINS}


def main():
    for entry in os.listdir(ROOT):
        if os.path.isdir(os.path.join(ROOT, entry)):
            shutil.rmtree(os.path.join(ROOT, entry))
    # Four levels with strides (2,2,2), (1,2,2), (1,1,2): deep supervision at
    # levels 2 and 1.
    make_case("universal_transpose", config("universal", "transpose", [1, 2, 3]), 2, (4, 8, 8), 1)
    # Three levels: deep supervision at level 1 only.
    make_case("shared_nearest", config("shared", "nearest", [1, 2, 2]), 2, (4, 8, 8), 2)
    # No residuals, no deep supervision, one stride-1 axis throughout and an
    # odd size on it.
    make_case("independent_plain", config("independent", "transpose", [2, 1, 0], False, False), 2, (4, 4, 5), 3)


if __name__ == "__main__":
    main()
