"""Plan files: canonical hash, atomic YAML write, safe read, approval stamp and verification.

``plan_sha256`` covers everything except itself and ``approval``: any change to the planned content
(even one number) after approval makes ``verify`` fail. The approval stamp has its own hash,
``approval.stamp_sha256`` over (plan_sha256, by, at), so rewriting who approved or when fails too.

Schema versions. 2 (written now): tier rows carry their memory breakdown, the GPU's capacity and the
binding constraint; approvals carry ``stamp_sha256``. 1 (read, still verified): a version-1 file is
hashed by version 1's rule (``_version_1_content``: the fields version 2 added are left out), so its
approval keeps verifying; its approver name and time were never hashed, which ``approval_note``
says. Approving a version-1 plan again writes it as version 2.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

from advisor.errors import UserError
from advisor.models import SCHEMA_VERSION, Approval, Plan
from advisor.rules import FIELD_OF_FINDING
from advisor.yamlio import atomic_write_text, dump_yaml, load_model_yaml

_UNHASHED = {"plan_sha256", "approval"}
_TIER_FIELDS_ADDED_IN_2 = ("memory_breakdown_gib", "hbm_gib", "binding_constraint")
_ADDED_WITHIN_1 = {("calibration",): None, ("estimate", "overhead_hours"): 0.0, ("estimate", "hbm_gib"): 0.0, ("estimate", "memory_spare_gib"): 0.0,
                   ("request", "memory_headroom"): 0.10, ("request", "deploy_tasks"): [], ("request", "model_files"): None,
                   ("request", "deploy_include_path"): None, ("request", "deploy_limit"): None,
                   ("evaluation", "deploy"): None, ("evaluation", "deploy_hours"): None,
                   ("evaluation", "deploy_cost_usd"): None,
                   ("request", "dataset", "over_max_seq_len"): "truncate-response", ("request", "dataset", "long_rows"): None}
# The same for keys of each item of a list: (section, list, key) -> the value a version-1 file reads back with.
_ITEM_FIELDS_ADDED_IN_2 = {("evaluation", "deploy_suite", "task"): None, ("evaluation", "deploy_suite", "metric"): None,
                           ("evaluation", "deploy_suite", "higher_is_better"): True}
# Fields added to schema 2 after plans were written with it: hashed (in every version) only when they differ
# from the value a file written before them reads back with, so those approvals stay valid. A new field with
# a default goes here (test_planfile.test_committed_plan_fixtures_hash_to_their_own_sha keeps the committed plans,
# tests/tui/data/snapshot_plan*.yaml, hashing to their own sha).
_LORA_BLOCKS = {("lora",): None, ("full_sft_alternative",): None}  # a LoRA plan's blocks (issue 13): hashed when set
_ADDED_WITHIN_2 = {("request", "network_gbit_per_s_per_node"): None, ("request", "data_check"): None,
                   ("request", "memory_check_steps"): 3, ("request", "model_files"): None, ("calibration",): None,
                   ("estimate", "step_overhead_s"): 0.0, ("estimate", "raw_step_time_s"): None,
                   ("estimate", "raw_tokens_per_s_per_gpu"): None,
                   **_LORA_BLOCKS}


def _version_1_content(data: dict) -> dict:
    """The hashed content of a plan as schema version 1 held it (the one place that knows version 1).

    Version 2 added three tier-row fields. Fields added within version 1 were hashed only when they
    differ from the value a file written before them reads back with (``_ADDED_WITHIN_1``).
    """
    _drop_at_default(data, _LORA_BLOCKS)
    for row in data.get("tiers") or []:
        for key in _TIER_FIELDS_ADDED_IN_2:
            row.pop(key, None)
    _drop_at_default(data, _ADDED_WITHIN_1)
    for (section, listname, key), old in _ITEM_FIELDS_ADDED_IN_2.items():
        for item in (data.get(section) or {}).get(listname) or []:
            if isinstance(item, dict) and item.get(key, old) == old:
                item.pop(key, None)
    return data


def _drop_at_default(data: dict, added: dict[tuple, object]) -> None:
    """Remove each field of ``added`` (a path) whose value is the one a file from before it reads back with."""
    for (*sections, key), old in added.items():
        part = data
        for section in sections:
            part = part.get(section) if isinstance(part, dict) else None
        if isinstance(part, dict) and key in part and part[key] == old:
            del part[key]


def _hashed_fields(plan: Plan) -> dict:
    """The plan as plain data without the fields the hash leaves out (itself and the approval)."""
    return {k: v for k, v in plan.to_dict().items() if k not in _UNHASHED}


def canonical_json(plan: Plan) -> str:
    data = _hashed_fields(plan)
    if plan.schema_version == 1:
        data = _version_1_content(data)
    _drop_at_default(data, _ADDED_WITHIN_2)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def compute_sha256(plan: Plan) -> str:
    return hashlib.sha256(canonical_json(plan).encode("ascii")).hexdigest()


def with_hash(plan: Plan) -> Plan:
    """The plan with ``plan_sha256`` set to the hash of its content."""
    return plan.replace(**{"plan_sha256": compute_sha256(plan)})


def to_yaml(plan: Plan) -> str:
    return dump_yaml(plan.to_dict())


def write_plan(plan: Plan, path: str | Path) -> Plan:
    """Hash (if not yet hashed) and write atomically; returns the plan as written."""
    if not plan.plan_sha256:
        plan = with_hash(plan)
    atomic_write_text(path, to_yaml(plan))
    return plan


def write_plan_files(plan: Plan, path: str | Path) -> Plan:
    """plan.yaml at ``path`` and its Markdown review beside it (``path`` with .md), each written atomically
    (whole or untouched), the YAML first: the review is derived from it; a symlink is written through (its
    target is the plan, and the review goes beside the target). Returns the plan as written.
    `sftplan plan -o`, `sftplan approve` and the TUI's save and approve all write through here."""
    from advisor.render import to_markdown  # render imports this module

    if Path(path).is_symlink():  # a link to the plan (plan.yaml -> plans/v3.yaml): write the plan it names
        path = Path(path).resolve()
    path, _review = plan_file_paths(path, plan)
    plan = write_plan(plan, path)
    atomic_write_text(review_path(path), to_markdown(plan, Path(path).name))  # the review copy sits beside it
    return plan


def plan_file_paths(path: str | Path, plan: Plan | None = None) -> tuple[Path, Path]:
    """(the plan file, its review beside it), refused before anything is written: a folder for either, a name
    whose review would be the plan itself (NAME.md), or (given the plan) a file the plan reads (plan_inputs)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, give a file name such as plan.yaml")
    review = review_path(path)
    if review.resolve() == path.resolve():
        raise UserError(f"{path}: the review copy goes beside the plan as {review.name}, which would replace the "
                        "plan: give the plan a .yaml name")
    if review.is_dir():
        raise UserError(f"{review}: is a folder; give a file name to write")
    if plan is not None:
        inputs = plan_inputs(plan)
        for target in (path, review):
            hit = lands_on(target, inputs)
            if hit:
                raise UserError(f"{target}: {hit}; write the plan elsewhere")
    return path, review


def plan_inputs(plan: Plan) -> list[tuple[str, Path]]:
    """(field, resolved path) of each file or folder the plan reads and hashes that exists here: the training
    data, golden set, model (a path) and calibration file. A plan file written over one would lose it."""
    req = plan.request
    named = [("dataset.file", req.dataset.file.path if req.dataset.file else None),
             ("golden", req.golden.path if req.golden else None), ("model", req.model), ("model_path", req.model_path),
             ("calibration", plan.calibration.path if plan.calibration else None)]
    return [(label, Path(str(v)).resolve()) for label, v in named if v and Path(str(v)).exists()]


def lands_on(target: Path, inputs: list[tuple[str, Path]]) -> str | None:
    """Why a write to ``target`` would damage an input: it is the input file, or inside an input folder."""
    target = Path(target).resolve()
    for label, path in inputs:
        if target == path:
            return f"would write over {label} {path}, which the plan reads"
        if path.is_dir() and target.is_relative_to(path):
            return f"is inside {label} {path}, a folder the plan reads (and hashes for the approval)"
    return None


def review_path(path: str | Path) -> Path:
    """Where the Markdown review of the plan file ``path`` goes."""
    return Path(path).with_suffix(".md")


def read_plan(path: str | Path) -> Plan:
    return load_model_yaml(path, Plan)


def stamp_sha256(plan_sha256: str, by: str, at: str) -> str:
    """The approval stamp's hash: the approved content's hash, the approver and the time, together."""
    text = json.dumps({"at": at, "by": by, "plan_sha256": plan_sha256}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_NAME_FORBIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # control, invisible (bidi overrides), line breaks


def approve(plan: Plan, by: str, at: datetime | None = None) -> Plan:
    """Stamp the approval (as schema version 2). Refuses a plan whose content no longer matches its own hash.

    A plan already approved, intact, by schema 2 is never re-stamped: the same approver gets it back as it is
    (the first stamp and its time kept); anyone else is refused, naming who approved and when. A tampered stamp
    or a schema-1 approval (no stamp hash) is stamped again, as ``verify`` / ``approval_note`` advise."""
    if not by.strip():
        raise UserError("the approver's name is empty", field="approval.by")
    bad = next((c for c in by if unicodedata.category(c) in _NAME_FORBIDDEN), None)
    if bad is not None:
        raise UserError(f"the approver's name holds a control or invisible character (U+{ord(bad):04X}); "
                        "give the name on one line", field="approval.by")
    if plan.plan_sha256 and plan.plan_sha256 != compute_sha256(plan):
        raise UserError("plan was edited after it was written (plan_sha256 does not match); re-run `sftplan plan`")
    a = plan.approval
    if a is not None and plan.schema_version >= 2 and not verify(plan):
        if a.by == by.strip():
            return plan  # approved again by the same reviewer: nothing changes, the first stamp stands
        raise UserError(f"already approved by {a.by} at {a.at} (plan_sha256 {a.plan_sha256[:12]}); an approval is "
                        "not replaced: a changed plan (`sftplan plan` again) is approved anew")
    blockers = [f for f in plan.findings if f.verdict == "blocks approval"]
    if blockers:  # on the request field that would lift it, when there is one (the CLI names its flag)
        raise UserError(f"not approvable: {blockers[0].why}", field=FIELD_OF_FINDING.get(blockers[0].rule_id))
    plan = plan.replace(**{"schema_version": SCHEMA_VERSION})
    actual = compute_sha256(plan)
    when = (at or datetime.now(timezone.utc)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    stamp = Approval(by=by.strip(), at=when, plan_sha256=actual, stamp_sha256=stamp_sha256(actual, by.strip(), when))
    return plan.replace(**{"plan_sha256": actual, "approval": stamp})


def verify(plan: Plan) -> str:
    """Return '' when approved and intact, else the one-line reason."""
    actual = compute_sha256(plan)
    a = plan.approval
    if a is None:
        return "plan is not approved (run `sftplan approve PLAN --by NAME`)"
    if a.plan_sha256 != actual or plan.plan_sha256 != actual:
        return f"plan was edited after approval by {a.by} (approved {a.plan_sha256[:12]}, content now {actual[:12]})"
    if plan.schema_version >= 2 and a.stamp_sha256 != stamp_sha256(a.plan_sha256, a.by, a.at):
        return ("the approval stamp was edited (approval.by or approval.at no longer match approval.stamp_sha256); "
                "approve the plan again")
    return ""


def approval_note(plan: Plan) -> str:
    """'' for a current plan; for a version-1 approval, that its approver name and time are not hashed."""
    if plan.approval is not None and plan.schema_version == 1:
        return "schema-1 approval: the approver's name and time are not covered by a hash; approve again to cover them"
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
    _flatten(_hashed_fields(a), "", fa)
    _flatten(_hashed_fields(b), "", fb)
    order = ("method", "recommended", "estimate", "closest", "hyperparameters", "lora", "findings", "tiers",
             "lora_alternative", "full_sft_alternative", "checkpointing", "evaluation", "warnings", "request", "model")

    def rank(path: str) -> tuple[int, str]:
        head = path.split(".")[0].split("[")[0]
        return (order.index(head) if head in order else len(order), path)

    keys = sorted(set(fa) | set(fb), key=rank)
    return [(k, fa.get(k), fb.get(k)) for k in keys if fa.get(k) != fb.get(k)]
