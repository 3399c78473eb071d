"""Sequences' screens (SPEC S46–S48): the sales managers' sequences and their performance, a
rep's enrolment form (from a record's timeline or a list's selection), and the pause, resume
and end buttons of an enrolment on the record's timeline.

What sequences do is :mod:`engage.sequences`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import abort, flash, make_response, redirect, render_template, request, url_for

from .. import sequences
from ..access import can_see
from ..context import current_engage
from ..i18n import gettext as _
from ..ids import parse_id
from ..local_time import sender_zone
from ..models import EmailSequence, EmailTemplate, Enrolment, StepKind
from ..records import EngageUser, RecordRef
from ..template_library import language_namer
from .blueprint import blueprint
from .compose_form import TIMELINE_CHANGED
from .forms import EnrolForm, SequenceForm
from .guards import Denied, sales_user
from .htmx import is_htmx

#: The htmx event after which a record's list of sequences loads itself again.
ENROLMENTS_CHANGED = "engage-enrolments-changed"


def manager_of_sequences() -> EngageUser:
    """The signed-in sales manager; a salesperson gets a page that says why not."""
    user = sales_user()
    if not user.is_manager:
        raise Denied(
            403,
            _(
                "Sequences are written and kept by sales managers. You can enrol your "
                "contacts and leads in them from a record's timeline."
            ),
            _("The sales manager role is needed"),
        )
    return user


def _sequence_or_404(sequence_id: int) -> EmailSequence:
    sequence = current_engage.session.get(EmailSequence, sequence_id)
    if sequence is None:
        abort(404)
    return sequence


def step_kinds() -> list[tuple[str, str]]:
    """The kinds of step, as the editor offers them."""
    return [
        (StepKind.AUTO_EMAIL.value, _("Automatic email")),
        (StepKind.MANUAL_EMAIL.value, _("Manual email")),
        (StepKind.CALL.value, _("Phone call task")),
    ]


@blueprint.get("/sequences")
def sequences_list() -> Any:
    """Every sequence, with its enrolments and where they ended; sales managers only."""
    manager_of_sequences()
    rows = list(
        current_engage.session.scalars(
            sa.select(EmailSequence)
            .order_by(EmailSequence.retired_at.is_not(None), EmailSequence.name)
            .options(sa.orm.selectinload(EmailSequence.steps))
        )
    )
    return render_template(
        "engage/sequences_page.html",
        sequences=rows,
        performance={s.id: sequences.performance(s) for s in rows},
    )


@blueprint.get("/sequences/<engage_id:sequence_id>")
def sequence_detail(sequence_id: int) -> Any:
    """A sequence's performance per step (S48)."""
    manager_of_sequences()
    sequence = _sequence_or_404(sequence_id)
    return render_template(
        "engage/sequence_page.html",
        sequence=sequence,
        performance=sequences.performance(sequence),
        kinds=dict(step_kinds()),
        end_labels=end_labels(),
    )


def end_labels() -> dict[str, str]:
    """How each way an enrolment ends is named."""
    return {
        "replied": _("Replied"),
        "bounced": _("Bounced"),
        "opted_out": _("Opted out"),
        "finished": _("Finished"),
        "ended_by_rep": _("Ended by the rep"),
    }


@blueprint.route("/sequences/new", methods=["GET", "POST"])
def sequence_new() -> Any:
    """Write a new sequence."""
    return _edit(None)


@blueprint.route("/sequences/<engage_id:sequence_id>/edit", methods=["GET", "POST"])
def sequence_edit(sequence_id: int) -> Any:
    """Change a sequence's steps, or retire it."""
    manager_of_sequences()
    return _edit(_sequence_or_404(sequence_id))


def _template_choices(sequence: EmailSequence | None) -> list[tuple[str, str]]:
    used = {s.template_id for s in sequence.steps} if sequence else set()
    rows = current_engage.session.scalars(
        sa.select(EmailTemplate)
        .where(sa.or_(EmailTemplate.retired_at.is_(None), EmailTemplate.id.in_(used)))
        .order_by(EmailTemplate.language, EmailTemplate.name)
    )
    name_of = language_namer()
    return [("", _("Choose a template"))] + [
        (str(t.id), f"{t.name} ({name_of(t.language)})") for t in rows
    ]


def _with_choices(form: SequenceForm, sequence: EmailSequence | None) -> SequenceForm:
    templates = _template_choices(sequence)
    for entry in form.steps:
        entry.form.kind.choices = step_kinds()
        entry.form.template.choices = templates
    return form


def _edit(sequence: EmailSequence | None) -> Any:
    user = manager_of_sequences()
    session = current_engage.session
    if request.method == "GET":
        data: dict[str, Any] = {"steps": [{"kind": "auto_email", "wait_days": 0}]}
        if sequence is not None:
            data = {
                "name": sequence.name,
                "thread_replies": sequence.thread_replies,
                "steps": [
                    {
                        "kind": s.kind.value,
                        "wait_days": s.wait_days,
                        "template": str(s.template_id or ""),
                        "notes": s.notes,
                    }
                    for s in sequence.steps
                ],
            }
        form = _with_choices(SequenceForm(data=data), sequence)
        return _editor(form, sequence)
    form = _with_choices(SequenceForm(), sequence)
    action = request.form.get("action", "save")
    if sequence is not None and action in {"retire", "restore"}:
        sequences.set_retired(session, sequence, action == "retire", by=user.id)
        flash(
            _("“%(name)s” is retired: no one can be enrolled in it any more.", name=sequence.name)
            if action == "retire"
            else _("“%(name)s” takes enrolments again.", name=sequence.name),
            "engage-success",
        )
        return redirect(url_for("engage.sequences_list"))
    if action == "add_step":
        if len(form.steps) < sequences.MAX_STEPS:
            form.steps.append_entry({"kind": "auto_email", "wait_days": 2})
            _with_choices(form, sequence)
        return _editor(form, sequence)
    valid = form.validate()
    kept = [entry.form for entry in form.steps if not entry.form.remove.data]
    steps: list[sequences.StepInput] = []
    for step_form in kept:
        try:
            kind = StepKind(step_form.kind.data)
        except ValueError:
            kind = StepKind.AUTO_EMAIL
        steps.append(
            sequences.StepInput(
                kind=kind,
                wait_days=step_form.wait_days.data or 0,
                template_id=parse_id(step_form.template.data or ""),
                notes=step_form.notes.data or "",
            )
        )
    problems = sequences.step_problems(steps) if valid else {}
    # Problems are shown on the step they concern, counted among the steps kept.
    positions = [i for i, entry in enumerate(form.steps) if not entry.form.remove.data]
    step_errors = {positions[i]: message for i, message in problems.items()}
    no_steps = _("A sequence needs at least one step.") if not steps else ""
    if not valid or step_errors or no_steps:
        return _editor(form, sequence, step_errors=step_errors, no_steps=no_steps, status=422)
    sequence = sequences.save_sequence(
        session,
        sequence,
        by=user.id,
        name=form.name.data or "",
        thread_replies=bool(form.thread_replies.data),
        steps=steps,
    )
    flash(_("Sequence “%(name)s” saved.", name=sequence.name), "engage-success")
    return redirect(url_for("engage.sequence_detail", sequence_id=sequence.id))


def _editor(
    form: SequenceForm,
    sequence: EmailSequence | None,
    *,
    step_errors: dict[int, str] | None = None,
    no_steps: str = "",
    status: int = 200,
) -> Any:
    page = render_template(
        "engage/sequence_edit_page.html",
        form=form,
        sequence=sequence,
        step_errors=step_errors or {},
        no_steps=no_steps,
        max_steps=sequences.MAX_STEPS,
    )
    return page, status


# ---- enrolling (S47) -----------------------------------------------------------------------


def _refs_from(values: list[str]) -> list[RecordRef]:
    refs = []
    for value in values[: sequences.MAX_ENROL + 1]:
        try:
            refs.append(RecordRef.parse(value))
        except ValueError:
            abort(400, description=_("That record reference is not valid."))
    return refs


@blueprint.route("/sequences/enrol", methods=["GET", "POST"])
def sequence_enrol() -> Any:
    """Enrol the selected records (``?records=contact:1&records=lead:2``) in a sequence."""
    user = sales_user()
    refs = _refs_from(request.values.getlist("records"))
    if not refs:
        abort(400, description=_("Select at least one contact or lead to enrol."))
    if len(refs) > sequences.MAX_ENROL:
        abort(400, description=_("Select at most %(max)s records.", max=sequences.MAX_ENROL))
    session = current_engage.session
    found = [current_engage.records.get(ref) for ref in refs]
    records = [r for r in found if r is not None]
    offered = sequences.offered(session)
    form = EnrolForm()
    form.sequence.choices = [(str(s.id), s.name) for s in offered]
    if request.method == "POST" and form.validate():
        sequence = next(s for s in offered if str(s.id) == form.sequence.data)
        result = sequences.enrol(session, user, sequence, [r.ref for r in records])
        message = _(
            "Enrolled %(count)s in “%(name)s”; %(skipped)s skipped.",
            count=len(result.enrolled),
            name=sequence.name,
            skipped=len(result.skipped),
        )
        if is_htmx():
            response = make_response(
                render_template("engage/_enrol_done.html", message=message, skipped=result.skipped)
            )
            response.headers["HX-Trigger"] = ENROLMENTS_CHANGED
            return response
        flash(message, "engage-success")
        for name, reason in result.skipped:
            flash(_("%(name)s: %(reason)s", name=name, reason=reason), "engage-info")
        if len(records) == 1:
            ref = records[0].ref
            return redirect(url_for("engage.timeline", record_type=ref.type, record_id=ref.id))
        return redirect(url_for("engage.sequence_enrol", records=[str(r) for r in refs]))
    template = "engage/_enrol.html" if is_htmx() else "engage/enrol_page.html"
    status = 422 if request.method == "POST" else 200
    return render_template(template, form=form, records=records, refs=refs), status


# ---- an enrolment on the timeline --------------------------------------------------------------


@blueprint.get("/timeline/<record_type>/<record_id>/sequences")
def record_enrolments(record_type: str, record_id: str) -> Any:
    """A record's sequences, the section of its timeline (htmx reloads it after a change)."""
    user = sales_user()
    record = current_engage.records.get(RecordRef(record_type, record_id))
    if record is None:
        abort(404)
    return render_template(
        "engage/_enrolments.html",
        record=record,
        user=user,
        enrolments=sequences.enrolments_for(
            current_engage.session,
            user,
            record.ref,
            sender_zone(user, request.values.get("browser_zone")),
        ),
    )


@blueprint.post("/enrolments/<engage_id:enrolment_id>/<action>")
def enrolment_action(enrolment_id: int, action: str) -> Any:
    """Pause, resume or end an enrolment (S47): its rep, or their sales manager."""
    user = sales_user()
    session = current_engage.session
    enrolment = session.get(Enrolment, enrolment_id)
    if enrolment is None or not can_see(user, enrolment.owner_id, enrolment.owner_team):
        abort(404)
    if action == "pause":
        done = sequences.pause(session, enrolment)
    elif action == "resume":
        done = sequences.resume(session, enrolment)
    elif action == "end":
        done = sequences.end(session, enrolment)
    else:
        abort(404)
    if not done:
        flash(_("That enrolment changed meanwhile; here is where it stands."), "engage-info")
    ref = enrolment.record
    if is_htmx():
        response = make_response(record_enrolments(ref.type, ref.id))
        response.headers["HX-Trigger"] = TIMELINE_CHANGED
        return response
    return redirect(url_for("engage.timeline", record_type=ref.type, record_id=ref.id))
