"""Profiles and notebook parameters: bad input fails early with a message that names the fix."""

import dataclasses

import pytest
import yaml
from conftest import REPO

from scfm_lib.config import ConfigError, Run, check_notebook_parameters, load_profile


def write_profile(tmp_path, **changes):
    base = {"name": "t", "fractions": [1.0, 0.0], "seeds": [0], "data": {"n_corpus": 100}}
    base.update(changes)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


@pytest.mark.parametrize("name", ["quick", "tiny", "real", "census"])
def test_shipped_profiles_load(name):
    profile = load_profile(name)
    assert profile.name == name
    assert 0.0 in profile.fractions and 1.0 in profile.fractions
    assert len(profile.run_ids()) == len(profile.families) * sum(len(profile.seeds_at(f)) for f in profile.fractions)
    assert profile.model_config(vocab_size=100).vocab_size == 100


def test_quick_profile_has_the_study_defaults():
    profile = load_profile("quick")
    assert profile.fractions == [1.0, 0.1, 0.01, 0.0]
    # the study issue's design: >= 8 seeds at the primary endpoint's fractions and the control, paired
    assert all(len(profile.seeds_at(f)) >= 8 for f in (1.0, 0.01, 0.0))
    assert set(profile.seeds_at(0.1)) <= set(profile.seeds) and len(profile.study.finetune_seeds) >= 2
    assert profile.pretrain_config().budget == "converge"
    assert profile.finetune_config().lr < profile.pretrain_config().lr  # below the pretraining peak
    assert all(r < profile.pretrain_config().lr for r in profile.study.rate_candidates)
    assert profile.finetune_config().eval_every <= 10
    assert profile.model_config(vocab_size=16).readout_layer == -2  # the penultimate layer


def test_the_second_quick_profile_is_the_same_design_for_the_other_family(repo):
    """quick runs one family (both do not fit its 90 minutes); quick_scgpt is the same study for the
    other family, and the default book lists it (and the real profile)."""
    quick, other = load_profile("quick"), load_profile("quick_scgpt")
    assert quick.families == ["geneformer"] and other.families == ["scgpt"]
    assert quick.book_includes == ["quick_scgpt", "real"]
    text = {name: yaml.safe_load((repo / "profiles" / f"{name}.yaml").read_text()) for name in ("quick", "quick_scgpt")}
    own = {"name", "title", "description", "limits", "families", "book_includes"}  # words, not design
    assert {k: v for k, v in text["quick"].items() if k not in own} == {
        k: v for k, v in text["quick_scgpt"].items() if k not in own
    }


def test_seeds_by_fraction_must_name_fractions_and_seeds_of_the_profile(tmp_path):
    with pytest.raises(ConfigError, match="seeds_by_fraction"):
        load_profile(write_profile(tmp_path, seeds_by_fraction={0.5: [0]}))
    with pytest.raises(ConfigError, match="seeds_by_fraction"):
        load_profile(write_profile(tmp_path, seeds_by_fraction={1.0: [3]}))
    profile = load_profile(write_profile(tmp_path, seeds=[0, 1], seeds_by_fraction={1.0: [1]}))
    assert profile.runs() == [Run("scgpt", 1.0, 1), Run("scgpt", 0.0, 0), Run("scgpt", 0.0, 1)]
    assert profile.run_ids() == ["scgpt_f1.0_s1", "scgpt_f0.0_s0", "scgpt_f0.0_s1"]


def test_profile_values_reach_library_configs(tmp_path):
    path = write_profile(tmp_path, pretrain={"max_steps": 7}, model={"d_model": 32, "n_heads": 2})
    profile = load_profile(path)
    assert profile.pretrain_config().max_steps == 7
    assert profile.pretrain_config(max_steps=9).max_steps == 9
    assert profile.pretrain_config(max_steps=None).max_steps == 7  # None = keep the profile's value
    assert profile.model_config(vocab_size=10).d_model == 32


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"pretrain": {"max_stpes": 5}}, "max_stpes"),
        ({"data": {"n_corpsu": 5}}, "n_corpsu"),
        ({"bogus": 1}, "bogus"),
        ({"fractions": [1.5]}, "outside [0, 1]"),
        ({"fractions": []}, "empty"),
        ({"fractions": [0.1, 0.1]}, "duplicates"),
        ({"seeds": [-1]}, "seeds"),
        ({"model": {"d_model": 30, "n_heads": 4}}, "model"),
        ({"evaluate": {"regimes": ["full", "lroa"]}}, "evaluate.regimes"),
        ({"evaluate": {"regimes": []}}, "evaluate.regimes"),
        ({"evaluate": {"regimes": ["full", "full"]}}, "evaluate.regimes"),
        ({"evaluate": {"label_budgets": [0.0, 1.0], "step_budgets": [10]}}, "outside (0, 1]"),
        ({"evaluate": {"label_budgets": [1.5], "step_budgets": [10]}}, "outside (0, 1]"),
        ({"evaluate": {"label_budgets": [0.1], "step_budgets": [0]}}, "integers >= 1"),
        ({"evaluate": {"label_budgets": [0.1], "step_budgets": [2.5]}}, "integers >= 1"),
        ({"evaluate": {"label_budgets": [0.1]}}, "go together"),
        ({"evaluate": {"equivalence_bound": 0}}, "equivalence_bound"),
        ({"finetune": {"regime": "lora"}}, "evaluate.regimes"),
        ({"evaluate": {"regime_settings": {"lora": {"lr": 0.01}}}}, "evaluate.regime_settings"),  # not a listed regime
        (
            {"evaluate": {"regimes": ["full", "lora"], "regime_settings": {"lora": {"regime": "full"}}}},
            "evaluate.regime_settings",
        ),
        ({"evaluate": {"regimes": ["full", "lora"], "regime_settings": {"lora": 0.01}}}, "evaluate.regime_settings"),
        ({"evaluate": {"regimes": ["full", "lora"], "regime_settings": {"lora": {"hed_lr": 0.01}}}}, "hed_lr"),
        ({"data": {"heldout_tissues": ["brain"]}}, "unknown: ['brain']"),
        ({"data": {"heldout_tissues": ["skin", "skin"]}}, "distinct atlas tissues"),
        ({"data": {"heldout_tissues": ["blood", "lung", "liver", "gut", "skin"]}}, "leaves no tissue"),
        (
            {
                "data": {
                    "source": "registry",
                    "corpus": ["celltypist_sample"],
                    "downstream": "pbmc68k_reduced",
                    "heldout_tissues": ["skin"],
                }
            },
            "needs the synthetic atlas",
        ),
    ],
)
def test_bad_profiles_are_refused(tmp_path, changes, fragment):
    with pytest.raises(ConfigError, match=None) as err:
        load_profile(write_profile(tmp_path, **changes))
    assert fragment in str(err.value)


def test_unknown_key_lists_known_keys(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_profile(write_profile(tmp_path, pretrain={"max_stpes": 5}))
    assert "max_steps" in str(err.value) and "known keys" in str(err.value)


def test_missing_profile_names_the_available_ones():
    with pytest.raises(ConfigError) as err:
        load_profile("no_such_profile")
    assert "quick" in str(err.value)


def test_run_name_is_stable():
    """The run id is the name of checkpoint folders and metrics files: its spelling never changes."""
    assert Run("scgpt", 0.1, 2).name == "scgpt_f0.1_s2"
    assert Run("geneformer", 1, 0).name == "geneformer_f1.0_s0"
    assert Run("scgpt", 0.0, 0).name == "scgpt_f0.0_s0"
    assert Run("scgpt", 0.03, 7).name == "scgpt_f0.03_s7"
    assert Run("scgpt", 0.001, 1).name == "scgpt_f0.001_s1"


@pytest.mark.parametrize("families", [[], ["bert"], ["scgpt", "scgpt"]])
def test_families_are_checked(tmp_path, families):
    with pytest.raises(ConfigError, match="families"):
        load_profile(write_profile(tmp_path, families=families))


def test_each_family_gets_its_model_config(tmp_path):
    profile = load_profile(write_profile(tmp_path, families=["scgpt", "geneformer"]))
    assert profile.model_config(10).family == "scgpt"
    assert profile.model_config(10, family="geneformer").family == "geneformer"
    assert profile.run_ids()[0] == "scgpt_f1.0_s0" and profile.run_ids()[-1] == "geneformer_f0.0_s0"


def _namespace(**values):
    """A notebook's globals after the parameters cell and papermill's injected cell."""
    ns = {
        "__annotations__": {"fraction": float, "seed": int, "max_steps": int | None, "profile": str},
        "fraction": 0.1,
        "seed": 0,
        "max_steps": None,
        "profile": "quick",
        "In": [],
        "Out": {},
        "get_ipython": lambda: None,
        "_i1": "",
        "dataclasses": dataclasses,
    }
    ns.update(values)
    return ns


def test_notebook_parameters_pass():
    params = check_notebook_parameters(_namespace(fraction=1, max_steps=5))
    assert params == {"fraction": 1, "seed": 0, "max_steps": 5, "profile": "quick"}


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"fracton": 0.5}, "unknown notebook parameter(s) ['fracton']"),
        ({"seed": "zero"}, "parameter 'seed' must be"),
        ({"seed": 1.5}, "parameter 'seed' must be"),
        ({"max_steps": "many"}, "parameter 'max_steps' must be"),
        ({"fraction": True}, "parameter 'fraction' must be"),
    ],
)
def test_notebook_parameters_refused(values, fragment):
    with pytest.raises(ConfigError) as err:
        check_notebook_parameters(_namespace(**values))
    assert fragment in str(err.value)


def test_notebook_parameter_ranges():
    with pytest.raises(ConfigError, match="outside"):
        check_notebook_parameters(_namespace(fraction=1.5), ranges={"fraction": (0.0, 1.0)})
    check_notebook_parameters(_namespace(fraction=1.0), ranges={"fraction": (0.0, 1.0)})


@pytest.mark.parametrize(
    "data_section, message",
    [
        ({"source": "tabula"}, "data.source 'tabula' is unknown"),
        ({"source": "registry", "corpus": ["celltypist_sample"]}, "needs data.downstream"),
        ({"source": "registry", "downstream": "pbmc68k_reduced"}, "needs data.corpus"),
        (
            {"source": "registry", "corpus": ["pbmc68k_reduced"], "downstream": "pbmc68k_reduced"},
            "never be seen in pretraining",
        ),
        (
            {"source": "registry", "corpus": ["celltypist_smaple"], "downstream": "pbmc68k_reduced"},
            "'celltypist_smaple' is not registered",
        ),
        ({"source": "soma", "downstream": "pbmc68k_reduced"}, "needs data.soma.uri"),
        ({"source": "soma", "downstream": "pbmc68k_reduced", "soma": {"uri": "x", "layr": "raw"}}, "unknown key"),
    ],
)
def test_real_data_sections_are_checked_at_load(tmp_path, data_section, message):
    with pytest.raises(ConfigError, match=message):
        load_profile(write_profile(tmp_path, data=data_section))


def test_real_profile_holds_out_its_task_cells():
    """The real profile pretrains on the Kang set minus the task cells it reserves (scfm_lib.corpus),
    and never on its out-of-distribution dataset."""
    profile = load_profile("real")
    assert profile.data.source == "registry" and profile.data.data_template == "data_real"
    assert profile.data.downstream in profile.data.corpus and profile.data.downstream_cells > 0
    assert profile.data.ood not in profile.data.corpus and profile.data.has_ood
    assert profile.data.test_groups == ["stim"] and profile.data.split_by == "batch"
    assert load_profile("quick").data.has_ood


def test_regimes_and_budget_sweep(tmp_path):
    profile = load_profile(
        write_profile(
            tmp_path, evaluate={"regimes": ["lora", "full"], "label_budgets": [1, 0.1], "step_budgets": [50, 10]}
        )
    )
    assert profile.evaluate.regime_mode("lora") == "finetune"  # the first regime is the benchmark's
    assert profile.evaluate.regime_mode("full") == "finetune_full"
    assert profile.evaluate.label_budgets == [0.1, 1.0] and profile.evaluate.step_budgets == [10, 50]
    assert profile.evaluate.has_sweep
    assert profile.finetune_config(regime="lora").regime == "lora"
    assert not load_profile(write_profile(tmp_path)).evaluate.has_sweep


def test_regime_settings_apply_to_their_regime_only(tmp_path):
    profile = load_profile(
        write_profile(
            tmp_path,
            finetune={"lr": 0.001, "head_lr": 0.003, "max_steps": 30},
            evaluate={"regimes": ["full", "head_only"], "regime_settings": {"head_only": {"head_lr": 0.05}}},
        )
    )
    assert profile.finetune_config(regime="head_only").head_lr == 0.05
    assert profile.finetune_config(regime="head_only").lr == 0.001  # the rest from finetune
    assert profile.finetune_config(regime="head_only", head_lr=0.2).head_lr == 0.2  # a caller's override wins
    assert profile.finetune_config(regime="full").head_lr == 0.003
    assert profile.finetune_config().head_lr == 0.003


def test_the_real_profile_says_what_its_scale_cannot_say():
    # Issue 14: the real profile's book part places its corpus against where finetuned
    # classification saturates (DenAdel et al. 2026); the intro shows `limits` beside the verdicts.
    from scfm_lib.config import load_profile

    limits = load_profile("real", str(REPO / "profiles")).limits
    assert "DenAdel et al. (2026)" in limits and "22-million-cell" in limits
    assert "limits" in (REPO / "nbs" / "intro.ipynb").read_text()
