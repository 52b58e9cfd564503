"""Convolutional models run on a CPU in chunks of images: the same numbers, several times faster on large batches.

On one CPU thread a convolution's time per image grows with the batch once its activations outgrow the cache: a
Fashion-MNIST Glow's forward and backward pass over 1,920 images took 3.8 s in one batch and 1.3 s in chunks of 128
(the CNN: 0.91 s and 0.49 s), and encoding 6,000 images 7.0 s against 1.8 s in chunks of 256. Each image's outputs and
input gradients were equal bit for bit (oneDNN computes every image alike whatever the batch), so the chunks change
speed, not results. Autograd sees the chunks' concatenation, so the backward pass runs in chunks too. On a GPU, large
batches are the fast ones, and the model runs whole.
"""

from __future__ import annotations

from typing import Callable

import torch

CPU_CHUNK = 256  # images per pass on a CPU (128-256 fastest in the measurement above; 512 was 2.6x slower than 256)


def in_chunks(fn: Callable, x: torch.Tensor, *more: torch.Tensor | None):
    """fn(x, *more) over chunks of `CPU_CHUNK` images where x is a CPU batch larger than that; every tensor in `more`
    is split alike (None passes through). fn returns a tensor or a tuple of tensors, one row per image."""
    if x.device.type != "cpu" or len(x) <= CPU_CHUNK:
        return fn(x, *more)
    xs = x.split(CPU_CHUNK)
    outs = [fn(*args) for args in zip(xs, *[[m] * len(xs) if m is None else m.split(CPU_CHUNK) for m in more])]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs))
    return torch.cat(outs)
