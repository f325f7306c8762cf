#!/usr/bin/python3
"""How right is a run's pseudo-label pool? Scores each pool version still on disk against the
ground truth the unlabeled training cases keep for evaluation (training never reads it).

    bench/btcv/pool_accuracy.py RUN DATASET      # needs python3-h5py and python3-numpy

For every organ: the pixels the version accepts as that organ (teacher label, confidence at or
above the organ's threshold, organ not left out by the organ gate) and how many of them are that
organ in truth (precision), the share of the organ's true pixels accepted as it (recall), the
share accepted as background (confident background on the organ: what LDC's false-positive term
pushes the student away from), and the class most of the wrong pixels truly are. Truth is
resized to the pool's S x S per slice by nearest neighbour (pixel centres), like the network
input, so boundary pixels may differ by one from the trainer's own warp.

A second table per version asks whether a stricter confidence threshold would have helped: the
precision of the teacher's label for each organ among its pixels at confidence 0.8, 0.9, 0.95
and 0.99 (before thresholds and gate), with their count.
"""
import json
import os
import sys

import h5py
import numpy as np


def nearest(label, size):
    depth, height, width = label.shape
    rows = np.minimum(((np.arange(size) + 0.5) * height / size).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(size) + 0.5) * width / size).astype(np.int64), width - 1)
    return label[:, rows][:, :, cols]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    run, dataset = sys.argv[1], sys.argv[2]
    manifest = json.load(open(os.path.join(dataset, "manifest.json")))
    classes = manifest["classes"]
    files = {c["id"]: c["file"] for c in manifest["cases"]}
    pool_dir = os.path.join(run, "pool")
    versions = sorted(v for v in os.listdir(pool_dir) if v.startswith("v") and
                      os.path.exists(os.path.join(pool_dir, v, "POOL.json")))
    if not versions:
        sys.exit(f"error: {pool_dir} holds no published pool version")
    for version in versions:
        folder = os.path.join(pool_dir, version)
        pool = json.load(open(os.path.join(folder, "POOL.json")))
        thresholds = np.array(pool["thresholds"])
        accepted_organs = np.array(pool.get("accepted", [True] * len(classes)))
        k = len(classes)
        # counts[t, p]: true class t, accepted pool class p (k = not accepted).
        counts = np.zeros((k, k + 1), dtype=np.int64)
        levels = (0.8, 0.9, 0.95, 0.99)
        # by_level[l, c]: pixels labeled c at confidence >= level l, and how many of them are c.
        by_level = np.zeros((len(levels), k, 2), dtype=np.int64)
        for r in range(pool["ranks"]):
            with h5py.File(os.path.join(folder, f"rank-{r:05d}.h5"), "r") as h5:
                for case in h5:
                    label = h5[case]["label"][()].astype(np.int64)
                    confidence = h5[case]["confidence"][()] / 255.0
                    with h5py.File(os.path.join(dataset, files[case]), "r") as truth_file:
                        truth = nearest(truth_file["label"][()].astype(np.int64), label.shape[1])
                    keep = (confidence >= thresholds[label]) & accepted_organs[label]
                    pool_class = np.where(keep, label, k)
                    np.add.at(counts, (truth.ravel(), pool_class.ravel()), 1)
                    for li, level in enumerate(levels):
                        sure = confidence >= level
                        by_level[li, :, 0] += np.bincount(label[sure], minlength=k)[:k]
                        by_level[li, :, 1] += np.bincount(label[sure & (label == truth)], minlength=k)[:k]
        print(f"## {version}: step {pool['step']}, gate ratio {pool.get('prior_ratio', 0)}\n")
        print("| organ | gate | accepted px | precision | recall | accepted as background | wrong ones mostly |")
        print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
        for c in range(1, k):
            accepted = counts[:, c].sum()
            true_total = counts[c, :].sum()
            right = counts[c, c]
            wrong = counts[:, c].copy()
            wrong[c] = 0
            mostly = classes[int(wrong.argmax())] if wrong.sum() > 0 else "-"
            precision = f"{right / accepted:.2f}" if accepted else "-"
            recall = f"{right / true_total:.2f}" if true_total else "-"
            as_background = f"{counts[c, 0] / true_total:.2f}" if true_total else "-"
            gate = "kept" if accepted_organs[c] else "left out"
            print(f"| {classes[c]} | {gate} | {accepted} | {precision} | {recall} | {as_background} | {mostly} |")
        print()
        print("| organ | " + " | ".join(f"precision at >= {level}" for level in levels) + " |")
        print("| --- |" + " ---: |" * len(levels))
        for c in range(1, k):
            cells = [f"{by_level[li, c, 1] / by_level[li, c, 0]:.2f} of {by_level[li, c, 0]}" if by_level[li, c, 0]
                     else "-" for li in range(len(levels))]
            print(f"| {classes[c]} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()
