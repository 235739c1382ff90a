"""``kit validate``: a recorded live or paper day replayed through the same desk and rules, and
compared decision by decision (kit.research.validate)."""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

from kit.cli import args as args_


def add_validate_parser(sub: Any) -> None:
    """Register ``validate`` on the ``kit`` command's subparsers."""
    v = sub.add_parser("validate", help="replay a recorded day from the store through the "
                       "same desk and rules and explain every divergence")  # fmt: skip
    v.add_argument("--db", help="the store the day was recorded in: DuckDB file or "
                   "postgresql:// URL (default: KIT_DB_URL, else data/desk.duckdb)")  # fmt: skip
    v.add_argument("--date", type=args_.day, help="the session (default: the latest recorded)")
    v.add_argument("--config", type=args_.text_file, help="TOML with [strategy] (the "
                   "autopilot's settings) and/or [rules] (rule overrides), instead of what the "
                   "day recorded")  # fmt: skip
    v.add_argument("--rules", type=args_.text_file, help="rules TOML file instead of the "
                   "recorded rules")  # fmt: skip
    v.add_argument("--workdir", type=args_.output_dir, help="keep the replay's recording and "
                   "store here (default: a temporary directory)")  # fmt: skip
    v.add_argument("--cost-model", type=args_.output_path, metavar="TOML", help="write the "
                   "slippage fitted on the day's fills as a grid's [costs.NAME] table")  # fmt: skip
    v.add_argument("--cost-name", default="live", help="the cost model's name (default: live)")
    v.add_argument("--json", action="store_true", help="print one JSON line")
    v.set_defaults(func=cmd_validate)


def _overrides(path: Path | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if path is None:
        return None, None
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--config {path}: {exc}") from None
    if unknown := sorted(set(doc) - {"strategy", "rules"}):
        raise ValueError(f"--config {path}: unknown table [{unknown[0]}] (use [strategy], [rules])")
    return doc.get("strategy"), doc.get("rules")


def cmd_validate(args: argparse.Namespace) -> int:
    import asyncio
    import tempfile

    from kit.app.autopilot import config_doc, config_from_doc
    from kit.research.validate.day import validate_day
    from kit.research.validate.replay import recorded_days, recorded_setup
    from kit.risk.rules import load_rules, rules_table
    from kit.store import check_target, is_postgres, open_store, store_target

    target = check_target(store_target(args.db))
    if not is_postgres(target) and not Path(target).is_file():  # read it, never create it
        raise ValueError(f"no database at {target}: record a day first (kit run --auto --db "
                         f"{target}, or kit serve --db {target})")  # fmt: skip
    strategy, rule_overrides = _overrides(args.config)
    with open_store(target) as store:
        days = recorded_days(store)
        if not days:
            raise ValueError(f"{target} holds no recorded decisions or fills")
        day = args.date or days[-1]
        if day not in days:
            raise ValueError(f"{target} has no recorded day {day} (it has "
                             f"{', '.join(map(str, days))})")  # fmt: skip
        kept_config, kept_rules = recorded_setup(store, day)
        config = None
        if strategy is not None:
            base = config_doc(kept_config) if kept_config is not None else {}
            config = config_from_doc({**base, **strategy})
        rules = None  # the recorded rules, unless a file replaces or [rules] amends them
        if args.rules is not None:
            rules = load_rules(args.rules, rule_overrides)
        elif rule_overrides is not None:
            base = rules_table(kept_rules) if kept_rules is not None else {}
            for name, table in rule_overrides.items():
                if not isinstance(table, dict):
                    raise ValueError(f"--config: [rules.{name}] must be a table")
                base[name] = {**base.get(name, {}), **table}
            rules = load_rules(None, base)
        with tempfile.TemporaryDirectory(prefix="kit-validate-") as tmp:
            result = asyncio.run(validate_day(store, day, args.workdir or tmp, rules=rules,
                                              config=config))  # fmt: skip
    out = result.summary()
    if args.cost_model is not None:
        if result.model is None:
            raise ValueError("--cost-model: no fill of the day met a two-sided quote to fit on")
        Path(args.cost_model).parent.mkdir(parents=True, exist_ok=True)
        Path(args.cost_model).write_text(result.model.toml(args.cost_name))
        out["cost_model"] = str(args.cost_model)
    if args.json:
        print(json.dumps(out))
        return 0
    for d in out["divergences"]:
        print(f"{d['ts']}  {d['kind']:<6} {d['cause']}: {d['detail']}")
    slip = out["slippage_mean"]
    print(f"{day}: {out['decisions_live']} decisions live, {out['decisions_replay']} replayed; "
          f"{len(out['divergences'])} divergences; P&L live {out['pnl_live']:+.2f}, replay "
          f"{out['pnl_replay']:+.2f}; slippage "
          + ("n/a" if slip is None else f"${slip:.2f} per contract"))  # fmt: skip
    return 0
