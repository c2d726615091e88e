# Sparse parity, Figure 4 at CPU scale: n=20, k=6, a fixed set of 10^4 training samples reused (15 epochs),
# GPT-2 width 128, with and without CoT. Expected: with CoT exact match 1.0 within ~10 epochs; without CoT
# the model stays near 0.5 (chance) on the same budget. About a minute a run on one thread (55 s, 2026-12-02).
# One run:  python main.py --config conf/parity_cot_fig4_cpu.py
# python sweep.py --base conf/parity_cot_fig4_cpu.py --vary cot=True,False --executor local --max-parallel 1 --yes
# More shapes without CoT (as the paper's 1..4 layers x 1..4 heads): add --vary n_layer=1,2 --vary n_head=1,2.
task = 'parity_cot'
n_bits = 20
k = 6
cot = True
n_train = 10000
n_samples = 150000
n_layer = 1
n_head = 1
n_embd = 128
lr = 1e-4
eval_every_samples = None
eval_every_steps = 20
train_eval_size = 1024
entropy_samples = 128
seed = 42
