"""The public API documents itself the numpydoc way and is typed (scib-metrics style: typed arrays in,
the shapes and value ranges written down).

The public API is every module of scfm_lib listed in ``CHECKED``: the verbs ``tl`` and ``pl``,
``metrics``, ``probes``, the rooms of ``stats``, ``data`` and ``train`` (their ``__init__`` files only
re-export), ``evaluate``, ``datasets``, ``io``, ``results``, ``corpus``, ``readers``, ``atlas``,
``atlas_datasets``, ``classifier``, ``losses``, ``analysis``, ``study``, ``config``, ``runner``, ``soma`` and
``dataset_wheels``. Every public class (no leading underscore) has a docstring opening with a one-line
summary (a dataclass's fields are documented by the comments beside them), and every public function and
method has:

- type hints on every parameter (``self``/``cls`` aside) and on the return value;
- a docstring that opens with a one-line summary (then a blank line);
- a numpydoc ``Parameters`` section naming every parameter (and nothing else; ``a, b : int`` lines
  may document several at once) when it takes any;
- a ``Returns`` (or ``Yields``) section when its return annotation is not ``None``;
- a ``Raises`` section naming every exception class its own body raises (``raise ValueError(...)``).

A class's constructor parameters (an explicit ``__init__``) are documented in the class docstring
(numpydoc's convention) or in ``__init__``'s own. Properties read as attributes: a return hint, no
``Returns`` section. The code is read with :mod:`ast` (nothing is imported), the sections with a
small parser (numpydoc's own ``docscrape`` is not among the pinned packages; ``test_parser_*`` pins
what this one understands).

A module of scfm_lib is either checked or exempt, and an exemption names its reason: a new module
fails ``test_every_module_is_checked_or_exempt_with_a_reason`` until it is listed in one of them.
``pytest tests/test_docstrings.py`` names each function and what it lacks.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "scfm_lib"

#: The public API: the modules whose public functions, classes and methods must pass the checks.
CHECKED = (
    "scfm_lib.tl",
    "scfm_lib.pl",
    "scfm_lib.pl.column",
    "scfm_lib.metrics",
    "scfm_lib.probes.programs",
    "scfm_lib.probes.perturbation",
    "scfm_lib.stats.masking",
    "scfm_lib.stats.inference",
    "scfm_lib.stats.budget",
    "scfm_lib.data.validation",
    "scfm_lib.data.vocab",
    "scfm_lib.data.tokens",
    "scfm_lib.data.splits",
    "scfm_lib.train.config",
    "scfm_lib.train.batches",
    "scfm_lib.train.checkpoint",
    "scfm_lib.train.inference",
    "scfm_lib.train.pretraining",
    "scfm_lib.train.finetuning",
    "scfm_lib.evaluate.readouts",
    "scfm_lib.evaluate.clustering",
    "scfm_lib.evaluate.integration",
    "scfm_lib.evaluate.baselines",
    "scfm_lib.datasets",
    "scfm_lib.io",
    "scfm_lib.results",
    "scfm_lib.corpus",
    "scfm_lib.readers.standard",
    "scfm_lib.readers.formats",
    "scfm_lib.atlas",
    "scfm_lib.atlas_datasets",
    "scfm_lib.classifier",
    "scfm_lib.losses",
    "scfm_lib.analysis.endpoints",
    "scfm_lib.analysis.power",
    "scfm_lib.analysis.linearity",
    "scfm_lib.analysis.equivalence",
    "scfm_lib.analysis.gates",
    "scfm_lib.study.controls",
    "scfm_lib.study.rates",
    "scfm_lib.study.tasks",
    "scfm_lib.study.task_evaluation",
    "scfm_lib.study.prepare_data",
    "scfm_lib.study.prepare_real",
    "scfm_lib.study.data_views",
    "scfm_lib.study.baselines",
    "scfm_lib.study.pretrain",
    "scfm_lib.study.evaluate",
    "scfm_lib.study.reconstruction",
    "scfm_lib.study.sweep",
    "scfm_lib.study.scib",
    "scfm_lib.study.budgets",
    "scfm_lib.study.chapter_text",
    "scfm_lib.study.summary",
    "scfm_lib.study.verdicts",
    "scfm_lib.study.secondary",
    "scfm_lib.study.data_summary",
    "scfm_lib.config.checks",
    "scfm_lib.config.parameters",
    "scfm_lib.config.profile",
    "scfm_lib.config.run",
    "scfm_lib.config.sections",
    "scfm_lib.runner",
    "scfm_lib.soma",
    "scfm_lib.dataset_wheels",
    "scfm_lib.layout",
    "scfm_lib.cellmodel_checks",
    "scfm_lib.dataset_registry.packaged",
    "scfm_lib.dataset_registry.shared",
    "scfm_lib.cellmodel",
    "scfm_lib.model",
    "scfm_lib.model_config",
    "scfm_lib.layers",
    "scfm_lib.masks",
    "scfm_lib.families.scgpt",
    "scfm_lib.families.geneformer",
    "scfm_lib.genes",
    "scfm_lib.marker_programs",
    "scfm_lib.dataset_registry.entry",
)

#: Modules not checked (yet), each with its reason (module -> the reason in words). Empty: every
#: module of scfm_lib is checked; a new module goes to CHECKED, or here with why it cannot be yet.
EXEMPT: dict[str, str] = {}

#: numpydoc's section titles.
SECTIONS = (
    "Parameters",
    "Returns",
    "Yields",
    "Receives",
    "Other Parameters",
    "Raises",
    "Warns",
    "Warnings",
    "See Also",
    "Notes",
    "References",
    "Examples",
    "Attributes",
    "Methods",
)


def parse_sections(doc: str | None) -> dict[str, list[str]]:
    """The numpydoc sections of a docstring: title -> its lines (dedented); the text before any
    section is ``"Summary"``.

    A section starts at a line holding one of :data:`SECTIONS` followed by a line of dashes at least
    as long (numpydoc's rule); other titled blocks stay in the section they are in.
    """
    lines = inspect.cleandoc(doc or "").splitlines()
    sections: dict[str, list[str]] = {"Summary": []}
    current, i = "Summary", 0
    while i < len(lines):
        title = lines[i].strip()
        underline = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if title in SECTIONS and underline and set(underline) == {"-"} and len(underline) >= len(title):
            current = title
            sections[current] = []
            i += 2
            continue
        sections[current].append(lines[i])
        i += 1
    for title, body in sections.items():
        sections[title] = textwrap.dedent("\n".join(body)).strip("\n").splitlines()
    return sections


def documented_names(body: list[str]) -> list[str]:
    """The names a Parameters (or Raises) section lists: its unindented lines, before `` : ``, split on
    commas, stars dropped (``*args``, ``**kwargs``)."""
    names = []
    for line in body:
        if not line.strip() or line[0].isspace():
            continue
        head = line.split(" : ", 1)[0].rstrip(":").strip()
        names += [n.strip().lstrip("*") for n in head.split(",") if n.strip()]
    return names


@dataclass
class PublicCallable:
    """One public function or method, as found in a module's source."""

    where: str  # module.qualname
    node: ast.FunctionDef | ast.AsyncFunctionDef
    owner: ast.ClassDef | None = None  # the class of a method


def _decorators(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    return {ast.unparse(d).split("(")[0].split(".")[-1] for d in node.decorator_list}


def public_callables(tree: ast.Module, module: str) -> list[PublicCallable]:
    """The module's public top-level functions, and the public methods (with an explicit ``__init__``) of
    its public top-level classes."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
            found.append(PublicCallable(f"{module}.{node.name}", node))
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and (
                    not item.name.startswith("_") or item.name == "__init__"
                ):
                    found.append(PublicCallable(f"{module}.{node.name}.{item.name}", item, node))
    return found


def _parameters(c: PublicCallable) -> list[ast.arg]:
    a = c.node.args
    params = [*a.posonlyargs, *a.args, *([a.vararg] if a.vararg else []), *a.kwonlyargs]
    params += [a.kwarg] if a.kwarg else []
    if c.owner is not None and "staticmethod" not in _decorators(c.node) and params:
        params = params[1:]  # self / cls
    return params


def _raised(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Exception classes the function's own body raises by name (nested functions and classes aside)."""
    names, todo = set(), list(node.body)
    while todo:
        n = todo.pop()
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        if isinstance(n, ast.Raise) and n.exc is not None:
            exc = n.exc.func if isinstance(n.exc, ast.Call) else n.exc
            if isinstance(exc, ast.Name | ast.Attribute):
                name = ast.unparse(exc).split(".")[-1]
                if name[:1].isupper():
                    names.add(name)
        todo.extend(ast.iter_child_nodes(n))
    return names


def problems(c: PublicCallable) -> list[str]:
    """What ``c`` lacks, one message each; empty when it passes every check."""
    node, out = c.node, []
    is_init = node.name == "__init__"
    is_property = bool(_decorators(node) & {"property", "cached_property", "setter"})
    params = _parameters(c)
    out += [f"parameter {p.arg!r} has no type hint" for p in params if p.annotation is None]
    if node.returns is None and not is_init:
        out.append("no return type hint")
    doc = ast.get_docstring(node)
    if is_init:  # numpydoc documents the constructor in the class docstring
        doc = ast.get_docstring(c.owner) if not parse_sections(doc).get("Parameters") else doc
    if not doc or not doc.strip():
        return [*out, "no docstring"]
    sections = parse_sections(doc)
    summary = sections["Summary"]
    if not summary or not summary[0].strip() or (len(summary) > 1 and summary[1].strip()):
        out.append("the docstring does not open with a one-line summary (a blank line after it)")
    names = [p.arg for p in params]
    if is_property:
        return out
    if names:
        if "Parameters" not in sections:
            out.append(f"no 'Parameters' section (parameters: {', '.join(names)})")
        else:
            listed = documented_names(sections["Parameters"])
            if missing := [n for n in names if n not in listed]:
                out.append(f"'Parameters' does not document {', '.join(missing)}")
            if extra := [n for n in listed if n not in names]:
                out.append(f"'Parameters' documents {', '.join(extra)}, which the function does not take")
    returns_none = node.returns is not None and ast.unparse(node.returns) in ("None", "'None'")
    if not is_init and not returns_none and not ({"Returns", "Yields"} & sections.keys()):
        out.append("no 'Returns' (or 'Yields') section, and the return annotation is not None")
    raised = _raised(node)
    if raised and "Raises" not in sections:
        out.append(f"raises {', '.join(sorted(raised))} but has no 'Raises' section")
    elif raised and (missing := sorted(raised - set(documented_names(sections["Raises"])))):
        out.append(f"'Raises' does not name {', '.join(missing)}")
    return out


def module_file(module: str, package: Path = PACKAGE) -> Path:
    path = package.joinpath(*module.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def all_modules() -> set[str]:
    """Every module of scfm_lib but the packages' ``__init__`` files (they define nothing but re-exports)."""
    return {
        "scfm_lib." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py"
    }


def class_problems(node: ast.ClassDef) -> list[str]:
    """What a public class's own docstring lacks (its fields' comments and its methods are checked apart)."""
    doc = ast.get_docstring(node)
    if not doc or not doc.strip():
        return ["no docstring"]
    summary = parse_sections(doc)["Summary"]
    if not summary or not summary[0].strip() or (len(summary) > 1 and summary[1].strip()):
        return ["the docstring does not open with a one-line summary (a blank line after it)"]
    return []


def check_source(source: str, module: str = "example") -> dict[str, list[str]]:
    """Every public class and callable of ``source`` that fails a check -> its problems."""
    tree, report = ast.parse(source), {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and (found := class_problems(node)):
            report[f"{module}.{node.name}"] = found
    for c in public_callables(tree, module):
        if found := problems(c):
            report[c.where] = found
    return report


# ---------------------------------------------------------------------------------------------------
# The public API


def module_report(module: str, package: Path = PACKAGE) -> str:
    """The failures of one module, one line per callable; empty when it passes."""
    report = check_source(module_file(module, package).read_text(), module)
    return "\n".join(f"  {where}: {'; '.join(found)}" for where, found in report.items())


@pytest.mark.parametrize("module", CHECKED)
def test_public_api_is_documented_and_typed(module):
    report = module_report(module)
    assert not report, f"{module}: public functions without numpydoc sections or type hints:\n{report}"


def test_every_module_is_checked_or_exempt_with_a_reason():
    unlisted = sorted(all_modules() - set(CHECKED) - set(EXEMPT))
    assert not unlisted, f"add these modules to CHECKED (or to EXEMPT with the reason): {unlisted}"
    assert not set(CHECKED) & set(EXEMPT), "a module is both checked and exempt"
    assert all(module_file(m).is_file() for m in [*CHECKED, *EXEMPT]), "CHECKED or EXEMPT names a missing module"
    short = [m for m, reason in EXEMPT.items() if not isinstance(reason, str) or len(reason.split()) < 5]
    assert not short, f"an exemption must give its reason in words: {short}"


# ---------------------------------------------------------------------------------------------------
# The checks themselves: a badly documented function fails, a good one passes.

GOOD = '''
def score(y_true: np.ndarray, y_pred: np.ndarray, *, k: int = 3, **kwargs: float) -> float:
    """Share of cells labelled right. Range [0, 1].

    Parameters
    ----------
    y_true, y_pred : np.ndarray
        Labels, shape ``(n_cells,)``.
    k : int
        Neighbours.
    **kwargs
        Ignored.

    Returns
    -------
    float
        In [0, 1].

    Raises
    ------
    ValueError
        When the shapes differ.
    """
    if len(y_true) != len(y_pred):
        raise ValueError("shapes differ")
    return 1.0


def draw(n: int) -> Iterator[int]:
    """Numbers.

    Parameters
    ----------
    n
        How many.

    Yields
    ------
    int
        The next one.
    """
    yield from range(n)


class Model:
    """A model.

    Parameters
    ----------
    width : int
        Its width.
    """

    def __init__(self, width: int):
        self.width = width

    @property
    def size(self) -> int:
        """Its size."""
        return self.width

    @classmethod
    def load(cls, path: str) -> Model:
        """Load one.

        Parameters
        ----------
        path : str
            Where.

        Returns
        -------
        Model
        """
        return cls(1)

    def _private(self, x):
        pass


def _helper(x):
    return x
'''

BAD = '''
def score(y_true, y_pred: np.ndarray, k: int = 3):
    """Share of cells labelled right. Range [0, 1]."""
    if k < 0:
        raise ValueError("k")
    return 1.0


def partial(a: int, b: int) -> float:
    """Documents a only, and a parameter it does not take.

    Parameters
    ----------
    a : int
        A.
    c : int
        Gone.
    """
    return 1.0


def summary_on_two_lines(a: int) -> None:
    """A summary that runs on
    to a second line.

    Parameters
    ----------
    a : int
        A.
    """


class Model:
    def __init__(self, width: int):
        self.width = width

    def fit(self, x: int) -> None:
        pass


def _private(x):
    pass
'''


def test_a_well_documented_example_passes():
    assert check_source(textwrap.dedent(GOOD)) == {}


def test_a_badly_documented_example_fails_with_each_problem_named():
    report = check_source(textwrap.dedent(BAD))
    assert report["example.score"] == [
        "parameter 'y_true' has no type hint",
        "no return type hint",
        "no 'Parameters' section (parameters: y_true, y_pred, k)",
        "no 'Returns' (or 'Yields') section, and the return annotation is not None",
        "raises ValueError but has no 'Raises' section",
    ]
    assert report["example.partial"] == [
        "'Parameters' does not document b",
        "'Parameters' documents c, which the function does not take",
        "no 'Returns' (or 'Yields') section, and the return annotation is not None",
    ]
    assert report["example.summary_on_two_lines"] == [
        "the docstring does not open with a one-line summary (a blank line after it)"
    ]
    assert report["example.Model"] == ["no docstring"]
    assert report["example.Model.__init__"] == ["no docstring"]
    assert report["example.Model.fit"] == ["no docstring"]
    assert len(report) == 6  # _private is not checked


def test_the_module_check_fails_on_a_bad_module(tmp_path):
    (tmp_path / "bad.py").write_text(textwrap.dedent(BAD))
    report = module_report("scfm_lib.bad", tmp_path)
    assert "scfm_lib.bad.score: parameter 'y_true' has no type hint; no return type hint;" in report
    assert "scfm_lib.bad.Model.fit: no docstring" in report
    (tmp_path / "good.py").write_text(textwrap.dedent(GOOD))
    assert module_report("scfm_lib.good", tmp_path) == ""


def test_parser_reads_numpydoc_sections():
    doc = """Summary line.

        More prose, with a heading that is not a section:

        Details
        -------
        stay in the summary.

        Parameters
        ----------
        a, b : int
            Two.
        *args : float
        c
            Untyped.

        Returns
        -------
        float
    """
    sections = parse_sections(doc)
    assert list(sections) == ["Summary", "Parameters", "Returns"]
    assert sections["Summary"][0] == "Summary line." and "Details" in sections["Summary"]
    assert documented_names(sections["Parameters"]) == ["a", "b", "args", "c"]
    assert sections["Returns"] == ["float"]
    assert parse_sections(None) == {"Summary": []}
    # A too-short underline is no section (numpydoc's rule).
    assert "Returns" not in parse_sections("S.\n\nReturns\n---\nfloat")


@pytest.mark.parametrize(
    "source, expected",
    [
        ("def f(x: int) -> None:\n    raise TypeError('x')", {"TypeError"}),
        ("def f(x: int) -> None:\n    raise errors.ScfmDataError('x') from None", {"ScfmDataError"}),
        ("def f(x: int) -> None:\n    try:\n        pass\n    except KeyError:\n        raise", set()),
        ("def f(x: int) -> None:\n    def g():\n        raise ValueError\n    raise err", set()),
    ],
)
def test_raised_exceptions_are_the_functions_own(source, expected):
    assert _raised(ast.parse(source).body[0]) == expected
