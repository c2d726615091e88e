# Sparse parity, Figure 1 at CPU scale: n=20, k=1..4, fresh samples every step (budget 2*10^5), GPT-2
# 2 layers x 2 heads, width 64, with and without CoT, 2 seeds. Expected: with CoT the sample complexity is
# nearly flat in k; without CoT it grows fast with k (runs that never learn are reported as '>= budget').
# The entropy of every head is logged at each evaluation (Figure 1b: it falls when accuracy jumps).
# One run:  python main.py --config conf/parity_cot_fig1_cpu.py
# python sweep.py --base conf/parity_cot_fig1_cpu.py --vary k=1,2,3,4 --vary cot=True,False \
#       --vary seed=42x2 --executor local --max-parallel 1 --yes
task = 'parity_cot'
n_bits = 20
k = 3
cot = True
n_samples = 200000
n_layer = 2
n_head = 2
n_embd = 64
lr = 1e-3
eval_every_samples = 4096
entropy_samples = 128
seed = 42
