"""/report: the ops report as two CSV documents (accounts with badges, venue health, PnL today
and loss cap; positions with their protection), the same files as /api/ops_report.csv and
/api/positions.csv. Traders and admins: it is the shift hand-over export."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import BufferedInputFile, Message
from aiogram.utils.i18n import gettext as _

from bot.commands import role_flag
from bot.routers.replies import answer_long
from engine.ops import OpsReport, OpsReports, ops_csv, positions_csv


def summary(report: OpsReport) -> str:
    b = report.badges
    lines = [_("Ops report {at}").format(at=report.at.strftime("%Y-%m-%d %H:%M:%S UTC")),
             _("auto_trade {auto_trade} · risk_checks {risk_checks} · daily_loss {daily_loss}"
               " · watchdog {watchdog}").format(
                 auto_trade=b.auto_trade, risk_checks=b.risk_checks, daily_loss=b.daily_loss,
                 watchdog=b.watchdog)]
    if report.readiness.ok:
        lines.append(_("Live readiness: ready"))
    else:
        lines.append(_("Live readiness: not ready ({reasons})").format(
            reasons=", ".join(report.readiness.reasons)))
    return "\n".join(lines)


def build_router() -> Router:
    router = Router(name="report")

    @router.message(Command("report"), flags=role_flag("report"))
    async def report(message: Message, ops: OpsReports) -> None:
        found = await ops.report()
        stamp = found.at.strftime("%Y%m%d-%H%M%S")
        files = [(ops_csv(found), f"ops_report-{stamp}.csv"),
                 (positions_csv(found.at, found.positions), f"positions-{stamp}.csv")]
        try:
            for i, (text, name) in enumerate(files):
                await message.answer_document(BufferedInputFile(text.encode(), name),
                                              caption=summary(found) if i == 0 else None)
        except NotImplementedError:  # the console chat sends no files: the text instead
            await answer_long(message, "\n".join([summary(found), *(t for t, _n in files)]))

    return router
