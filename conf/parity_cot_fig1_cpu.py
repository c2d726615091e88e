# Sparse parity, Figure 1 at CPU scale: n=20, k=1..4, fresh samples every step (budget 8*10^4), GPT-2
# 1 layer x 2 heads, width 64, lr 1e-3, with and without CoT, 2 seeds. Expected: with CoT the sample complexity is
# nearly flat in k; without CoT it grows fast with k (runs that never learn are reported as '>= budget').
# The entropy of every head is logged at each evaluation (Figure 1b: it falls when accuracy jumps).
# 5-10 s a run on one thread (2026-12-02).
# One run:  python main.py --config conf/parity_cot_fig1_cpu.py
# python sweep.py --base conf/parity_cot_fig1_cpu.py --vary k=1,2,3,4 --vary cot=True,False \
#       --vary seed=42x2 --executor local --max-parallel 1 --yes
task = 'parity_cot'
n_bits = 20
k = 3
cot = True
n_samples = 80000
n_layer = 1
n_head = 2
n_embd = 64
lr = 1e-3
eval_every_samples = 4096
entropy_samples = 128
seed = 42
