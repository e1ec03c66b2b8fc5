"""The evaluation's own arithmetic: stream construction, delays, and the seeds' statistics."""

from __future__ import annotations

import numpy as np
import pytest

from framedrift.worker.detection.registry import DETECTOR_NAMES
from framedrift.worker.evaluation.evaluate import (
    SCENARIOS,
    SNEAKER,
    Pools,
    delays_summary,
    detector_rows,
    drifted_stream,
)
from framedrift.worker.evaluation.seeds import domain_classifier_auc, kl_divergence, roc_auc
from tests.detector_fixtures import synthetic_config, synthetic_scores


def scenario(name: str):
    return next(s for s in SCENARIOS if s.name == name)


def pools(rng: np.random.Generator) -> Pools:
    clean, drifted = synthetic_scores(rng, 5000), synthetic_scores(rng, 5000)
    drifted.error[:] = 10.0  # marks every drifted event
    labels = rng.integers(0, 10, 5000)
    return Pools(
        scores={"b_raw": clean, "b_shift": drifted},
        labels={"b_raw": labels},
        images={},
    )


def test_a_label_shift_stream_keeps_a_tenth_of_the_sneakers(rng: np.random.Generator) -> None:
    sources = pools(rng)
    shares = []
    for _ in range(3):
        stream = drifted_stream(scenario("label-shift"), sources, rng, onset=20_000, length=40_000)
        # Label-shift streams draw from b_raw on both sides; the synthetic errors are
        # continuous, so each one identifies its row and thus its label.
        error_to_label = dict(
            zip(sources.scores["b_raw"].error, sources.labels["b_raw"], strict=True)
        )
        labels = np.array([error_to_label[error] for error in stream.error])
        shares.append(np.mean(labels[20_000:] == SNEAKER) / np.mean(labels[:20_000] == SNEAKER))
    # Sneakers are a tenth of the labels; kept at weight 0.1, their share becomes
    # 0.01 / 0.91 after the onset: 0.11 of what it was.
    assert np.mean(shares) == pytest.approx((0.01 / 0.91) / 0.1, abs=0.03)


def test_a_gradual_stream_ramps_its_drifted_share_from_zero_to_all(
    rng: np.random.Generator,
) -> None:
    stream = drifted_stream(scenario("gradual-covariate"), pools(rng), rng, 1000, 1000 + 6000)
    drifted = stream.error == 10.0
    assert not drifted[:1000].any()
    first_quarter, last_quarter = drifted[1000:2000].mean(), drifted[4000:5000].mean()
    assert 0.05 < first_quarter < 0.25 < 0.75 < last_quarter < 1.0  # ramp of 4,000 events
    assert drifted[5000:].all()


def test_delays_summary_counts_misses_and_ignores_them_in_the_delays() -> None:
    summary = delays_summary([3, None, 5, 7, None])
    assert summary["detection_rate"] == 0.6
    assert summary["median_delay"] == 5
    assert delays_summary([None])["median_delay"] is None


def test_roc_auc_matches_counting_every_pair(rng: np.random.Generator) -> None:
    scores = np.round(rng.normal(size=300), 1)  # ties included
    positive = rng.random(300) < 0.4
    wins = (scores[positive][:, None] > scores[~positive][None, :]).sum()
    ties = (scores[positive][:, None] == scores[~positive][None, :]).sum()
    expected = (wins + 0.5 * ties) / (positive.sum() * (~positive).sum())
    assert roc_auc(scores, positive) == pytest.approx(expected)


def test_kl_divergence_is_zero_for_one_sample_and_grows_with_a_shift(
    rng: np.random.Generator,
) -> None:
    sample = rng.beta(2, 5, 5000)
    assert kl_divergence(sample, sample) == pytest.approx(0.0, abs=1e-9)
    assert kl_divergence(sample, np.clip(sample + 0.2, 0, 1)) > 1.0


def test_domain_classifier_tells_apart_only_what_differs(rng: np.random.Generator) -> None:
    same_a = rng.integers(0, 256, (600, 8, 8), dtype=np.uint8)
    same_b = rng.integers(0, 256, (600, 8, 8), dtype=np.uint8)
    brighter = np.clip(same_b.astype(int) + 40, 0, 255).astype(np.uint8)
    assert abs(domain_classifier_auc(same_a, same_b) - 0.5) < 0.08
    assert domain_classifier_auc(same_a, brighter) > 0.95


def test_the_report_has_a_row_for_every_detector_calibrated_or_not() -> None:
    calibration = synthetic_config().calibration.to_dict()
    everything = {"events": 1000, "run_length_by_detector": dict.fromkeys(DETECTOR_NAMES)}
    rows = detector_rows(calibration, everything)
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == list(DETECTOR_NAMES)
    assert all("> 1,000 (no alarm)" in row for row in rows)
