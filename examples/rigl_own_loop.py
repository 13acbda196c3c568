"""RigL (Evci et al. 2020) in your own training loop, with mixed precision: a float16 autocast
forward pass and a GradScaler that RigL steps through (``rigl.step(scaler=scaler)``: it grows
on the unscaled gradient and skips an update whose gradients overflowed).

    python examples/rigl_own_loop.py
"""

import torch
from torch import nn

import sparsetorch as st

torch.manual_seed(0)
# data: 4 classes separable by two linear functions of 20 inputs
x = torch.randn(2048, 20)
y = (x[:, :10].sum(1) > 0).long() + 2 * (x[:, 10:].sum(1) > 0).long()

model = nn.Sequential(
    nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4)
)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
steps, batch = 300, 64
rigl = st.RigL(model, optimizer, sparsity=0.9, total_steps=steps, delta_t=25)  # ERK, cosine
scaler = torch.amp.GradScaler("cpu")  # "cuda" on a GPU
counts = {name: int(mask.sum()) for name, mask in rigl.masks().items()}

generator = torch.Generator().manual_seed(0)
for _ in range(steps):
    idx = torch.randint(0, len(x), (batch,), generator=generator)
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=torch.float16):
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
    scaler.scale(loss).backward()
    rigl.step(scaler=scaler)  # instead of scaler.step(optimizer); scaler.update()

with torch.no_grad():
    accuracy = (model(x).argmax(1) == y).float().mean().item()
print(f"{len(rigl.history)} topology updates, {rigl.skipped_steps} skipped steps")
print(f"sparsity {st.sparsity(model):.3f}, train accuracy {accuracy:.3f}")
last = rigl.history[-1]
print(f"last update at step {last['step']}: drop fraction {last['drop_fraction']:.4f}")
assert {name: int(mask.sum()) for name, mask in rigl.masks().items()} == counts  # counts kept
assert abs(st.sparsity(model) - 0.9) < 0.01 and accuracy > 0.8
print("ok: RigL trained a 90%-sparse network")
