"""Run by tests/test_loop.py under `torchrun --nproc_per_node 2`: the toy phase on 2 gloo processes."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_loop import toy_phase

from srlab.training import loop

if __name__ == "__main__":
    out = Path(sys.argv[1])
    phase, accelerator = toy_phase(3)
    assert accelerator.num_processes == 2, accelerator.distributed_type
    loop.run_phase(phase, accelerator, out / "run", seed=1)
    model = accelerator.unwrap_model(phase.models["toy"])
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    state = {"world_size": accelerator.num_processes, "weights": weights}
    torch.save(state, out / f"rank{accelerator.process_index}.pt")
