"""Prune your own CNN: whole output channels of the convolutions (structured), then 80% of the
remaining weights by global magnitude, fine-tune with any optimizer (pruned weights stay zero)
and report the layers, their FLOPs and bytes.

    python examples/prune_cnn.py
"""

import torch
from torch import nn

import sparsetorch as st


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 14, 14)
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 7, 7)
        )  # fmt: skip
        self.head = nn.Linear(32 * 7 * 7, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


torch.manual_seed(0)
model = SmallCNN()


def convolutions(module: nn.Module, fqn: str) -> bool:
    return isinstance(module, nn.Conv2d)


# 1. structured: a quarter of each convolution's output channels, by their L1 norm
st.prune(model, sparsity=0.25, pattern="channel", distribution="uniform", filter_fn=convolutions)
conv2 = model.features[3].weight
dead = (conv2.detach().abs().sum((1, 2, 3)) == 0).sum().item()
print(f"conv2: {dead} of {conv2.shape[0]} output channels removed")
assert dead == 8

# 2. unstructured on top: 80% of all prunable weights, one global magnitude threshold
st.prune(model, sparsity=0.8)
print(f"sparsity {st.sparsity(model):.3f}")
assert abs(st.sparsity(model) - 0.8) < 1e-3

# 3. fine-tune: masks are enforced by every torch.optim optimizer
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
losses = []
for _ in range(20):
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print(f"fine-tuning loss {losses[0]:.3f} -> {losses[-1]:.3f}")
assert losses[-1] < losses[0]
for name, mask in st.masks(model).items():
    assert (model.get_parameter(name)[~mask] == 0).all(), name
assert (conv2.detach().abs().sum((1, 2, 3)) == 0).sum().item() == dead  # channels stay removed

print(st.report(model, input_shape=(1, 1, 28, 28)))
print("ok: pruned and fine-tuned")
