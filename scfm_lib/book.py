"""Generated pages of the book: the table of contents, parameter tables and the run record.

The table of contents is written from the profile, so one config drives both the workflow's
runs and the book's pages (``python -m scfm_lib.book toc --profile quick``).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

from scfm_lib.config import Profile, load_profile, run_id
from scfm_lib.io import atomic_write
from scfm_lib.layout import ResultsLayout
from scfm_lib.results import load_runs

#: Chapter notebooks, in book order: (template name in nbs/, caption).
CHAPTERS = [
    ("data", "The data"),
    ("pretraining", "Pretraining on nested corpora"),
    ("finetuning", "Narrow tasks: finetuned annotation"),
    ("frozen_zeroshot", "Frozen and zero-shot evaluation"),
    ("open_ended", "Open-ended: what the model knows about genes"),
    ("masking", "The masking effect, quantified"),
    ("budgets", "Where masking stops: label and step budgets"),
    ("recommendations", "What should scFM benchmarks measure?"),
]
#: Chapters that exist only when the profile runs the budget sweep (evaluate.label_budgets).
SWEEP_CHAPTERS = ("budgets",)
#: Static pages of the book, profile-independent (performance.md is generated from benchmarks/results/).
GUIDE_PAGES = ("book/rerun", "book/workshop", "book/performance")
BENCHMARK_RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"

_PARAM_LINE = re.compile(
    r"^(?P<name>[A-Za-z_]\w*)\s*:\s*(?P<type>[^=]+?)\s*=\s*(?P<default>.+?)"
    r"\s*(?:#\s*(?P<doc>.*))?$"
)


def chapters(profile: Profile) -> list[str]:
    """The chapter notebooks of a profile, in book order (the budget chapter only with a sweep)."""
    return [name for name, _ in CHAPTERS if profile.evaluate.has_sweep or name not in SWEEP_CHAPTERS]


def run_templates(profile: Profile) -> tuple[str, ...]:
    """Per-run notebooks (templates in nbs/), executed once per grid point into book/<profile>/runs/."""
    return ("pretrain", "evaluate", *(("sweep",) if profile.evaluate.has_sweep else ()))


#: Per-family job notebooks of the study's design: (template, title).
CONTROL_TEMPLATES = {
    "rates": "Finetuning rates",
    "negative_control": "Negative control",
    "positive_control": "Positive control",
}


def control_templates(profile: Profile) -> list[tuple[str, str]]:
    """The per-family jobs (template, family) a profile runs: the rate choice (with
    ``study.rate_candidates``) and the controls it enables, executed into book/<profile>/runs/."""
    enabled = {
        "rates": bool(profile.study.rate_candidates),
        "negative_control": profile.study.negative_control,
        "positive_control": profile.study.positive_control,
    }
    return [(t, family) for family in profile.families for t in CONTROL_TEMPLATES if enabled[t]]


def _run_sections(profile: Profile) -> list[dict]:
    base = f"book/{profile.name}"
    runs = [
        {"file": f"{base}/runs/{t}_{family}", "title": f"{CONTROL_TEMPLATES[t]}: {family}"}
        for t, family in control_templates(profile)
    ]
    runs += [
        {
            "file": f"{base}/runs/{kind}_{run_id(f, s, m)}",
            "title": f"{kind.capitalize()}: {m}, fraction {f:g}, seed {s}",
        }
        for m, f, s in profile.runs()
        for kind in run_templates(profile)
    ]
    runs.append({"file": f"{base}/runs/baselines", "title": "Baselines without pretraining"})
    return runs


def toc(profile: Profile, included: list[Profile] = ()) -> dict:
    """The ``_toc.yml`` content: the profile's intro and chapters, then one part per ``included``
    profile (its intro and chapters), the guides, and an appendix with every run notebook."""
    base = f"book/{profile.name}"
    parts = [
        {
            "caption": "The study",
            "numbered": True,
            "chapters": [{"file": f"{base}/{name}"} for name in chapters(profile)],
        }
    ]
    for other in included:
        parts.append(
            {
                "caption": f"The study again: {other.title}",
                "numbered": True,
                "chapters": [{"file": f"book/{other.name}/{name}"} for name in ("intro", *chapters(other))],
            }
        )
    parts.append({"caption": "Use it yourself", "chapters": [{"file": page} for page in GUIDE_PAGES]})
    parts.append(
        {
            "caption": "Appendix: every run",
            "chapters": [{"file": f"book/{p.name}/runs", "sections": _run_sections(p)} for p in [profile, *included]],
        }
    )
    return {"format": "jb-book", "root": f"{base}/intro", "parts": parts}


def included_profiles(
    profile: Profile, root: str | Path = ".", profiles_dir: str | Path | None = None
) -> list[Profile]:
    """The profiles of ``profile.book_includes`` whose executed chapters are in ``book/`` (committed
    results of another profile, e.g. the real-data run); one not yet run is left out."""
    return [
        load_profile(name, profiles_dir)
        for name in profile.book_includes
        if (Path(root) / "book" / name / "intro.ipynb").exists()
    ]


def write_toc(profile: Profile, root: str | Path = ".", profiles_dir: str | Path | None = None) -> Path:
    path = Path(root) / "_toc.yml"
    header = (
        f"# Generated by `python -m scfm_lib.book toc --profile {profile.name}` from "
        f"profiles/{profile.name}.yaml: edit the profile, not this file.\n"
    )
    with atomic_write(path) as fh:
        fh.write(header + yaml.safe_dump(toc(profile, included_profiles(profile, root, profiles_dir)), sort_keys=False))
    return path


def notebook_parameters(path: str | Path) -> list[dict]:
    """The parameters of a notebook template: name, type, default and the trailing comment.

    Reads the cell tagged ``parameters``; each parameter is one line ``name: type = default  # doc``
    in a form papermill parses too (``Optional[int]``, not ``int | None``; no ``=`` in the comment),
    so a correctly spelled ``-p`` option gives no warning. Import lines (the ``typing`` names the
    annotations use) are skipped.
    """
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    params = []
    for line in cells[0].source.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "from ", "import ")):
            continue
        match = _PARAM_LINE.match(line.strip())
        if not match or not match["doc"]:
            raise ValueError(f"{path}: parameter line {line!r} must read `name: type = default  # what it is`")
        params.append(match.groupdict())
    return params


def parameter_tables(nbs_dir: str | Path) -> str:
    """Markdown: one table per notebook template, generated from its parameters cell."""
    out = []
    for path in sorted(Path(nbs_dir).glob("*.ipynb")):
        out.append(f"### `nbs/{path.name}`\n\n| parameter | type | default | meaning |\n|---|---|---|---|")
        for p in notebook_parameters(path):
            doc = p["doc"].replace("|", "\\|")
            out.append(f"| `{p['name']}` | `{p['type']}` | `{p['default']}` | {doc} |")
        out.append("")
    return "\n".join(out)


def write_parameter_tables(nbs_dir: str | Path, out_path: str | Path) -> Path:
    header = "<!-- Generated by `python -m scfm_lib.book params` from the notebooks' parameters cells. -->\n\n"
    with atomic_write(out_path) as fh:
        fh.write(header + parameter_tables(nbs_dir))
    return Path(out_path)


#: What papermill prints when the kernel exits before its first reply. Kernels started at the same
#: moment can race for the same ports (jupyter_client picks free ports, then the kernel binds them:
#: jupyter/jupyter_client#154), which is how two parallel workflow jobs once failed in CI.
KERNEL_START_FAILURE = "Kernel died before replying to kernel_info"


def run_papermill(args: list[str], attempts: int = 3, command: tuple[str, ...] | None = None) -> int:
    """Run ``papermill *args``, streaming its output; if the kernel died before running any cell
    (:data:`KERNEL_START_FAILURE`), start again, up to ``attempts`` times. Any other failure is
    returned at once: a notebook that fails in a cell is never rerun. Returns the exit code."""
    command = command or (sys.executable, "-m", "papermill")  # this interpreter's papermill
    for attempt in range(1, attempts + 1):
        process = subprocess.Popen([*command, *args], stderr=subprocess.PIPE, text=True)
        kernel_never_started = False
        for line in process.stderr:
            sys.stderr.write(line)
            kernel_never_started |= KERNEL_START_FAILURE in line
        if process.wait() == 0 or not kernel_never_started:
            return process.returncode
        if attempt < attempts:
            print(
                f"[scfm_lib.book] the kernel died before it ran a cell (attempt {attempt} of {attempts}; "
                "parallel kernel starts can collide on ports); starting the notebook again",
                file=sys.stderr,
            )
    return process.returncode


#: Tags that already decide how a code cell shows on its page.
_VISIBILITY_TAGS = {"remove-cell", "remove-input", "hide-cell", "hide-input", "remove-output", "hide-output"}


def tidy_page(path: str | Path, chapter: bool = False) -> None:
    """Make an executed notebook read as a page: its outputs first, its code one click away.

    Every code cell whose tags do not already say how it shows collapses its source (``hide-input``),
    so no page opens on a wall of code. The parameters cell and papermill's injected-parameters cell
    collapse whole (``hide-cell``) on a run page, where the values are provenance; a ``chapter``
    drops them (``remove-cell``): it reads as a paper section, its only parameters are the profile
    and its folders, and the runs page lists every run's values."""
    parameters_tag = "remove-cell" if chapter else "hide-cell"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.setdefault("tags", [])
        if {"parameters", "injected-parameters"} & set(tags):
            tags[:] = [t for t in tags if t not in _VISIBILITY_TAGS] + [parameters_tag]
        elif not _VISIBILITY_TAGS & set(tags):
            tags.append("hide-input")
    with atomic_write(path) as fh:
        nbformat.write(nb, fh)


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
        "`benchmarks/results/`; this page is generated from those files (`python -m scfm_lib.book perf`).",
        "Rerun a script on your machine to get its numbers; none of them is asserted by a test.",
        "",
    ]
    throughput = load("train_throughput")
    if throughput:
        machine, peaks = throughput["machine"], throughput["peaks_flops"]
        lines += [
            "## Training throughput",
            "",
            f"`python benchmarks/train_throughput.py` on {machine['cpu'] or 'this CPU'} ({machine['torch_threads']} "
            f"threads, torch {machine['torch']}), {throughput['created_utc']}. Measured matmul peak: "
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
        "- The numbers are this machine's; the ratios (against the matmul peak and against the peer, measured in "
        "the same process) are what carries over.",
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
        encoder = ", ".join(f"{e['mfu_bf16']:.0%} at {name}" for name, e in throughput["encoder"].items())
        lines += [
            f"- The rank-MLM (geneformer) step runs at {ratios} the peer's fp32 cells/s; the encoder alone "
            f"reaches {encoder} of the measured bf16 matmul peak."
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scfm_lib.book", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("toc", "runs"):
        p = sub.add_parser(name)
        p.add_argument("--profile", default="quick")
        p.add_argument("--profiles-dir", default=None)
        p.add_argument("--root", default=".")
    p = sub.add_parser("tidy", help="collapse an executed notebook's code and parameters (tidy_page)")
    p.add_argument("notebook")
    p.add_argument("--chapter", action="store_true", help="a chapter: remove the parameter cells")
    sub.add_parser(
        "papermill", help="papermill ARGS..., started again if the kernel dies before any cell", add_help=False
    )
    p = sub.add_parser("perf")
    p.add_argument("--results", default=str(BENCHMARK_RESULTS))
    p.add_argument("--out", default="book/performance.md")
    p = sub.add_parser("params")
    p.add_argument("--nbs", default="nbs")
    p.add_argument("--out", default="book/parameters.md")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["papermill"]:  # everything after it is papermill's, --help included
        sys.exit(run_papermill(argv[1:]))
    args = parser.parse_args(argv)
    if args.command == "tidy":
        tidy_page(args.notebook, chapter=args.chapter)
        return
    if args.command == "perf":
        with atomic_write(args.out) as fh:
            fh.write(performance_page(args.results))
        print(args.out)
        return
    if args.command == "params":
        print(write_parameter_tables(args.nbs, args.out))
        return
    profile = load_profile(args.profile, args.profiles_dir)
    if args.command == "toc":
        print(write_toc(profile, args.root, args.profiles_dir))
    else:
        print(write_runs_page(profile, ResultsLayout.of_profile(profile.name, args.root).results_dir, args.root))


if __name__ == "__main__":
    main()
