"""``python -m sparsetorch.kernels.cpu``: build the CPU kernels (``build.main``)."""

from sparsetorch.kernels.cpu.build import main

raise SystemExit(main())
