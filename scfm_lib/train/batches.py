"""From tokens to batches: the seeded epoch sampler, trimmed batch tensors, and the compute contexts.

:class:`EpochSampler` draws cell indices (with optional length bucketing) and checkpoints its
state; :func:`_tensors` turns cells into ``gene_ids``/``values`` tensors without all-padding
columns; :func:`_autocast` and :func:`_eval_mode` are the bf16 and evaluation contexts every
loop uses; :func:`tokens_sha256` identifies a run's training cells.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn as nn

from scfm_lib.data import PAD_ID, CellTokens

DEVICE = torch.device("cpu")


class EpochSampler:
    """Batches of cell indices from seeded shuffled epochs; a state that survives a restart.

    A batch that crosses an epoch boundary continues in the next shuffled epoch, so with fewer
    cells than ``batch_size`` a batch holds cells more than once (each with its own masks).

    Length bucketing (``lengths`` and ``bucket_size``): each shuffled epoch is cut into runs of
    ``bucket_size`` cells, each run is sorted by cell length, cut into batches of ``batch_size``
    and those batches are shuffled, so a batch holds cells of similar length and the padding
    that :func:`_tensors` trims away is short. Epochs stay random; only batch composition changes.

    Parameters
    ----------
    n : int
        Cells to draw from (indices ``0 .. n - 1``), >= 1.
    seed : int
        Seed of the shuffles.
    lengths : numpy.ndarray, optional
        Genes per cell, shape ``(n,)`` (:func:`cell_lengths`), for length bucketing.
    bucket_size : int
        Cells per sorted run; bucketing is off unless it exceeds ``batch_size``.
    batch_size : int
        The batch size the buckets are cut into.

    Raises
    ------
    ValueError
        When ``n < 1``.
    """

    def __init__(self, n: int, seed: int, lengths: np.ndarray | None = None, bucket_size: int = 0, batch_size: int = 1):
        if n < 1:
            raise ValueError("EpochSampler needs at least one cell")
        self.n, self.rng = n, np.random.default_rng(seed)
        self.lengths, self.bucket_size, self.batch_size = lengths, bucket_size, batch_size
        self.order, self.position = self._epoch(), 0

    def _epoch(self) -> np.ndarray:
        order = self.rng.permutation(self.n)
        if self.lengths is None or self.bucket_size <= self.batch_size:
            return order
        runs = []
        for start in range(0, self.n, self.bucket_size):
            run = order[start : start + self.bucket_size]
            run = run[np.argsort(-self.lengths[run], kind="stable")]  # longest first
            batches = [run[i : i + self.batch_size] for i in range(0, len(run), self.batch_size)]
            runs += [batches[i] for i in self.rng.permutation(len(batches))]
        return np.concatenate(runs)

    def next_batch(self, batch_size: int) -> np.ndarray:
        """The next ``batch_size`` cell indices, continuing into a new shuffled epoch when one ends.

        Parameters
        ----------
        batch_size : int
            Cells in the batch.

        Returns
        -------
        numpy.ndarray
            int64, shape ``(batch_size,)``, indices in ``[0, n)``.
        """
        picks = []
        while batch_size > 0:
            if self.position == self.n:
                self.order, self.position = self._epoch(), 0
            take = min(batch_size, self.n - self.position)
            picks.append(self.order[self.position : self.position + take])
            self.position += take
            batch_size -= take
        return np.concatenate(picks)  # [batch_size] int64

    def state_dict(self) -> dict:
        """The sampler's state (generator, current epoch order, position) for a checkpoint.

        Returns
        -------
        dict
            ``rng`` (the bit generator's state), ``order`` (an int64 tensor) and ``position``.
        """
        return {
            "rng": self.rng.bit_generator.state,
            "order": torch.from_numpy(self.order.astype(np.int64)),
            "position": self.position,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state from :meth:`state_dict`: the next batches are those the saved sampler would draw.

        Parameters
        ----------
        state : dict
            A :meth:`state_dict`.

        Returns
        -------
        None
        """
        self.rng.bit_generator.state = state["rng"]
        self.order, self.position = state["order"].numpy().copy(), int(state["position"])


def _tensors(tokens: CellTokens, idx=slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    """gene_ids [b, l] int64 and values [b, l] float32 of cells ``idx``, where l <= L drops the
    columns that are padding in every cell of the batch (padding trails in both tokenizations,
    and padded keys are masked, so the trimmed batch computes the same cells)."""
    gene_ids, values = tokens.take(idx)
    longest = max(1, int((gene_ids != PAD_ID).sum(1).max())) if len(gene_ids) else 1
    gene_ids = np.ascontiguousarray(gene_ids[:, :longest], dtype=np.int64)
    values = np.ascontiguousarray(values[:, :longest], dtype=np.float32)
    return torch.from_numpy(gene_ids).to(DEVICE), torch.from_numpy(values).to(DEVICE)


def cell_lengths(tokens: CellTokens) -> np.ndarray:
    """Genes per cell (non-padding positions): what length bucketing sorts by.

    Parameters
    ----------
    tokens : CellTokens
        The cells, ``n_cells`` of them (read block by block).

    Returns
    -------
    numpy.ndarray
        int64, shape ``(n_cells,)``.
    """
    return np.concatenate([(g != PAD_ID).sum(1) for g, _ in tokens.chunks()] or [np.zeros(0)]).astype(np.int64)


#: Set to ``1`` to run bf16 autocast on a CPU that only emulates bf16 (slow; see :func:`check_bf16`).
ALLOW_EMULATED_BF16 = "SCFM_ALLOW_EMULATED_BF16"


def native_bf16() -> bool:
    """Whether bf16 matrix products run in hardware here.

    A CUDA device, or a CPU with the AVX-512 instructions oneDNN uses for bf16
    (``torch.ops.mkldnn._is_mkldnn_bf16_supported``).

    Returns
    -------
    bool
        True where bf16 is native.
    """
    if DEVICE.type == "cuda":
        return True
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_bf16(enabled: bool) -> None:
    """Refuse bf16 autocast where the CPU only emulates bf16, before any work.

    On an AVX2-only CPU, bf16 autocast gives the same kind of numbers but runs several times slower
    than fp32 (benchmarks/bf16_cpu.py: a pretraining step of the real profile's model 7.8x the time of fp32),
    so a profile chosen for bf16 on an AVX-512 machine would take most of a day. ``SCFM_ALLOW_EMULATED_BF16=1``
    runs it anyway (same settings, so the same study as the committed book).

    Parameters
    ----------
    enabled : bool
        Whether the run asks for bf16 autocast.

    Returns
    -------
    None

    Raises
    ------
    RuntimeError
        When ``enabled``, bf16 is emulated here and ``SCFM_ALLOW_EMULATED_BF16`` is not ``1``; the
        message names the three ways out.
    """
    if not enabled or native_bf16() or os.environ.get(ALLOW_EMULATED_BF16) == "1":
        return
    raise RuntimeError(
        f"bf16 autocast was asked for (bf16: true), but this CPU ({torch.backends.cpu.get_cpu_capability()}) has no "
        "AVX-512, so PyTorch emulates bf16 and a step runs several times slower than in fp32. Either run where "
        f"bf16 is native (AVX-512 or a GPU), or set {ALLOW_EMULATED_BF16}=1 to run this configuration anyway "
        "(slow, same study), or turn bf16 off (bf16: false in the profile's pretrain/finetune section, or "
        "bf16=False in PretrainConfig/FinetuneConfig: faster here, but numbers differ slightly from runs in bf16)."
    )


def _autocast(enabled: bool):
    return torch.autocast(device_type=DEVICE.type, dtype=torch.bfloat16, enabled=enabled)


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no grad inside; the module's previous mode restored after."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        module.train(was_training)


def tokens_sha256(tokens: CellTokens) -> str:
    """A content hash of tokens (shapes, dtypes and bytes): identifies a run's training cells.

    Parameters
    ----------
    tokens : CellTokens
        The cells (streamed block by block, so a memory-mapped corpus stays on disk).

    Returns
    -------
    str
        The SHA-256 hex digest.
    """
    h = hashlib.sha256()
    for which in (0, 1):  # all gene ids, then all values; streamed, so a memory-mapped corpus stays on disk
        dtype = (tokens.gene_ids, tokens.values)[which].dtype
        h.update(f"{dtype.str}{(len(tokens), tokens.context)}".encode())
        for block in tokens.chunks():
            h.update(np.ascontiguousarray(block[which]).tobytes())
    return h.hexdigest()
