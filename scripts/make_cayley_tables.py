"""Regenerate data/smallgroups_nonabelian_upto_64.jsonl.gz: the Cayley table of every non-abelian group
of order <= 64 in GAP's SmallGroups library (469 groups), one JSON object a line.

    python scripts/make_cayley_tables.py [--max-order 64] [--out data/smallgroups_nonabelian_upto_64.jsonl.gz]

Needs GAP with the SmallGrp library (Debian/Ubuntu: apt-get install gap gap-smallgrp); the training code
and the tests need only the committed file. Fields of each line:
    order, smallgroup_id   GAP's SmallGroup(order, smallgroup_id)
    name                   GAP's StructureDescription (a human label, not an identifier)
    num_irreps             number of irreducible complex characters (= conjugacy classes)
    irrep_degrees          their degrees, ascending, with multiplicity (sum of squares = order)
    index_base             1: table entries are 1-based, as GAP writes them
    table                  table[i][j] = k  iff  e_i * e_j = e_k, where e = Elements(G) (GAP's sorted order)
The file is written with gzip mtime 0, so regenerating it with the same GAP gives the same bytes.
"""
import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "data" / "smallgroups_nonabelian_upto_64.jsonl.gz"

# GAP prints lists as "[ 1, 2 ]", which is already JSON; StructureDescription names hold no quote or
# backslash, so every line GAP prints is a JSON object. Print formatting is switched off on the stream,
# otherwise GAP wraps lines at its screen width (4096 characters at most).
GAP_PROGRAM = r"""
out := OutputTextFile(OUT, false);;
SetPrintFormattingStatus(out, false);;
for ord in [1..MAX_ORDER] do
  for id in [1..NrSmallGroups(ord)] do
    G := SmallGroup(ord, id);
    if not IsAbelian(G) then
      degrees := [];
      for pair in CharacterDegrees(G) do
        Append(degrees, ListWithIdenticalEntries(pair[2], pair[1]));
      od;
      Sort(degrees);
      PrintTo(out, "{\"order\": ", ord, ", \"smallgroup_id\": ", id,
              ", \"name\": \"", StructureDescription(G), "\"",
              ", \"num_irreps\": ", Length(degrees), ", \"irrep_degrees\": ", degrees,
              ", \"index_base\": 1, \"table\": ", MultiplicationTable(Elements(G)), "}\n");
    fi;
  od;
od;
CloseStream(out);
QUIT;
"""


def run_gap(max_order, raw_path):
    gap = shutil.which("gap")
    if gap is None:
        sys.exit("error: GAP is not installed (Debian/Ubuntu: apt-get install gap gap-smallgrp)")
    program = f'MAX_ORDER := {max_order};;\nOUT := "{raw_path}";;\n' + GAP_PROGRAM
    script = Path(raw_path).with_suffix(".g")
    script.write_text(program)
    subprocess.run([gap, "-q", "-b", str(script)], check=True, stdin=subprocess.DEVNULL)


def parse_records(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def check(record):
    """Refuse to write a table that is not a non-abelian group with consistent character degrees."""
    n, t = record["order"], record["table"]
    assert len(t) == n and all(sorted(row) == list(range(1, n + 1)) for row in t), "not a Latin square"
    assert any(t[i][j] != t[j][i] for i in range(n) for j in range(n)), "abelian"
    assert sum(d * d for d in record["irrep_degrees"]) == n, "sum of squared degrees != order"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-order", type=int, default=64)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "tables.jsonl"
        run_gap(args.max_order, raw)
        records = parse_records(raw.read_text())
    for record in records:
        check(record)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(f".{args.out.name}.tmp")
    with open(tmp_out, "wb") as raw_file:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw_file, mtime=0, compresslevel=9) as f:
            for record in records:
                f.write((json.dumps(record, separators=(",", ":")) + "\n").encode())
    tmp_out.replace(args.out)
    print(f"wrote {len(records)} groups of order <= {args.max_order} to {args.out} "
          f"({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
