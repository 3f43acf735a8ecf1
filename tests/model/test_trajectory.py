"""The binary mask of a record: gates strictly above 0.5, as HAT binarises its gates."""

import numpy as np

from hatinspect.model.trajectory import TaskTrajectory, binary_mask


def test_a_gate_of_exactly_one_half_is_off():
    gates = np.array([[0.5, 0.5000001, 0.4999999, 1.0, 0.0]], dtype=np.float32)
    trajectory = TaskTrajectory(0, (3,), "epoch", ("fc1",), {"fc1": gates})
    assert trajectory.binary("fc1").tolist() == [[False, True, False, True, False]]


def test_the_binary_mask_is_the_embedding_sign():
    """sigmoid(s * e) > 0.5 exactly where e > 0 (HAT's stored mask), an embedding of 0
    included: its gate is 0.5, and off."""
    embedding = np.array([-0.1, -1e-3, 0.0, 1e-3, 0.1])
    for s_max in (1.0, 400.0):
        gates = 1 / (1 + np.exp(-s_max * embedding))
        assert binary_mask(gates).tolist() == [e > 0 for e in embedding]
