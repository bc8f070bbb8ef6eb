"""What an ohlc_bars run reports: its warnings, metrics, metadata, partition observations and check results.

Built from the run's tally (`RunTally`) and what the asset learned beside it (`BarsRun`), so the asset reads
resolve, ingest, report. The checks are partitioned (`AssetCheckSpec(partitions_def=...)`): a run's verdict is
recorded on every partition it wrote, against that partition's materialization, so each partition's Checks tab
shows the result of the run that last wrote it, as a single-partition run's would.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData

from signal9_pipeline.market_data.days import is_session
from signal9_pipeline.market_data.screening import BarProblem
from signal9_pipeline.market_data.tally import DAY_FIGURES, RunTally
from signal9_pipeline.resources.metrics import MetricsResource

ASSET = dg.AssetKey("ohlc_bars")
REPORTED_CHANGES = ("restated", "added_late", "withdrawn", "restored", "refused")
CHECKS = {
    "ohlc_consistent": "Every stored bar is possible: finite positive prices, high/low bounding open/close, "
                       "non-negative volume and trades; impossible bars are held back with their reasons.",
    "timestamps_valid": "Every bar is on its timeframe's grid, within 04:00-20:00 New York on an XNYS session "
                        "(equities), with no duplicate time.",
    "completeness": "The share of the partition's symbol-days with bars is at least min_completeness.",
    "stored_equals_fetched": "A read-back of every written item's checksum equals what was written.",
    "restatements_within_tolerance": "Bars Alpaca answered again with other values than stored (its revisions, kept in "
                                     "the ledger) changed no open, high, low or close, and no volume or vwap by more "
                                     "than 5%; a warning names them.",
}


@dataclass
class BarsRun:
    """One run of ohlc_bars: the partitions it covers, its tally, and what the asset learned beside the tally."""

    requested: dict[str, list[date]]  # timeframe -> dates
    partition_keys: dict[tuple[str, str], str]  # (timeframe, date) -> the partition key as Dagster spells it
    tally: RunTally = field(default_factory=RunTally)
    problems_by_timeframe: dict[str, list[BarProblem]] = field(default_factory=dict)
    without_bars_now: dict[str, list[str]] = field(default_factory=dict)  # "day timeframe" -> symbols
    share_with_bars: float = 1.0  # the lowest of the run's timeframes
    missing_symbol_days: int = 0
    requests_used: int = 0
    undelivered: int = 0  # marketDataRestated events not delivered
    mismatches: list[str] = field(default_factory=list)
    items_read_back: int = 0
    duration_s: float = 0.0

    def count_completeness(self, share: float, missing: int) -> None:
        self.share_with_bars, self.missing_symbol_days = (min(self.share_with_bars, share),
                                                          self.missing_symbol_days + missing)

    @property
    def bars_per_request(self) -> float:
        return self.tally.bars / self.requests_used if self.requests_used else 0.0


def log_warnings(log, run: BarsRun) -> None:
    """What a run held back, skipped or found changed, for the run log (the metadata counts the same)."""
    tally = run.tally
    if tally.unrequested:
        log.warning(f"{len(tally.unrequested)} company(ies) not asked for: two companies under one symbol as of one "
                    "date in the assets table; " + "; ".join(tally.unrequested[:20]))
    if tally.problems:
        log.warning(f"{len(tally.problems)} impossible bar(s) held back, the rest of their symbol-days stored: "
                    + "; ".join(str(p) for p in tally.problems[:20]))
    if tally.outside_window:
        log.warning(f"{tally.outside_window} bar(s) Alpaca answered for days outside the partitions asked for; "
                    "not stored (they are those partitions' bars)")
    if run.without_bars_now:
        log.warning("stored symbol-days that Alpaca now answers without bars (kept): "
                    + "; ".join(f"{k}: {', '.join(v[:10])}" for k, v in sorted(run.without_bars_now.items())[:20]))


def put_metrics(metrics: MetricsResource, run: BarsRun) -> None:
    metrics.put("BarsWritten", run.tally.bars)
    metrics.put("BarsPerRequest", run.bars_per_request)
    metrics.put("BarsInvalid", len(run.tally.problems))


def run_metadata(run: BarsRun) -> dict[str, dg.MetadataValue]:
    """The run's materialization metadata: numbers (plotted by the UI), the by_date table, the held-back bars."""
    tally, totals = run.tally, run.tally.totals()
    return {
        "bars_written": dg.MetadataValue.int(tally.bars),
        **{f"bars_{name}": dg.MetadataValue.int(totals[name]) for name in DAY_FIGURES if name != "bars"},
        "bars_kept_from_earlier": dg.MetadataValue.int(tally.kept_from_earlier),
        "bars_vwap_outside_range": dg.MetadataValue.int(tally.vwap_outside_range),
        "bars_outside_window": dg.MetadataValue.int(tally.outside_window),
        "items_written": dg.MetadataValue.int(tally.items),
        "requests_used": dg.MetadataValue.int(run.requests_used),
        "bars_per_request": dg.MetadataValue.float(round(run.bars_per_request, 1)),
        "symbols_with_no_bars": dg.MetadataValue.int(run.missing_symbol_days),
        "companies_not_asked": dg.MetadataValue.int(len(tally.unrequested)),
        "stored_symbol_days_without_bars_now": dg.MetadataValue.int(sum(map(len, run.without_bars_now.values()))),
        "write_requests": dg.MetadataValue.int(tally.write_requests),
        "write_conflicts": dg.MetadataValue.int(tally.write_conflicts),
        "largest_block_bytes": dg.MetadataValue.int(tally.largest_block_bytes),
        **revision_figures(tally.revised.values(), tally.largest_change.values()),
        "restatement_events_undelivered": dg.MetadataValue.int(run.undelivered),
        "duration_s": dg.MetadataValue.float(round(run.duration_s, 3)),
        "by_date": dg.MetadataValue.md(by_date_table(tally, run.requested)),
        **({"held_back": dg.MetadataValue.text("\n".join(str(p) for p in tally.problems[:200]))}
           if tally.problems else {}),
    }


def check_results(run: BarsRun, min_completeness: float) -> list[dg.AssetCheckResult]:
    """The run's verdict on each check (`CHECKS`); `per_partition` records it on every partition the run wrote."""
    tally = run.tally
    stamps = [p for p in tally.problems if p.field == "t"]
    values = [p for p in tally.problems if p.field != "t"]
    named = tally.beyond_tolerance
    return [
        dg.AssetCheckResult(check_name="ohlc_consistent", passed=not values, description=_first(values),
                            metadata={"invalid_bars": dg.MetadataValue.int(len(values)),
                                      "vwap_outside_range": dg.MetadataValue.int(tally.vwap_outside_range)}),
        dg.AssetCheckResult(check_name="timestamps_valid", passed=not stamps, description=_first(stamps),
                            metadata={"invalid_timestamps": dg.MetadataValue.int(len(stamps))}),
        dg.AssetCheckResult(check_name="completeness", passed=run.share_with_bars >= min_completeness,
                            metadata={"share_with_bars": dg.MetadataValue.float(round(run.share_with_bars, 4)),
                                      "missing_symbol_days": dg.MetadataValue.int(run.missing_symbol_days),
                                      "threshold": dg.MetadataValue.float(min_completeness)}),
        dg.AssetCheckResult(check_name="stored_equals_fetched", passed=not run.mismatches,
                            metadata={"items_checked": dg.MetadataValue.int(run.items_read_back),
                                      "mismatches": dg.MetadataValue.int(len(run.mismatches))}),
        dg.AssetCheckResult(check_name="restatements_within_tolerance", passed=not tally.beyond_tolerance_count,
                            severity=dg.AssetCheckSeverity.WARN, description="; ".join(named[:5]) or None,
                            metadata={"bars_beyond_tolerance": dg.MetadataValue.int(tally.beyond_tolerance_count),
                                      **({"beyond_tolerance": dg.MetadataValue.text("\n".join(named))}
                                         if named else {})}),
    ]


def per_partition(context: dg.AssetExecutionContext, results: list[dg.AssetCheckResult],
                  partition_keys: Iterable[str]) -> Iterator[dg.Output | dg.AssetCheckEvaluation]:
    """Each check's output (one per check, as Dagster requires), then its result on every partition of the run,
    aimed at that partition's materialization by this run: what the Checks tab shows as the partition's latest.

    An `AssetCheckResult` carries no partition, and a run over a range of partitions has no single one to give it.
    """
    names = [str(result.check_name) for result in results]  # every check result here is built with its name
    for name in names:
        key = dg.AssetCheckKey(ASSET, name)
        yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(key))
    targets = _materializations(context.instance, context.run.run_id)
    for partition in sorted(partition_keys):
        for name, result in zip(names, results):
            yield dg.AssetCheckEvaluation(
                asset_key=ASSET, check_name=name, passed=result.passed, metadata=result.metadata,
                severity=result.severity, description=result.description, blocking=False, partition=partition,
                target_materialization_data=targets.get(partition))


def _materializations(instance: dg.DagsterInstance,
                      run_id: str) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """partition -> this run's materialization of it, as an evaluation names the materialization it checked."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    events = [(r, r.event_log_entry.dagster_event) for r in records]
    return {event.partition: AssetCheckEvaluationTargetMaterializationData(
                run_id=run_id, storage_id=r.storage_id, timestamp=r.timestamp)
            for r, event in events if event is not None and event.asset_key == ASSET and event.partition is not None}


def partition_observations(run: BarsRun) -> list[dg.AssetObservation]:
    """One observation per partition of the run with that partition's own figures and held-back bars.

    Dagster records a single-run backfill as one materialization per partition, each carrying the run's
    metadata (it has no per-partition metadata for one run: dagster-io/dagster issues 21072 and 18123), so a
    partition's own figures are recorded beside it, as an observation of that partition, however many
    partitions the run covers.
    """
    held: dict[tuple[str, str], list[BarProblem]] = collections.defaultdict(list)
    for timeframe, problems in run.problems_by_timeframe.items():
        for problem in problems:
            held[(timeframe, problem.day)].append(problem)
    observations = []
    for (timeframe, day), key in sorted(run.partition_keys.items(), key=lambda item: (item[0][1], item[0][0])):
        figures = run.tally.by_day.get((timeframe, day), {})
        reasons = held.get((timeframe, day), [])
        observations.append(dg.AssetObservation(asset_key=ASSET, partition=key, metadata={
            **{f"bars_{name}" if name != "bars" else "bars_written": dg.MetadataValue.int(figures.get(name, 0))
               for name in DAY_FIGURES},
            "xnys_session": dg.MetadataValue.bool(is_session(date.fromisoformat(day))),
            **revision_figures([run.tally.revised.get((timeframe, day), collections.Counter())],
                               [run.tally.largest_change.get((timeframe, day), 0.0)]),
            **({"held_back": dg.MetadataValue.text("\n".join(str(p) for p in reasons[:200]))} if reasons else {}),
        }))
    return observations


def revision_figures(counts, largest) -> dict[str, dg.MetadataValue]:
    """What re-fetches changed in bars stored before (the ledger's entries): per partition, or summed over a run."""
    total: collections.Counter = collections.Counter()
    for c in counts:
        total.update(c)
    return {**{f"bars_{name}": dg.MetadataValue.int(int(total[name])) for name in REPORTED_CHANGES},
            "largest_relative_change": dg.MetadataValue.float(round(max(largest, default=0.0), 6))}


def by_date_table(tally: RunTally, requested: dict[str, list[date]], limit: int = 60) -> str:
    """The run's first `limit` partitions (date, timeframe): XNYS session, bars by session, held back; a summary
    for the materialization's page (each partition's own figures are its observation)."""
    rows = ["| date | timeframe | XNYS | " + " | ".join(DAY_FIGURES) + " |", "|" + "---|" * (3 + len(DAY_FIGURES))]
    keys = sorted({(d.isoformat(), tf) for tf, dates in requested.items() for d in dates})
    for day, timeframe in keys[:limit]:
        figures = tally.by_day.get((timeframe, day), {})
        session = "session" if is_session(date.fromisoformat(day)) else "no session (crypto only)"
        rows.append(f"| {day} | {timeframe} | {session} | "
                    + " | ".join(f"{figures.get(k, 0):,}" for k in DAY_FIGURES) + " |")
    if len(keys) > limit:
        rows.append(f"| ... {len(keys) - limit} more, each in its partition's observation | | | "
                    + " | " * (len(DAY_FIGURES) - 1) + " |")
    return "\n".join(rows)


def _first(problems: list[BarProblem]) -> str | None:
    return "; ".join(str(p) for p in problems[:5]) or None
