"""How the tests launch two Gloo processes: ``torchrun --standalone`` binds a free port itself.

Picking a port in the test (bind to port 0, close, pass ``--master_port``) leaves a window in
which another process can take it; ``--standalone`` runs the rendezvous on a port torchrun
holds from the start, and the workers reuse that store.
"""

from __future__ import annotations

TORCHRUN_FLAGS: list[str] = ["--standalone", "--nproc_per_node=2"]
TORCHRUN: list[str] = ["-m", "torch.distributed.run", *TORCHRUN_FLAGS]  # after sys.executable
