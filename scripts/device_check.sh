#!/bin/bash
# The GPU checks of stacked runs (issue 14) as one prepared command, for a machine with a GPU that has its own
# Python with PyTorch, Accelerate and Transformers (the GPU machine this project is sometimes lent has them;
# nothing is installed here). Run from the repository root:
#
#     bash scripts/device_check.sh            # figures and logs under $OUT (or /tmp/device_check)
#
# It prints the GPU and torch version, then runs bench/stacked.py (8 replicates one by one against the same 8
# stacked, for associative memory, group arithmetic and the parity CoT CPU-scale run; the runs' default
# device 'auto' and mixed_precision 'auto' put them on the GPU in bf16), each case under its own time limit so
# that the whole stays under ~9 minutes. The target there: >= 10x stacked for the two overhead-bound cases.
set -o pipefail
export PYTHONUNBUFFERED=1
out=${OUT:-/tmp/device_check}
mkdir -p "$out"
python=${PYTHON:-python3}
{ nvidia-smi -L; "$python" -c "import torch, transformers, accelerate; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '', \
'transformers', transformers.__version__, 'accelerate', accelerate.__version__)"; } 2>&1 | tee "$out/gpu.txt"
for case in group_arithmetic assoc_memory parity_cot; do
    timeout 170 "$python" bench/stacked.py --cases "$case" 2>&1 | tee "$out/stacked_$case.txt"
done
