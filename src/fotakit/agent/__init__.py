"""fotakit device agent: LwM2M client with Object 5 FOTA, A/B slots and verified updates.

The pieces (each its own module, sans-I/O where it can be):

- :mod:`fotakit.agent.fsm` — the Object 5 state machine (pure);
- :mod:`fotakit.agent.object5` — /5/0 as a client object instance, push by Block1;
- :mod:`fotakit.agent.download` — pull over CoAP (Block2) and HTTP(S) (Range), resumable;
- :mod:`fotakit.agent.cocoa` — the CoCoA-style RTT estimator for adaptive CoAP timers;
- :mod:`fotakit.agent.slots`, :mod:`fotakit.agent.persist` — A/B slots, trial boot,
  confirm/revert, anti-rollback counter; crash-safe files;
- :mod:`fotakit.agent.health` — health checks of a trial boot;
- :mod:`fotakit.agent.config` — the TOML configuration;
- :mod:`fotakit.agent.runtime` — :class:`Agent`, which wires them together.

Run it with ``fotakit agent run --config agent.toml`` (docs/agent-guide.md).
"""

from fotakit.agent.config import AgentConfig, ConfigError, load_config, loads_config
from fotakit.agent.runtime import Agent, AgentEvent, AgentEventKind

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentEvent",
    "AgentEventKind",
    "ConfigError",
    "load_config",
    "loads_config",
]
