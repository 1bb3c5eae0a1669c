#!/usr/bin/env python3
"""Builds the committed seed corpora from spec/vectors/frames.json.

frame_decode gets every vector message; http_head gets the payload of every HEADERS
vector (the head text alone). Run: python3 fuzz/seed_corpus.py
"""
import json
import pathlib

root = pathlib.Path(__file__).resolve().parent
doc = json.loads((root.parent / "spec/vectors/frames.json").read_text())
targets = {"frame_decode": {}, "http_head": {}}
for v in doc["valid"] + doc["invalid"]:
    msg = bytes.fromhex(v["hex"])
    targets["frame_decode"][v["name"]] = msg
    if len(msg) >= 8 and msg[0] == 0x04:
        targets["http_head"][v["name"]] = msg[8:]
for target, seeds in targets.items():
    d = root / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("seed-*"):
        old.unlink()
    for name, data in seeds.items():
        (d / f"seed-{name}").write_bytes(data)
    print(f"{d}: {len(seeds)} seeds")
