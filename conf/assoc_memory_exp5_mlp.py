# Experiment 5, MLP side: a Transformer with one attention head and a GELU MLP of width W = 2 d (H - 1)
# for H = 1, 6, ..., 31, at N = 70 (original, d = 13: 0.084 -> 0.998; d = 10: 0.070 -> 0.693).
# W depends on d, so one sweep per d:
#   python sweep.py --base conf/assoc_memory_exp5_mlp.py --vary d=7 --vary W=0,70,140,210,280,350,420 --vary seed=0,1,2,3,4 --yes
#   python sweep.py --base conf/assoc_memory_exp5_mlp.py --vary d=10 --vary W=0,100,200,300,400,500,600 --vary seed=0,1,2,3,4 --yes
#   python sweep.py --base conf/assoc_memory_exp5_mlp.py --vary d=13 --vary W=0,130,260,390,520,650,780 --vary seed=0,1,2,3,4 --yes
# (a --vary with one value fixes d for that sweep and records it in the sweep's manifest)
task = 'assoc_memory'
N = 70
alphas = [1.0, 1.0, 1.0]
model = 'transformer'
d = 10
d_h = None
H = 1
W = 300
nb_layers = 1
batch_size = 1024
num_batch = 256
n_epochs = 64
lr = 1e-2                  # original: lr = 0.1, lr_low = lr * 0.01 (factors) -> rates 1e-2 ... 1e-4
lr_end = 1e-4
eval_every = 16
seed = 0
# The original's protocol (docs/assoc_memory/README.md, 'Defaults that differ from the original'):
data_seed = 2222           # one table and one training set for every model of a sweep (seeds vary the init
                           # and the batch order only), as the original's notebook (seed 2222)
sampler = 'original'       # drawn as the original draws them: with 2222, its notebook's table and set exactly
init = 'original'          # its initialisation: embeddings U(+-1/sqrt(d)), U(+-1/sqrt(d_h)), Xavier q/k/v
lr_ramp = 'epoch'          # its LinearLR, stepped once per epoch (constant within an epoch)
