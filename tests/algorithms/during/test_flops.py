"""Training FLOPs: the RigL paper's per-iteration formula and a step-by-step sum."""

from __future__ import annotations

import pytest

from sparsetorch.algorithms.during.flops import forward_flops, iteration_flops, training_flops

DENSE = {"fc1": 1000.0, "fc2": 200.0}  # forward FLOPs of the dense layers


def test_rigl_cost_per_iteration_is_the_papers_formula():
    density = {"fc1": 0.1, "fc2": 0.3}
    f_s, f_d = 1000 * 0.1 + 200 * 0.3, 1200.0
    delta_t, cycles = 100, 7
    steps = cycles * (delta_t + 1)
    updates = [c * (delta_t + 1) + delta_t for c in range(cycles)]  # one in every delta_t + 1
    total = training_flops(DENSE, steps, density, dense_gradient_steps=updates)
    per_iteration = (3 * f_s * delta_t + 2 * f_s + f_d) / (delta_t + 1)  # Evci et al. 2020
    assert total / steps == pytest.approx(per_iteration, rel=1e-12)


def test_gmp_cost_is_the_sum_over_iterations_of_three_sparse_forwards():
    changes = [(3, {"fc1": 0.5, "fc2": 0.5}), (6, {"fc1": 0.2, "fc2": 0.4})]
    total = training_flops(DENSE, 10, {}, changes)
    per_step = [3 * 1200.0] * 4 + [3 * 600.0] * 3 + [3 * (200.0 + 80.0)] * 3
    assert total == pytest.approx(sum(per_step))


def test_small_pieces_and_bad_input():
    assert forward_flops(DENSE, {"fc1": 0.5}) == 700.0
    assert iteration_flops(DENSE, {}, dense_gradient=True) == 3600.0
    with pytest.raises(ValueError, match="no FLOPs"):
        forward_flops(DENSE, {"fc9": 0.5})
    with pytest.raises(ValueError, match="dense_gradient_steps"):
        training_flops(DENSE, 10, {}, dense_gradient_steps=[10])
