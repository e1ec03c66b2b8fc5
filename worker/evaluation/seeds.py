"""`framedrift seeds`: the seed documents' experiments rerun on the real data, beside theirs.

- 000: an autoencoder trained on MNIST; mean reconstruction loss on MNIST, on noisy
  MNIST (σ 0.5, clipped) and on notMNIST.
- 003: MNIST 1s with 1% 3s mixed in; outliers above the 0.999 quantile of the error.
- 004: Fashion-MNIST split 70/30 (seed 42) into A and B; A vs B_raw and A vs B_shift by
  KS on mean pixel intensity, KL divergence of its histograms and a domain classifier's
  AUC; then how fast our streaming detectors catch B_shift and the label shift.

Models are trained on first use and cached in `artifacts/` (MNIST: ~3 minutes on 2
cores). The seeds' own figures are quoted from `../shared/seeds/`.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from tqdm import tqdm

from framedrift.producers.datasets import LabelledImages
from framedrift.worker.evaluation.evaluate import (
    DATA_HELP,
    EVALUATION_DATASETS,
    SCENARIOS,
    SNEAKER,
    build_pools,
    cached_model,
    fashion_model,
    load_data,
    replay_scenario,
    require_data,
    seed_004_split,
    transformed,
)
from framedrift.worker.model.artifact import ModelArtifact
from framedrift.worker.model.autoencoder import reconstruction_error
from framedrift.worker.model.preprocessing import dataset_to_model_input
from framedrift.worker.model.training import TrainingPlan, score_dataset

SEEDS = ("000", "003", "004")
# seed -> the datasets (keys of evaluate.DATASETS) its experiment reads
SEED_DATASETS = {
    "000": ("mnist_train", "mnist", "notmnist"),
    "003": ("mnist_train",),
    "004": EVALUATION_DATASETS,
}
MNIST_MODEL = Path("artifacts/mnist.pt")
ONES_AND_THREES_MODEL = Path("artifacts/mnist-ones-threes.pt")
KL_BINS = 50  # of the mean-pixel histograms; the seed does not say how many it used
KL_FLOOR = 1e-10  # added to empty histogram bins so that log(p / q) stays finite


@dataclass(frozen=True)
class Row:
    """One line of a comparison: what was measured, ours, the seed's."""

    measure: str
    ours: str
    seed: str


def print_table(title: str, rows: list[Row], notes: list[str]) -> str:
    lines = [f"## {title}", "", "| measure | ours | seed |", "| --- | --- | --- |"]
    lines += [f"| {row.measure} | {row.ours} | {row.seed} |" for row in rows]
    for note in notes:
        lines += ["", note]
    lines.append("")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def mean_error(artifact: ModelArtifact, images: np.ndarray) -> float:
    inputs = dataset_to_model_input(images, artifact.preprocessing)
    return float(score_dataset(artifact.build_model(), inputs).mean())


def seed_000(data: Path) -> str:
    mnist = load_data(data, ("mnist_train", "mnist", "notmnist"))
    artifact = cached_model(
        MNIST_MODEL, mnist["mnist_train"].images, TrainingPlan(epochs=3), "MNIST train"
    )
    clean = mean_error(artifact, mnist["mnist"].images)
    noise = mean_error(artifact, transformed(mnist["mnist"], "noise", seed=0, noise_sigma=0.5))
    letters = mean_error(artifact, mnist["notmnist"].images)

    def increase(value: float) -> str:
        return f"{value:.4f} ({100 * (value / clean - 1):+.1f}%)"

    return print_table(
        "Seed 000: autoencoder trained on MNIST, mean reconstruction loss (BCE per pixel)",
        [
            Row("MNIST test set (the baseline)", f"{clean:.4f}", "0.1011"),
            Row("noisy MNIST, σ 0.5, clipped", increase(noise), "0.1024 (+1.3%)"),
            Row("notMNIST", increase(letters), "0.1458 (+44.2%)"),
        ],
        [
            "Ours is trained plainly (clean image in, the same image out), as the worker's "
            "model is; the seed trained a denoiser (noisy in, clean out), which is why "
            "noise barely moved its loss. A plain autoencoder reconstructs noise poorly, so "
            "here noise is the larger jump: for drift detection that is the wanted behaviour.",
        ],
    )


def seed_003(data: Path) -> str:
    """Seed 003's unsupervised set: every 1 of MNIST train, plus 3s numbering 1% of them."""
    mnist = load_data(data, ("mnist_train",))["mnist_train"]
    rng = np.random.default_rng(42)
    ones = rng.permutation(np.flatnonzero(mnist.labels == 1))
    threes = rng.permutation(np.flatnonzero(mnist.labels == 3))[: int(len(ones) * 0.01)]
    chosen = rng.permutation(np.concatenate([ones, threes]))
    images, labels = mnist.images[chosen], mnist.labels[chosen]
    plan = TrainingPlan(epochs=10, seed=42)  # trains on 80% of them, as the seed does
    artifact = cached_model(ONES_AND_THREES_MODEL, images, plan, "MNIST 1s with 1% 3s")

    inputs = dataset_to_model_input(images, artifact.preprocessing)
    model = artifact.build_model()
    with torch.inference_mode():
        reconstructions = torch.cat([model(chunk)[0] for chunk in inputs.split(512)])
    errors = {
        "MSE (the seed's loss)": ((reconstructions - inputs) ** 2).flatten(1).mean(1).numpy(),
        "BCE (the worker's error)": reconstruction_error(reconstructions, inputs).numpy(),
    }
    rows = [Row("images (1s + 3s)", f"{len(ones):,} + {len(threes)}", "6,742 + 67")]
    for name, values in errors.items():
        flagged = values >= np.quantile(values, 0.999)
        threes_flagged = int((labels[flagged] == 3).sum())
        rows.append(
            Row(f"{name}: flagged / of them 3s", f"{flagged.sum()} / {threes_flagged}", "7 / 5")
        )
    return print_table(
        "Seed 003: MNIST 1s with 1% 3s, outliers above the 0.999 quantile of the error",
        rows,
        [
            "How many are flagged follows from the quantile (0.1% of 6,809 images); what "
            "the autoencoder contributes is how many of them are the 3s it saw rarely.",
        ],
    )


def mean_pixels(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).mean(axis=1) / 255.0


def kl_divergence(a: np.ndarray, b: np.ndarray) -> float:
    """KL(A ‖ B) of the two samples' histograms on [0, 1]."""
    p, _ = np.histogram(a, bins=KL_BINS, range=(0.0, 1.0))
    q, _ = np.histogram(b, bins=KL_BINS, range=(0.0, 1.0))
    p = p / p.sum() + KL_FLOOR
    q = q / q.sum() + KL_FLOOR
    return float(np.sum(p * np.log(p / q)))


def domain_classifier_auc(a: np.ndarray, b: np.ndarray, seed: int = 0) -> float:
    """AUC of a logistic regression telling A's images from B's, on a held-out 30%.

    Raw pixels in [0, 1] as features, L2-regularised, fitted with L-BFGS.
    """
    features = torch.from_numpy(
        np.concatenate([a, b]).reshape(len(a) + len(b), -1).astype(np.float32) / 255.0
    )
    domain = torch.cat([torch.zeros(len(a)), torch.ones(len(b))])
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(domain)))
    cut = int(0.7 * len(order))
    train, test = order[:cut], order[cut:]
    weights = torch.zeros(features.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([weights, bias], max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        logits = features[train] @ weights + bias
        value = torch.nn.functional.binary_cross_entropy_with_logits(logits, domain[train])
        value = value + 1e-4 * weights.square().sum()
        value.backward()
        return value

    optimiser.step(loss)
    with torch.no_grad():
        scores = (features[test] @ weights + bias).numpy()
    return roc_auc(scores, domain[test].numpy().astype(bool))


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """The probability that a positive outscores a negative (Mann–Whitney), ties counted half."""
    ranks = stats.rankdata(scores)
    positives = int(positive.sum())
    negatives = len(scores) - positives
    return float(
        (ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    )


def seed_004(data: Path, runs: int) -> str:
    fashion = load_data(data, ("train", "test", "mnist", "notmnist"))
    split_a, split_b = seed_004_split(fashion["train"])
    images, labels = fashion["train"].images, fashion["train"].labels
    a, b_raw = images[split_a], images[split_b]
    # The seed's B_shift carries both changes: 7×7 and back with brightness +0.1, and
    # 90% of the sneakers removed.
    keep = np.random.default_rng(42).random(len(split_b)) >= 0.9
    b_shift = transformed(LabelledImages(b_raw, labels[split_b]), "covariate")
    b_shift = b_shift[(labels[split_b] != SNEAKER) | keep]

    rows = []
    for name, b, seed_figures in (
        ("B_raw", b_raw, ("0.0290", "0.7947", "1.4617", "0.5436")),
        ("B_shift", b_shift, ("0.3440", "0.0000", "112.8645", "1.0000")),
    ):
        ks = stats.ks_2samp(mean_pixels(a), mean_pixels(b))
        kl = kl_divergence(mean_pixels(a), mean_pixels(b))
        auc = domain_classifier_auc(a, b)
        rows += [
            Row(f"A vs {name}: KS statistic", f"{ks.statistic:.4f}", seed_figures[0]),
            Row(f"A vs {name}: KS p-value", f"{ks.pvalue:.4f}", seed_figures[1]),
            Row(f"A vs {name}: KL divergence", f"{kl:.4f}", seed_figures[2]),
            Row(f"A vs {name}: domain classifier AUC", f"{auc:.4f}", seed_figures[3]),
        ]

    artifact = fashion_model(fashion)
    pools = build_pools(artifact, fashion)
    config = artifact.monitor_config(0.999)
    onset, horizon = 2000, 6000
    chosen = [scenario for scenario in SCENARIOS if scenario.name in ("covariate", "label-shift")]
    progress = tqdm(total=runs * len(chosen), desc="replaying streams", unit="stream")
    for scenario in chosen:
        summary, _ = replay_scenario(config, pools, scenario, runs, onset, horizon, progress)
        delay = summary["median_delay"]
        rows.append(
            Row(
                f"streaming, {scenario.name}: detected / median delay (events)",
                f"{summary['detection_rate']:.0%} / {'–' if delay is None else f'{delay:,.0f}'}",
                "– (batch comparison only)",
            )
        )
    progress.close()
    return print_table(
        "Seed 004: Fashion-MNIST A (70%, seed 42) against B_raw and B_shift",
        rows,
        [
            "The seed's B_shift row lists KL 1.0000 and AUC 112.8645; an AUC cannot exceed "
            "1, so the two columns are swapped there and are quoted here the right way round.",
            "The seed's B_raw KS statistic, 0.029 with p 0.79, fits samples of about 1,000 "
            "images a side, not the whole 42,000 and 18,000 compared here, where noise "
            "alone gives about 0.01.",
            f"KL uses {KL_BINS} bins on [0, 1] with {KL_FLOOR:g} added to each bin; the seed "
            "does not give its binning, and KL of histograms depends on it strongly (its "
            "B_raw figure, 1.46, is far above what two samples of one distribution give "
            "with few bins).",
            f"Streaming: ERT {config.parameters.ert:,}, {runs} runs, drift from event "
            f"{onset:,}; the model is trained on split A only. The label shift drops 90% of "
            "the sneakers from B_raw without touching the images.",
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="framedrift seeds", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    if unknown := set(args.seeds) - set(SEEDS):
        parser.error(f"no seed {', '.join(sorted(unknown))}; choose from {', '.join(SEEDS)}")
    chosen = args.seeds or SEEDS
    needed = dict.fromkeys(name for seed in chosen for name in SEED_DATASETS[seed])
    require_data(args.data, tuple(needed))
    return run(args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Checked in `main`: argparse rejects an empty list against `choices`.
    parser.add_argument("seeds", nargs="*", help=f"any of {', '.join(SEEDS)}; default: all")
    parser.add_argument("--data", type=Path, default=None, help=f"required: {DATA_HELP}")
    parser.add_argument("--runs", type=int, default=20, help="streams per drift scenario (004)")
    parser.add_argument(
        "--out", type=Path, default=Path("framedrift-results/seeds.md"), help="the report"
    )


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    torch.manual_seed(0)
    reports = {
        "000": lambda: seed_000(args.data),
        "003": lambda: seed_003(args.data),
        "004": lambda: seed_004(args.data, args.runs),
    }
    sections = [reports[seed]() for seed in args.seeds or SEEDS]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(sections))
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
