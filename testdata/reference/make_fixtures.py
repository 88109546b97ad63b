"""Fixtures of the reference implementation itself (huangmozhilv/u2net_torch).

Builds the reference's u2net3d in universal mode, draws every parameter at
random (seeded), runs its forward pass in float64 for each domain and
writes into testdata/reference/universal/:

  state.safetensors  the state_dict, float32, keys as PyTorch names them
  config.json        the same architecture in this project's config schema
  input_<d>.npy      the input of domain d, float32
  logits_<d>.npy     the reference's logits for it, float64

u2net's TestReferenceImplementation imports the state_dict (u2net import)
and compares its own forward pass with these logits.

Usage (Debian python3-torch; nothing of the reference is copied here):

  python3 testdata/reference/make_fixtures.py /path/to/u2net_torch/u2net_torch_src

The reference's model imports its global `config` module and a logger; this
script stands in small modules for both with the settings below, and lets
nn.Upsample take the reference's lists of scale factors (PyTorch 1.13
wants tuples). Only universal mode runs: the reference's conv_unit returns
nothing for a stride-1 unit outside universal mode, so its u2net3d cannot
compute a shared-mode forward pass.
"""
import json
import os
import struct
import sys
import types

import numpy as np
import torch

POOLS = [3, 3, 2]
BASE = 4
DOMAINS = [("a", 1, 3), ("b", 2, 2)]  # name, input channels, classes
SIZE = (8, 16, 8)  # D, H, W: divisible by the total strides (8, 8, 4)


def stub_modules(mode):
    cfg = types.ModuleType("config")
    cfg.trainMode = mode
    cfg.module = "separable_adapter"
    cfg.instance_norm = True
    cfg.residual = True
    cfg.deep_supervision = True
    cfg.num_pool_per_axis = POOLS
    cfg.task_idx = 0
    sys.modules["config"] = cfg
    logger = types.ModuleType("ccToolkits.logger")
    logger.info = lambda *a, **k: None
    tk = types.ModuleType("ccToolkits")
    tk.logger = logger
    sys.modules["ccToolkits"] = tk
    sys.modules["ccToolkits.logger"] = logger
    return cfg


class TupleUpsample(torch.nn.Upsample):
    """nn.Upsample that takes the reference's list of scale factors, which
    PyTorch 1.13 wants as a tuple."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        if isinstance(scale_factor, list):
            scale_factor = tuple(float(s) for s in scale_factor)
        super().__init__(size=size, scale_factor=scale_factor, mode=mode, align_corners=align_corners)


def write_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        data = tensors[name].detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    src = sys.argv[1]
    sys.path.insert(0, src)
    out_root = os.path.dirname(os.path.abspath(__file__))
    for mode in ["universal"]:
        cfg = stub_modules(mode)
        for m in [k for k in sys.modules if k.startswith("models")]:
            del sys.modules[m]
        import models.u2net3d as ref

        ref.nn.Upsample = TupleUpsample
        u2net3d = ref.u2net3d

        torch.manual_seed(7)
        net = u2net3d(inChans_list=[c for _, c, _ in DOMAINS], base_outChans=BASE, num_class_list=[k for _, _, k in DOMAINS])
        # Every parameter at random, the norms' scales around one, so that
        # a parameter in the wrong place changes the logits.
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(torch.randn_like(p) * 0.3)
                if name.endswith("weight") and p.dim() == 1:  # instance norm scale
                    p.add_(1.0)
        state = {k: v for k, v in net.state_dict().items()}
        d = os.path.join(out_root, mode)
        os.makedirs(d, exist_ok=True)
        write_safetensors(os.path.join(d, "state.safetensors"), state)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"mode": mode, "base_channels": BASE, "pools_per_axis": POOLS, "upsample": "nearest",
                       "deep_supervision": True, "residual": True,
                       "domains": [{"name": n, "in_channels": c, "classes": k} for n, c, k in DOMAINS]}, f, indent=1)
        # The float32 parameters, computed in float64.
        net64 = net.double()
        with torch.no_grad():
            for p in net64.parameters():
                p.copy_(p.float().double())
        rng = np.random.default_rng(11)
        for i, (_, c, _) in enumerate(DOMAINS):
            cfg.task_idx = i
            x = rng.standard_normal((1, c) + SIZE).astype(np.float32)
            with torch.no_grad():
                out = net64(torch.from_numpy(x).double())
            logits = out[0] if isinstance(out, tuple) else out
            np.save(os.path.join(d, "input_%d.npy" % i), x)
            np.save(os.path.join(d, "logits_%d.npy" % i), logits.numpy())
        print(mode, "written to", d, "with", len(state), "tensors")


if __name__ == "__main__":
    main()
