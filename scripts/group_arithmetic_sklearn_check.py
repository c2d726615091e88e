"""Cross-check split_method = 'sklearn' against scikit-learn itself (scikit-learn is no dependency).

Step 1, with any Python that has scikit-learn (e.g. a throwaway venv), from the repository root:
    python scripts/group_arithmetic_sklearn_check.py --write /tmp/sk.json
Step 2, in the project's environment:
    python scripts/group_arithmetic_sklearn_check.py --compare /tmp/sk.json
Step 1 records train_test_split(np.arange(rows), test_size=f, random_state=seed) for many rows, fractions
(the critical-ratio fraction of Z_23 among them) and seeds; step 2 compares tasks.group_arithmetic's
numpy reproduction with every one of them.
"""
import argparse
import json
import math
import sys
from pathlib import Path


def cases():
    for rows in (4, 25, 36, 169, 529, 5041):
        for test_size in (0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 1 - 2.75 * math.log(23) / 23, 0.62507, 0.123456):
            for seed in (0, 1, 5, 12345, 2 ** 32 - 1):
                if math.ceil(test_size * rows) < rows:
                    yield rows, test_size, seed


def write(path):
    import numpy as np
    import sklearn
    from sklearn.model_selection import train_test_split
    out = []
    for rows, test_size, seed in cases():
        train, test = train_test_split(np.arange(rows), test_size=test_size, random_state=seed)
        out.append(dict(rows=rows, test_size=test_size, seed=seed, train=train.tolist(), test=test.tolist()))
    Path(path).write_text(json.dumps({"sklearn": sklearn.__version__, "numpy": np.__version__, "cases": out}))
    print(f"{len(out)} cases from scikit-learn {sklearn.__version__}, numpy {np.__version__}")


def compare(path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tasks.group_arithmetic import sklearn_split
    recorded = json.loads(Path(path).read_text())
    bad = [c for c in recorded["cases"]
           if [i.tolist() for i in sklearn_split(c["rows"], c["test_size"], c["seed"])] != [c["train"], c["test"]]]
    print(f"{len(recorded['cases']) - len(bad)} of {len(recorded['cases'])} cases identical to scikit-learn "
          f"{recorded['sklearn']}'s train_test_split (train and test indices, in order)")
    return 1 if bad else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", metavar="JSON", help="record scikit-learn's splits here (needs scikit-learn)")
    group.add_argument("--compare", metavar="JSON", help="compare the project's split with a recorded file")
    args = parser.parse_args()
    sys.exit(write(args.write) if args.write else compare(args.compare))
