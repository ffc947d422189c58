"""Benchmark suites: which tasks, models and label fractions `brainbench run --suite NAME` runs.

A suite is a YAML file under configs/suites/: optional `settings` (overrides every run and
pretraining of the suite takes, before the command line's), an optional `pretrain` mapping
(foundation model -> its pretraining overrides) and `tasks` (task -> models, label fractions and
the task's own overrides). A model entry is a name, or `{model: NAME, init: PRETRAINED}` to
initialise it from one of the suite's pretrained models (finetune or probe); the suite pretrains
those first. A model appears at most once per task from scratch and once with an `init` (its
runs' folders name the model and protocol, not the init).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, model_validator

from brainbench.config import StrictModel, load_yaml
from brainbench.errors import ConfigError, unknown

SUITE_DIR = Path(__file__).parent / "configs" / "suites"


class ModelEntry(StrictModel):
    """A model of a suite task; `init` names a model of the suite's `pretrain` section."""

    model: str
    init: str | None = None


class SuiteTask(StrictModel):
    models: list[str | ModelEntry] = Field(min_length=1)
    label_fractions: list[float] = Field([], description="none: all the training labels")
    overrides: list[str] = Field([], description="this task's runs only, e.g. task_options.*")

    def entries(self) -> list[ModelEntry]:
        return [ModelEntry(model=m) if isinstance(m, str) else m for m in self.models]


class Suite(StrictModel):
    settings: list[str] = []
    pretrain: dict[str, list[str]] = {}
    tasks: dict[str, SuiteTask] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_inits(self) -> Suite:
        for task, entry in self.tasks.items():
            runs: dict[tuple[str, bool], str] = {}  # a model's runs share a folder per protocol
            for model in entry.entries():
                if model.init is not None and model.init not in self.pretrain:
                    raise ValueError(
                        f"tasks.{task}: init '{model.init}' is not in the pretrain section "
                        f"({', '.join(self.pretrain) or 'empty'})"
                    )
                key, init = (model.model, model.init is None), model.init or "scratch"
                if key in runs:
                    raise ValueError(
                        f"tasks.{task}: {model.model} is listed twice ({runs[key]}, {init}); "
                        "its runs would share one folder and the second would overwrite the "
                        "first: keep one, or compare them in two suites with their own "
                        "output_dir"
                    )
                runs[key] = init
        return self


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


def suite_path(name: str) -> Path:
    """The file of suite `name`: a built-in name or a YAML path."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        if name not in suite_names():
            raise unknown("suite", name, suite_names())
        path = SUITE_DIR / f"{name}.yaml"
    return path


def load_suite(name: str) -> Suite:
    """The suite `name` (a built-in name or a YAML path); errors name the file and the key."""
    path = suite_path(name)
    try:
        return Suite.model_validate(load_yaml(path))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'top level'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"suite file {path}: {problems}.") from None
