#!/usr/bin/python3
"""Generate the PyTorch fixtures that ops/ref is tested against.

Run from anywhere with Debian's python3-torch (1.13) and python3-numpy:

    /usr/bin/python3 testdata/ops/make_fixtures.py

Every case gets a folder testdata/ops/<case>/ of .npy files. Inputs are
drawn from a fixed seed, rounded to float32 and stored as float32, so the Go
reference reads exactly the values that PyTorch used. PyTorch then computes in
float64, forward and backward (autograd, with the output gradient "dy" as
the weights of a random weighted sum of the outputs), and the results are
stored as float64. Labels are int32. The shapes are small and awkward on
purpose (batch 1 and 3, channels 1, 3 and 17, sizes 1 and primes). The Go
test holds the same parameters and checks every array's shape against them.
"""

import os
import shutil

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.abspath(__file__))
gen = torch.Generator().manual_seed(20261127)


def rand(*shape, scale=1.0, shift=0.0):
    """Normal values rounded to float32, held as float64."""
    x = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale + shift
    return x.float().double()


def leaf(*shape, **kw):
    return rand(*shape, **kw).requires_grad_(True)


def labels(n, k, size, avoid=()):
    allowed = torch.tensor([c for c in range(k) if c not in avoid])
    idx = torch.randint(len(allowed), (n,) + tuple(size), generator=gen)
    return allowed[idx]


def save(case, **arrays):
    """Save inputs (names in INPUTS) as float32, int tensors as int32 and
    everything else as float64."""
    d = os.path.join(ROOT, case)
    os.makedirs(d, exist_ok=True)
    for name, a in arrays.items():
        if isinstance(a, torch.Tensor):
            a = a.detach()
            if a.dtype in (torch.int64, torch.int32):
                a = a.numpy().astype(np.int32)
            elif name in INPUTS or (name[0] == "x" and name[1:].isdigit()):
                a = a.numpy().astype(np.float32)
            else:
                a = a.numpy().astype(np.float64)
        else:
            a = np.asarray(a, dtype=np.float64)
        np.save(os.path.join(d, name + ".npy"), a)


INPUTS = {"x", "w", "b", "dy", "r", "gamma", "beta", "logits", "param0", "grads"}


def grads_of(y, dy, *leaves):
    y.backward(dy)
    return [t.grad for t in leaves]


def depthwise(case, n, c, size, k):
    x, w, b = leaf(n, c, *size), leaf(c, 1, k, k, k, scale=0.5), leaf(c)
    y = F.conv3d(x, w, b, padding=k // 2, groups=c)
    dy = rand(*y.shape)
    dx, dw, db = grads_of(y, dy, x, w, b)
    save(case, x=x, w=w, b=b, y=y, dy=dy, dx=dx, dw=dw, db=db)


def pointwise(case, n, cin, cout, size):
    x, w, b = leaf(n, cin, *size), leaf(cout, cin, 1, 1, 1, scale=0.5), leaf(cout)
    y = F.conv3d(x, w, b)
    dy = rand(*y.shape)
    dx, dw, db = grads_of(y, dy, x, w, b)
    save(case, x=x, w=w, b=b, y=y, dy=dy, dx=dx, dw=dw, db=db)


def conv(case, n, cin, cout, size, kernel, stride, before, after):
    x, w, b = leaf(n, cin, *size), leaf(cout, cin, *kernel, scale=0.5), leaf(cout)
    # F.pad lists the last axis first: (W before, W after, H ..., D ...).
    pads = (before[2], after[2], before[1], after[1], before[0], after[0])
    y = F.conv3d(F.pad(x, pads), w, b, stride=stride)
    dy = rand(*y.shape)
    dx, dw, db = grads_of(y, dy, x, w, b)
    save(case, x=x, w=w, b=b, y=y, dy=dy, dx=dx, dw=dw, db=db)


def conv_transpose(case, n, cin, cout, size, kernel, stride):
    x, w, b = leaf(n, cin, *size), leaf(cin, cout, *kernel, scale=0.5), leaf(cout)
    y = F.conv_transpose3d(x, w, b, stride=stride)
    dy = rand(*y.shape)
    dx, dw, db = grads_of(y, dy, x, w, b)
    save(case, x=x, w=w, b=b, y=y, dy=dy, dx=dx, dw=dw, db=db)


def instance_norm(case, n, c, size, residual, act, slope):
    x = leaf(n, c, *size, scale=2.0, shift=0.5)
    r = leaf(n, c, *size)
    gamma, beta = leaf(c, scale=0.3, shift=1.0), leaf(c, scale=0.5)
    y = F.instance_norm(x, weight=gamma, bias=beta, eps=1e-5)
    if residual:
        y = y + r  # the end of a residual block: act(r + IN(x))
    if act:
        y = F.leaky_relu(y, slope)
    dy = rand(*y.shape)
    dx, dr, dgamma, dbeta = grads_of(y, dy, x, r, gamma, beta)
    uu = x.detach().reshape(n, c, -1)
    mean = uu.mean(-1)
    inv_std = 1 / torch.sqrt(uu.var(-1, unbiased=False) + 1e-5)
    out = dict(x=x, gamma=gamma, beta=beta, y=y, dy=dy, dx=dx, dgamma=dgamma,
               dbeta=dbeta, mean=mean, inv_std=inv_std)
    if residual:
        out.update(r=r, dr=dr)
    save(case, **out)


def leaky(case, shape, slope):
    x = rand(*shape)
    x.view(-1)[::5] = 0  # the kink, where PyTorch takes the slope side
    x.requires_grad_(True)
    y = F.leaky_relu(x, slope)
    dy = rand(*shape)
    (dx,) = grads_of(y, dy, x)
    save(case, x=x, y=y, dy=dy, dx=dx)


def upsample(case, n, c, size, factor):
    x = leaf(n, c, *size)
    y = F.interpolate(x, scale_factor=factor, mode="nearest")
    dy = rand(*y.shape)
    (dx,) = grads_of(y, dy, x)
    save(case, x=x, y=y, dy=dy, dx=dx)


def pad(case, n, c, size, before, after):
    x = leaf(n, c, *size)
    y = F.pad(x, (before[2], after[2], before[1], after[1], before[0], after[0]))
    dy = rand(*y.shape)
    (dx,) = grads_of(y, dy, x)
    save(case, x=x, y=y, dy=dy, dx=dx)


def concat(case, n, channels, size):
    parts = [leaf(n, c, *size) for c in channels]
    y = torch.cat(parts, 1)
    dy = rand(*y.shape)
    grads = grads_of(y, dy, *parts)
    out = dict(y=y, dy=dy)
    for i, (p, g) in enumerate(zip(parts, grads)):
        out["x%d" % i] = p
        out["dx%d" % i] = g
    save(case, **out)


def cross_entropy(case, n, k, size):
    logits = leaf(n, k, *size, scale=2.0)
    lab = labels(n, k, size)
    loss = F.cross_entropy(logits, lab)
    loss.backward()
    probs = torch.softmax(logits.detach(), 1)
    argmax = logits.detach().argmax(1)
    save(case, logits=logits, labels=lab, loss=loss.detach().reshape(1),
         dlogits=logits.grad, probs=probs, argmax=argmax)


def soft_dice(case, n, k, size, eps, include_background, avoid=()):
    logits = leaf(n, k, *size, scale=2.0)
    lab = labels(n, k, size, avoid)
    p = torch.softmax(logits, 1)
    g = F.one_hot(lab, k).permute(0, 4, 1, 2, 3).double()
    dims = (0, 2, 3, 4)
    dice = (2 * (p * g).sum(dims) + eps) / (p.sum(dims) + g.sum(dims) + eps)
    if not include_background:
        dice = dice[1:]
    loss = 1 - dice.mean()
    loss.backward()
    save(case, logits=logits, labels=lab, loss=loss.detach().reshape(1),
         dlogits=logits.grad)


def optimiser(case, make, size, steps):
    param0 = rand(size)
    grads = rand(steps, size)
    p = param0.clone().requires_grad_(True)
    opt = make([p])
    params = []
    for s in range(steps):
        p.grad = grads[s].clone()
        opt.step()
        params.append(p.detach().clone())
    state = opt.state[p]
    out = dict(param0=param0, grads=grads, params=torch.stack(params))
    for key, name in (("exp_avg", "m"), ("exp_avg_sq", "v"), ("momentum_buffer", "buf")):
        if state.get(key) is not None:
            out[name] = state[key]
    save(case, **out)


def main():
    for entry in os.listdir(ROOT):
        if os.path.isdir(os.path.join(ROOT, entry)):
            shutil.rmtree(os.path.join(ROOT, entry))

    depthwise("depthwise_k3", 3, 3, (5, 1, 7), 3)
    depthwise("depthwise_k1", 1, 17, (2, 3, 5), 1)
    depthwise("depthwise_k5", 1, 3, (3, 4, 2), 5)

    pointwise("pointwise_17to3", 3, 17, 3, (1, 3, 5))
    pointwise("pointwise_1to17", 1, 1, 17, (2, 2, 3))

    conv("conv_k3_pad1", 1, 3, 5, (3, 4, 5), (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1))
    conv("conv_k3_s122_asym", 3, 3, 2, (3, 6, 7), (3, 3, 3), (1, 2, 2), (1, 0, 0), (1, 1, 1))
    conv("conv_k3_s2_nopad", 1, 2, 3, (5, 5, 4), (3, 3, 3), (2, 2, 2), (0, 0, 0), (0, 0, 0))
    conv("conv_k132_mixed", 1, 17, 1, (1, 3, 4), (1, 3, 2), (1, 1, 2), (0, 2, 0), (0, 0, 1))
    conv("conv_k1", 3, 3, 4, (2, 1, 3), (1, 1, 1), (1, 1, 1), (0, 0, 0), (0, 0, 0))

    conv_transpose("convt_222", 3, 3, 2, (2, 1, 3), (2, 2, 2), (2, 2, 2))
    conv_transpose("convt_122", 1, 17, 3, (3, 2, 1), (1, 2, 2), (1, 2, 2))
    conv_transpose("convt_k321_s211", 1, 2, 3, (2, 3, 2), (3, 2, 1), (2, 1, 1))

    instance_norm("norm_residual_leaky", 3, 3, (3, 1, 5), True, True, 0.01)
    instance_norm("norm_plain", 1, 17, (2, 2, 2), False, False, 0.01)
    instance_norm("norm_leaky02", 1, 1, (7, 1, 1), False, True, 0.2)

    leaky("leaky_001", (2, 3, 1, 2, 5), 0.01)
    leaky("leaky_02", (1, 1, 3, 1, 7), 0.2)

    upsample("upsample_222", 1, 3, (2, 1, 3), (2, 2, 2))
    upsample("upsample_122", 3, 1, (3, 2, 2), (1, 2, 2))
    upsample("upsample_312", 1, 2, (1, 3, 2), (3, 1, 2))

    pad("pad_asym", 3, 3, (2, 3, 1), (0, 1, 2), (1, 0, 3))
    pad("pad_same_s2", 1, 2, (4, 3, 5), (1, 0, 0), (1, 1, 1))

    concat("concat_3parts", 3, (1, 3, 2), (2, 1, 3))

    cross_entropy("cross_entropy_k3", 3, 3, (2, 1, 5))
    cross_entropy("cross_entropy_k17", 1, 17, (3, 2, 1))

    soft_dice("dice_background", 3, 3, (2, 3, 1), 1e-5, True)
    soft_dice("dice_no_background", 1, 4, (3, 1, 5), 1e-5, False, avoid=(3,))
    soft_dice("dice_eps1", 3, 2, (1, 1, 7), 1.0, False)

    optimiser("adam_wd", lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-2), 37, 4)
    optimiser("adam_betas", lambda ps: torch.optim.Adam(
        ps, lr=0.1, betas=(0.5, 0.9), eps=1e-3), 11, 3)
    optimiser("sgd_nesterov", lambda ps: torch.optim.SGD(
        ps, lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True), 37, 4)
    optimiser("sgd_momentum_dampening", lambda ps: torch.optim.SGD(
        ps, lr=0.05, momentum=0.8, dampening=0.3, weight_decay=1e-2), 13, 3)
    optimiser("sgd_plain", lambda ps: torch.optim.SGD(ps, lr=0.2, weight_decay=0.1), 5, 2)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
