"""The loss kernel of the geneformer family's masked-gene head, apart from the transformer (model.py).

- :func:`linear_cross_entropy`: per-row cross-entropy of ``h @ weight.T + bias`` without an fp32
  [M, V] logits tensor (a custom autograd function, :class:`_LinearCrossEntropy`), which the
  geneformer family's :func:`~scfm_lib.families.geneformer.masked_error` and
  :func:`~scfm_lib.families.geneformer.pretraining_loss` call through the tied vocabulary decoder.
- :func:`masked_rows`: each cell's masked positions as a padded [B, P] index, the ``final_rows``
  the last block then runs at alone.

Both are pure tensor functions (no parameters, no random numbers); ``scfm_lib.model`` re-exports them.

Shapes: B cells, L gene positions, M masked positions in the batch, D model width, V vocabulary.
"""

from __future__ import annotations

import torch


class _LinearCrossEntropy(torch.autograd.Function):
    """Per-row cross-entropy of ``h @ weight.T + bias`` (see :func:`linear_cross_entropy`)."""

    @staticmethod
    def forward(ctx, h, weight, bias, targets, need_grad: bool, chunk_rows: int):
        # h [M, D], weight [V, D] (both the matmul dtype), bias [V] fp32, targets [M] long
        with torch.autocast(h.device.type, enabled=False):
            logits = h @ weight.T  # [M, V], h.dtype
            losses = torch.empty(len(h), dtype=torch.float32, device=h.device)  # [M]
            for start in range(0, len(h), chunk_rows):
                rows = slice(start, start + chunk_rows)
                z = torch.add(logits[rows], bias)  # [c, V] fp32; fits in cache
                z -= z.amax(1, keepdim=True)  # logits - their max: exp <= 1
                target = targets[rows, None]  # [c, 1]
                target_logit = z.gather(1, target)  # [c, 1]
                total = z.exp_().sum(1, keepdim=True)  # [c, 1]; z is now exp(logits - max)
                losses[rows] = (total.log() - target_logit).squeeze(1)  # logsumexp - target logit
                if need_grad:  # d loss / d logits = softmax - one_hot, written over the logits
                    z.mul_(total.reciprocal_()).scatter_add_(1, target, torch.full_like(total, -1.0))
                    logits[rows] = z
        ctx.save_for_backward(h, weight, logits if need_grad else None)
        return losses

    @staticmethod
    def backward(ctx, grad_losses):  # grad_losses [M]
        h, weight, grad_logits = ctx.saved_tensors  # grad_logits [M, V] unscaled, h.dtype
        with torch.autocast(h.device.type, enabled=False):
            # d loss_i / d logits_i times grad_losses_i: the row scaling is applied to the [M, D]
            # side of each product, never to the [M, V] gradient (that would be one more pass over it).
            scale = grad_losses.to(h.dtype)  # [M]
            grad_h = (grad_logits @ weight) * scale[:, None]  # [M, D]
            grad_weight = grad_logits.T @ (h * scale[:, None])  # [V, D]
            grad_bias = (scale @ grad_logits).float()  # [V]; fp32 accumulation inside
        return grad_h, grad_weight, grad_bias, None, None, None


@torch.compiler.disable  # compiled, the chunk loop would be unrolled and recompiled for every M
def linear_cross_entropy(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor, chunk_rows: int = 32
) -> torch.Tensor:
    """``F.cross_entropy((h @ weight.T).float() + bias, targets, reduction="none")``, without fp32 logits.

    Differentiable in ``h``, ``weight`` and ``bias``, without the fp32 [M, V] logits.

    The loss over a 20k-gene vocabulary is memory-bound: the plain expression writes and rereads
    [M, V] fp32 logits, log-probabilities and their gradient (~100 MB each at M = 1200). Here
    the logits stay in the matmul dtype (bf16 under autocast); each block of ``chunk_rows`` rows
    is softmaxed in fp32 while in cache, and its gradient (softmax - one-hot, the only thing
    backward needs) overwrites it. The numbers are the plain expression's, up to the rounding of
    the gradient to the matmul dtype, which the plain expression's bf16 matmul backward does too.

    Parameters
    ----------
    h : torch.Tensor
        Hidden states, shape ``(M, D)``, in the matmul dtype.
    weight : torch.Tensor
        The decoder, shape ``(V, D)``, of ``h``'s dtype.
    bias : torch.Tensor
        Shape ``(V,)``.
    targets : torch.Tensor
        long, shape ``(M,)``, in ``[0, V)``.
    chunk_rows : int
        Rows softmaxed at a time.

    Returns
    -------
    torch.Tensor
        fp32, shape ``(M,)``: each row's cross-entropy, >= 0.

    Raises
    ------
    ValueError
        When ``h`` and ``weight`` are not 2-D of one dtype and width.
    """
    if h.dtype != weight.dtype or h.ndim != 2 or weight.ndim != 2 or h.shape[1] != weight.shape[1]:
        raise ValueError(
            f"h {tuple(h.shape)} {h.dtype} and weight {tuple(weight.shape)} {weight.dtype} must be "
            "[M, D] and [V, D] of one dtype"
        )
    need_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad or bias.requires_grad)
    return _LinearCrossEntropy.apply(h, weight, bias.float(), targets, need_grad, chunk_rows)


def masked_rows(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each cell's masked positions as a padded index.

    P = the most masked positions of any cell: each cell's masked positions in ascending order,
    then filler positions (``present`` False) up to P.

    Parameters
    ----------
    mask : torch.Tensor
        bool, shape ``(B, L)``.

    Returns
    -------
    rows : torch.Tensor
        long, shape ``(B, P)``.
    present : torch.Tensor
        bool, shape ``(B, P)``: False at filler positions.
    """
    P = int(mask.sum(1).max())
    rows = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)[:, :P]  # masked (0) sort first
    return rows, torch.gather(mask, 1, rows)
