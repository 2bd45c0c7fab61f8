"""Plan files: canonical hash, atomic YAML write, safe read, approval stamp and verification.

The hash covers everything except ``plan_sha256`` and ``approval``: any change to the hashed
content (even one number) after approval makes ``verify`` fail.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from advisor.errors import UserError
from advisor.models import Approval, Plan
from advisor.yamlio import atomic_write_text, dump_yaml, load_model_yaml

_UNHASHED = {"plan_sha256", "approval"}
# Fields added to schema 1 after plans were first approved: hashed only when they differ from the value
# a plan written before them reads back with, so those approvals stay valid after an upgrade.
_ADDED_LATER = {("estimate", "overhead_hours"): 0.0, ("estimate", "hbm_gib"): 0.0, ("estimate", "memory_spare_gib"): 0.0,
                ("request", "memory_headroom"): 0.10}


def canonical_json(plan: Plan) -> str:
    data = plan.model_dump(mode="json", exclude=_UNHASHED)
    for (section, key), old in _ADDED_LATER.items():
        part = data.get(section)
        if isinstance(part, dict) and part.get(key) == old:
            del part[key]
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def compute_sha256(plan: Plan) -> str:
    return hashlib.sha256(canonical_json(plan).encode("ascii")).hexdigest()


def with_hash(plan: Plan) -> Plan:
    """The plan with ``plan_sha256`` set to the hash of its content."""
    return plan.model_copy(update={"plan_sha256": compute_sha256(plan)})


def to_yaml(plan: Plan) -> str:
    return dump_yaml(plan.model_dump(mode="json", exclude_none=False))


def write_plan(plan: Plan, path: str | Path) -> Plan:
    """Hash (if not yet hashed) and write atomically; returns the plan as written."""
    if not plan.plan_sha256:
        plan = with_hash(plan)
    atomic_write_text(path, to_yaml(plan))
    return plan


def read_plan(path: str | Path) -> Plan:
    return load_model_yaml(path, Plan)


def approve(plan: Plan, by: str, at: datetime | None = None) -> Plan:
    """Stamp the approval. Refuses a plan whose content no longer matches its own hash."""
    if not by.strip():
        raise UserError("--by: the approver's name is empty")
    actual = compute_sha256(plan)
    if plan.plan_sha256 and plan.plan_sha256 != actual:
        raise UserError("plan was edited after it was written (plan_sha256 does not match); re-run `sftplan plan`")
    when = (at or datetime.now(timezone.utc)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return plan.model_copy(update={"plan_sha256": actual, "approval": Approval(by=by.strip(), at=when, plan_sha256=actual)})


def verify(plan: Plan) -> str:
    """Return '' when approved and intact, else the one-line reason."""
    actual = compute_sha256(plan)
    if plan.approval is None:
        return "plan is not approved (run `sftplan approve PLAN --by NAME`)"
    if plan.approval.plan_sha256 != actual or plan.plan_sha256 != actual:
        return (
            f"plan was edited after approval by {plan.approval.by} "
            f"(approved {plan.approval.plan_sha256[:12]}, content now {actual[:12]})"
        )
    return ""


def _flatten(value, prefix: str, out: dict) -> None:
    """Dotted paths to leaf values; findings keyed by rule id, tiers and deploy checks by name."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            name = v.get("rule_id") or v.get("gpu") or v.get("name") or str(i)
            _flatten(v, f"{prefix}[{name}]", out)
    else:
        out[prefix] = value


def diff(a: Plan, b: Plan) -> list[tuple[str, object, object]]:
    """What changed from plan ``a`` to plan ``b``: (dotted path, old, new), decisions first.

    A path missing on one side has ``None`` there. The hash and approval stamp are not compared.
    """
    fa: dict = {}
    fb: dict = {}
    _flatten(a.model_dump(mode="json", exclude=_UNHASHED), "", fa)
    _flatten(b.model_dump(mode="json", exclude=_UNHASHED), "", fb)
    order = ("method", "recommended", "estimate", "closest", "hyperparameters", "findings", "tiers",
             "lora_alternative", "checkpointing", "evaluation", "warnings", "request", "model")

    def rank(path: str) -> tuple[int, str]:
        head = path.split(".")[0].split("[")[0]
        return (order.index(head) if head in order else len(order), path)

    keys = sorted(set(fa) | set(fb), key=rank)
    return [(k, fa.get(k), fb.get(k)) for k in keys if fa.get(k) != fb.get(k)]
