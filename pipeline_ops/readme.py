"""The README's figures and tables that derive from code, so they cannot go stale.

``make docs`` rewrites each block between ``<!-- generated:NAME -->`` and ``<!-- /generated -->``
in README.md; ``tests/test_docs.py`` fails when a block differs from what the code gives now.
Blocks: ``figures`` (resources per environment, prod's idle cost, cost per 1,000 images and the
largest manifest one execution takes, from the synthesized configs and the dated price table),
``daily`` (make help's daily group, full descriptions) and ``functions`` (each Lambda function of
``lambda_src/`` with its docstring's first line).

    python -m pipeline_ops.readme cdktf.out/stacks [--readme README.md] [--check]
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path

from pipeline_ops import cost, diagrams
from tools import cli, make_help

REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- generated:([a-z-]+) -->\n)(.*?)(<!-- /generated -->)", re.S)
ENVS = ("local", "dev", "staging", "prod")


def figures(configs: dict[str, dict]) -> str:
    prod = configs["prod"]
    region, prices = diagrams.region_prices(prod)
    idle = sum(diagrams.idle_costs(diagrams.Stack(prod), prices).values())
    fan_out = cost.fan_out_of(prod)
    estimate = cost.estimate(fan_out, cost.DEFAULT_IMAGES)
    counts = ", ".join(
        f"{env} {sum(len(v) for v in (configs[env].get('resource') or {}).values())}" for env in ENVS if env in configs
    )
    rows = [
        "| figure (prod unless named) | value |",
        "|---|---|",
        f"| Terraform resources per environment | {counts} |",
        f"| idle cost (fixed-price resources) | {idle:.2f} USD/month |",
        f"| cost per 1,000 images | {estimate['usd_per_1000_images']:.4f} USD spot, "
        f"{estimate['usd_per_1000_images_on_demand']:.4f} on-demand |",
        f"| a manifest of {estimate['images']:,} images | {estimate['estimated_usd']:.2f} USD spot, "
        f"~{estimate['estimated_seconds'] / 3600:.1f} h |",
        f"| largest manifest one execution takes | {estimate['largest_manifest']:,} images |",
    ]
    return "\n".join(rows) + f"\n\nPrices: the {region} table of {prices['date']} (`conf/prices/`).\n"


def daily(makefile: Path = REPO / "Makefile") -> str:
    targets, groups, defaults = make_help.parse(makefile)
    rows = ["| `make` target | what it does |", "|---|---|"]
    rows += [f"| `make {t}` | {targets[t].replace('|', '/')} |" for t in groups.get("daily", []) if t in targets]
    return "\n".join(rows) + f"\n\nDefaults: `{defaults}`.\n"


def functions(root: Path = REPO / "lambda_src") -> str:
    rows = ["| function | what it does |", "|---|---|"]
    for handler in sorted(root.glob("*/handler.py")):
        doc = (ast.get_docstring(ast.parse(handler.read_text())) or "").split("\n\n")[0].replace("\n", " ")
        first = doc.split(". ")[0].rstrip(".")  # the first sentence
        rows.append(f"| `{handler.parent.name}` | {first}. |")
    return "\n".join(rows) + "\n"


def blocks(configs: dict[str, dict]) -> dict[str, str]:
    return {"figures": figures(configs), "daily": daily(), "functions": functions()}


def render(readme: str, generated: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name not in generated:
            raise SystemExit(f"error: README block generated:{name} is unknown; known: {', '.join(generated)}")
        return f"{match.group(1)}{generated[name]}{match.group(4)}"

    return BLOCK.sub(replace, readme)


def load(stacks: Path) -> dict[str, dict]:
    found = {env: stacks / f"pipeline-{env}" / "cdk.tf.json" for env in ENVS}
    missing = [str(p) for p in found.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"error: {missing[0]} not found; run `make synth` first")
    return {env: json.loads(path.read_text()) for env, path in found.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_ops.readme", description=__doc__.split("\n")[0])
    parser.add_argument("stacks", type=Path, help="the synthesized stacks folder (cdktf.out/stacks)")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if a block is stale; change nothing")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    new = render(text, blocks(load(args.stacks)))
    if args.check:
        print("readme: current" if new == text else "readme: stale generated blocks; run `make docs`")
        return 0 if new == text else 1
    args.readme.write_text(new)
    print(f"docs: {args.readme} ({len(BLOCK.findall(new))} generated blocks)")
    return 0


if __name__ == "__main__":
    cli.run(main)
