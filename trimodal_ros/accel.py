"""How a tick runs on its device: in fp32, or under bf16 / fp16 autocast, and on CUDA optionally as
one captured CUDA graph per input shape. A small model's tick on a large GPU is launch-bound (its
kernels take less time than launching them one by one from Python); replaying a graph launches them
all at once. The weights are untouched: the same checkpoint serves every mode, and ``trimodal-ros
bench tick`` prints each mode's time and the share of ticks whose tokens equal fp32's (a GPU figure,
never a test)."""

from __future__ import annotations

import contextlib
import logging
from typing import Dict, Tuple

import torch

from .model.configuration import PRECISIONS
from .model.encoders import TextFeatures
from .model.trimodal import TriModalModel, TriModalOutput
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
log = logging.getLogger(__name__)


def check_tick(precision: str, cuda_graph: bool, device: torch.device) -> None:
    """ValueError for a mode the device cannot run (the node refuses to configure with it)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device (on the CPU use bf16 or fp32)")
    if cuda_graph and device.type != "cuda":
        raise ValueError(f"cuda_graph needs a CUDA device, the model is on {device}")


class Tick:
    """``tick(images, proprio, text) -> TriModalOutput``: the model's forward in the chosen mode. With
    ``cuda_graph`` the first call of each input shape warms up and captures a graph, later calls copy
    their inputs into its static buffers and replay it; the returned tensors are those buffers, valid
    until the next call (the policy reads them at once). A shape whose capture fails runs eager from
    then on, with a logged warning (``graph_failures`` counts them)."""

    def __init__(self, model: TriModalModel, precision: str = "fp32", cuda_graph: bool = False):
        check_tick(precision, cuda_graph, model.device)
        self.model, self.precision, self.cuda_graph = model, precision, bool(cuda_graph)
        self._graphs: Dict[Tuple, object] = {}  # input shapes → (graph, static inputs, outputs), or None: eager
        self.graph_failures = 0

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        # no cast cache: a graph must not capture casts of weights cached by an earlier call
        return torch.autocast(self.model.device.type, dtype=_DTYPES[self.precision],
                              cache_enabled=not self.cuda_graph)

    def _forward(self, images, proprio, text: TextFeatures) -> TriModalOutput:
        with self._autocast():
            return self.model(images, proprio, text=text)

    def __call__(self, images: torch.Tensor, proprio: torch.Tensor, text: TextFeatures) -> TriModalOutput:
        # images (B, 3, S, S) or (B, V, 3, S, S), proprio (B, P), text of batch B or 1
        if not self.cuda_graph:
            return self._forward(images, proprio, text)
        inputs = (images, proprio, text.pooled, text.tokens, text.mask)
        key = tuple((tuple(x.shape), x.dtype) for x in inputs)
        if key not in self._graphs:
            try:
                with torch.cuda.device(self.model.device):
                    self._graphs[key] = self._capture(inputs)
            except Exception as e:  # noqa: BLE001 - an op that cannot be captured: serve eager, say so
                self._graphs[key], self.graph_failures = None, self.graph_failures + 1
                log.warning("CUDA graph capture failed for input shapes %s (%s: %s): running eager",
                            [s for s, _ in key], type(e).__name__, e)
        if self._graphs[key] is None:
            return self._forward(images, proprio, text)
        graph, static, out = self._graphs[key]
        for buffer, x in zip(static, inputs):
            buffer.copy_(x)
        with torch.cuda.device(self.model.device):
            graph.replay()
        return out

    def _capture(self, inputs) -> tuple:
        static = [x.clone() for x in inputs]
        run = lambda: self._forward(static[0], static[1], TextFeatures(*static[2:]))  # noqa: E731
        side = torch.cuda.Stream(device=self.model.device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the default stream, as graph capture requires
            for _ in range(3):
                run()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = run()
        return graph, static, out
