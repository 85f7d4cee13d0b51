"""scfm_lib: model, training and metric code for the scfm-masking study.

Layout follows scanpy/scvi-tools conventions:
- ``atlas``     synthetic cell atlas (the embedded dataset)
- ``data``      package: ``validation`` (counts, labels), ``vocab`` (gene vocabulary), ``tokens`` (cell
                tokens, tokenization), ``splits`` (nested corpus reductions, label budgets, splits)
- ``model``     the transformer both families share (one ``nn.Module`` file); ``families`` the family
                difference, one module each (``scgpt``, ``geneformer``); ``model_config`` its
                hyperparameters, ``layers`` attention and blocks, ``masks`` the pretraining masks,
                ``losses`` the geneformer loss kernel, ``classifier`` the finetuning head (the names in
                ``model.__all__`` are re-exported by ``model``)
- ``train``     pretraining (data-parallel) and finetuning (full, last-k, head-only, LoRA), checkpoints;
                a package: ``config``, ``batches``, ``checkpoint``, ``inference``, ``pretraining``, ``finetuning``
- ``runner``    one pretraining job of the grid, in-process or under torchrun
- ``readers``, ``datasets``, ``genes``, ``soma``: real data (formats, registry, gene ids, TileDB-SOMA);
                the registry's entries are the package ``dataset_registry`` (``entry``, ``packaged``,
                ``shared``), the probes' marker gene sets ``marker_programs`` (re-exported by ``genes``)
- ``probes``    gene-embedding retrieval and in-silico perturbation
- ``CellModel`` a checkpoint loaded once, used on any AnnData: ``embed``, ``reconstruction_loss``,
                ``finetune``, ``predict`` (module ``cellmodel``; its input checks ``cellmodel_checks``)
- ``tl``        tools on AnnData (``tl.embed`` writes ``obsm["X_scfm"]``)
- ``evaluate``  frozen, zero-shot and baseline evaluations on embeddings
- ``metrics``   metric functions (arrays in, float out)
- ``stats``     the masking statistic: ``masking`` (slopes, bootstrap CIs, masking index), ``inference``
                (equivalence, p-values, multiplicity), ``budget`` (the label x step grid)
- ``pl``        the book's figures
- ``config``    package: ``sections`` and ``profile`` (profiles and their loading), ``parameters``
                (notebook parameter checks), ``checks`` (the shared type checks)
- ``layout``    every path under ``results/<profile>/`` (:class:`~scfm_lib.layout.ResultsLayout`)
- ``results``, ``io``: metrics files, provenance

The book's generated pages (table of contents, parameter tables, runs and performance pages) and the
papermill wrapper of the workflow's notebook jobs are build tooling, outside this package: ``scfm_book``.

Submodules (and ``CellModel``) load on first use (``import scfm_lib as sl; sl.tl.embed(...)``,
``sl.CellModel.load(...)``), so importing the package for its configuration does not import torch.
"""

import importlib
import warnings

__version__ = "0.1.0"

# scanpy's dependencies import tqdm.auto, which warns in a kernel without ipywidgets; the warning
# adds nothing to an executed notebook but the path of the local install.
warnings.filterwarnings("ignore", message="IProgress not found")

_SUBMODULES = (
    "analysis",
    "atlas",
    "cellmodel",
    "classifier",
    "config",
    "data",
    "datasets",
    "evaluate",
    "families",
    "genes",
    "io",
    "layers",
    "layout",
    "losses",
    "masks",
    "metrics",
    "model",
    "pl",
    "probes",
    "readers",
    "results",
    "runner",
    "soma",
    "stats",
    "study",
    "tl",
    "train",
)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"scfm_lib.{name}")
    if name == "CellModel":  # imports torch: only when asked for
        return importlib.import_module("scfm_lib.cellmodel").CellModel
    raise AttributeError(f"module 'scfm_lib' has no attribute {name!r}")
