"""Reading the STDP network's answers: neuron labels, classification, and the two readouts.

Diehl & Cook (2015) label each neuron with the class it fires most for on the
labelling images (`assign_labels`) and classify an image as the class whose
labelled neurons fire most on average (`classify`), with the network frozen as
it was trained: its learned thresholds theta included.  That is the *learned*
readout.

With the learned thresholds, under 120 mV of lateral inhibition, a single neuron
answers each image: the one whose membrane reaches v_thresh + theta_n first.  With a strong
input that is roughly the neuron with the largest

    (w_n . x) / (v_thresh - v_rest + theta_n)

where w_n sums to `weight_sum` (D&C's normalisation).  theta_n is set by
homeostasis to share the training images out evenly, not to compare
similarities, and a column that sums to a constant can still have a large or a
small Euclidean norm, so the race is a distorted similarity.  The *equal-norm*
readout (`equal_norm_readout`) freezes the same network with every neuron's
weights rescaled to one Euclidean norm and one threshold for all:

    w_n <- w_n * readout_norm / ||w_n||,      theta_n <- readout_theta   (all n)

Then the first neuron to fire is the one whose weights have the largest cosine
similarity with the input spikes, which is what the prototypes the neurons
learned are good for, and the high common threshold makes each neuron integrate
more input spikes before it answers, so that Poisson noise decides less, and lets
a few neurons (about four) fire for an image instead of one: a small vote among
the closest prototypes.
Training is unchanged; only the frozen network that answers differs.  Labels
and classification are D&C's in both readouts.  docs/stdp.md measures both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plasticity.stdp import StdpNetwork

NUM_CLASSES = 10
READOUT_NAMES: tuple[str, ...] = ("learned", "equal_norm")


@dataclass(frozen=True)
class EqualNormReadout:
    """The two constants of the equal-norm readout, chosen on validation images
    (docs/stdp.md): the Euclidean norm of every neuron's input weights (5.8 is
    about the median norm of trained columns that sum to 78.4) and the common
    threshold above v_thresh."""

    norm: float = 5.8
    theta_mv: float = 130.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.norm) and self.norm > 0):
            raise ValueError(f"--readout-norm must be a positive number, got {self.norm!r}")
        if not (np.isfinite(self.theta_mv) and self.theta_mv >= 0):
            raise ValueError(f"--readout-theta must be a non-negative number of mV, got {self.theta_mv!r}")


def equal_norm_readout(network: StdpNetwork, readout: EqualNormReadout) -> StdpNetwork:
    """A frozen copy of `network` for the equal-norm readout: each neuron's weights
    rescaled to Euclidean norm `readout.norm` (a column of zeros stays zero) and every
    theta set to `readout.theta_mv`.  `network` itself is not modified."""
    norms = np.linalg.norm(network.weights, axis=0)
    scale = np.divide(readout.norm, norms, out=np.zeros_like(norms), where=norms > 0)
    # w_n <- w_n * norm / ||w_n||
    weights = network.weights * scale
    # theta_n <- theta_readout for every neuron
    theta = np.full_like(network.theta, readout.theta_mv)
    return StdpNetwork(network.config, weights, theta, backend=network.backend)


# ---------------------------------------------------------------------------
# Labels and classification (D&C), the same for both readouts


def class_count_sums(counts: np.ndarray, labels: np.ndarray, n_classes: int = NUM_CLASSES) -> np.ndarray:
    """(n_classes, N): each neuron's total spike count over the images of each class.
    Sums of whole counts are exact in float64, so sums over chunks of images, added
    up, give the same bits as one sum over all of them."""
    counts = np.asarray(counts)
    labels = np.asarray(labels)
    if counts.ndim != 2 or labels.shape != (counts.shape[0],):
        raise ValueError(f"need counts (M, N) and labels (M,), got {counts.shape} and {labels.shape}")
    sums = np.zeros((n_classes, counts.shape[1]))
    for label in range(n_classes):
        sums[label] = counts[labels == label].sum(axis=0, dtype=np.int64)
    return sums


def rates_from_sums(sums: np.ndarray, images_per_class: np.ndarray) -> np.ndarray:
    """(n_classes, N) mean spike counts: sums / images of the class (0 for a class with none)."""
    per_class = np.asarray(images_per_class, dtype=np.float64)[:, None]
    return np.divide(sums, per_class, out=np.zeros_like(sums), where=per_class > 0)


def class_rates(counts: np.ndarray, labels: np.ndarray, n_classes: int = NUM_CLASSES) -> np.ndarray:
    """(n_classes, N): each neuron's mean spike count over the images of each class
    (0 for a class with no images)."""
    images_per_class = np.bincount(np.asarray(labels), minlength=n_classes)[:n_classes]
    return rates_from_sums(class_count_sums(counts, labels, n_classes), images_per_class)


def labels_from_rates(rates: np.ndarray) -> np.ndarray:
    """Each neuron's class: the one it fires most for on average (D&C); lowest class on
    ties; -1 for a neuron that never fired (it then takes no part in voting)."""
    assignments = np.argmax(rates, axis=0).astype(np.int64)
    assignments[rates.max(axis=0) <= 0.0] = -1
    return assignments


def assign_labels(counts: np.ndarray, labels: np.ndarray, n_classes: int = NUM_CLASSES) -> np.ndarray:
    """Label each neuron with the class it fires most for on average (D&C); lowest
    class on ties; -1 for a neuron that never fired (it then takes no part in voting)."""
    return labels_from_rates(class_rates(counts, labels, n_classes))


def class_scores(counts: np.ndarray, assignments: np.ndarray, n_classes: int = NUM_CLASSES) -> np.ndarray:
    """(M, n_classes): mean spike count of the neurons assigned to each class (D&C);
    -1 for a class no neuron is assigned to, so it can never win."""
    counts = np.asarray(counts, dtype=np.float64)
    scores = np.full((counts.shape[0], n_classes), -1.0)
    for label in range(n_classes):
        members = assignments == label
        if members.any():
            scores[:, label] = counts[:, members].mean(axis=1)
    return scores


def classify(counts: np.ndarray, assignments: np.ndarray, n_classes: int = NUM_CLASSES) -> np.ndarray:
    """Predicted class per image: argmax of `class_scores` (lowest class on ties)."""
    return np.argmax(class_scores(counts, assignments, n_classes), axis=1)
