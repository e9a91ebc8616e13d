"""Learned models by task, in the one registry pattern (``kb.registry.Registry``); loading by name or path.

    herb-rec        symptom set -> ranked herbs        cooccurrence, mlp
    case-classify   case text -> department (5 labels)  nbsvm, char-cnn, nbsvm-cnn, tfidf-svm, transformer, ensemble

Entries are registered lazily (``"module:Class"``) so torch and scikit-learn load only when a model is picked.
Every model class has ``kind``, ``task``, ``save(dir) -> config`` and ``load(dir, card) -> model``;
:mod:`models.artifacts` writes and checks the files and the model card around them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from kb.errors import ArtifactError, InputError
from kb.registry import Registry

TASKS = ("herb-rec", "case-classify")

HERB_RECOMMENDERS: Registry[Any] = Registry("herb-rec model")
HERB_RECOMMENDERS.register("cooccurrence", "models.herb_rec:CooccurrenceRecommender")
HERB_RECOMMENDERS.register("mlp", "models.herb_rec:MLPRecommender")

CASE_CLASSIFIERS: Registry[Any] = Registry("case-classify model")
CASE_CLASSIFIERS.register("tfidf-svm", "models.case_classify:TfidfClassifier")
CASE_CLASSIFIERS.register("transformer", "models.case_classify:TransformerClassifier")
CASE_CLASSIFIERS.register("ensemble", "models.case_classify:EnsembleClassifier")
CASE_CLASSIFIERS.register("nbsvm", "models.case_classify:NBSVMClassifier")
CASE_CLASSIFIERS.register("char-cnn", "models.case_classify:CharCNNClassifier")
CASE_CLASSIFIERS.register("nbsvm-cnn", "models.case_classify:NBSVMCNNEnsemble")

REGISTRIES: dict[str, Registry[Any]] = {"herb-rec": HERB_RECOMMENDERS, "case-classify": CASE_CLASSIFIERS}

# where `load_model("name")` looks for a named artifact
DEFAULT_MODEL_ROOT = Path("artifacts") / "models"


class SavedModel(Protocol):
    kind: str
    task: str

    def save(self, directory: Path) -> dict[str, Any]: ...


def registry_for(task: str) -> Registry[Any]:
    if task not in REGISTRIES:
        raise InputError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}", "task")
    return REGISTRIES[task]


def model_class(task: str, kind: str) -> Any:
    reg = registry_for(task)
    if kind not in reg:
        raise ArtifactError(
            f"artifact is a {task} model of kind {kind!r}, which this version does not know "
            f"(known: {', '.join(reg.names())}); retrain it with `tcm train {task}`"
        )
    return reg.get(kind)


def load_model(name_or_path: str | Path, task: str | None = None, root: Path | None = None) -> Any:
    """Load a saved model by directory path, or by name under ``artifacts/models/``; check task and files."""
    from models.artifacts import load_artifact

    return load_artifact(name_or_path, task=task, root=root or DEFAULT_MODEL_ROOT)
