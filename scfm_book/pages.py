"""Generated pages of the book: the runs page of a profile (its appendix index, from the provenance
beside every metrics file) and the Performance page (from the benchmark scripts' JSON).
"""

from __future__ import annotations

import json
from pathlib import Path

from scfm_lib.config import Profile
from scfm_lib.io import atomic_write
from scfm_lib.layout import ResultsLayout
from scfm_lib.results import load_runs

BENCHMARK_RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def runs_page(profile: Profile, results_dir: str | Path) -> str:
    """The appendix index: every job of the profile with its parameters, data hash and commit."""
    runs = load_runs(results_dir)
    lines = [
        f"# Every run of the `{profile.name}` profile",
        "",
        "Each pretraining and evaluation run is an executed notebook listed below this page. The",
        "table records what each job was run with: its parameters, the hash of the data it read,",
        "the versions of Python and the recorded packages, and the git commit: `-dirty` when the code",
        "(`scfm_lib.io.CODE_PATHS`) had uncommitted changes, then the first characters of the sha256 of",
        "`git diff HEAD` over the code, which pins those changes. Runs recorded before that diff hash",
        "existed checked the whole tree, including the executed notebooks the workflow itself writes",
        "into `book/`, so they carry `-dirty` whenever an earlier job of the same run had finished.",
        "The page is generated from the provenance stored beside every metrics file in",
        f"`{ResultsLayout.of_profile(profile.name).metrics_dir}/`.",
        "",
        "| job | run | commit | data sha256 | versions | parameters |",
        "|---|---|---|---|---|---|",
    ]
    for row in runs.itertuples():
        params = json.dumps(row.parameters, sort_keys=True).replace("|", "\\|")
        commit = (row.git_commit or "unknown")[:12] + ("-dirty" if (row.git_commit or "").endswith("-dirty") else "")
        if isinstance(row.git_diff_sha256, str):
            commit += f":{row.git_diff_sha256[:8]}"
        versions = ", ".join(f"{name} {version}" for name, version in row.versions.items() if version)
        lines.append(
            f"| {row.kind} | `{row.name}` | `{commit}` | `{row.data_sha256 or '-'}` | "
            f"<small>{versions or '-'}</small> | <small>`{params}`</small> |"
        )
    return "\n".join(lines) + "\n"


def write_runs_page(profile: Profile, results_dir: str | Path, root: str | Path = ".") -> Path:
    path = Path(root) / "book" / profile.name / "runs.md"
    with atomic_write(path) as fh:
        fh.write(runs_page(profile, results_dir))
    return path


def earlier_throughput_table(earlier_dir: Path) -> list[str]:
    """Markdown lines: the base-size rows of ``train_throughput.py`` files kept from earlier machines.

    A file there is a verbatim ``benchmarks/results/train_throughput.json`` of another machine, named
    ``train_throughput_<date>.json``; none: no lines.
    """
    runs = [json.loads(path.read_text()) for path in sorted(earlier_dir.glob("train_throughput_*.json"))]
    if not runs:
        return []
    lines = [
        "The same script on earlier machines (files in `benchmarks/results/earlier/`), base size:",
        "",
        "| measured | CPU | matrix instruction sets | bf16 matmul peak (TFLOP/s) | family | cells/s "
        "| peer bf16 cells/s | vs peer bf16 | vs peer bf16, median passes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        machine = run["machine"]
        isa = " ".join(machine["matrix_isa"]) if machine.get("matrix_isa") else "not recorded"
        for r in run["rows"]:
            if r["size"] == "base":
                median = r.get("speedup_vs_peer_bf16_median")
                lines.append(
                    f"| {run['created_utc'][:10]} | {machine['cpu'] or 'not recorded'} | {isa} | "
                    f"{run['peaks_flops']['bf16'] / 1e12:.2f} | {r['family']} | {r['cells_per_s']:.1f} | "
                    f"{r['peer_bf16_cells_per_s']:.1f} | {r['speedup_vs_peer_bf16']:.1f}x | "
                    + (f"{median:.1f}x |" if median is not None else "not recorded |")
                )
    return [*lines, ""]


def performance_page(results_dir: str | Path = BENCHMARK_RESULTS) -> str:
    """The Performance page, from the JSON the benchmark scripts write (benchmarks/*.py)."""
    results_dir = Path(results_dir)

    def load(name: str) -> dict | None:
        path = results_dir / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    lines = [
        "# Performance",
        "",
        "**Question of this page.** How close to this hardware does training run, how does it compare with",
        "the tool users would otherwise pick, and does memory stay flat as the corpus grows?",
        "",
        "Every number below is printed by a script in `benchmarks/` and read from the JSON it writes in",
        "`benchmarks/results/`; this page is generated from those files (`python -m scfm_book perf`).",
        "Rerun a script on your machine to get its numbers; none of them is asserted by a test.",
        "",
    ]
    throughput = load("train_throughput")
    if throughput:
        machine, peaks = throughput["machine"], throughput["peaks_flops"]
        # files written before the instruction sets were recorded have none
        isa = f", {' '.join(machine['matrix_isa'])}" if machine.get("matrix_isa") else ""
        lines += [
            "## Training throughput",
            "",
            f"`python benchmarks/train_throughput.py` on {machine['cpu'] or 'this CPU'} ({machine['torch_threads']} "
            f"threads, torch {machine['torch']}{isa}), {throughput['created_utc']}. Measured matmul peak: "
            f"bf16 {peaks['bf16'] / 1e12:.2f} TFLOP/s, fp32 {peaks['fp32'] / 1e12:.2f} TFLOP/s.",
            "",
            "One pretraining step (forward, backward, fused AdamW) in bf16 autocast, on 10 batches of "
            f"{throughput['rows'][0]['batch']} cells of 100 to {throughput['rows'][0]['context']} expressed genes "
            f"(length-bucketed), vocabulary {throughput['rows'][0]['vocab']:,}. Each batch counts with its best "
            "time of 3 passes (other processes on a shared machine only add time), as do the matmul peaks; "
            "cells/s is all the cells over the sum of those times. The last column gives the bf16 ratio "
            "again with each batch's median pass, ours and the peer's alike. The peer is Hugging Face "
            "`BertForMaskedLM` (Geneformer's architecture) with the same sizes and batches, in fp32 as its "
            "users run it and in bf16 autocast, with the fused AdamW that `transformers`' Trainer uses.",
            "",
            "What the step does that the peer does not (`scfm_lib/model.py`): the attention computes in fp32 "
            "inside bf16 autocast, because this CPU's attention kernel is slower in bf16 (table below); the "
            "geneformer family computes the vocabulary logits at the masked positions only, runs its last block "
            "at those positions alone (`final_rows`), and takes the softmax over the vocabulary in cache-sized "
            "blocks without an fp32 copy of the logits (`linear_cross_entropy`). All three give the numbers of "
            "the plain computation (`tests/test_model.py`). The MFU column counts the FLOPs each model "
            "actually performs.",
            "",
            "| family | size (D x layers) | cells/s | tokens/s | TFLOP/s | MFU (bf16 peak) | vs peer fp32 "
            "| vs peer bf16 | vs peer bf16, median passes |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in throughput["rows"]:
            median = r.get("speedup_vs_peer_bf16_median")  # files written before the median was recorded lack it
            lines.append(
                f"| {r['family']} | {r['size']} ({r['d_model']} x {r['n_layers']}) | {r['cells_per_s']:.1f} | "
                f"{r['tokens_per_s']:,.0f} | {r['tflops']:.3f} | {r['mfu_bf16']:.1%} | "
                f"{r['speedup_vs_peer_fp32']:.1f}x | {r['speedup_vs_peer_bf16']:.1f}x | "
                + (f"{median:.1f}x |" if median is not None else "not recorded |")
            )
        lines += [
            "",
            "The encoder alone (transformer blocks, full-length batch, forward + backward, bf16):",
            "",
            "| size | TFLOP/s | share of the bf16 matmul peak |",
            "|---|---|---|",
        ]
        for name, e in throughput["encoder"].items():
            lines.append(f"| {name} | {e['tflops']:.3f} | {e['mfu_bf16']:.1%} |")
        if throughput.get("compiled"):
            lines += [
                "",
                "The same step through `torch.compile` (inductor, dynamic shapes; `PretrainConfig.compile`), "
                "against eager mode in the same run:",
                "",
                "| family | size | eager cells/s | compiled cells/s | compiled / eager | compiled vs peer fp32 |",
                "|---|---|---|---|---|---|",
            ]
            peer = {(r["family"], r["size"]): r["peer_fp32_cells_per_s"] for r in throughput["rows"]}
            for r in throughput["compiled"]:
                lines.append(
                    f"| {r['family']} | {r['size']} | {r['eager_cells_per_s']:.1f} | {r['cells_per_s']:.1f} | "
                    f"{r['speedup_vs_eager']:.2f}x | {r['cells_per_s'] / peer[r['family'], r['size']]:.1f}x |"
                )
        lines.append("")
        lines += earlier_throughput_table(results_dir / "earlier")
    attention = load("attention")
    if attention:
        shape = attention["shape"]
        lines += [
            "## Attention in bf16 or fp32",
            "",
            f"`python benchmarks/attention.py`, {attention['created_utc']}: attention forward + backward for "
            f"{shape['batch']} cells, {shape['heads']} heads, {shape['length']} positions, head size "
            f"{shape['head_size']}, with a key-padding mask:",
            "",
            "| variant | ms | vs sdpa_fp32 |",
            "|---|---|---|",
        ]
        for name, ms in attention["milliseconds"].items():
            lines.append(f"| {name} | {ms:.1f} | {ms / attention['milliseconds']['sdpa_fp32']:.2f}x |")
        lines.append("")
    memory = load("memory")
    if memory:
        lines += [
            "## Memory as the corpus grows",
            "",
            f"`python benchmarks/memory.py`, {memory['created_utc']}: peak memory of 40 pretraining steps on the "
            "whole corpus, each size in a fresh process. *Anonymous* memory is what the process allocates; "
            "*resident* also counts file pages of the memory-mapped corpus, which the kernel can drop.",
            "",
            "| corpus cells | token file (MiB) | corpus storage | peak anonymous (MiB) | peak resident (MiB) |",
            "|---|---|---|---|---|",
        ]
        for r in memory["rows"]:
            lines.append(
                f"| {r['n_cells']:,} | {r['file_mib']:.0f} | {r['storage']} | {r['peak_anon_mib']:.0f} | "
                f"{r['peak_rss_mib']:.0f} |"
            )
        lines.append("")
    if not (throughput or memory):
        lines.append("No benchmark results yet: run the scripts in `benchmarks/`.")
    lines += [
        "## Key takeaways",
        "",
        "- The numbers are this machine's, and so are the ratios: on a CPU whose matrix units differ (bf16 "
        "matmuls on AMX tiles or on AVX-512 lanes) the same script measures another peer ratio, so a ratio "
        "is quoted with the CPU it was measured on.",
        "- Masked-gene logits are computed at the masked positions only, the last block runs only there, and "
        "batches are trimmed to their longest cell: each saves work that a full-sequence MLM head and padded "
        "batches spend.",
    ]
    if throughput:
        ratios = ", ".join(
            f"{r['speedup_vs_peer_fp32']:.1f}x at D = {r['d_model']}"
            for r in throughput["rows"]
            if r["family"] == "geneformer"
        )
        bf16_ratios = ", ".join(
            f"{r['speedup_vs_peer_bf16_median']:.1f}x at D = {r['d_model']}"
            for r in throughput["rows"]
            if r["family"] == "geneformer" and "speedup_vs_peer_bf16_median" in r
        )
        encoder = ", ".join(f"{e['mfu_bf16']:.0%} at {name}" for name, e in throughput["encoder"].items())
        lines += [
            f"- The rank-MLM (geneformer) step runs at {ratios} the peer's fp32 cells/s"
            + (f" and at {bf16_ratios} its bf16 cells/s (median passes)" if bf16_ratios else "")
            + f"; the encoder alone reaches {encoder} of the measured bf16 matmul peak."
        ]
    return "\n".join(lines) + "\n"
