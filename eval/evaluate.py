"""Evaluate trained artifacts on the test splits, with the floor computed in the same run.

    herb-rec        P@5/10/20, R@5/10/20 and standard NDCG@5/10/20 on each dataset's test split (SMGCN and
                    TCM-PD) for the model and for the co-occurrence floor fitted on that dataset's full train
                    split. ``--model`` is one artifact or a directory of per-dataset artifacts.
    case-classify   accuracy and macro-F1 on the tcm-cases test split, for the model and (for an ensemble) for
                    each of its members, and for the scikit-learn floor trained in the same run (TF-IDF over
                    character 1-3-grams + linear SVM, C picked on the validation split).

The test split is read here only; nothing is selected on it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from eval.metrics import KS, classification_metrics, ranking_metrics
from kb.errors import ArtifactError, InputError
from models.artifacts import CARD
from models.registry import load_model

logger = logging.getLogger(__name__)

ANCHORS = {
    "smgcn": {
        "SMGCN re-run (epoch picked on test)": {"P@5": 0.3255, "P@10": 0.2550, "P@20": 0.1839, "R@5": 0.2377,
                                                 "R@10": 0.3608, "R@20": 0.5115},
        "co-occurrence (published)": {"P@5": 0.2875, "R@20": 0.4694},
    },
    "tcm-pd": {"co-occurrence (published)": {"P@5": 0.280, "R@20": 0.470}},
    "tcm-cases": {
        "TCM-BERT (JAMIA 2019)": {"accuracy": 0.8939, "macro_f1": 0.8864},
        "TF-IDF + SVM (published)": {"accuracy": 0.81, "macro_f1": 0.79},
    },
}  # fmt: skip
TARGETS = {"smgcn": {"P@5": 0.34, "R@20": 0.53}, "tcm-cases": {"accuracy": 0.90, "macro_f1": 0.89}}


def herb_rec_artifacts(model: str | Path) -> dict[str, Path]:
    """dataset name -> artifact directory, for one artifact or a directory of them."""
    p = Path(model)
    if (p / CARD).is_file():
        from models.artifacts import read_card

        return {str(read_card(p)["data"].get("name", p.name)): p}
    if p.is_dir():
        found = {d.name: d for d in sorted(p.iterdir()) if (d / CARD).is_file()}
        if found:
            return found
    raise ArtifactError(f"no herb-rec model artifact at {str(model)!r} (expected {CARD} in it or in its subfolders)")


def evaluate_herb_rec(model: str | Path, data_dir: str | Path | None, ks: tuple[int, ...] = KS) -> dict[str, Any]:
    from models.herb_rec import CooccurrenceRecommender
    from training.datasets import HERB_REC_LOADERS, resolve_data_dir

    root = resolve_data_dir(data_dir)
    out: dict[str, Any] = {
        "task": "herb-rec",
        "ndcg": "standard (ideal ordering of the true herbs)",
        "datasets": {},
    }
    for name, path in herb_rec_artifacts(model).items():
        if name not in HERB_REC_LOADERS:
            raise ArtifactError(f"{path}: trained on unknown dataset {name!r}")
        m = load_model(path, task="herb-rec")
        ds = HERB_REC_LOADERS[name](root)
        trained_hash = m.card["data"].get("content_hash")
        if trained_hash and trained_hash != ds.card.content_hash:
            logger.warning("%s: the data directory's %s differs from the one the model was trained on", path, name)
        if len(m.herbs) != len(ds.herbs) or len(m.symptoms) != len(ds.symptoms):
            raise ArtifactError(f"{path}: vocabulary sizes do not match the {name} data in {root}")
        test = ds.split("test")
        xs, ys = [e.symptoms for e in test], [e.herbs for e in test]
        tr = ds.split("train")
        floor = CooccurrenceRecommender(ds.symptoms, ds.herbs).fit([e.symptoms for e in tr], [e.herbs for e in tr])
        scores = m.score(xs)
        out["datasets"][name] = {
            "artifact": str(path),
            "kind": m.kind,
            "n_test": len(test),
            "model": ranking_metrics(scores, ys, ks),
            "cooccurrence": ranking_metrics(floor.score(xs), ys, ks),
            "validation": m.card.get("metrics", {}).get("validation", {}),
            "validation_cooccurrence": m.card.get("metrics", {}).get("validation_cooccurrence", {}),
            "config": m.card.get("config", {}),
            "train_seconds": m.card.get("training", {}).get("seconds"),
            "anchors": ANCHORS.get(name, {}),
            "targets": TARGETS.get(name, {}),
            "by_support": support_analysis(tr, test, scores, len(ds.herbs), TARGETS.get(name, {}).get("P@5")),
        }
    return out


def support_analysis(
    train: Any, test: Any, scores: Any, n_herbs: int, target_p5: float | None = None, threshold: int = 100
) -> dict[str, Any]:
    """How close to the attainable a recommender is, from the training data alone: the test prescriptions whose exact
    symptom set occurs at least ``threshold`` times in train are scored by that set's herb frequencies there (with
    so many examples of the very same input, close to the best any recommender that sees only the symptom set can
    do) beside the model; the rest by the model alone. With ``target_p5``: the P@5 the other rows would need for
    the whole test split to reach it while the frequent rows stay at the frequency's level."""
    import numpy as np

    def key(symptoms: Any) -> tuple[int, ...]:
        return tuple(sorted(set(symptoms)))

    support: dict[tuple[int, ...], int] = {}
    for e in train:
        k = key(e.symptoms)
        support[k] = support.get(k, 0) + 1
    freq: dict[tuple[int, ...], Any] = {k: np.zeros(n_herbs) for k, c in support.items() if c >= threshold}
    for e in train:
        row = freq.get(key(e.symptoms))
        if row is not None:
            row[list(e.herbs)] += 1
    frequent = [i for i, e in enumerate(test) if key(e.symptoms) in freq]
    seen = set(frequent)
    rare = [i for i in range(len(test)) if i not in seen]

    def short(m: dict[str, float]) -> dict[str, float]:
        return {k: m[k] for k in ("P@5", "R@20")}

    out: dict[str, Any] = {"threshold": threshold, "n_test": len(test)}
    ys = [test[i].herbs for i in frequent]
    if frequent:
        exact = np.stack([freq[key(test[i].symptoms)] for i in frequent])
        out["frequent"] = {
            "n": len(frequent),
            "model": short(ranking_metrics(scores[frequent], ys, (5, 20))),
            "exact_set_frequency": short(ranking_metrics(exact, ys, (5, 20))),
        }
    if rare:
        out["rare"] = {
            "n": len(rare),
            "model": short(ranking_metrics(scores[rare], [test[i].herbs for i in rare], (5, 20))),
        }
    if target_p5 is not None and frequent and rare:
        at_best = out["frequent"]["exact_set_frequency"]["P@5"]
        out["target_P@5"] = target_p5
        out["rare_P@5_needed"] = (target_p5 * len(test) - at_best * len(frequent)) / len(rare)
    return out


def case_classify_floor(ds: Any) -> dict[str, Any]:
    """The scikit-learn floor, trained here: TF-IDF + linear SVM on the train split, C picked on the validation
    split (the training defaults' grid), scored on the test split."""
    import time

    from models.case_classify import TfidfClassifier
    from training.datasets import case_texts_with_validation
    from training.train import CASE_DEFAULTS

    t0 = time.perf_counter()
    ds = case_texts_with_validation(ds)
    train, val, test = ds.split("train"), ds.split("val"), ds.split("test")
    xt, yt = [c.text for c in train], [c.label for c in train]
    yv = [c.label for c in val]
    tc = CASE_DEFAULTS["tfidf"]
    best: tuple[float, float, Any] | None = None
    for c in tc["C_grid"]:
        m = TfidfClassifier(tuple(tc["ngram"]), float(c), bool(tc["sublinear_tf"])).fit(xt, yt)
        acc = float(classification_metrics(yv, m.predict([x.text for x in val]), ds.labels)["accuracy"])
        if best is None or acc > best[0]:
            best = (acc, float(c), m)
    assert best is not None
    test_metrics = classification_metrics([c.label for c in test], best[2].predict([c.text for c in test]), ds.labels)
    return {"model": "tfidf-svm", "picked_C": best[1], "validation_accuracy": best[0], "test": test_metrics,
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def evaluate_case_classify(model: str | Path, data_dir: str | Path | None, floor: bool = True) -> dict[str, Any]:
    """``floor=False`` leaves out the same-run TF-IDF + SVM floor (about a minute on the full data)."""
    from models.case_classify import EnsembleClassifier, NBSVMCNNEnsemble
    from training.datasets import load_tcm_cases

    m = load_model(model, task="case-classify")
    ds = load_tcm_cases(data_dir)
    test = ds.split("test")
    xs, ys = [c.text for c in test], [c.label for c in test]
    labels = list(m.labels)
    if sorted(labels) != sorted(ds.labels):
        raise ArtifactError(f"model labels {labels} do not match the data's labels {list(ds.labels)}")
    models: dict[str, Any] = {}
    preds: dict[str, list[int]] = {}
    if isinstance(m, EnsembleClassifier):
        dec, lg = m.tfidf.decision(xs), m.transformer.logits(xs)
        preds["tfidf-svm"] = [labels[i] for i in dec.argmax(1)]
        preds["transformer"] = [labels[i] for i in lg.argmax(1)]
        preds["ensemble"] = [labels[i] for i in EnsembleClassifier.combine(dec, lg, m.weight).argmax(1)]
    elif isinstance(m, NBSVMCNNEnsemble):
        dec, lg = m.nbsvm.decision(xs), m.cnn.logits(xs)
        preds["nbsvm"] = [labels[i] for i in dec.argmax(1)]
        preds["char-cnn"] = [labels[i] for i in lg.argmax(1)]
        combined = NBSVMCNNEnsemble.combine(dec, m.nbsvm.scale, lg, m.weight)
        preds["nbsvm-cnn"] = [labels[i] for i in combined.argmax(1)]
    else:
        preds[m.kind] = m.predict(xs)
    for who, p in preds.items():
        models[who] = classification_metrics(ys, p, labels)
    return {
        "task": "case-classify",
        "artifact": str(model),
        "kind": m.kind,
        "n_test": len(test),
        "label_names": {str(k): v for k, v in ds.label_names.items()},
        "models": models,
        "validation": m.card.get("metrics", {}),
        "training_seconds": {k: v for k, v in m.card.get("training", {}).items() if k.endswith("_seconds")},
        **({"floor": case_classify_floor(ds)} if floor else {}),
        "anchors": ANCHORS["tcm-cases"],
        "targets": TARGETS["tcm-cases"],
    }


def evaluate(task: str, model: str | Path, data_dir: str | Path | None) -> dict[str, Any]:
    if task == "herb-rec":
        return evaluate_herb_rec(model, data_dir)
    if task == "case-classify":
        return evaluate_case_classify(model, data_dir)
    raise InputError(f"unknown task {task!r} (known: herb-rec, case-classify)", "task")
