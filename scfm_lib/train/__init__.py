"""Training runners: pretraining (masked values), finetuning (annotation), checkpoints, inference.

Kept apart from the ``nn.Module`` (model.py) and from the AnnData API (tl.py). A checkpoint is
a folder::

    model.safetensors   the weights
    checkpoint.json     model config, pretraining config, step, history, n_train, sha256 of the weights
    trainer_state.pt    everything a resume needs, in one file: weights, optimizer, step (the
                        learning-rate schedule is a function of the step), RNG and data-order state

Every file is written atomically (``trainer_state.pt`` first, ``checkpoint.json`` last), so a
folder whose JSON exists holds a complete checkpoint, and a run killed at any moment resumes
from its last ``trainer_state.pt``. Same seed, same numbers on CPU, with or without a kill.
The initialization, data order and masks use their own seeded generators; torch's global
generator (used by dropout only) is seeded, checkpointed and restored for the caller.

The rooms, each importing only those above it:

- ``config``       :class:`PretrainConfig`, :class:`FinetuneConfig` and their checks; the cosine
                   learning-rate schedule and the AdamW setup (``param_groups``, ``adamw``)
- ``batches``      :class:`EpochSampler`, trimmed batch tensors, cell lengths, the bf16 and eval
                   contexts, the training cells' content hash
- ``checkpoint``   the seeded initial model; saving, loading and verifying checkpoint folders;
                   the random-init control; what makes two runs the same run
- ``inference``    the masked-prediction loss (``reconstruction_loss``) and cell embeddings
                   (``embed``, ``embed_layers``)
- ``pretraining``  ``pretrain``: the resumable, optionally data-parallel pretraining loop
- ``finetuning``   ``finetune_classifier`` (regimes full, last_k, head_only, lora) and ``predict``

Everything callers use is importable from here (``from scfm_lib.train import pretrain``). A test
that patches a name one of these functions looks up must patch it in the room that calls it
(e.g. ``scfm_lib.train.pretraining.save_checkpoint``), not here.
"""

from scfm_lib.train.batches import (
    ALLOW_EMULATED_BF16,
    DEVICE,
    EpochSampler,
    _autocast,
    _tensors,
    cell_lengths,
    check_bf16,
    native_bf16,
    tokens_sha256,
)

# Imported by checkpoint.py, re-exported because callers (tests) read them as scfm_lib.train.<name>.
from scfm_lib.train.checkpoint import (
    META,
    TRAINER_STATE,
    WEIGHTS,
    init_checkpoint,
    initial_model,
    load_checkpoint,
    save_checkpoint,
    save_file,
    write_json,
)
from scfm_lib.train.config import (
    FINETUNE_REGIMES,
    LORA_TARGET_MODULES,
    PRETRAIN_BUDGETS,
    FinetuneConfig,
    PretrainConfig,
    adamw,
    cosine_lr,
    param_groups,
)
from scfm_lib.train.finetuning import _classifier_eval, _inject_lora, finetune_classifier, predict
from scfm_lib.train.inference import VAL_MASK_SEED, embed, embed_layers, reconstruction_loss
from scfm_lib.train.pretraining import pretrain
