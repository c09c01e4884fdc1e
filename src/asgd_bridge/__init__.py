"""ASGD Bridge: torch's averaged SGD and Paddle's SAG, exactly, in both frameworks.

``asgd_bridge.reference`` is the specification; ``asgd_bridge.torch`` and ``asgd_bridge.paddle`` hold
the optimizers; ``asgd_bridge.convert`` and ``asgd_bridge.checkpoint`` migrate programs and state.
The framework subpackages are imported on demand, so importing this package needs neither framework.
"""

__version__ = "0.1.0"
