"""The web pages: runs, a run's timeline, the inbox, an approval request, approval links.

Server-rendered HTML (Jinja2, autoescaped) that works without JavaScript; a
few lines of script make it live over the `/api/.../stream` events. Every
form that changes something is a POST carrying a CSRF token that must match
the `tako_csrf` cookie (double submit: another site can neither read the
cookie nor set it, and the cookie is SameSite=Strict), and a POST whose
Origin names another host is refused outright.

Approval links (`/a/{token}`) are their own credential: takod signs them per
approver and checks them (`open_link`). Opening one decides nothing; only
the page's own POST does, bound to the same token and to the digest of the
value the page showed.
"""

from __future__ import annotations

import hmac
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from tako._errors import Forbidden, TakoError, Unauthorized
from tako._protocol import GetAccess, ListApprovals, ListRuns, OpenLink, Start, Workflows
from tako._records import STATUSES, ApprovalView, RunView
from tako._replies import (
    AccessReply,
    ApprovalsReply,
    LinkReply,
    RunsReply,
    StartReply,
    WorkflowsReply,
)
from tako.cli.options import plain
from tako.cli.render import render_run, run_info
from tako.cli.render_approvals import approvers_text, decision_text, history_text, left_text
from tako.http._access import TOKEN_COOKIE, Access, Actor
from tako.http._api import (
    STATUS_OF_CODE,
    DecisionBody,
    acting_as,
    approval_view,
    decide,
    run_view,
)
from tako.http._forms import Field, error_field, fields_for, refill, value_from_form
from tako.http._link import TakodLink

CSRF_COOKIE = "tako_csrf"
_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


class CsrfRefused(TakoError):
    """This form did not come from this app's own page."""

    code = "forbidden"


class Pages:
    def __init__(self, link: TakodLink, access: Access, app_name: str) -> None:
        self.link = link
        self.access = access
        self.app_name = app_name

    def routes(self) -> list[Route]:
        return [
            Route("/", self.runs, methods=["GET"]),
            Route("/runs", self.start, methods=["POST"]),
            Route("/runs/{run_id}", self.run, methods=["GET"]),
            Route("/inbox", self.inbox, methods=["GET"]),
            Route("/approvals/{key}", self.approval, methods=["GET", "POST"]),
            Route("/a/{token}", self.link_page, methods=["GET", "POST"]),
            Route("/login", self.login, methods=["GET", "POST"]),
        ]

    # -- rendering ------------------------------------------------------------------

    def render(
        self, request: Request, template: str, http_status: int = 200, **context: Any
    ) -> HTMLResponse:
        token, new = csrf_of(request)
        root = request.scope.get("root_path", "")
        nonce = secrets.token_urlsafe(16)  # only our own inline scripts run, never injected ones
        html = _templates.get_template(template).render(
            app_name=self.app_name, root=root, csrf=token, nonce=nonce, **context
        )
        response = HTMLResponse(html, http_status)
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
            "frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["Referrer-Policy"] = "no-referrer"  # a link's token stays ours
        response.headers["X-Content-Type-Options"] = "nosniff"
        if new:
            response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    def message(
        self, request: Request, heading: str, text: str, status: int, hint: str = ""
    ) -> HTMLResponse:
        return self.render(request, "message.html", status, heading=heading, text=text, hint=hint)

    def failed(self, request: Request, exc: TakoError) -> Response:
        if isinstance(exc, Unauthorized) and request.method == "GET":
            root = request.scope.get("root_path", "")
            return RedirectResponse(f"{root}/login?next={quote(request.url.path)}", 303)
        status = STATUS_OF_CODE.get(exc.code, 500)
        return self.message(request, "Not possible", exc.message, status)

    async def viewer(self, request: Request) -> Actor:
        return await self.access.actor(request)

    # -- runs -------------------------------------------------------------------------

    async def runs(self, request: Request, start_error: str = "", payload: str = "") -> Response:
        try:
            actor = await self.viewer(request)
            actor.require("read")
            status = request.query_params.get("status") or None
            workflow = request.query_params.get("workflow") or None
            if status not in (None, *STATUSES):
                status = None
            ask = ListRuns(status=status, workflow=workflow, limit=200)
            listed = (await self.link.call(ask, RunsReply[RunView])).runs
            registry = await self.link.call(Workflows(), WorkflowsReply)
        except TakoError as exc:
            return self.failed(request, exc)
        now = datetime.now(UTC)
        runs = [{**r, "info": run_info(r, now)} for r in plain(listed)]
        names = sorted(w.name for w in registry.workflows if not w.name.startswith("tako."))
        return self.render(
            request, "runs.html", 400 if start_error else 200,
            runs=runs, statuses=STATUSES, status=status or "", workflow=workflow or "",
            workflows=names, can_start="start" in actor.scopes or actor.admin,
            start_error=start_error, payload=payload,
        )  # fmt: skip

    async def start(self, request: Request) -> Response:
        form = await form_of(request)
        try:
            check_csrf(request, form)
            actor = await self.viewer(request)
            actor.require("start")
            payload = json.loads(form.get("payload") or "null")
        except ValueError as exc:
            return await self.runs(request, f"The payload is not JSON: {exc}", form["payload"])
        except TakoError as exc:
            return self.failed(request, exc)
        try:
            ask = Start(workflow=form.get("workflow", ""), payload=_raw(payload))
            started = await self.link.call(ask, StartReply)
        except TakoError as exc:
            return await self.runs(request, exc.message, form.get("payload", ""))
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/runs/{quote(started.run_id)}", 303)

    async def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            (await self.viewer(request)).require("read")
            run = plain(await run_view(self.link, run_id))
        except TakoError as exc:
            return self.failed(request, exc)
        waiting = str(run.get("waiting_for") or "")
        approvals = [waiting.removeprefix("approval:")] if waiting.startswith("approval:") else []
        root = request.scope.get("root_path", "")
        return self.render(
            request, "run.html", run=run, approvals=approvals,
            timeline=render_run(run, now=datetime.now(UTC)),
            version=[run["status"], run["updated_at"],
                     ",".join(str(s["status"]) for s in run.get("steps") or [])],
            stream_url=f"{root}/api/runs/{quote(run_id)}/stream",
        )  # fmt: skip

    # -- approvals ----------------------------------------------------------------------

    async def inbox(self, request: Request) -> Response:
        try:
            actor = await self.viewer(request)
            actor.require("read")
            mine = None if actor.admin else actor.name
            ask = ListApprovals(approver=mine)
            pending = (await self.link.call(ask, ApprovalsReply[ApprovalView])).approvals
        except TakoError as exc:
            return self.failed(request, exc)
        now = datetime.now(UTC)
        root = request.scope.get("root_path", "")
        items = [
            {**a, "who": approvers_text(a), "left": left_text(a.get("deadline_at"), now)}
            for a in plain(pending)
        ]
        # browsers hold at most 6 connections per host: live updates for the oldest few
        # only, so that following a link never waits behind the streams
        streams = [f"{root}/api/approvals/{quote(a['key'])}/stream" for a in items[:3]]
        return self.render(request, "inbox.html", approvals=items, viewer=mine, stream_urls=streams)

    async def approval(self, request: Request) -> Response:
        key = request.path_params["key"]
        try:
            actor = await self.viewer(request)
            actor.require("read")
        except TakoError as exc:
            return self.failed(request, exc)
        root = request.scope.get("root_path", "")
        return await self._decision_page(
            request, key, actor, action_url=f"{root}/approvals/{quote(key)}",
            approver=None if actor.admin else actor.name, ask_name=actor.admin,
        )  # fmt: skip

    async def link_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            opened = await self.link.call(OpenLink(token=token), LinkReply[ApprovalView])
        except TakoError as exc:
            return self._link_refused(request, exc)
        approver = opened.approver
        anyone = approver == "*"
        actor = Actor(name=approver, scopes=frozenset({"read", "decide"}), how="link")
        root = request.scope.get("root_path", "")
        return await self._decision_page(
            request, opened.key, actor, action_url=f"{root}/a/{token}",
            approver=None if anyone else approver, ask_name=anyone,
        )  # fmt: skip

    def _link_refused(self, request: Request, exc: TakoError) -> Response:
        if exc.code == "link_expired":
            hint = "Ask for a new link, or decide from the inbox."
            return self.message(request, "This link has expired", exc.message, 403, hint)
        if exc.code == "link_tampered":
            hint = "It was changed or cut short: open the link exactly as it was sent."
            return self.message(request, "This link is not valid", exc.message, 403, hint)
        return self.failed(request, exc)

    async def _decision_page(
        self,
        request: Request,
        key: str,
        actor: Actor,
        *,
        action_url: str,
        approver: str | None,
        ask_name: bool,
    ) -> Response:
        notice, status = "", 200
        errors: dict[str, str] = {}
        form: dict[str, str] = {}
        try:
            approval = await self._approval(key)
        except TakoError as exc:
            return self.failed(request, exc)
        fields = fields_for(approval.get("schema"), approval["value"])
        if request.method == "POST":
            form = await form_of(request)
            outcome = await self._decide(request, key, actor, form, fields)
            if isinstance(outcome, Response):
                return outcome
            notice, errors, status, approval = outcome
            if status == 409 and approval.get("status") == "pending":
                fields = fields_for(approval.get("schema"), approval["value"])
            else:
                fields = refill(fields, form, errors)
        now = datetime.now(UTC)
        decision = approval.get("decision")
        root = request.scope.get("root_path", "")
        may = (
            approver is None
            or approval.get("approvers") is None
            or approver in (approval.get("approvers") or [])
        )
        return self.render(
            request, "approval.html", status, a=approval, notice=notice, errors=errors,
            who=approvers_text(approval), deadline=_deadline(approval, now),
            value_json=json.dumps(approval["value"], indent=2,
                                  ensure_ascii=False),
            decision_text=decision_text(decision) if decision else "",
            history=[f"{h['at']}: {history_text(h)}" for h in approval.get("history") or []],
            can_decide=approval["status"] == "pending" and ((may and "decide" in actor.scopes)
                                                            or actor.admin),
            action_url=action_url, approver=approver, ask_name=ask_name,
            by=form.get("by", ""), reason=form.get("reason", ""), fields=fields,
            stream_url=f"{root}/api/approvals/{quote(key)}/stream",
        )  # fmt: skip

    async def _decide(
        self,
        request: Request,
        key: str,
        actor: Actor,
        form: dict[str, str],
        fields: list[Field],
    ) -> Response | tuple[str, dict[str, str], int, dict[str, Any]]:
        """Apply the form's decision: a redirect to the page on success, else what to show."""
        try:  # a link was checked (open_link) by link_page at the start of this request
            check_csrf(request, form)
            actor.require("decide")
        except TakoError as exc:
            return self.failed(request, exc)
        action = form.get("action", "")
        value: Any = None
        errors: dict[str, str] = {}
        if action == "edit":
            value, errors = value_from_form(fields, form)
            if errors:
                current = await self._approval(key)
                return "The edited value has errors: see below.", errors, 400, current
        by_form = (form.get("by") or "").strip()
        try:
            body = DecisionBody(
                action="edit"
                if action == "edit"
                else "reject"
                if action == "reject"
                else "approve",
                value=_raw(value) if action == "edit" else msgspec.UNSET,
                reason=(form.get("reason") or "").strip() or None,
                by=by_form or None,
                seen=form.get("seen") or None,
            )
            if action not in ("approve", "reject", "edit"):
                raise Forbidden(f"unknown action {action!r}")
            if actor.how == "link" and actor.name == "*":  # a link for anyone: who is this?
                if not by_form:
                    raise Forbidden("say who you are: your name is recorded with the decision")
                by = by_form
            else:
                by = acting_as(actor, body)
            await decide(self.link, key, body, by)
        except TakoError as exc:
            current = await self._approval(key)
            status = STATUS_OF_CODE.get(exc.code, 500)
            if exc.code == "stale":
                notice = (
                    "The value changed since this page was opened (another approver edited "
                    "it). Nothing was decided: this is the new value; decide again."
                )
                return notice, {}, 409, current
            if exc.code == "invalid" and action == "edit":
                return exc.message, {error_field(exc.message, fields): exc.message}, 400, current
            return exc.message, {}, status, current
        return RedirectResponse(str(request.url.path), 303)

    async def _approval(self, key: str) -> dict[str, Any]:
        """The approval request as the templates and form helpers read it: plain data."""
        approval: dict[str, Any] = plain(await approval_view(self.link, key))
        return approval

    # -- signing in with a token (for pages, when the app has tokens) -----------------

    async def login(self, request: Request) -> Response:
        next_path = request.query_params.get("next") or "/"
        if request.method == "GET":
            return self.render(request, "login.html", next=next_path, error="")
        form = await form_of(request)
        try:
            check_csrf(request, form)
        except TakoError as exc:
            return self.failed(request, exc)
        token = form.get("token", "").strip()
        next_path = form.get("next") or "/"
        if not next_path.startswith("/") or next_path.startswith("//"):
            next_path = "/"  # only ever back into this app
        try:
            reply = await self.link.call(GetAccess(token=token), AccessReply)
            if not reply.name:
                raise Unauthorized("that token matches none of this app's tokens")
        except TakoError as exc:
            return self.render(request, "login.html", 401, next=next_path, error=exc.message)
        response = RedirectResponse(next_path, 303)
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
        return response


def _deadline(approval: dict[str, Any], now: datetime) -> str:
    deadline = approval.get("deadline_at")
    if not deadline:
        return "none"
    return f"{deadline} ({left_text(deadline, now)})"


def _raw(value: Any) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(value))


async def form_of(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def csrf_of(request: Request) -> tuple[str, bool]:
    """This browser's CSRF token, and whether it is new (to be set as a cookie)."""
    token = request.cookies.get(CSRF_COOKIE)
    if token and len(token) >= 16:
        return token, False
    return secrets.token_urlsafe(24), True


def check_csrf(request: Request, form: dict[str, str]) -> None:
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        if urlsplit(origin).netloc != host:
            raise CsrfRefused(f"a form posted from another site ({origin}) is refused")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get("csrf", "")
    if not cookie or not sent or not hmac.compare_digest(cookie, sent):
        raise CsrfRefused(
            "this form did not come from this app's own page (its CSRF token is missing or "
            "does not match): reload the page and try again"
        )
