"""The README's "Command line" synopsis lists every option of every subcommand, and only those
(so the two cannot drift apart), and its supported-operator list matches the importers."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from dpllnn.cli import build_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _synopsis() -> dict[str, set[str]]:
    block = README.split("## Command line", 1)[1].split("```", 2)[1]
    out: dict[str, set[str]] = {}
    cur = None
    for line in block.splitlines():
        m = re.match(r"dpllnn (\S+)", line)
        if m:
            # "dpllnn --name | --version": options of the top-level parser, filed under ""
            cur = "" if m.group(1).startswith("-") else m.group(1)
            out.setdefault(cur, set())
        if cur is not None:
            out[cur].update(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", line))
    return out


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    p = build_parser()
    action = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_subcommand_is_in_the_synopsis():
    assert set(_subparsers()) == set(_synopsis()) - {""}


def test_top_level_options_are_in_the_synopsis():
    known = {o for a in build_parser()._actions for o in a.option_strings
             if not isinstance(a, argparse._HelpAction)}
    assert known == _synopsis().get("", set())


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_synopsis_lists_exactly_the_options(name):
    parser, listed = _subparsers()[name], _synopsis()[name]
    missing, known = [], set()
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction) or not a.option_strings \
                or a.help == argparse.SUPPRESS:        # hidden test hooks (bench --worker)
            continue
        known.update(a.option_strings)
        if not set(a.option_strings) & listed:
            missing.append("/".join(a.option_strings))
    assert not missing, f"README synopsis of `dpllnn {name}` lacks {missing}"
    stale = sorted(listed - known)
    assert not stale, f"README synopsis of `dpllnn {name}` lists unknown options {stale}"


def test_operator_list_matches_the_importers():
    from dpllnn.io.onnx_graph import GRAPH_OPS
    from dpllnn.io.onnx_import import SUPPORTED_OPS
    section = README.split("## Supported ONNX operators", 1)[1].split("\n## ", 1)[0]
    chain_par, rest = section.split("\n\n", 2)[1], section
    named = set(re.findall(r"`([A-Z][A-Za-z]+)`", rest))
    assert SUPPORTED_OPS <= set(re.findall(r"`([A-Z][A-Za-z]+)`", chain_par)), \
        sorted(SUPPORTED_OPS - set(re.findall(r"`([A-Z][A-Za-z]+)`", chain_par)))
    assert GRAPH_OPS <= named, sorted(GRAPH_OPS - named)
    rejected = {"Sigmoid"}                      # the README's example of a refused operator
    assert not rejected & GRAPH_OPS
    assert named - GRAPH_OPS == rejected, sorted(named - GRAPH_OPS)
