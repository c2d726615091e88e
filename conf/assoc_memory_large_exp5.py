# Large dimension, experiment 5: one attention head and a GELU MLP of width W = 0, 4d, ..., 20d at N = 200.
#   python sweep.py --base conf/assoc_memory_large_exp5.py --vary d=40 --vary W=0,160,320,480,640,800 --vary seed=0,1,2,3,4 --yes
#   python sweep.py --base conf/assoc_memory_large_exp5.py --vary d=50 --vary W=0,200,400,600,800,1000 --vary seed=0,1,2,3,4 --yes
#   python sweep.py --base conf/assoc_memory_large_exp5.py --vary d=60 --vary W=0,240,480,720,960,1200 --vary seed=0,1,2,3,4 --yes
# (a --vary with one value fixes d for that sweep and records it in the sweep's manifest)
task = 'assoc_memory'
N = 200
alphas = [1.0, 1.0, 1.0]
model = 'transformer'
d = 50
d_h = None
H = 1
W = 400
nb_layers = 1
batch_size = 1024
num_batch = 64
n_epochs = 64
lr = 1e-2                  # original: lr = 0.1, lr_low = lr * 0.01 (factors) -> 1e-2 ... 1e-4
lr_end = 1e-4
eval_every = 16
seed = 0
# The original's protocol (docs/assoc_memory/README.md, 'Defaults that differ from the original'):
data_seed = 2222           # one table and one training set for every model of a sweep (seeds vary the init
                           # and the batch order only), as the original's notebook (seed 2222)
sampler = 'original'       # drawn as the original draws them: with 2222, its notebook's table and set exactly
init = 'original'          # its initialisation: embeddings U(+-1/sqrt(d)), U(+-1/sqrt(d_h)), Xavier q/k/v
lr_ramp = 'epoch'          # its LinearLR, stepped once per epoch (constant within an epoch)
