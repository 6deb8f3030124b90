"""The key–values of vla_node's ``/diagnostics`` status: what a maintainer reads in
``ros2 topic echo /diagnostics`` or rqt_robot_monitor to see what the node serves and how it fares."""

from __future__ import annotations

from typing import Dict, Tuple


def node_status(node) -> Tuple[int, str, Dict[str, str]]:
    """(level, message, values) of a vla_node now."""
    p, pol = node.params, node.policy
    level, message = node.ledger.status(node.active, node.inputs.instruction is not None,
                                        bool(pol and pol.random_weights), stale_after=max(2.0, 4 * p["max_input_age"]))
    values = {"lifecycle": "active" if node.active else ("inactive" if pol else "unconfigured"),
              "fusion": pol.model_config.fusion if pol else p["fusion"],
              "checkpoint": p["checkpoint"] or "(none)", "device": str(pol.device) if pol else "",
              "random_weights": str(bool(pol and pol.random_weights)).lower(), "torch_threads": node.threads,
              "cameras": " ".join(node.cameras), "instruction": (node.inputs.instruction or "")[:120],
              "joint_lag_s": f"{node.joint_lag:.4f}", "paused": str(node.paused).lower(),
              "agreement": f"{node.scores[0]:.4f}", "ood": f"{node.scores[1]:.4f}",
              "min_agreement": f"{p['min_agreement']}",
              "embedding_stats": "yes" if pol is not None and pol.stats is not None else "no",
              "execution": p["execution"], **node.ledger.values()}
    if node.control is not None:  # execution:=ensemble|latest: chunks taken, dropped as late, ticks with no command
        values.update({f"executor_{k}": v for k, v in node.control.counts().items()})
    return level, message, values
