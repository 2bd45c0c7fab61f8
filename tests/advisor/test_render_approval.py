"""render shows the approval only as verified: a plan.yaml whose stamp was edited (approver, time) or whose
content was edited after approval never reads "approved by X" in the review copy, Markdown or terminal."""

from datetime import datetime, timezone

import pytest

from advisor.models import LoraAlternative
from advisor.planfile import approve, read_plan, verify, write_plan
from advisor.render import approval_line, to_markdown, to_text
from test_planfile import hand_plan

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _approved_file(tmp_path):
    la = LoraAlternative(gpu="h100-sxm", num_gpus=1, strategy="single", memory_per_gpu_gib=30.0, hours=20.0,
                         cost_usd=60.0)
    plan = hand_plan().replace(**{"lora_alternative": la, "plan_sha256": ""})
    path = tmp_path / "plan.yaml"
    write_plan(approve(plan, "Ada", at=AT), path)
    return path


def test_a_valid_approval_renders_as_before(tmp_path):
    plan = read_plan(_approved_file(tmp_path))
    assert verify(plan) == ""
    assert approval_line(plan) == "approved by Ada at 2026-01-02T03:04:05Z"
    assert "**Approval:** approved by Ada at 2026-01-02T03:04:05Z\n" in to_markdown(plan)
    assert "Approval: approved by Ada at 2026-01-02T03:04:05Z" in to_text(plan)


@pytest.mark.parametrize("old, new, forged", [
    ("by: Ada", "by: Boss", "Boss"),
    ("at: '2026-01-02T03:04:05Z'", "at: '2027-01-02T03:04:05Z'", "2027-01-02T03:04:05Z"),
])
def test_an_edited_stamp_is_shown_as_not_valid(tmp_path, old, new, forged):
    path = _approved_file(tmp_path)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    plan = read_plan(path)
    why = verify(plan)
    assert "approval stamp was edited" in why
    line = approval_line(plan)
    assert line == f"APPROVAL VOID - NOT VALID: {why}" and "approved by" not in line and forged not in line
    md, term = to_markdown(plan), to_text(plan, width=400)
    assert f"**Approval:** APPROVAL VOID - NOT VALID: {why}" in md
    assert f"Approval: APPROVAL VOID - NOT VALID: {why}" in term
    for shown in (md, term):
        assert "approved by" not in shown and forged not in shown


def test_content_edited_after_approval_is_shown_as_not_valid(tmp_path):
    path = _approved_file(tmp_path)
    text = path.read_text()
    assert "cost_usd: 1234.5" in text
    path.write_text(text.replace("cost_usd: 1234.5", "cost_usd: 12.5", 1))
    plan = read_plan(path)
    why = verify(plan)
    assert "edited after approval" in why
    assert approval_line(plan) == f"APPROVAL VOID - NOT VALID: {why}"
    assert "approved by" not in to_markdown(plan) and "approved by" not in to_text(plan, width=400)


def test_render_cli_shows_a_forged_approver_as_not_valid(tmp_path, capsys):
    from advisor.cli import main

    path = _approved_file(tmp_path)
    path.write_text(path.read_text().replace("by: Ada", "by: Boss"))
    for fmt in ("md", "text"):
        assert main(["render", str(path), "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert "NOT VALID: the approval stamp was edited" in out and "approved by" not in out and "Boss" not in out


def test_the_tui_badge_of_a_forged_stamp_is_void(tmp_path):
    """The TUI's plan card keys its badge on approval_line: a forged approver is no longer a green "approved by"."""
    from advisor.tui.widgets.plan_view import _approval_badge

    path = _approved_file(tmp_path)
    assert _approval_badge(read_plan(path)) == ("approved by Ada", "bold green")
    path.write_text(path.read_text().replace("by: Ada", "by: Boss"))
    assert _approval_badge(read_plan(path)) == ("APPROVAL VOID", "bold red")
