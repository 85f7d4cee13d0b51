"""scfm_lib: model, training and metric code for the scfm-masking study.

Layout follows scanpy/scvi-tools conventions:
- ``atlas``     synthetic cell atlas (the embedded dataset)
- ``data``      validation, gene vocabulary, nested corpus reductions, splits, tokenization
- ``model``     the scGPT-style transformer (one ``nn.Module`` file)
- ``train``     pretraining and finetuning runners, checkpoints
- ``evaluate``  frozen, zero-shot and baseline evaluations on embeddings
- ``metrics``   metric functions (arrays in, float out)
- ``stats``     the masking statistic (slopes, bootstrap CIs, masking index)
"""

__version__ = "0.1.0"
