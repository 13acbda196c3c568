"""Sharded weights and their masks: the primitives that let every mask computation run on
FSDP2 shards (DTensors) without gathering a weight.

* :mod:`~sparsetorch.sharding.topk`: the exact top-k over a tensor split into dim-0 shards
  held by several processes (a radix select on all-reduced histograms), bitwise equal to
  :mod:`sparsetorch.selection` on the whole tensor;
* :mod:`~sparsetorch.sharding.dtensor`: between DTensors and the plain per-process tensors
  the algorithms compute on (``local``, ``like``, ``shard_like``) and the selector for a set of
  weights (``selector_for``: the local one for plain tensors, the sharded one for DTensors).

They sit beside ``selection`` below the mask mechanism: ``masking``, ``pruning`` and the
algorithms receive a selector from :func:`~sparsetorch.sharding.dtensor.selector_for` and never
import ``sparsetorch.distributed`` (the DDP/FSDP wrappers, checkpoints and checks above them).
Importing this package imports only torch.
"""
