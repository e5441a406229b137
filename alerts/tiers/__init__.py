"""Tier rules (validated, versioned configuration per region) and the pure alert state machine."""

from alerts.tiers.model import Key, KeyState, MachineState, Observation, Transition
from alerts.tiers.rules import RuleSet, load_rules, parse_rules
from alerts.tiers.state_machine import alert_id, health_probe, heartbeat, run, step, step_region

__all__ = [
    "Key", "KeyState", "MachineState", "Observation", "Transition", "RuleSet",
    "load_rules", "parse_rules", "alert_id", "health_probe", "heartbeat", "run", "step", "step_region",
]
