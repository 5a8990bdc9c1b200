"""A TorchDispatchMode that records every aten operation run inside it, for tests that count
work (conversions per batch, tensors built per call) instead of timing it."""

from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode


class OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.__name__)
        return func(*args, **(kwargs or {}))

    def count(self, name: str) -> int:
        """How many ops named `name` (e.g. 'pow.Tensor_Scalar', or a prefix like 'pow')."""
        return sum(op == name or op.split(".")[0] == name for op in self.ops)
