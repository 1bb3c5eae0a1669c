#!/usr/bin/env python3
"""Checks spec/conformance.md against spec/protocol.md and the test sources.

Run from anywhere: `python3 spec/conformance_check.py`. Standard library only.

Rules (see spec/conformance.md, "How the map is checked"):

* A *requirement* is a sentence of spec/protocol.md, in a numbered section other than
  §1 (Conventions), that contains one of the key words MUST or SHOULD (which covers
  MUST NOT and SHOULD NOT). Every such sentence carries at least one marker `[<section>-<n>]`
  right after it (or inside it); `<section>` is the number of the (sub)section it is in.
  A MAY sentence may carry a marker too (then it is a requirement like the others).
* Sentences: the text is cut into blocks (paragraphs, list items, table rows; fenced code
  is skipped) and a block into sentences after `.`, `!` or `?` followed by white space and
  a capital letter, a backtick, `(`, `*` or `[`, and after `:` followed by white space and a
  capital letter or `[`. Markers at the start of a sentence
  belong to the one before it.
* Every marker id is unique, appears in exactly one table row of spec/conformance.md, and
  every row of those tables names a marker of protocol.md.
* Every check of a row exists: `vector:<file>#<name>` (a case or script `name` in
  spec/vectors/<file>), `proto:<fn>` (a test fn under proto/: after #[test] or inside
  proptest! { }), `tokio:<fn>` (a test fn under runtime-tokio/: after #[test] or
  #[tokio::test]), `example:<script>` (proto/examples/<script>.sh), `runner:<case>`
  (a case of the wire-level runner, registered with `@case("<case>", [ids], role)` in
  spec/conformance/cases_*.py, that lists the row's id among the ids it checks).
* A row without checks must be listed under "Not yet covered"; the ids listed there must
  exist. Declared gaps are reported, not failed.

Exit status: 0 when consistent, 1 on any inconsistency.
"""

import json
import os
import re
import sys

SPEC = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SPEC)
PROTOCOL = os.path.join(SPEC, "protocol.md")
CONFORMANCE = os.path.join(SPEC, "conformance.md")

KEYWORD = re.compile(r"\b(MUST|SHOULD)\b")
MARKER = re.compile(r"\[(\d+(?:\.\d+)*)-(\d+)\]")
HEADING = re.compile(r"^(#{2,6})\s+(?:(\d+(?:\.\d+)*)\.?\s)?")
BLOCK_START = re.compile(r"^\s*(?:[-*]\s|\d+\.\s|\|)")
SENTENCE_END = re.compile(r"(?:(?<=[.!?])\s+(?=[A-Z`(*\[])|(?<=:)\s+(?=[A-Z\[]))")
LEADING_MARKERS = re.compile(r"^(?:\[\d+(?:\.\d+)*-\d+\]\s*)+")


def blocks(text):
    """Yields (section, start_offset, block_text) for every block of prose."""
    section = None
    in_fence = False
    offset = 0
    current = None  # [section, start, [lines]]

    def flush():
        nonlocal current
        if current is not None and current[2]:
            yield_value = (current[0], current[1], "\n".join(current[2]))
            current = None
            return yield_value
        current = None
        return None

    for line in text.split("\n"):
        start = offset
        offset += len(line) + 1
        if line.startswith("```"):
            done = flush()
            if done:
                yield done
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        heading = HEADING.match(line)
        if heading:
            done = flush()
            if done:
                yield done
            if heading.group(2):
                section = heading.group(2)
            elif len(heading.group(1)) == 2:
                section = None  # an unnumbered top-level part (e.g. the change log)
            continue
        if not line.strip():
            done = flush()
            if done:
                yield done
            continue
        if BLOCK_START.match(line) or line.lstrip().startswith("|"):
            done = flush()
            if done:
                yield done
        if current is None:
            current = [section, start, []]
        current[2].append(line)
    done = flush()
    if done:
        yield done


def sentences(text):
    """Yields (section, start, end, sentence, markers) for every sentence of protocol.md.

    start/end are offsets into text; markers that open a sentence belong to the previous one.
    """
    out = []
    for section, base, block in blocks(text):
        pieces = []
        pos = 0
        for m in SENTENCE_END.finditer(block):
            pieces.append((pos, m.start()))
            pos = m.end()
        pieces.append((pos, len(block.rstrip())))
        for s, e in pieces:
            chunk = block[s:e]
            lead = LEADING_MARKERS.match(chunk)
            if lead and out and out[-1][1] is not None and out[-1][0] == section:
                out[-1][4].extend(MARKER.findall(lead.group(0)))
                s += lead.end()
                chunk = block[s:e]
            if not chunk.strip():
                continue
            out.append([section, base + s, base + e, chunk, MARKER.findall(chunk)])
    return out


def requirement_sentences(text):
    for section, start, end, chunk, markers in sentences(text):
        if section is None or section == "1":
            continue
        yield section, start, end, chunk, markers


def test_functions(subdir):
    """Names of test functions under ROOT/subdir: a `fn` right after #[test] /
    #[tokio::test(...)] (other attributes, comments and doc comments may sit between), or
    a `fn` inside a `proptest! { ... }` block."""
    names = set()
    attr = re.compile(r"#\[(?:tokio::)?test\b")
    fn = re.compile(r"^\s*(?:pub\s+)?(?:async\s+)?fn\s+([A-Za-z0-9_]+)")
    for dirpath, _, files in os.walk(os.path.join(ROOT, subdir)):
        if "target" in dirpath.split(os.sep):
            continue
        for name in files:
            if not name.endswith(".rs"):
                continue
            with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                lines = f.read().split("\n")
            pending = False
            depth = 0  # brace depth inside a proptest! block, 0 outside
            for line in lines:
                stripped = line.strip()
                if depth == 0 and re.match(r"^(?:\w+::)?proptest!\s*\{", stripped):
                    depth = 1
                    continue
                m = fn.match(line)
                if m and (pending or depth == 1):
                    names.add(m.group(1))
                if depth:
                    depth += line.count("{") - line.count("}")
                    depth = max(depth, 0)
                if attr.search(stripped):
                    pending = True
                elif m or not (stripped.startswith("#[") or stripped.startswith("//") or not stripped):
                    pending = False
    return names


def vector_names(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    names = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("name"), str):
                names.add(node["name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    return names


ROW = re.compile(r"^\|\s*`?(\d+(?:\.\d+)*-\d+)`?\s*\|(.*)\|\s*(.*?)\s*\|\s*$")
CHECK = re.compile(r"`([a-z]+):([^`]+)`")
GAP = re.compile(r"^\s*[-*]\s+`?(\d+(?:\.\d+)*-\d+)`?")


RUNNER_CASE = re.compile(r'@case\(\s*"([a-z0-9_]+)",\s*\[([^\]]*)\]', re.S)


def runner_cases():
    """{case name: [ids]} from the `@case(...)` registrations of spec/conformance/."""
    cases = {}
    folder = os.path.join(SPEC, "conformance")
    for name in sorted(os.listdir(folder)):
        if name.startswith("cases_") and name.endswith(".py"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                for m in RUNNER_CASE.finditer(f.read()):
                    cases[m.group(1)] = re.findall(r'"([0-9.]+(?:-[0-9]+)?)"', m.group(2))
    return cases


def main():
    errors = []
    with open(PROTOCOL, encoding="utf-8") as f:
        protocol = f.read()
    with open(CONFORMANCE, encoding="utf-8") as f:
        conformance = f.read()

    # 1. markers in protocol.md
    ids = []
    for section, start, _end, chunk, markers in requirement_sentences(protocol):
        line = protocol.count("\n", 0, start) + 1
        if KEYWORD.search(chunk) and not markers:
            snippet = " ".join(chunk.split())[:90]
            errors.append(f"protocol.md:{line}: requirement without a marker: {snippet}")
        for sec, n in markers:
            if sec != section:
                errors.append(f"protocol.md:{line}: marker [{sec}-{n}] sits in §{section}")
            ids.append(f"{sec}-{n}")
    all_markers = [f"{a}-{b}" for a, b in MARKER.findall(protocol)]
    if len(all_markers) != len(ids):
        errors.append("protocol.md: a marker sits outside a numbered section's prose (§1 or code)")
    seen = set()
    for i in ids:
        if i in seen:
            errors.append(f"protocol.md: id {i} is used twice")
        seen.add(i)

    # 2. conformance.md rows and gaps
    rows = {}
    gaps = []
    in_gaps = False
    for number, line in enumerate(conformance.split("\n"), 1):
        if line.startswith("#"):
            in_gaps = line.lstrip("#").strip().lower().startswith("not yet covered")
            continue
        if in_gaps:
            m = GAP.match(line)
            if m:
                gaps.append(m.group(1))
            continue
        m = ROW.match(line)
        if m:
            rid = m.group(1)
            if rid in rows:
                errors.append(f"conformance.md:{number}: id {rid} has two rows")
            rows[rid] = (number, CHECK.findall(m.group(3)), m.group(3))
    for i in ids:
        if i not in rows:
            errors.append(f"conformance.md: no row for {i}")
    for rid, (number, _, _) in rows.items():
        if rid not in seen:
            errors.append(f"conformance.md:{number}: {rid} is not a marker in protocol.md")
    for g in gaps:
        if g not in seen:
            errors.append(f"conformance.md: 'Not yet covered' lists {g}, not a marker in protocol.md")
    if len(set(gaps)) != len(gaps):
        errors.append("conformance.md: 'Not yet covered' lists an id twice")

    # 3. every check exists
    tests = {"proto": test_functions("proto"), "tokio": test_functions("runtime-tokio")}
    vectors = {}
    runner = None
    for rid, (number, checks, cell) in rows.items():
        if not checks and rid not in gaps:
            errors.append(f"conformance.md:{number}: {rid} has no check and is not listed as not yet covered")
        stray = CHECK.sub("", cell).strip(" ,;")
        if stray and checks:
            errors.append(f"conformance.md:{number}: unparsed text in the checks cell: {stray}")
        for kind, target in checks:
            if kind == "vector":
                file, _, name = target.partition("#")
                path = os.path.join(SPEC, "vectors", file)
                if not os.path.isfile(path):
                    errors.append(f"conformance.md:{number}: no vector file {file}")
                    continue
                if file not in vectors:
                    vectors[file] = vector_names(path)
                if name not in vectors[file]:
                    errors.append(f"conformance.md:{number}: no vector {name} in {file}")
            elif kind in tests:
                if target not in tests[kind]:
                    errors.append(f"conformance.md:{number}: no test fn {target} in {kind}")
            elif kind == "example":
                if not os.path.isfile(os.path.join(ROOT, "proto", "examples", target + ".sh")):
                    errors.append(f"conformance.md:{number}: no script proto/examples/{target}.sh")
            elif kind == "runner":
                if runner is None:
                    runner = runner_cases()
                if target not in runner:
                    errors.append(f"conformance.md:{number}: no runner case {target}")
                elif rid not in runner[target]:
                    errors.append(f"conformance.md:{number}: runner case {target} does not list {rid} "
                                  f"among the ids it checks ({', '.join(runner[target])})")
            else:
                errors.append(f"conformance.md:{number}: unknown check kind {kind}")

    for e in errors:
        print(e, file=sys.stderr)
    covered = len([i for i in ids if i not in gaps])
    print(f"{len(ids)} requirements, {covered} covered, {len(gaps)} not yet covered"
          + (f" ({', '.join(gaps)})" if gaps else ""))
    if errors:
        print(f"conformance check: {len(errors)} inconsistencies", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
