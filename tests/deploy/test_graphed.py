"""GraphedPath's checks that run before any CUDA graph is captured (CPU)."""

import pytest
import torch

from sparsetorch.deploy.compute_paths import DensePath
from sparsetorch.deploy.graphed import GraphedPath


class _GraphedDense(GraphedPath, DensePath):
    name = "graphed_dense"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_input_of_another_dtype_than_the_weight_is_refused_before_capture(dtype):
    # the graph's static input takes the dtype of the first input: checked against the weight,
    # before capturing (else a wrong-dtype graph is captured and only later inputs are compared)
    path = _GraphedDense(torch.randn(8, 16), None)
    with pytest.raises(
        TypeError, match=rf"x must be torch.float32 on cpu like the weight, got {dtype}"
    ):
        path(torch.randn(3, 16, dtype=dtype))
    assert path._graphs == {}
