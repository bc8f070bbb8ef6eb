"""What a corporate_actions run reports: its warnings, metadata and check results, built from its `Recorded`.

Beside the tally (`store.Recorded`), so the asset reads resolve, record, report.
"""

from __future__ import annotations

import collections

import dagster as dg

from signal9_pipeline.corporate_actions.actions import KNOWN_GROUPS, Action
from signal9_pipeline.corporate_actions.store import Recorded

CHECKS = {
    "ratios_valid": "Every split and dividend has a positive, finite ratio or amount; failing ones are held back.",
    "dates_valid": "Every date parses and is ordered (a dividend is not paid before its ex- or record date); "
                   "failing actions are held back.",
    "no_duplicate_actions": "No event arrives twice under different ids (a repeat is stored but applied once).",
    "names_agree_with_renames": "Alpaca's name changes match the renames the asset sync recorded: one company (same "
                                "alpaca_id), and an effective date the sync's observations allow (both dates named).",
    "agrees_with_alpaca_adjusted": "Alpaca's own adjusted daily close before each new action matches ours "
                                   "(a disagreement is reported, never copied).",
}
WARN_ONLY = ("no_duplicate_actions", "names_agree_with_renames", "agrees_with_alpaca_adjusted")


def run_warnings(result: Recorded) -> list[str]:
    """The run log's warnings: what recording met, then unknown types, dividends without a reference close, actions
    held back and actions outside the assets table."""
    lines = list(result.warnings)
    unknown = collections.Counter(a.type for a in result.actions if not a.known)
    if unknown:
        lines.append(f"{sum(unknown.values())} action(s) of types this pipeline does not know, stored raw: "
                     + ", ".join(f"{t} ({n})" for t, n in sorted(unknown.items())))
    if result.without_close:
        lines.append(f"{result.without_close} cash dividend(s) in effect without a reference close (Alpaca had no SIP "
                     "daily bar for the session before the ex-date); dividend-adjusted reads across them are refused "
                     "until it is recorded")
    held = [a for a in result.actions if a.held_back]
    if held:
        lines.append(f"{len(held)} action(s) held back: "
                     + "; ".join(f"{a.describe()}: {a.held_back}" for a in held[:20]))
    if result.outside:
        lines.append(f"{result.outside} action(s) name no symbol of the assets table and were not stored")
    return lines


def run_metadata(result: Recorded, requests_used: int) -> dict[str, dg.MetadataValue]:
    """Counts by type and by outcome (plotted by the UI), and a table of the actions held back."""
    by_type = collections.Counter(a.type for a in result.actions)
    held = [a for a in result.actions if a.held_back]
    return {
        "dagster/row_count": dg.MetadataValue.int(len(result.actions)),
        **{group: dg.MetadataValue.int(by_type.get(group[:-1], 0)) for group in KNOWN_GROUPS},
        "unknown_types": dg.MetadataValue.int(sum(not a.known for a in result.actions)),
        "new": dg.MetadataValue.int(result.new),
        "changed": dg.MetadataValue.int(result.changed),
        "unchanged": dg.MetadataValue.int(result.unchanged),
        "held_back": dg.MetadataValue.int(len(held)),
        "outside_assets_table": dg.MetadataValue.int(result.outside),
        "renames_dated": dg.MetadataValue.int(result.renames_dated),
        "events_published": dg.MetadataValue.int(result.published),
        "requests_used": dg.MetadataValue.int(requests_used),
        "dividends_without_reference_close": dg.MetadataValue.int(result.without_close),
        **({"held_back_actions": dg.MetadataValue.md(held_back_table(held))} if held else {}),
    }


def check_results(result: Recorded) -> list[dg.AssetCheckResult]:
    """One result per check (`CHECKS`): what it found, the first five named, up to 200 in its metadata."""
    ratio = [a for a in result.actions if any(what == "ratio" for what, _ in a.problems)]
    dates = [a for a in result.actions if any(what == "date" for what, _ in a.problems)]
    outcomes: dict[str, tuple[list[Action] | list[str], str]] = {
        "ratios_valid": (ratio, "held back: "),
        "dates_valid": (dates, "held back: "),
        "no_duplicate_actions": ([f"{dup} repeats {kept}" for dup, kept in sorted(result.duplicates.items())], ""),
        "names_agree_with_renames": (result.rename_disagreements, ""),
        "agrees_with_alpaca_adjusted": (result.alpaca_disagreements, ""),
    }
    checks = []
    for name, (found, prefix) in outcomes.items():
        lines = [f"{a.describe()}: {a.held_back}" if isinstance(a, Action) else str(a) for a in found]
        checks.append(dg.AssetCheckResult(
            check_name=name, passed=not found,
            severity=dg.AssetCheckSeverity.WARN if name in WARN_ONLY else dg.AssetCheckSeverity.ERROR,
            description=(prefix + "; ".join(lines[:5])) if found else None,
            metadata={"count": dg.MetadataValue.int(len(found)),
                      **({"compared": dg.MetadataValue.int(result.compared)}
                         if name == "agrees_with_alpaca_adjusted" else {}),
                      **({"all": dg.MetadataValue.text("\n".join(lines[:200]))} if found else {})}))
    return checks


def held_back_table(actions: list[Action], limit: int = 50) -> str:
    rows = ["| id | type | symbols | ex_date | reason |", "|---|---|---|---|---|"]
    rows += [f"| {a.id} | {a.type} | {', '.join(a.symbols)} | {a.ex_date or '?'} | {a.held_back} |"
             for a in actions[:limit]]
    return "\n".join(rows)
